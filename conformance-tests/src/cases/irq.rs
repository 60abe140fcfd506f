//! Interrupt behaviours: IRQ info, MSI-X binding, loopback triggers, lookups.

use crate::{Env, expect_error, fired};
use anyhow::{Context, Result, ensure};
use std::os::fd::AsFd;
use std::time::Duration;
use vfio_core::{
    Device, Errno, ErrorKind, Interrupt, IrqAction, IrqData, IrqFlags, IrqIndex, VfioBackend,
};

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
    expect_error(
        "lookup before binding",
        paths.vector_irq(&nvme, IrqIndex::MSIX, 0),
        ErrorKind::NotFound,
        None,
    )?;
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
        expect_error(
            "unbound vector",
            paths.vector_irq(&nvme, IrqIndex::MSIX, v),
            ErrorKind::NotFound,
            None,
        )?;
    }
    o.device.disable_interrupts(IrqIndex::MSIX)?;
    expect_error(
        "lookup after disable",
        paths.vector_irq(&nvme, IrqIndex::MSIX, 0),
        ErrorKind::NotFound,
        None,
    )?;
    Ok(())
}

/// IRQ info of `edu` for every index: INTx (pin A) maskable and automasked,
/// one MSI vector, no MSI-X, one REQ; non-INTx indexes are NORESIZE. The ERR
/// index exists only on PCI Express devices: for `edu` it is EINVAL.
pub fn edu_irq_info_for_every_index<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let e = IrqFlags::EVENTFD;
    let want = [
        (
            IrqIndex::INTX,
            1,
            e | IrqFlags::MASKABLE | IrqFlags::AUTOMASKED,
        ),
        (IrqIndex::MSI, 1, e | IrqFlags::NORESIZE),
        (IrqIndex::MSIX, 0, e | IrqFlags::NORESIZE),
        (IrqIndex::REQ, 1, e | IrqFlags::NORESIZE),
    ];
    for (index, count, flags) in want {
        let info = o.device.irq_info(index)?;
        ensure!(
            info.count == count && info.flags == flags,
            "{index}: {info:?}"
        );
    }
    expect_error(
        "ERR info",
        o.device.irq_info(IrqIndex::ERR),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// IRQ info of the NVMe controller: INTx, no MSI, 65 MSI-X, ERR (PCIe) and REQ.
pub fn nvme_irq_info_for_every_index<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let counts: Vec<u32> = [
        IrqIndex::INTX,
        IrqIndex::MSI,
        IrqIndex::MSIX,
        IrqIndex::ERR,
        IrqIndex::REQ,
    ]
    .iter()
    .map(|&i| o.device.irq_info(i).map(|info| info.count))
    .collect::<vfio_core::Result<_>>()?;
    ensure!(counts == [1, 0, NVME_VECTORS, 1, 1], "counts {counts:?}");
    Ok(())
}

/// Binding a vector past the index's count (vector 70 of 65) is invalid.
pub fn binding_past_the_vector_count_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irq = env.backend.new_interrupt()?;
    expect_error(
        "bind 70",
        o.device.bind_interrupts(IrqIndex::MSIX, 70, &[&irq]),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    let irqs = interrupts(env, 2)?;
    let refs: Vec<&B::Interrupt> = irqs.iter().collect();
    expect_error(
        "bind 64..66",
        o.device.bind_interrupts(IrqIndex::MSIX, 64, &refs),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// Linux 6.1 cannot grow an enabled MSI-X index: binding a vector beyond those
/// enabled first is invalid, and the bound ones still work.
pub fn growing_an_enabled_msix_index_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 5)?;
    let first: Vec<&B::Interrupt> = irqs[..4].iter().collect();
    o.device.bind_interrupts(IrqIndex::MSIX, 0, &first)?;
    expect_error(
        "grow",
        o.device.bind_interrupts(IrqIndex::MSIX, 10, &[&irqs[4]]),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, 4)?;
    ensure!(fired(&irqs)? == [0, 1, 2, 3], "after the failed grow");
    Ok(())
}

/// Rebinding a vector of an enabled index to a new eventfd moves it.
pub fn rebinding_a_vector_moves_it_to_the_new_eventfd<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 3)?;
    o.device
        .bind_interrupts(IrqIndex::MSIX, 0, &[&irqs[0], &irqs[1]])?;
    o.device.bind_interrupts(IrqIndex::MSIX, 1, &[&irqs[2]])?;
    o.device.trigger_interrupts(IrqIndex::MSIX, 1, 1)?;
    ensure!(fired(&irqs)? == [2], "after rebind");
    Ok(())
}

/// Disabling an index that is not enabled is invalid; disabling an enabled
/// one unbinds every vector, so a later trigger is invalid too.
pub fn disable_needs_an_enabled_index_and_unbinds_everything<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    expect_error(
        "disable when off",
        o.device.disable_interrupts(IrqIndex::MSIX),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    let irqs = interrupts(env, NVME_VECTORS)?;
    bind_all::<B>(&o.device, &irqs)?;
    o.device.disable_interrupts(IrqIndex::MSIX)?;
    expect_error(
        "trigger when off",
        o.device.trigger_interrupts(IrqIndex::MSIX, 0, 1),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    ensure!(fired(&irqs)?.is_empty(), "disable fired vectors");
    Ok(())
}

/// A `DATA_BOOL` trigger fires exactly the vectors whose flag is set.
pub fn bool_trigger_fires_the_flagged_vectors<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 8)?;
    let refs: Vec<&B::Interrupt> = irqs.iter().collect();
    o.device.bind_interrupts(IrqIndex::MSIX, 0, &refs)?;
    let flags = [true, false, true, false];
    o.device
        .set_irqs(IrqIndex::MSIX, IrqAction::Trigger, 2, IrqData::Bool(&flags))?;
    ensure!(fired(&irqs)? == [2, 4], "fired");
    Ok(())
}

/// Masking and unmasking MSI-X vectors is not implemented by vfio-pci (ENOTTY).
pub fn msix_mask_and_unmask_are_unsupported<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 1)?;
    o.device.bind_interrupts(IrqIndex::MSIX, 0, &[&irqs[0]])?;
    for action in [IrqAction::Mask, IrqAction::Unmask] {
        let r = o
            .device
            .set_irqs(IrqIndex::MSIX, action, 0, IrqData::None { count: 1 });
        expect_error(
            "mask/unmask",
            r,
            ErrorKind::Unsupported,
            Some(Errno::ENOTTY),
        )?;
    }
    Ok(())
}

/// Any call on an index the device lacks (MSI on the NVMe controller) is invalid.
pub fn calls_on_an_index_with_no_vectors_are_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irq = env.backend.new_interrupt()?;
    expect_error(
        "bind MSI",
        o.device.bind_interrupts(IrqIndex::MSI, 0, &[&irq]),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    expect_error(
        "disable MSI",
        o.device.disable_interrupts(IrqIndex::MSI),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// Only one interrupt type can be enabled at a time: with INTx enabled,
/// binding MSI-X is invalid.
pub fn msix_cannot_be_enabled_while_intx_is<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let intx = env.backend.new_interrupt()?;
    o.device.bind_interrupts(IrqIndex::INTX, 0, &[&intx])?;
    let irq = env.backend.new_interrupt()?;
    expect_error(
        "MSI-X over INTx",
        o.device.bind_interrupts(IrqIndex::MSIX, 0, &[&irq]),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// MSI on `edu`: its one vector binds, fires on loopback and shows in
/// /proc/interrupts as `vfio-msi[0](<device>)`.
pub fn edu_msi_binds_fires_and_is_listed<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let irq = env.backend.new_interrupt()?;
    o.device.bind_interrupts(IrqIndex::MSI, 0, &[&irq])?;
    o.device.trigger_interrupts(IrqIndex::MSI, 0, 1)?;
    ensure!(irq.wait(Some(ARRIVES))?.is_some(), "MSI did not fire");
    env.backend
        .host_paths()
        .vector_irq(&env.targets.edu, IrqIndex::MSI, 0)?;
    Ok(())
}

/// INTx on `edu`: binds, loopback-fires, unmasks, and is listed as
/// `vfio-intx(<device>)`. Unbinding its eventfd (fd -1) keeps the handler
/// registered (Linux 6.1 stable keeps a persistent INTx handler), so it stays
/// listed until INTx is disabled.
pub fn edu_intx_binds_fires_unmasks_and_stays_listed_until_disabled<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let paths = env.backend.host_paths();
    let irq = env.backend.new_interrupt()?;
    o.device.bind_interrupts(IrqIndex::INTX, 0, &[&irq])?;
    o.device.trigger_interrupts(IrqIndex::INTX, 0, 1)?;
    ensure!(irq.wait(Some(ARRIVES))?.is_some(), "INTx did not fire");
    o.device.unmask_intx()?;
    paths.vector_irq(&env.targets.edu, IrqIndex::INTX, 0)?;
    o.device.unbind_interrupts(IrqIndex::INTX, 0, 1)?;
    paths
        .vector_irq(&env.targets.edu, IrqIndex::INTX, 0)
        .context("listed after unbind")?;
    o.device.trigger_interrupts(IrqIndex::INTX, 0, 1)?;
    ensure!(irq.try_consume()?.is_none(), "unbound eventfd fired");
    o.device.disable_interrupts(IrqIndex::INTX)?;
    expect_error(
        "listed after disable",
        paths.vector_irq(&env.targets.edu, IrqIndex::INTX, 0),
        ErrorKind::NotFound,
        None,
    )?;
    Ok(())
}

/// Binding a file that is not an eventfd is invalid and leaves the earlier
/// bindings as they were.
pub fn binding_a_non_eventfd_is_invalid_and_changes_nothing<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 4)?;
    let refs: Vec<&B::Interrupt> = irqs.iter().collect();
    o.device.bind_interrupts(IrqIndex::MSIX, 0, &refs)?;
    let file = std::fs::File::open("/")?;
    let fds = [Some(irqs[0].as_fd()), Some(file.as_fd())];
    let r = o.device.set_irqs(
        IrqIndex::MSIX,
        IrqAction::Trigger,
        0,
        IrqData::Eventfds(&fds),
    );
    expect_error(
        "bind a directory",
        r,
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, 4)?;
    ensure!(fired(&irqs)? == [0, 1, 2, 3], "bindings changed");
    Ok(())
}

/// Closing the device releases its vectors: they leave /proc/interrupts.
pub fn closing_the_device_releases_its_vectors<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 2)?;
    o.device
        .bind_interrupts(IrqIndex::MSIX, 0, &[&irqs[0], &irqs[1]])?;
    env.backend
        .host_paths()
        .vector_irq(&env.targets.nvme, IrqIndex::MSIX, 1)?;
    drop(o);
    expect_error(
        "listed after close",
        env.backend
            .host_paths()
            .vector_irq(&env.targets.nvme, IrqIndex::MSIX, 1),
        ErrorKind::NotFound,
        None,
    )?;
    Ok(())
}
