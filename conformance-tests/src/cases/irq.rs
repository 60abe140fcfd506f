//! Interrupt behaviours: IRQ info, MSI-X binding, loopback triggers, lookups.

use crate::Env;
use anyhow::{Context, Result, ensure};
use std::time::Duration;
use vfio_core::{Device, ErrorKind, Interrupt, IrqFlags, IrqIndex, VfioBackend};

/// QEMU's NVMe controller has 65 MSI-X vectors by default.
const NVME_VECTORS: u32 = 65;

/// How long to wait for an interrupt that should arrive.
const ARRIVES: Duration = Duration::from_secs(5);

fn interrupts<B: VfioBackend>(env: &Env<B>, n: u32) -> Result<Vec<B::Interrupt>> {
    (0..n).map(|_| Ok(env.backend.new_interrupt()?)).collect()
}

fn bind_all<B: VfioBackend>(device: &B::Device, irqs: &[B::Interrupt]) -> Result<()> {
    let refs: Vec<&B::Interrupt> = irqs.iter().collect();
    device.bind_interrupts(IrqIndex::MSIX, 0, &refs)?;
    Ok(())
}

/// Which of `irqs` have fired since last consumed (consuming them).
fn fired<I: Interrupt>(irqs: &[I]) -> Result<Vec<usize>> {
    let mut out = Vec::new();
    for (i, irq) in irqs.iter().enumerate() {
        if irq.try_consume()?.is_some() {
            out.push(i);
        }
    }
    Ok(out)
}

/// The NVMe controller's MSI-X index has 65 vectors, eventfd-capable, and
/// cannot be resized while enabled (NORESIZE).
pub fn nvme_msix_has_65_vectors_and_noresize<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let info = o.device.irq_info(IrqIndex::MSIX)?;
    ensure!(info.count == NVME_VECTORS, "count {}", info.count);
    ensure!(
        info.flags == IrqFlags::EVENTFD | IrqFlags::NORESIZE,
        "flags {:?}",
        info.flags
    );
    Ok(())
}

/// With every vector bound, a loopback trigger of one vector signals exactly
/// that vector's eventfd.
pub fn msix_loopback_trigger_reaches_only_the_triggered_vector<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, NVME_VECTORS)?;
    bind_all::<B>(&o.device, &irqs)?;
    o.device.trigger_interrupts(IrqIndex::MSIX, 3, 1)?;
    ensure!(
        irqs[3].wait(Some(ARRIVES))?.is_some(),
        "vector 3 did not fire"
    );
    let others = fired(&irqs)?;
    ensure!(others.is_empty(), "other vectors fired: {others:?}");
    Ok(())
}

/// Unbinding vectors 10..20 leaves the rest bound: a trigger of every vector
/// then signals all but the unbound ones.
pub fn unbind_range_leaves_other_vectors_bound<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, NVME_VECTORS)?;
    bind_all::<B>(&o.device, &irqs)?;
    o.device.unbind_interrupts(IrqIndex::MSIX, 10, 10)?;
    ensure!(fired(&irqs)?.is_empty(), "unbinding fired vectors");
    o.device
        .trigger_interrupts(IrqIndex::MSIX, 0, NVME_VECTORS)?;
    let got = fired(&irqs)?;
    let want: Vec<usize> = (0..NVME_VECTORS as usize)
        .filter(|v| !(10..20).contains(v))
        .collect();
    ensure!(got == want, "fired {got:?}");
    Ok(())
}

/// `DATA_NONE` with `ACTION_TRIGGER` and a count fires the bound vectors of
/// the range; it does not unbind them (they fire again on a second trigger).
pub fn data_none_trigger_fires_bound_vectors_instead_of_unbinding<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, NVME_VECTORS)?;
    bind_all::<B>(&o.device, &irqs)?;
    for round in 0..2 {
        o.device.trigger_interrupts(IrqIndex::MSIX, 5, 3)?;
        let got = fired(&irqs)?;
        ensure!(got == [5, 6, 7], "round {round}: fired {got:?}");
    }
    Ok(())
}

/// Bound vectors are listed in /proc/interrupts as `vfio-msix[N](<device>)`;
/// after an unbind of a range, those vectors are gone and the rest remain.
pub fn bound_vectors_appear_in_proc_interrupts<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let nvme = env.targets.nvme;
    let paths = env.backend.host_paths();
    let before = paths
        .vector_irq(&nvme, IrqIndex::MSIX, 0)
        .expect_err("lookup before binding");
    ensure!(before.kind() == ErrorKind::NotFound, "{before}");
    let irqs = interrupts(env, NVME_VECTORS)?;
    bind_all::<B>(&o.device, &irqs)?;
    let mut seen = std::collections::BTreeSet::new();
    for v in 0..NVME_VECTORS {
        let irq = paths
            .vector_irq(&nvme, IrqIndex::MSIX, v)
            .with_context(|| format!("vector {v}"))?;
        ensure!(seen.insert(irq), "vector {v} shares irq {irq}");
    }
    o.device.unbind_interrupts(IrqIndex::MSIX, 10, 10)?;
    for v in [0, 9, 20, 64] {
        paths
            .vector_irq(&nvme, IrqIndex::MSIX, v)
            .with_context(|| format!("vector {v} after unbind"))?;
    }
    for v in 10..20 {
        let e = paths
            .vector_irq(&nvme, IrqIndex::MSIX, v)
            .expect_err("unbound vector");
        ensure!(e.kind() == ErrorKind::NotFound, "vector {v}: {e}");
    }
    o.device.disable_interrupts(IrqIndex::MSIX)?;
    let e = paths
        .vector_irq(&nvme, IrqIndex::MSIX, 0)
        .expect_err("lookup after disable");
    ensure!(e.kind() == ErrorKind::NotFound, "{e}");
    Ok(())
}
