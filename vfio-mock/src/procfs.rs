//! The fake `/proc/interrupts`: one line per Linux irq that has an action
//! or has fired, rewritten whenever a vector is bound, fires or is unbound.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use vfio_core::parse::proc_interrupts::{format_header, format_line};

/// The first irq number handed to MSI and MSI-X vectors (as on the guest,
/// where 0-23 belong to the IO-APIC).
pub(crate) const FIRST_DYNAMIC_IRQ: u32 = 24;

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
    descs: BTreeMap<u32, IrqDesc>,
    /// Counts of the timer line, to make the file look like a real one.
    timer: Vec<u64>,
}

/// The irq table behind the fake `/proc/interrupts`.
#[derive(Debug)]
pub(crate) struct ProcInterrupts {
    path: PathBuf,
    state: Mutex<State>,
    errors: Mutex<Vec<String>>,
}

/// Changes to the irq table, written out once when the edit ends.
pub(crate) struct Edit<'a> {
    state: &'a mut State,
}

impl Edit<'_> {
    /// A fresh descriptor at the lowest free number from
    /// [`FIRST_DYNAMIC_IRQ`] up, with no action.
    pub(crate) fn alloc(&mut self, chip: &str, hwirq: String) -> u32 {
        let mut irq = FIRST_DYNAMIC_IRQ;
        while self.state.descs.contains_key(&irq) {
            irq = irq.saturating_add(1);
        }
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
        if self.state.descs.get(&irq).is_some_and(|d| !d.fixed) {
            self.state.descs.remove(&irq);
        }
    }

    /// Sets (`request_irq`) or clears (`free_irq`) the action name of `irq`.
    pub(crate) fn set_action(&mut self, irq: u32, action: Option<String>) {
        if let Some(d) = self.state.descs.get_mut(&irq) {
            d.action = action;
        }
    }

    /// Counts one hardware interrupt on `irq`, on the CPU its affinity picks.
    pub(crate) fn fire(&mut self, irq: u32) {
        let cpus = self.state.cpus.max(1);
        if let Some(d) = self.state.descs.get_mut(&irq) {
            let cpu = usize::try_from(irq).unwrap_or(0) % cpus;
            if let Some(c) = d.counts.get_mut(cpu) {
                *c = c.saturating_add(1);
            }
        }
    }
}

impl ProcInterrupts {
    /// An irq table for `cpus` CPUs written to `path`.
    pub(crate) fn new(path: PathBuf, cpus: usize) -> Self {
        let cpus = cpus.max(1);
        let mut timer = vec![0; cpus];
        if let Some(t) = timer.first_mut() {
            *t = 45;
        }
        Self {
            path,
            state: Mutex::new(State {
                cpus,
                descs: BTreeMap::new(),
                timer,
            }),
            errors: Mutex::new(Vec::new()),
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

    /// Runs `f` on the table, then rewrites the file once. A failure to
    /// write is returned and also kept for [`errors`](Self::errors).
    pub(crate) fn edit<T>(&self, f: impl FnOnce(&mut Edit<'_>) -> T) -> (T, std::io::Result<()>) {
        let mut state = self.state.lock();
        let out = f(&mut Edit { state: &mut state });
        let written = self.write_locked(&state);
        if let Err(e) = &written {
            self.errors
                .lock()
                .push(format!("cannot rewrite {}: {e}", self.path.display()));
        }
        (out, written)
    }

    /// Writes the file for the first time.
    pub(crate) fn write_initial(&self) -> std::io::Result<()> {
        let state = self.state.lock();
        self.write_locked(&state)
    }

    /// Write failures no caller could be told about.
    pub(crate) fn errors(&self) -> Vec<String> {
        self.errors.lock().clone()
    }

    fn render(state: &State) -> String {
        let mut text = format_header(state.cpus);
        text.push('\n');
        text.push_str(&format_line(
            0,
            &state.timer,
            "IR-IO-APIC",
            "2-edge",
            "timer",
        ));
        text.push('\n');
        for (irq, d) in &state.descs {
            if d.action.is_none() && d.counts.iter().all(|&c| c == 0) {
                continue;
            }
            text.push_str(&format_line(
                *irq,
                &d.counts,
                &d.chip,
                &d.hwirq,
                d.action.as_deref().unwrap_or(""),
            ));
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
        text
    }

    fn write_locked(&self, state: &State) -> std::io::Result<()> {
        // Write a sibling and rename it over, so a reader never sees half a file.
        let tmp = self.path.with_extension("new");
        std::fs::write(&tmp, Self::render(state))?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::parse::proc_interrupts::{IrqId, read_all};

    #[test]
    fn lines_appear_with_an_action_stay_with_counts_and_vanish_when_freed() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProcInterrupts::new(dir.path().join("interrupts"), 2);
        p.write_initial().unwrap();
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
        p.edit(|e| e.set_action(b, Some("vfio-msix[1](0000:00:03.0)".into())))
            .1
            .unwrap();
        let lines = numbered(read());
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].irq, IrqId::Number(25));
        assert_eq!(lines[0].actions, vec!["vfio-msix[1](0000:00:03.0)"]);
        p.edit(|e| {
            e.fire(b);
            e.fire(b);
            e.set_action(b, None);
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
}
