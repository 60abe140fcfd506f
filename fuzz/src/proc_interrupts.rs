//! `proc_interrupts`: `/proc/interrupts` parsing and the vfio action lookup.
//!
//! The same input is used twice:
//! - as the raw text of a `/proc/interrupts` file: [`read_all`] must never
//!   panic, must not depend on how a reader chunks its input, and must agree
//!   with [`parse_line`] applied line by line after the header; [`find_irq`]
//!   must find the first irq line carrying an action [`read_all`] saw;
//! - as [`arbitrary`] bytes describing irq lines that vfio-pci (or anything
//!   else) could print: each is laid out with [`format_line`], and parsing the
//!   formatted file must give back the irq, the counts and the action names,
//!   and [`find_irq`] the first irq with a given vfio action.

use arbitrary::{Arbitrary, Unstructured};
use std::io::BufReader;
use vfio_core::parse::proc_interrupts::{
    InterruptLine, IrqId, find_irq, format_header, format_line, parse_line, read_all,
    vfio_action_name,
};
use vfio_core::{IrqIndex, PciAddress};

/// The target.
pub fn proc_interrupts(data: &[u8]) {
    check_text(data);
    check_formatted(data);
}

/// The CPU count of a header line, by the rule the module documents.
fn reference_header(line: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(line).ok()?;
    let mut n = 0;
    for token in text.split_whitespace() {
        let digits = token.strip_prefix("CPU")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n += 1;
    }
    (n > 0).then_some(n)
}

/// The file's lines as `read_all` sees them: split on `\n`, one `\r` before
/// a `\n` dropped, no empty piece after a final newline.
fn lines(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                out.push(line.strip_suffix(b"\r").unwrap_or(line));
                rest = &rest[i + 1..];
            }
            None => {
                out.push(rest);
                rest = &[];
            }
        }
    }
    out
}

fn check_text(data: &[u8]) {
    let all = read_all(data);

    // Chunking must not matter: tiny buffers split lines and `\r\n` pairs.
    for capacity in [1, 7] {
        let chunked = read_all(BufReader::with_capacity(capacity, data));
        match (&all, &chunked) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "read_all differs at capacity {capacity}"),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("read_all {a:?} but {b:?} at capacity {capacity}"),
        }
    }

    // The reference: header, then `parse_line` on each UTF-8 line.
    let lines = lines(data);
    let want = match lines.first() {
        None => Some(Vec::new()),
        Some(header) => reference_header(header).map(|cpus| {
            lines[1..]
                .iter()
                .filter_map(|l| std::str::from_utf8(l).ok())
                .filter_map(|l| parse_line(l, cpus))
                .collect::<Vec<_>>()
        }),
    };
    let all = match (all, want) {
        (Ok(got), Some(want)) => {
            assert_eq!(got, want, "read_all differs from parse_line per line");
            got
        }
        (Err(_), None) => return,
        (got, want) => panic!("read_all {got:?} but the reference {want:?}"),
    };

    let cpus = lines.first().and_then(|h| reference_header(h)).unwrap_or(0);
    for line in &all {
        check_line(line, cpus);
    }

    // Every action found is found again by `find_irq`, on its first irq.
    let actions = all
        .iter()
        .filter(|l| matches!(l.irq, IrqId::Number(_)))
        .flat_map(|l| l.actions.iter())
        .take(4);
    for action in actions {
        let first = first_irq_with(&all, action);
        assert!(first.is_some());
        assert_eq!(
            find_irq(data, action).ok(),
            Some(first),
            "find_irq({action:?})"
        );
    }
    for absent in ["vfio-msix[0](0000:00:03.0)", "vfio-intx(0000:00:02.0)", ""] {
        let first = first_irq_with(&all, absent);
        assert_eq!(
            find_irq(data, absent).ok(),
            Some(first),
            "find_irq({absent:?})"
        );
    }

    // Lines on their own, with other CPU counts than the header's.
    for line in lines.iter().take(64) {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        for cpus in [0, 1, 4] {
            if let Some(parsed) = parse_line(text, cpus) {
                check_line(&parsed, cpus);
                let label = text.split_once(':').map(|(l, _)| l.trim());
                match &parsed.irq {
                    IrqId::Number(n) => assert_eq!(label.and_then(|l| l.parse().ok()), Some(*n)),
                    IrqId::Named(name) => assert_eq!(label, Some(name.as_str())),
                }
            }
        }
    }
}

fn first_irq_with(all: &[InterruptLine], action: &str) -> Option<u32> {
    all.iter().find_map(|l| match l.irq {
        IrqId::Number(n) if l.actions.iter().any(|a| a == action) => Some(n),
        _ => None,
    })
}

fn check_line(line: &InterruptLine, cpus: usize) {
    assert!(
        line.counts.len() <= cpus,
        "{} counts for {cpus} CPUs",
        line.counts.len()
    );
    if let IrqId::Named(_) = line.irq {
        assert!(
            line.actions.is_empty(),
            "a named line with actions: {line:?}"
        );
    }
    for action in &line.actions {
        assert!(!action.is_empty());
        assert!(
            !action.contains(", "),
            "action {action:?} holds the separator"
        );
        assert!(!action.contains('\n'));
    }
}

/// One irq line as the kernel could print it.
#[derive(Debug, Arbitrary)]
struct Line {
    irq: u32,
    counts: Vec<u64>,
    chip: Vec<ChipToken>,
    hwirq: Option<u32>,
    handler: Handler,
    actions: Vec<Action>,
}

/// A space-separated piece of an irq chip's name.
#[derive(Debug, Arbitrary)]
enum ChipToken {
    Known(u8),
    Word(String),
}

/// Chip names Linux 6.1 prints.
const CHIPS: &[&str] = &[
    "IO-APIC",
    "IR-IO-APIC",
    "IR-PCI-MSIX-0000:00:03.0",
    "IR-PCI-MSI-0000:00:02.0",
    "PCI-MSI",
    "PCI-MSIX-0000:00:03.0",
    "DMAR-MSI",
    "GICv3",
    "XT-PIC",
];

#[derive(Debug, Arbitrary)]
enum Handler {
    Edge,
    Fasteoi,
    Level,
    Other(String),
}

/// An action: a vfio-pci vector name, or any name `request_irq` was given.
#[derive(Debug, Arbitrary)]
enum Action {
    Vfio {
        index: u8,
        vector: u32,
        address: (u32, u8, u8, u8),
    },
    Other(String),
}

impl Action {
    fn name(&self) -> Option<String> {
        match self {
            Self::Vfio {
                index,
                vector,
                address: (domain, bus, device, function),
            } => {
                let address = PciAddress::new(*domain, *bus, device % 32, function % 8)?;
                let name = vfio_action_name(IrqIndex(u32::from(index % 3)), *vector, &address)?;
                // A name parses back to the same address.
                let inner = name.rsplit_once('(').map(|(_, a)| a.trim_end_matches(')'));
                assert_eq!(inner.and_then(|a| a.parse().ok()), Some(address));
                Some(name)
            }
            // What `format_line` prints verbatim and `parse_line` must give back:
            // non-empty, no surrounding whitespace, no control characters, and
            // not holding the `", "` that separates actions.
            Self::Other(name) => (!name.is_empty()
                && name.trim() == name
                && !name.contains(", ")
                && !name.chars().any(char::is_control))
            .then(|| name.clone()),
        }
    }
}

/// Whether `format_line` → `parse_line` must round-trip with this chip.
///
/// `format_line` documents: the chip starts with a letter and has no double
/// spaces. That is not enough: a chip token shaped like the kernel's
/// `<hwirq>-<handler>` field (`a 1-b`, `x -y`) is taken for that field, and
/// the real one ends up in the action list. So such tokens are excluded too
/// (no chip Linux prints has one).
fn chip_ok(chip: &str) -> bool {
    chip.starts_with(|c: char| c.is_ascii_alphabetic())
        && !chip.contains("  ")
        && !chip.chars().any(char::is_control)
        && !chip.split_whitespace().any(handler_shaped)
}

/// The kernel's `<hwirq>-<handler>` shape: ASCII digits (maybe none), a
/// dash, a non-empty name of ASCII letters, digits and underscores.
fn handler_shaped(token: &str) -> bool {
    token.split_once('-').is_some_and(|(digits, name)| {
        digits.bytes().all(|b| b.is_ascii_digit())
            && !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

fn chip_name(tokens: &[ChipToken]) -> String {
    let words: Vec<&str> = tokens
        .iter()
        .take(4)
        .map(|t| match t {
            ChipToken::Known(i) => CHIPS[usize::from(*i) % CHIPS.len()],
            ChipToken::Word(w) => w.as_str(),
        })
        .collect();
    words.join(" ")
}

fn handler_name(h: &Handler) -> Option<String> {
    let name = match h {
        Handler::Edge => "edge",
        Handler::Fasteoi => "fasteoi",
        Handler::Level => "level",
        Handler::Other(s) => s,
    };
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then(|| name.to_owned())
}

fn check_formatted(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(cpus) = u.int_in_range(0..=8usize) else {
        return;
    };
    let Ok(items) = Vec::<Line>::arbitrary(&mut u) else {
        return;
    };
    let mut text = format_header(cpus.max(1));
    let mut expected = Vec::new();
    for item in items.iter().take(16) {
        let counts: Vec<u64> = item.counts.iter().copied().cycle().take(cpus).collect();
        let chip = chip_name(&item.chip);
        if counts.len() != cpus || !chip_ok(&chip) {
            continue;
        }
        let Some(handler) = handler_name(&item.handler) else {
            continue;
        };
        let hwirq = match item.hwirq {
            Some(n) => format!("{n}-{handler}"),
            None => format!("-{handler}"),
        };
        let actions: Vec<String> = item
            .actions
            .iter()
            .take(4)
            .filter_map(Action::name)
            .collect();
        let line = format_line(item.irq, &counts, &chip, &hwirq, &actions.join(", "));
        let parsed = parse_line(&line, cpus)
            .unwrap_or_else(|| panic!("format_line output {line:?} does not parse"));
        let want = InterruptLine {
            irq: IrqId::Number(item.irq),
            counts,
            actions,
        };
        assert_eq!(parsed, want, "round trip of {line:?}");
        if cpus > 0 {
            text.push('\n');
            text.push_str(&line);
            expected.push(want);
        }
    }
    if cpus == 0 {
        return;
    }
    text.push('\n');
    let all = read_all(text.as_bytes()).expect("a formatted file parses");
    assert_eq!(all, expected);
    for want in expected.iter().flat_map(|l| &l.actions).take(4) {
        let first = first_irq_with(&expected, want);
        assert_eq!(find_irq(text.as_bytes(), want).unwrap(), first);
    }
}
