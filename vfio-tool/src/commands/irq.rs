//! `vfio irq DEV INDEX`: bind vectors to eventfds and watch them fire.

use super::Report;
use crate::cli::ModeArg;
use crate::error::{ToolError, usage};
use serde::Serialize;
use std::io::{self, Write};
use std::time::{Duration, Instant};
use vfio_core::{Device, Interrupt, IrqIndex, PciAddress, VfioBackend};

/// How long `vfio irq` watches when `--for` is not given.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(10);

/// How often the vectors are polled.
const POLL: Duration = Duration::from_millis(5);

/// Parses INDEX: `intx`, `msi`, `msix`, `err`, `req`, or a number.
pub fn parse_index(s: &str) -> Result<IrqIndex, ToolError> {
    Ok(match s.to_ascii_lowercase().as_str() {
        "intx" => IrqIndex::INTX,
        "msi" => IrqIndex::MSI,
        "msix" | "msi-x" => IrqIndex::MSIX,
        "err" => IrqIndex::ERR,
        "req" => IrqIndex::REQ,
        other => IrqIndex(other.parse().map_err(|_| {
            usage(format!(
                "no IRQ index `{s}`: expected intx, msi, msix, err, req or a number"
            ))
        })?),
    })
}

/// A bound vector.
#[derive(Debug, Serialize)]
pub struct Vector {
    /// The vector number.
    pub vector: u32,
    /// The Linux irq behind it, from /proc/interrupts (`None` where the
    /// index is not listed there: ERR and REQ).
    pub irq: Option<u32>,
}

/// One arrival: what the eventfd's counter held when it was read.
#[derive(Debug, Serialize)]
pub struct Arrival {
    /// The vector.
    pub vector: u32,
    /// Its Linux irq.
    pub irq: Option<u32>,
    /// The eventfd's count: interrupts since the last read.
    pub count: u64,
    /// Milliseconds since the vectors were bound.
    pub elapsed_ms: u64,
}

/// `vfio irq`'s output.
#[derive(Debug, Serialize)]
pub struct IrqWatch {
    /// The device.
    pub address: String,
    /// The IRQ index's name.
    pub index: String,
    /// The vectors bound.
    pub vectors: Vec<Vector>,
    /// Whether each vector was fired once from userspace.
    pub triggered: bool,
    /// Every arrival, in order.
    pub arrivals: Vec<Arrival>,
}

/// What to watch.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// How many vectors, from 0.
    pub count: u32,
    /// How long to watch; `None` for [`DEFAULT_WATCH`], or with `trigger`
    /// until every vector has fired.
    pub duration: Option<Duration>,
    /// Fire each vector once after binding.
    pub trigger: bool,
}

/// Binds `watch.count` vectors of `index`, optionally fires them, and
/// reports each arrival; with `live`, each is written to it as it comes
/// (the text output), else only gathered (the JSON output).
pub fn irq<B: VfioBackend>(
    backend: &B,
    address: &PciAddress,
    mode: Option<ModeArg>,
    index: &str,
    watch: Watch,
    mut live: Option<&mut dyn Write>,
) -> Result<IrqWatch, ToolError> {
    let index = parse_index(index)?;
    if watch.count == 0 {
        return Err(usage("--count must be at least 1"));
    }
    let opened = crate::open::open(backend, address, mode)?;
    let device = &opened.device;
    let info = device.irq_info(index)?;
    if watch.count > info.count {
        return Err(usage(format!(
            "{address} has {} {index} vector{}; --count {} asks for more",
            info.count,
            if info.count == 1 { "" } else { "s" },
            watch.count
        )));
    }
    let interrupts = (0..watch.count)
        .map(|_| backend.new_interrupt())
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&B::Interrupt> = interrupts.iter().collect();
    device.enable_interrupts(index, &refs)?;
    let start = Instant::now();
    let paths = backend.host_paths();
    let vectors: Vec<Vector> = (0..watch.count)
        .map(|v| Vector {
            vector: v,
            irq: index
                .proc_name()
                .and_then(|_| paths.vector_irq(address, index, v).ok()),
        })
        .collect();
    if let Some(out) = live.as_deref_mut() {
        for v in &vectors {
            let irq = v
                .irq
                .map_or("no irq listed".to_owned(), |i| format!("irq {i}"));
            writeln!(out, "bound {index} vector {} ({irq})", v.vector)?;
        }
    }
    if watch.trigger {
        device.trigger_interrupts(index, 0, watch.count)?;
    }
    let limit = watch.duration.unwrap_or(DEFAULT_WATCH);
    let until_all = watch.trigger && watch.duration.is_none();
    let mut fired = vec![false; interrupts.len()];
    let mut arrivals = Vec::new();
    loop {
        for (i, interrupt) in interrupts.iter().enumerate() {
            if let Some(count) = interrupt.try_consume()? {
                fired[i] = true;
                let a = Arrival {
                    vector: i as u32,
                    irq: vectors[i].irq,
                    count,
                    elapsed_ms: start.elapsed().as_millis() as u64,
                };
                if let Some(out) = live.as_deref_mut() {
                    let irq = a.irq.map_or(String::new(), |i| format!(" (irq {i})"));
                    writeln!(
                        out,
                        "interrupt: vector {}{irq}, count {}",
                        a.vector, a.count
                    )?;
                    out.flush()?;
                }
                arrivals.push(a);
            }
        }
        if (until_all && fired.iter().all(|&f| f)) || start.elapsed() >= limit {
            break;
        }
        std::thread::sleep(POLL);
    }
    device.disable_interrupts(index)?;
    Ok(IrqWatch {
        address: address.to_string(),
        index: index.to_string(),
        vectors,
        triggered: watch.trigger,
        arrivals,
    })
}

impl Report for IrqWatch {
    /// The summary after the live lines: how many arrived per vector.
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        for v in &self.vectors {
            let total: u64 = self
                .arrivals
                .iter()
                .filter(|a| a.vector == v.vector)
                .map(|a| a.count)
                .sum();
            writeln!(
                out,
                "{} vector {}: {total} interrupt(s)",
                self.index, v.vector
            )?;
        }
        Ok(())
    }
}
