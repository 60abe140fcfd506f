//! The fake `/proc/interrupts`: one line per Linux irq that has an action
//! or has fired, kept up to date as vectors are bound, fire and are unbound.
//!
//! The table lives in memory; the file is written from the moment the
//! host's trees are made ([`ProcInterrupts::attach`]), so a host whose
//! paths nobody asks for never writes it. From then on, binding and
//! unbinding rewrite the file (a sibling renamed over it, so a reader
//! never sees half a file). A fire only changes counts, which the
//! kernel prints at a fixed width (10 columns per CPU): the count's
//! columns are stored in place through a shared mapping of the file
//! ([`vfio_linux::SharedFileMap`], since mapping a file is unsafe code and
//! vfio-mock has none), which a `read(2)` sees at once, so raising an
//! interrupt costs no syscall but the eventfd write itself. A count that
//! outgrows its columns, or an irq with no line yet, rewrites the file.
//! [`ProcInterrupts::fire`] counts before it returns, so a driver woken by
//! the eventfd signalled after it reads the new count, as on Linux, where
//! the irq is counted before its handler signals.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use vfio_core::parse::proc_interrupts::{format_header, format_line, push_line};
use vfio_linux::SharedFileMap;

/// The first irq number handed to MSI and MSI-X vectors (as on the guest,
/// where 0-23 belong to the IO-APIC).
pub(crate) const FIRST_DYNAMIC_IRQ: u32 = 24;

/// How many interrupt vectors each CPU has for device irqs: measured on
/// Linux 6.1 x86-64 in the QEMU guest, where an NVMe controller with 2048
/// MSI-X vectors could bind 194 of them with 1 CPU and 395 with 2, with the
/// [`HOST_IRQS`] and `dmar0` holding theirs (and 396 on Linux 6.12 without
/// an IOMMU, where there is no `dmar0`).
pub(crate) const VECTORS_PER_CPU: usize = 201;

/// The irqs with a vector that the guest's kernel has before any device is
/// bound, but for the VT-d unit's (`dmar0`, [`ProcInterrupts::add_dmar`]):
/// timer, two i8042 lines, ttyS0, rtc0 and acpi.
pub(crate) const HOST_IRQS: usize = 6;

/// One Linux irq descriptor.
#[derive(Debug, Clone)]
struct IrqDesc {
    chip: String,
    hwirq: String,
    action: Option<String>,
    counts: Vec<u64>,
    /// Descriptors of IO-APIC pins exist for the host's lifetime.
    fixed: bool,
}

#[derive(Debug)]
struct State {
    cpus: usize,
    /// Interrupts are remapped (an IOMMU): chip names start with `IR-`.
    remapped: bool,
    /// Vectors left for requested irqs (`request_irq` fails with ENOSPC at 0).
    vectors_free: usize,
    descs: BTreeMap<u32, IrqDesc>,
    /// No number from [`FIRST_DYNAMIC_IRQ`] up to this one is free, so the
    /// search for a free one starts here (binding 2048 vectors is then
    /// linear, not quadratic).
    lowest_free: u32,
    /// Counts of the timer line, to make the file look like a real one.
    timer: Vec<u64>,
    /// Where each irq's line starts in the file as last written, and the
    /// file itself, mapped for in-place count updates.
    lines: BTreeMap<u32, (u64, usize)>,
    map: Option<SharedFileMap>,
}

/// The irq table behind the fake `/proc/interrupts`.
#[derive(Debug)]
pub(crate) struct ProcInterrupts {
    /// Where the file is, once attached.
    path: std::sync::OnceLock<PathBuf>,
    state: Mutex<State>,
    errors: Mutex<Vec<String>>,
}

/// Changes to the irq table, written out once when the edit ends.
pub(crate) struct Edit<'a> {
    state: &'a mut State,
    /// Lines were added, removed or renamed: the file must be rewritten.
    structural: bool,
    /// Irqs whose counts changed.
    fired: Vec<u32>,
}

impl Edit<'_> {
    /// A fresh descriptor at the lowest free number from
    /// [`FIRST_DYNAMIC_IRQ`] up, with no action.
    pub(crate) fn alloc(&mut self, chip: &str, hwirq: String) -> u32 {
        self.structural = true;
        let mut irq = self.state.lowest_free.max(FIRST_DYNAMIC_IRQ);
        while self.state.descs.contains_key(&irq) {
            irq = irq.saturating_add(1);
        }
        self.state.lowest_free = irq.saturating_add(1);
        let cpus = self.state.cpus;
        self.state.descs.insert(
            irq,
            IrqDesc {
                chip: chip.to_owned(),
                hwirq,
                action: None,
                counts: vec![0; cpus],
                fixed: false,
            },
        );
        irq
    }

    /// Frees a descriptor made by [`alloc`](Self::alloc); its line goes away.
    pub(crate) fn free(&mut self, irq: u32) {
        self.structural = true;
        self.release(irq);
        if self.state.descs.get(&irq).is_some_and(|d| !d.fixed) {
            self.state.descs.remove(&irq);
            self.state.lowest_free = self.state.lowest_free.min(irq);
        }
    }

    /// `request_irq`: names the action of `irq` and activates it on a CPU
    /// vector, failing with ENOSPC when the CPUs have none left.
    pub(crate) fn request(&mut self, irq: u32, action: String) -> Result<(), nix::errno::Errno> {
        let Some(d) = self.state.descs.get_mut(&irq) else {
            return Err(nix::errno::Errno::EINVAL);
        };
        if d.action.is_none() {
            if self.state.vectors_free == 0 {
                return Err(nix::errno::Errno::ENOSPC);
            }
            self.state.vectors_free -= 1;
        }
        self.structural = true;
        d.action = Some(action);
        Ok(())
    }

    /// `free_irq`: clears the action of `irq` and gives its vector back.
    pub(crate) fn release(&mut self, irq: u32) {
        if let Some(d) = self.state.descs.get_mut(&irq) {
            if d.action.take().is_some() {
                self.structural = true;
                self.state.vectors_free += 1;
            }
        }
    }

    /// Counts one hardware interrupt on `irq`, on the CPU its affinity
    /// picks, and stores the count in the file at once when its line is
    /// there (so a signal sent later in the edit is seen after the count,
    /// as on Linux); otherwise the file is brought up to date when the
    /// edit ends.
    pub(crate) fn fire(&mut self, irq: u32) {
        let cpus = self.state.cpus.max(1);
        if let Some(d) = self.state.descs.get_mut(&irq) {
            let cpu = usize::try_from(irq).unwrap_or(0) % cpus;
            if let Some(c) = d.counts.get_mut(cpu) {
                *c = c.saturating_add(1);
                let count = *c;
                if !ProcInterrupts::store_count(self.state, irq, cpu, count) {
                    self.fired.push(irq);
                }
            }
        }
    }
}

impl ProcInterrupts {
    /// An irq table for `cpus` CPUs, in memory until [`attach`](Self::attach)ed,
    /// on a host whose interrupts are `remapped` (by VT-d) or not.
    pub(crate) fn new(cpus: usize, remapped: bool) -> Self {
        let cpus = cpus.max(1);
        let mut timer = vec![0; cpus];
        if let Some(t) = timer.first_mut() {
            *t = 45;
        }
        Self {
            path: std::sync::OnceLock::new(),
            state: Mutex::new(State {
                cpus,
                remapped,
                vectors_free: (VECTORS_PER_CPU * cpus).saturating_sub(HOST_IRQS),
                descs: BTreeMap::new(),
                lowest_free: FIRST_DYNAMIC_IRQ,
                timer,
                lines: BTreeMap::new(),
                map: None,
            }),
            errors: Mutex::new(Vec::new()),
        }
    }

    /// Adds the interrupt of the host's VT-d unit, `dmar0`, which Linux
    /// requests first of all MSI-type irqs (so it holds irq 24 in the guest
    /// and vfio's vectors start at 25).
    pub(crate) fn add_dmar(&self) {
        let mut state = self.state.lock();
        let cpus = state.cpus;
        if state.descs.contains_key(&FIRST_DYNAMIC_IRQ) {
            return;
        }
        state.vectors_free = state.vectors_free.saturating_sub(1);
        state.descs.entry(FIRST_DYNAMIC_IRQ).or_insert(IrqDesc {
            chip: "DMAR-MSI".to_owned(),
            hwirq: "0-edge".to_owned(),
            action: Some("dmar0".to_owned()),
            counts: vec![0; cpus],
            fixed: true,
        });
    }

    /// The IO-APIC's chip name: `IR-IO-APIC` when interrupts are remapped.
    pub(crate) fn io_apic_chip(&self) -> &'static str {
        if self.state.lock().remapped {
            "IR-IO-APIC"
        } else {
            "IO-APIC"
        }
    }

    /// Adds a fixed (IO-APIC) descriptor, e.g. a device's INTx line.
    pub(crate) fn add_fixed(&self, irq: u32, chip: &str, hwirq: String) {
        let mut state = self.state.lock();
        let cpus = state.cpus;
        state.descs.entry(irq).or_insert(IrqDesc {
            chip: chip.to_owned(),
            hwirq,
            action: None,
            counts: vec![0; cpus],
            fixed: true,
        });
    }

    /// Runs `f` on the table, then, once attached, brings the file up to
    /// date. A failure to write is returned and also kept for
    /// [`errors`](Self::errors).
    pub(crate) fn edit<T>(&self, f: impl FnOnce(&mut Edit<'_>) -> T) -> (T, std::io::Result<()>) {
        let mut state = self.state.lock();
        let mut edit = Edit {
            state: &mut state,
            structural: false,
            fired: Vec::new(),
        };
        let out = f(&mut edit);
        let (structural, fired) = (edit.structural, edit.fired);
        let Some(path) = self.path.get() else {
            return (out, Ok(()));
        };
        let written = if structural {
            self.write_locked(&mut state)
        } else if fired.is_empty() {
            Ok(())
        } else {
            Self::update_in_place(&mut state, &fired).or_else(|_| self.write_locked(&mut state))
        };
        if let Err(e) = &written {
            self.errors
                .lock()
                .push(format!("cannot rewrite {}: {e}", path.display()));
        }
        (out, written)
    }

    /// Writes the table to `path` and keeps the file up to date from now
    /// on. Only the first call counts.
    pub(crate) fn attach(&self, path: PathBuf) -> std::io::Result<()> {
        let mut state = self.state.lock();
        if self.path.set(path).is_err() {
            return Ok(());
        }
        self.write_locked(&mut state)
    }

    /// Write failures no caller could be told about.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors.lock().clone()
    }

    /// The line of `irq`, as the file shows it, appended to `out`.
    fn push_desc(out: &mut String, irq: u32, d: &IrqDesc) {
        push_line(
            out,
            irq,
            &d.counts,
            &d.chip,
            &d.hwirq,
            d.action.as_deref().unwrap_or(""),
        );
    }

    /// Overwrites the counts of `fired` in place. Fails (and the caller
    /// rewrites the whole file) when a line is not in the file or a count
    /// outgrew its column.
    fn update_in_place(state: &mut State, fired: &[u32]) -> std::io::Result<()> {
        for &irq in fired {
            let counts = state.descs.get(&irq).map(|d| d.counts.as_slice());
            for (cpu, &count) in counts.unwrap_or_default().iter().enumerate() {
                if !Self::store_count(state, irq, cpu, count) {
                    return Err(std::io::Error::other("line layout changed"));
                }
            }
        }
        Ok(())
    }

    /// Stores `count` in the columns of `cpu` on the line of `irq`: false
    /// if the line is not in the file or the count needs more than its 10
    /// columns. The line is `push_line`'s: the irq right-aligned to 3
    /// (wider if it needs more), `": "`, then 10 columns and a space per CPU.
    fn store_count(state: &State, irq: u32, cpu: usize, count: u64) -> bool {
        const WIDTH: usize = 10;
        let (Some(map), Some(&(at, _))) = (&state.map, state.lines.get(&irq)) else {
            return false;
        };
        let mut field = [b' '; WIDTH];
        let mut rest = count;
        for slot in field.iter_mut().rev() {
            // A digit: below 10, so the cast cannot truncate.
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if rest != 0 {
            return false;
        }
        let irq_width = irq.checked_ilog10().map_or(1, |d| d as usize + 1).max(3);
        let Ok(at) = usize::try_from(at) else {
            return false;
        };
        map.write_at(at + irq_width + 2 + cpu * (WIDTH + 1), &field)
    }

    /// Counts one interrupt on `irq` (on the CPU its affinity picks, as
    /// [`Edit::fire`]) and, once attached, stores the count in the file
    /// before returning: no syscall, unless the file must be rewritten.
    /// One lock, no allocation. A failure to write is returned and also
    /// kept for [`errors`](Self::errors).
    pub(crate) fn fire(&self, irq: u32) -> std::io::Result<()> {
        let mut state = self.state.lock();
        let cpus = state.cpus.max(1);
        let cpu = usize::try_from(irq).unwrap_or(0) % cpus;
        let Some(count) = state
            .descs
            .get_mut(&irq)
            .and_then(|d| d.counts.get_mut(cpu))
        else {
            return Ok(());
        };
        *count = count.saturating_add(1);
        let count = *count;
        let Some(path) = self.path.get() else {
            return Ok(());
        };
        if Self::store_count(&state, irq, cpu, count) {
            return Ok(());
        }
        let written = self.write_locked(&mut state);
        if let Err(e) = &written {
            self.errors
                .lock()
                .push(format!("cannot rewrite {}: {e}", path.display()));
        }
        written
    }

    /// The whole file, and where each irq's line starts and how long it is.
    fn render(state: &State) -> (String, BTreeMap<u32, (u64, usize)>) {
        let mut lines = BTreeMap::new();
        let mut text = format_header(state.cpus);
        text.push('\n');
        text.push_str(&format_line(
            0,
            &state.timer,
            if state.remapped {
                "IR-IO-APIC"
            } else {
                "IO-APIC"
            },
            "2-edge",
            "timer",
        ));
        text.push('\n');
        for (irq, d) in &state.descs {
            if d.action.is_none() && d.counts.iter().all(|&c| c == 0) {
                continue;
            }
            let at = text.len();
            Self::push_desc(&mut text, *irq, d);
            lines.insert(*irq, (at as u64, text.len() - at));
            text.push('\n');
        }
        for (name, desc) in [
            ("NMI", "Non-maskable interrupts"),
            ("LOC", "Local timer interrupts"),
        ] {
            let _ = write!(text, "{name}:");
            for _ in 0..state.cpus {
                let _ = write!(text, " {:>10}", 0);
            }
            let _ = writeln!(text, "   {desc}");
        }
        let _ = writeln!(text, "ERR:          0");
        let _ = writeln!(text, "MIS:          0");
        (text, lines)
    }

    fn write_locked(&self, state: &mut State) -> std::io::Result<()> {
        let Some(path) = self.path.get() else {
            return Ok(());
        };
        // Write a sibling and rename it over, so a reader never sees half a file.
        let tmp = path.with_extension("new");
        let (text, lines) = Self::render(state);
        state.map = None;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)?;
        state.lines = lines;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        state.map = Some(SharedFileMap::new(&file)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::parse::proc_interrupts::{IrqId, read_all};

    #[test]
    fn lines_appear_with_an_action_stay_with_counts_and_vanish_when_freed() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProcInterrupts::new(2, true);
        p.attach(dir.path().join("interrupts")).unwrap();
        let read = || {
            read_all(
                std::fs::read_to_string(dir.path().join("interrupts"))
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap()
        };
        let numbered = |all: Vec<vfio_core::parse::proc_interrupts::InterruptLine>| {
            all.into_iter()
                .filter(|l| matches!(l.irq, IrqId::Number(n) if n >= 24))
                .collect::<Vec<_>>()
        };
        let ((a, b), w) = p.edit(|e| {
            (
                e.alloc("IR-PCI-MSI", "49152-edge".into()),
                e.alloc("IR-PCI-MSI", "49153-edge".into()),
            )
        });
        w.unwrap();
        assert_eq!((a, b), (24, 25));
        assert!(numbered(read()).is_empty());
        p.edit(|e| e.request(b, "vfio-msix[1](0000:00:03.0)".into()).unwrap())
            .1
            .unwrap();
        let lines = numbered(read());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].irq, IrqId::Number(25));
        assert_eq!(lines[0].actions, vec!["vfio-msix[1](0000:00:03.0)"]);
        p.edit(|e| {
            e.fire(b);
            e.fire(b);
            e.release(b);
        })
        .1
        .unwrap();
        let lines = numbered(read());
        assert_eq!(lines[0].counts, vec![0, 2]);
        assert!(lines[0].actions.is_empty());
        p.edit(|e| {
            e.free(a);
            e.free(b);
            assert_eq!(e.alloc("IR-PCI-MSI", "0-edge".into()), 24);
        })
        .1
        .unwrap();
        assert!(numbered(read()).is_empty());
        assert!(p.errors().is_empty());
    }

    #[test]
    fn fires_update_counts_in_place_and_new_lines_fall_back_to_a_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("interrupts");
        let p = ProcInterrupts::new(2, true);
        p.attach(path.clone()).unwrap();
        let (a, _) = p.edit(|e| {
            let a = e.alloc("IR-PCI-MSI", "49152-edge".into());
            e.request(a, "vfio-msix[0](0000:00:03.0)".into()).unwrap();
            a
        });
        // An irq with no action and no counts has no line yet: its first fire
        // must add one (a full rewrite), later fires update it in place.
        let (b, _) = p.edit(|e| e.alloc("IR-PCI-MSI", "49153-edge".into()));
        let before = std::fs::metadata(&path).unwrap();
        for _ in 0..3 {
            p.edit(|e| e.fire(a)).1.unwrap();
        }
        let after = std::fs::metadata(&path).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.ino(), after.ino(), "fires rewrote the file");
        p.edit(|e| e.fire(b)).1.unwrap();
        p.edit(|e| e.fire(b)).1.unwrap();
        let all = read_all(std::fs::read_to_string(&path).unwrap().as_bytes()).unwrap();
        let counts = |irq| {
            all.iter()
                .find(|l| l.irq == IrqId::Number(irq))
                .map(|l| l.counts.clone())
        };
        // Fires land on CPU (irq % cpus), like the guest's affinity.
        assert_eq!(counts(a), Some(vec![3, 0]));
        assert_eq!(counts(b), Some(vec![0, 2]));
        assert!(p.errors().is_empty());
    }

    #[test]
    fn dmar0_holds_irq_24_as_in_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("interrupts");
        let p = ProcInterrupts::new(2, true);
        p.add_dmar();
        p.attach(path.clone()).unwrap();
        let ((a, b), _) = p.edit(|e| {
            (
                e.alloc("IR-PCI-MSI", "49152-edge".into()),
                e.alloc("IR-PCI-MSI", "49153-edge".into()),
            )
        });
        assert_eq!((a, b), (25, 26));
        let text = std::fs::read_to_string(&path).unwrap();
        let dmar = vfio_core::parse::proc_interrupts::find_irq(text.as_bytes(), "dmar0").unwrap();
        assert_eq!(dmar, Some(24));
    }

    /// `fire` stores a count in its columns with no rewrite (the inode
    /// stays), at any irq width; a count that needs an eleventh column, or
    /// an irq with no line yet, rewrites the file; and the file always
    /// parses to the table's counts.
    #[test]
    fn fire_stores_counts_in_place_until_a_count_outgrows_its_columns() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("interrupts");
        let p = ProcInterrupts::new(2, true);
        p.attach(path.clone()).unwrap();
        let (a, _) = p.edit(|e| {
            let a = e.alloc("IR-PCI-MSI", "49152-edge".into());
            e.request(a, "vfio-msix[0](0000:00:03.0)".into()).unwrap();
            a
        });
        // A four-digit irq: its number is wider than the usual 3 columns.
        p.add_fixed(1234, "IR-IO-APIC", "9-fasteoi".into());
        p.edit(|e| e.request(1234, "wide".into()).unwrap())
            .1
            .unwrap();
        let counts = |irq| {
            let all = read_all(std::fs::read_to_string(&path).unwrap().as_bytes()).unwrap();
            all.iter()
                .find(|l| l.irq == IrqId::Number(irq))
                .map(|l| l.counts.clone())
        };
        let ino = || std::fs::metadata(&path).unwrap().ino();
        let before = ino();
        for _ in 0..12 {
            p.fire(a).unwrap();
        }
        p.fire(1234).unwrap();
        assert_eq!(ino(), before, "a fire rewrote the file");
        // Irq 24 lands on CPU 0, irq 1234 on CPU 0 too (irq % cpus).
        assert_eq!(counts(a), Some(vec![12, 0]));
        assert_eq!(counts(1234), Some(vec![1, 0]));
        p.state.lock().descs.get_mut(&a).unwrap().counts[0] = 9_999_999_999;
        p.fire(a).unwrap();
        assert_ne!(ino(), before, "an eleven-digit count fits no column");
        assert_eq!(counts(a), Some(vec![10_000_000_000, 0]));
        // No action and no counts: no line, until the first fire adds one.
        let (b, _) = p.edit(|e| e.alloc("IR-PCI-MSI", "49153-edge".into()));
        assert_eq!(counts(b), None);
        p.fire(b).unwrap();
        p.fire(b).unwrap();
        assert_eq!(counts(b), Some(vec![0, 2]));
        assert!(p.errors().is_empty());
    }
}
