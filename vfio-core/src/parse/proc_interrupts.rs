//! `/proc/interrupts`: which Linux irq carries a given VFIO vector.
//!
//! The file starts with a header naming one column per online CPU, then one
//! line per irq: `<irq>: <count per CPU> <chip> <hwirq>-<handler>  <actions>`,
//! where the actions are the names passed to `request_irq`, joined by `", "`.
//! vfio-pci names its actions `vfio-intx(<device>)`, `vfio-msi[<n>](<device>)`
//! and `vfio-msix[<n>](<device>)`. Architecture lines (`NMI`, `LOC`, `ERR`,
//! ...) carry a name instead of a number, counts and a description.
//!
//! # Finding the actions on a line
//!
//! Chip names may contain spaces and their width varies, so columns are not
//! counted. After the irq label and the per-CPU counts (at most `cpus`
//! decimal tokens), the action list is everything after the first
//! whitespace-separated token shaped `<digits>-<name>` (the kernel's
//! `<hwirq>-<handler>` field, e.g. `0-edge`, `11-fasteoi`, `49152-edge`; the
//! digits may be absent), split on `", "`. A line without such a token (some
//! architectures print no handler name) falls back to: split the text on
//! runs of two or more spaces; with three or more fields (chip, hwirq,
//! actions) the last field is the action list, otherwise there are no
//! actions. Named lines (`NMI:` ...) never have actions. Action names may
//! contain single spaces (`PCIe PME`); names with no spaces are always
//! recovered exactly.

use super::ParseError;
use crate::info::IrqIndex;
use crate::pci_address::PciAddress;
use std::fmt::Write as _;
use std::io::BufRead;

/// Lines longer than this are skipped without being kept in memory.
pub const MAX_LINE: usize = 1 << 20;

const WHAT: &str = "/proc/interrupts";

/// The label at the start of a line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IrqId {
    /// A Linux irq number.
    Number(u32),
    /// An architecture counter such as `NMI`, `LOC` or `ERR`.
    Named(String),
}

/// One parsed line of `/proc/interrupts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterruptLine {
    /// The irq number or counter name.
    pub irq: IrqId,
    /// The leading counts: one per CPU on irq lines, a single total on some
    /// named lines (`ERR`, `MIS`).
    pub counts: Vec<u64>,
    /// The action names at the end of the line, in order (see the module docs).
    pub actions: Vec<String>,
}

/// Parses one line, with `cpus` CPU columns (from the header). `None` for the
/// header, blank lines and anything else that is not an irq line. A trailing
/// newline is ignored.
pub fn parse_line(line: &str, cpus: usize) -> Option<InterruptLine> {
    let line = line.trim_end_matches(['\n', '\r']);
    let (label, rest) = line.split_once(':')?;
    let label = label.trim();
    let irq = if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        IrqId::Number(label.parse().ok()?)
    } else if label.starts_with(|c: char| c.is_ascii_alphabetic())
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        IrqId::Named(label.to_owned())
    } else {
        return None;
    };

    let mut counts = Vec::new();
    let mut desc = rest;
    while counts.len() < cpus {
        let trimmed = desc.trim_start();
        let (token, after) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_digit()) {
            break;
        }
        counts.push(token.parse().ok()?);
        desc = after;
    }

    let actions = match irq {
        IrqId::Number(_) => actions(desc),
        IrqId::Named(_) => Vec::new(),
    };
    Some(InterruptLine {
        irq,
        counts,
        actions,
    })
}

/// The action list of the text after the counts (see the module docs).
fn actions(desc: &str) -> Vec<String> {
    let mut rest = desc;
    let list = loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break fallback_list(desc);
        }
        let (token, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if is_handler(token) {
            break after.trim();
        }
        rest = after;
    };
    list.split(", ")
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// True for the kernel's `<hwirq>-<handler>` field: ASCII digits (possibly
/// none), a dash, then a non-empty name of letters, digits and underscores.
fn is_handler(token: &str) -> bool {
    match token.split_once('-') {
        Some((hwirq, name)) => {
            hwirq.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
        None => false,
    }
}

/// With no handler token: the last of three or more double-space-separated fields.
fn fallback_list(desc: &str) -> &str {
    let fields: Vec<&str> = desc
        .split("  ")
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    match fields.as_slice() {
        [_, _, .., last] if fields.len() >= 3 => last,
        _ => "",
    }
}

/// The action name vfio-pci gives vector `vector` of `index` on `device`:
/// `vfio-intx(<device>)` (vector must be 0), `vfio-msi[<vector>](<device>)` or
/// `vfio-msix[<vector>](<device>)`. `None` for other indexes, which do not
/// appear in /proc/interrupts, and for an INTx vector other than 0.
pub fn vfio_action_name(index: IrqIndex, vector: u32, device: &PciAddress) -> Option<String> {
    let name = index.proc_name()?;
    if index == IrqIndex::INTX {
        (vector == 0).then(|| format!("{name}({device})"))
    } else {
        Some(format!("{name}[{vector}]({device})"))
    }
}

/// The number of the first irq line one of whose actions equals `action`
/// exactly; `None` when no line has it.
///
/// The first line must be the CPU header. Lines that are not valid UTF-8,
/// longer than [`MAX_LINE`], or do not parse are skipped. An I/O error, or a
/// first line that is not a header, is a [`ParseError`].
pub fn find_irq(reader: impl BufRead, action: &str) -> Result<Option<u32>, ParseError> {
    let mut found = None;
    scan(reader, |line| {
        if let IrqId::Number(n) = line.irq {
            if line.actions.iter().any(|a| a == action) {
                found = Some(n);
                return false;
            }
        }
        true
    })?;
    Ok(found)
}

/// Every irq and counter line, in file order (see [`find_irq`] for what is
/// skipped and what is an error).
pub fn read_all(reader: impl BufRead) -> Result<Vec<InterruptLine>, ParseError> {
    let mut all = Vec::new();
    scan(reader, |line| {
        all.push(line);
        true
    })?;
    Ok(all)
}

/// Feeds each parsed line to `each` until it returns false or the input ends.
fn scan(
    mut reader: impl BufRead,
    mut each: impl FnMut(InterruptLine) -> bool,
) -> Result<(), ParseError> {
    let mut buf = Vec::new();
    let mut number = 0u64;
    let mut cpus = None;
    loop {
        let complete = next_line(&mut reader, &mut buf).map_err(|e| {
            ParseError::new(
                WHAT,
                format!("reading line {}: {e}", number.saturating_add(1)),
            )
        })?;
        let Some(complete) = complete else {
            return Ok(());
        };
        number = number.saturating_add(1);
        let text = complete.then(|| std::str::from_utf8(&buf).ok()).flatten();
        let Some(cpus) = cpus else {
            let header = text.and_then(header_cpus).ok_or_else(|| {
                ParseError::new(WHAT, "the first line is not a header of CPU columns")
            })?;
            cpus = Some(header);
            continue;
        };
        if let Some(line) = text.and_then(|t| parse_line(t, cpus)) {
            if !each(line) {
                return Ok(());
            }
        }
    }
}

/// The number of CPU columns in a header line, or `None` when it is not one.
fn header_cpus(line: &str) -> Option<usize> {
    let mut n = 0usize;
    for token in line.split_whitespace() {
        let digits = token.strip_prefix("CPU")?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n = n.saturating_add(1);
    }
    (n > 0).then_some(n)
}

/// Reads one line into `buf` without its line ending, keeping at most
/// [`MAX_LINE`] bytes. `Ok(None)` at the end of the input; `Ok(Some(false))`
/// for a line that was too long (its bytes are consumed, `buf` is empty).
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut overlong = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(!overlong));
        }
        any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let used = newline.map_or(chunk.len(), |i| i.saturating_add(1));
        let part = chunk
            .get(..newline.unwrap_or(chunk.len()))
            .unwrap_or_default();
        if !overlong {
            if buf.len().saturating_add(part.len()) > MAX_LINE {
                overlong = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        reader.consume(used);
        if newline.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(!overlong));
        }
    }
}

/// The header line for `cpus` CPUs, laid out as the kernel does (no newline).
pub fn format_header(cpus: usize) -> String {
    let mut s = " ".repeat(11);
    for cpu in 0..cpus {
        let _ = write!(s, "CPU{cpu:<8}");
    }
    s
}

/// One irq line laid out as the kernel does (no newline): the irq
/// right-aligned to 3, each count right-aligned to 10, the chip
/// right-aligned to 8, then `hwirq` — the `<hwirq>-<handler>` field, e.g.
/// `0-edge`, printed with the number right-aligned to 3 and the handler
/// left-aligned to 8 — then two spaces and `action` verbatim (pass
/// `"a, b"` for two actions; an empty `action` prints none).
///
/// [`parse_line`] with `counts.len()` CPUs gives back `irq`, `counts` and
/// `action` when the chip starts with a letter, has no double spaces and no
/// word of the `<digits>-<name>` shape (no chip Linux prints has one: such a
/// word would be taken for the hwirq field), and `hwirq` has that shape.
pub fn format_line(irq: u32, counts: &[u64], chip: &str, hwirq: &str, action: &str) -> String {
    let mut s = String::with_capacity(32 + 11 * counts.len() + chip.len() + action.len());
    push_line(&mut s, irq, counts, chip, hwirq, action);
    s
}

/// [`format_line`], appended to `out`: what a writer of the whole file
/// uses, with no allocation per line.
pub fn push_line(
    out: &mut String,
    irq: u32,
    counts: &[u64],
    chip: &str,
    hwirq: &str,
    action: &str,
) {
    push_right(out, u64::from(irq), 3);
    out.push_str(": ");
    for &count in counts {
        push_right(out, count, 10);
        out.push(' ');
    }
    out.push(' ');
    pad_str_right(out, chip, 8);
    out.push(' ');
    match hwirq.split_once('-') {
        Some((number, handler)) => {
            pad_str_right(out, number, 3);
            out.push('-');
            out.push_str(handler);
            for _ in handler.chars().count()..8 {
                out.push(' ');
            }
        }
        None => pad_str_right(out, hwirq, 3),
    }
    if !action.is_empty() {
        out.push_str("  ");
        out.push_str(action);
    }
}

/// `n` in decimal, right-aligned to `width` (as `{n:>width}`).
fn push_right(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in (digits.len() - at)..width {
        out.push(' ');
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// `text` right-aligned to `width` characters (as `{text:>width}`).
fn pad_str_right(out: &mut String, text: &str, width: usize) {
    for _ in text.chars().count()..width {
        out.push(' ');
    }
    out.push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_line_is_laid_out_as_the_format_widths_say(
            irq in any::<u32>(),
            counts in proptest::collection::vec(any::<u64>(), 0..4),
            chip in "[A-Za-z-]{0,12}",
            number in "[0-9]{0,6}",
            handler in "[a-z]{0,10}",
            action in "[a-z0-9()\\[\\]:.,]{0,20}",
        ) {
            let hwirq = format!("{number}-{handler}");
            let mut want = format!("{irq:>3}: ");
            for c in &counts {
                want.push_str(&format!("{c:>10} "));
            }
            want.push_str(&format!(" {chip:>8} {number:>3}-{handler:<8}"));
            if !action.is_empty() {
                want.push_str(&format!("  {action}"));
            }
            prop_assert_eq!(format_line(irq, &counts, &chip, &hwirq, &action), want);
            let plain = format_line(irq, &counts, &chip, &number, "");
            let tail = format!(" {chip:>8} {number:>3}");
            prop_assert!(plain.ends_with(&tail), "{:?} does not end in {:?}", plain, tail);
        }
    }

    const SAMPLE: &str = "\
            CPU0       CPU1
  0:         45          0   IO-APIC   2-edge      timer
  8:          0          0   IO-APIC   8-edge      rtc0
  9:          0          0   IO-APIC   9-fasteoi   acpi
 11:          0          0  IR-IO-APIC   11-fasteoi   vfio-intx(0000:00:02.0)
 24:          0          0  IR-PCI-MSIX-0000:00:03.0    0-edge      vfio-msix[0](0000:00:03.0)
 25:          7          1  IR-PCI-MSI-0000:00:02.0    0-edge      vfio-msi[0](0000:00:02.0)
 26:          0          0  PCI-MSI 49152-edge      PCIe PME, aerdrv
 27:          0          3  IR-PCI-MSI-0000:00:1f.2    0-edge      ahci[0000:00:1f.2], i801_smbus
 28:          0          0   IO-APIC   7-edge    
NMI:          0          0   Non-maskable interrupts
LOC:      12345      67890   Local timer interrupts
ERR:          0
MIS:          0
";

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn line(irq: u32, counts: &[u64], actions: &[&str]) -> InterruptLine {
        InterruptLine {
            irq: IrqId::Number(irq),
            counts: counts.to_vec(),
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn parses_every_kind_of_line() {
        let all = read_all(SAMPLE.as_bytes()).unwrap();
        assert_eq!(all.len(), 13);
        assert_eq!(all[0], line(0, &[45, 0], &["timer"]));
        assert_eq!(all[3], line(11, &[0, 0], &["vfio-intx(0000:00:02.0)"]));
        assert_eq!(all[4], line(24, &[0, 0], &["vfio-msix[0](0000:00:03.0)"]));
        assert_eq!(all[5], line(25, &[7, 1], &["vfio-msi[0](0000:00:02.0)"]));
        assert_eq!(all[6], line(26, &[0, 0], &["PCIe PME", "aerdrv"]));
        assert_eq!(
            all[7],
            line(27, &[0, 3], &["ahci[0000:00:1f.2]", "i801_smbus"])
        );
        assert_eq!(all[8], line(28, &[0, 0], &[]));
        assert_eq!(
            all[9],
            InterruptLine {
                irq: IrqId::Named("NMI".into()),
                counts: vec![0, 0],
                actions: vec![]
            }
        );
        assert_eq!(all[11].counts, vec![0]);
        assert_eq!(all[12].irq, IrqId::Named("MIS".into()));
    }

    #[test]
    fn the_real_line_from_the_brief_parses() {
        let l = parse_line(
            " 24:          0          0  IR-PCI-MSIX-0000:00:03.0    0-edge      vfio-msix[0](0000:00:03.0)\n",
            2,
        )
        .unwrap();
        assert_eq!(l, line(24, &[0, 0], &["vfio-msix[0](0000:00:03.0)"]));
    }

    #[test]
    fn falls_back_without_a_handler_field() {
        // arm64 GIC layout: hwirq and trigger, no `-handler`.
        let l = parse_line(
            " 11:      12345      67890     GICv3  27 Level     arch_timer",
            2,
        )
        .unwrap();
        assert_eq!(l.actions, vec!["arch_timer"]);
        let l = parse_line(" 12:          0          0     GICv3  28 Level", 2).unwrap();
        assert!(l.actions.is_empty());
    }

    #[test]
    fn non_lines_are_none() {
        for bad in [
            "",
            "           CPU0       CPU1",
            ": 1 2",
            "  x y: 1 2",
            "-1: 0 0 chip 1-edge a",
            "99999999999: 0 0 chip 1-edge a",
            " 24:  99999999999999999999999 0 chip 1-edge a",
        ] {
            assert_eq!(parse_line(bad, 2), None, "{bad:?}");
        }
    }

    #[test]
    fn action_names_follow_vfio_pci() {
        let a = addr("0000:00:03.0");
        assert_eq!(
            vfio_action_name(IrqIndex::INTX, 0, &a).unwrap(),
            "vfio-intx(0000:00:03.0)"
        );
        assert_eq!(vfio_action_name(IrqIndex::INTX, 1, &a), None);
        assert_eq!(
            vfio_action_name(IrqIndex::MSI, 3, &a).unwrap(),
            "vfio-msi[3](0000:00:03.0)"
        );
        assert_eq!(
            vfio_action_name(IrqIndex::MSIX, 10, &a).unwrap(),
            "vfio-msix[10](0000:00:03.0)"
        );
        assert_eq!(vfio_action_name(IrqIndex::ERR, 0, &a), None);
        assert_eq!(vfio_action_name(IrqIndex::REQ, 0, &a), None);
    }

    #[test]
    fn find_irq_matches_whole_action_names_only() {
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            format_header(2),
            format_line(
                24,
                &[0, 0],
                "IR-PCI-MSIX-0000:00:03.0",
                "0-edge",
                "vfio-msix[1](10000:00:03.0)"
            ),
            format_line(
                25,
                &[0, 0],
                "IR-PCI-MSIX-0000:00:03.0",
                "1-edge",
                "vfio-msix[10](0000:00:03.0)"
            ),
            format_line(
                26,
                &[0, 0],
                "IR-PCI-MSIX-0000:00:03.0",
                "2-edge",
                "x, vfio-msix[1](0000:00:03.0)"
            ),
            format_line(
                27,
                &[0, 0],
                "IR-PCI-MSIX-0000:00:03.0",
                "3-edge",
                "vfio-msix[1](0000:00:03.0)x"
            ),
        );
        let find = |a: &str| find_irq(text.as_bytes(), a).unwrap();
        assert_eq!(find("vfio-msix[1](0000:00:03.0)"), Some(26));
        assert_eq!(find("vfio-msix[10](0000:00:03.0)"), Some(25));
        assert_eq!(find("vfio-msix[1](10000:00:03.0)"), Some(24));
        assert_eq!(find("vfio-msix[1]"), None);
        assert_eq!(find("0000:00:03.0"), None);
        assert_eq!(find("IR-PCI-MSIX-0000:00:03.0"), None);
        assert_eq!(find("1-edge"), None);
        // Counter lines never match, even on their description.
        assert_eq!(
            find_irq(SAMPLE.as_bytes(), "Non-maskable interrupts").unwrap(),
            None
        );
        assert_eq!(find_irq(SAMPLE.as_bytes(), "acpi").unwrap(), Some(9));
    }

    #[test]
    fn bad_lines_are_skipped_but_io_errors_and_missing_headers_are_not() {
        let mut bytes = b"     CPU0\n 5: 0 chip 1-edge \xff\xfe\n".to_vec();
        bytes.extend_from_slice(b"garbage\n 6: 0 chip 1-edge target\n");
        assert_eq!(find_irq(bytes.as_slice(), "target").unwrap(), Some(6));
        assert_eq!(read_all(bytes.as_slice()).unwrap().len(), 1);

        let e = find_irq(" 5: 0 chip 1-edge target\n".as_bytes(), "target").unwrap_err();
        assert!(e.reason().contains("not a header"), "{e}");
        assert_eq!(find_irq("".as_bytes(), "target").unwrap(), None);

        struct Failing;
        impl std::io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("device vanished"))
            }
        }
        let e = find_irq(std::io::BufReader::new(Failing), "target").unwrap_err();
        assert_eq!(e.reason(), "reading line 1: device vanished");
        assert_eq!(e.what(), "/proc/interrupts");
    }

    #[test]
    fn overlong_lines_are_skipped_and_crlf_is_accepted() {
        let mut text = String::from("     CPU0\r\n");
        text.push_str(&format!(" 5: 0 chip 1-edge {}\n", "a".repeat(MAX_LINE)));
        text.push_str(" 6: 0 chip 1-edge b\r\n 7: 0 chip 1-edge c");
        // A tiny buffer forces lines to span many fill_buf calls.
        let reader = std::io::BufReader::with_capacity(7, text.as_bytes());
        let all = read_all(reader).unwrap();
        assert_eq!(all, vec![line(6, &[0], &["b"]), line(7, &[0], &["c"])]);
    }

    #[test]
    fn format_matches_the_kernel_layout() {
        assert_eq!(format_header(2), "           CPU0       CPU1       ");
        assert_eq!(
            format_line(
                24,
                &[0, 0],
                "IR-PCI-MSIX-0000:00:03.0",
                "0-edge",
                "vfio-msix[0](0000:00:03.0)"
            ),
            // As a kernel with fewer than 1000 irqs prints it (3-wide irq and hwirq).
            " 24:          0          0  IR-PCI-MSIX-0000:00:03.0   0-edge      vfio-msix[0](0000:00:03.0)"
        );
        assert_eq!(
            format_line(
                11,
                &[0, 0],
                "IO-APIC",
                "11-fasteoi",
                "vfio-intx(0000:00:02.0)"
            ),
            " 11:          0          0   IO-APIC  11-fasteoi   vfio-intx(0000:00:02.0)"
        );
    }

    fn address() -> impl Strategy<Value = PciAddress> {
        (any::<u32>(), any::<u8>(), 0u8..32, 0u8..8)
            .prop_map(|(d, b, s, f)| PciAddress::new(d, b, s, f).unwrap())
    }

    proptest! {
        #[test]
        fn format_then_parse_round_trips(
            irq in any::<u32>(),
            counts in prop::collection::vec(any::<u64>(), 0..8),
            chip in "[A-Za-z][A-Za-z0-9:._-]{0,24}( [A-Za-z][A-Za-z0-9-]{0,7})?",
            hwirq in "[0-9]{0,6}-(edge|fasteoi|level|percpu_devid|simple)",
            action in "[!-~&&[^,]]{1,40}( [!-~&&[^,]]{1,10})?",
        ) {
            let text = format_line(irq, &counts, &chip, &hwirq, &action);
            let parsed = parse_line(&text, counts.len()).unwrap();
            prop_assert_eq!(parsed.irq, IrqId::Number(irq));
            prop_assert_eq!(parsed.counts, counts);
            prop_assert_eq!(parsed.actions, vec![action]);
        }

        #[test]
        fn vfio_vectors_are_found_among_neighbours(
            device in address(),
            other in address(),
            vectors in prop::collection::vec((0u32..3, 0u32..64), 1..12),
            pick in any::<prop::sample::Index>(),
        ) {
            let index_of = |i: u32| IrqIndex(i);
            let mut text = format_header(4);
            let mut expected = None;
            let (want_index, want_vector) = vectors[pick.index(vectors.len())];
            let want = vfio_action_name(index_of(want_index), want_vector, &device);
            for (n, &(index, vector)) in vectors.iter().enumerate() {
                let irq = 30 + n as u32;
                for (dev, base) in [(&other, 1000u32), (&device, 0)] {
                    if let Some(name) = vfio_action_name(index_of(index), vector, dev) {
                        let irq = irq + base;
                        text.push('\n');
                        text.push_str(&format_line(irq, &[1, 2, 3, 4], "IR-PCI-MSIX-0000:00:03.0", "0-edge", &name));
                        if Some(&name) == want.as_ref() && expected.is_none() {
                            expected = Some(irq);
                        }
                    }
                }
            }
            let found = match &want {
                Some(w) => find_irq(text.as_bytes(), w).unwrap(),
                None => None,
            };
            prop_assert_eq!(found, expected);
            if device != other || want.is_none() {
                prop_assert!(found.is_none_or(|irq| irq < 1000));
            }
        }

        #[test]
        fn parse_line_never_panics(line in "\\PC{0,120}", cpus in 0usize..6) {
            if let Some(parsed) = parse_line(&line, cpus) {
                prop_assert!(parsed.counts.len() <= cpus);
                prop_assert!(parsed.actions.iter().all(|a| !a.is_empty() && line.contains(a.as_str())));
            }
        }

        #[test]
        fn parse_line_never_panics_on_line_like_text(
            line in "[ 0-9A-Za-z:,()\\[\\]-]{0,80}",
            cpus in 0usize..4,
        ) {
            if let Some(parsed) = parse_line(&line, cpus) {
                prop_assert!(parsed.counts.len() <= cpus);
                if matches!(parsed.irq, IrqId::Named(_)) {
                    prop_assert!(parsed.actions.is_empty());
                }
            }
        }

        #[test]
        fn find_irq_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400), action in "\\PC{0,20}") {
            let mut input = b"  CPU0 CPU1\n".to_vec();
            input.extend_from_slice(&bytes);
            if let Some(irq) = find_irq(input.as_slice(), &action).unwrap() {
                let all = read_all(input.as_slice()).unwrap();
                prop_assert!(all.iter().any(|l| l.irq == IrqId::Number(irq) && l.actions.contains(&action)));
            }
            // Raw bytes with no header: an error or nothing, never a panic.
            if let Ok(None) = find_irq(bytes.as_slice(), &action) {
                let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
                let header = std::str::from_utf8(first).ok().and_then(header_cpus);
                prop_assert!(bytes.is_empty() || header.is_some());
            }
        }
    }
}
