//! Interrupt behaviours: IRQ info, MSI-X binding, loopback triggers, lookups.

use crate::{Env, Kernel, expect_error, fired};
use anyhow::{Context, Result, ensure};
use std::os::fd::AsFd;
use std::time::Duration;
use vfio_core::{
    Device, Errno, ErrorKind, Interrupt, IrqAction, IrqData, IrqFlags, IrqIndex, MappedRegion,
    VfioBackend,
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
    device.enable_interrupts(IrqIndex::MSIX, &refs)?;
    Ok(())
}

/// The flags of the MSI-X index of a device that has MSI-X: eventfd-capable,
/// and on Linux 6.1 NORESIZE (the index cannot grow while enabled). 6.12
/// allocates MSI-X vectors on demand where the interrupt domain can
/// (`vdev->has_dyn_msix`, true on the x86 guest) and leaves NORESIZE off.
pub(crate) fn msix_flags(kernel: Kernel) -> IrqFlags {
    match kernel {
        Kernel::V6_1 => IrqFlags::EVENTFD | IrqFlags::NORESIZE,
        Kernel::V6_12 => IrqFlags::EVENTFD,
    }
}

/// The NVMe controller's MSI-X index has 65 vectors, eventfd-capable, and
/// on Linux 6.1 cannot be resized while enabled (NORESIZE); on 6.12 it can
/// (`msix_flags`).
pub fn nvme_msix_has_65_vectors_noresize_on_6_1_only<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let want = msix_flags(env.kernel()?);
    let o = env.open_nvme()?;
    let info = o.device.irq_info(IrqIndex::MSIX)?;
    ensure!(info.count == NVME_VECTORS, "count {}", info.count);
    ensure!(
        info.flags == want,
        "flags {:?}, want {want:?} on Linux {}",
        info.flags,
        env.kernel()?.series()
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

/// Binding a vector past the index's count (vector 70 of 65, or 64..66) is
/// the kernel's EINVAL, whether the index is enabled or not; the library's
/// own range check gives the same answer without a call.
pub fn binding_past_the_vector_count_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 2)?;
    let one = [Some(irqs[0].as_fd())];
    let two = [Some(irqs[0].as_fd()), Some(irqs[1].as_fd())];
    for (what, start, fds) in [("bind 70", 70, &one[..]), ("bind 64..66", 64, &two[..])] {
        let r = o.device.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            start,
            IrqData::Eventfds(fds),
        );
        expect_error(what, r, ErrorKind::InvalidArgument, Some(Errno::EINVAL))?;
    }
    ensure!(
        o.device.enabled_interrupts(IrqIndex::MSIX).is_none(),
        "a refused bind enabled MSI-X"
    );
    let all = interrupts(env, NVME_VECTORS)?;
    bind_all::<B>(&o.device, &all)?;
    let refs: Vec<&B::Interrupt> = irqs.iter().collect();
    for (what, r) in [
        (
            "bind 70",
            o.device.bind_interrupts(IrqIndex::MSIX, 70, &refs[..1]),
        ),
        (
            "bind 64..66",
            o.device.bind_interrupts(IrqIndex::MSIX, 64, &refs),
        ),
        (
            "raw bind 64..66",
            o.device.set_irqs(
                IrqIndex::MSIX,
                IrqAction::Trigger,
                64,
                IrqData::Eventfds(&two),
            ),
        ),
    ] {
        expect_error(what, r, ErrorKind::InvalidArgument, Some(Errno::EINVAL))?;
    }
    o.device
        .trigger_interrupts(IrqIndex::MSIX, 0, NVME_VECTORS)?;
    ensure!(
        fired(&all)?.len() == NVME_VECTORS as usize,
        "a refused bind changed bindings"
    );
    Ok(())
}

/// Linux 6.1 cannot grow an enabled MSI-X index: binding a vector beyond those
/// enabled first is invalid, and the bound ones still work.
pub fn growing_an_enabled_msix_index_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 5)?;
    let first: Vec<&B::Interrupt> = irqs[..4].iter().collect();
    o.device.enable_interrupts(IrqIndex::MSIX, &first)?;
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
        .enable_interrupts(IrqIndex::MSIX, &[&irqs[0], &irqs[1]])?;
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
    o.device.enable_interrupts(IrqIndex::MSIX, &refs)?;
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
    o.device.enable_interrupts(IrqIndex::MSIX, &[&irqs[0]])?;
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
        "enable MSI",
        o.device.enable_interrupts(IrqIndex::MSI, &[&irq]),
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
    o.device.enable_interrupts(IrqIndex::INTX, &[&intx])?;
    let irq = env.backend.new_interrupt()?;
    expect_error(
        "MSI-X over INTx",
        o.device.enable_interrupts(IrqIndex::MSIX, &[&irq]),
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
    o.device.enable_interrupts(IrqIndex::MSI, &[&irq])?;
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
    o.device.enable_interrupts(IrqIndex::INTX, &[&irq])?;
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
    o.device.enable_interrupts(IrqIndex::MSIX, &refs)?;
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
        .enable_interrupts(IrqIndex::MSIX, &[&irqs[0], &irqs[1]])?;
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

/// The kernel enables a disabled index for any `DATA_EVENTFD` trigger, even
/// one that only unbinds (fd -1): the raw call leaves MSI-X enabled, so a
/// loopback trigger then succeeds. The library's `unbind_interrupts` refuses
/// on an index this handle has not enabled (no kernel call, no errno), and
/// the index stays disabled.
pub fn unbinding_on_a_disabled_index_is_refused_instead_of_enabling_it<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let e = o
        .device
        .unbind_interrupts(IrqIndex::MSIX, 0, 1)
        .expect_err("unbind on a disabled index");
    ensure!(
        e.kind() == ErrorKind::InvalidArgument && e.errno().is_none(),
        "{e} ({:?})",
        e.errno()
    );
    expect_error(
        "trigger after the refused unbind",
        o.device.trigger_interrupts(IrqIndex::MSIX, 0, 1),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    o.device.set_irqs(
        IrqIndex::MSIX,
        IrqAction::Trigger,
        0,
        IrqData::Eventfds(&[None]),
    )?;
    ensure!(
        o.device.enabled_interrupts(IrqIndex::MSIX) == Some(1),
        "raw unbind: {:?}",
        o.device.enabled_interrupts(IrqIndex::MSIX)
    );
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, 1)?;
    Ok(())
}

/// Enabling an index this handle already has enabled is refused (the kernel
/// would silently rebind every vector), and the bindings stay.
pub fn enabling_an_enabled_index_is_refused_and_keeps_its_bindings<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 4)?;
    let refs: Vec<&B::Interrupt> = irqs.iter().collect();
    o.device.enable_interrupts(IrqIndex::MSIX, &refs)?;
    let e = o
        .device
        .enable_interrupts(IrqIndex::MSIX, &refs[..1])
        .expect_err("second enable");
    ensure!(
        e.kind() == ErrorKind::Busy && e.errno().is_none(),
        "{e} ({:?})",
        e.errno()
    );
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, 4)?;
    ensure!(fired(&irqs)? == [0, 1, 2, 3], "bindings changed");
    o.device.disable_interrupts(IrqIndex::MSIX)?;
    ensure!(
        o.device.enabled_interrupts(IrqIndex::MSIX).is_none(),
        "still enabled"
    );
    o.device.enable_interrupts(IrqIndex::MSIX, &refs[..2])?;
    ensure!(
        o.device.enabled_interrupts(IrqIndex::MSIX) == Some(2),
        "re-enabled with {:?}",
        o.device.enabled_interrupts(IrqIndex::MSIX)
    );
    Ok(())
}

/// An index enabled with no eventfds has its vectors allocated but none
/// requested: single vectors then bind one at a time, and only bound ones
/// fire and are listed in /proc/interrupts.
pub fn vectors_enabled_unbound_bind_one_at_a_time<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let nvme = env.targets.nvme;
    o.device
        .enable_interrupts_unbound(IrqIndex::MSIX, NVME_VECTORS)?;
    let irqs = interrupts(env, 2)?;
    o.device.bind_interrupt(IrqIndex::MSIX, 7, &irqs[0])?;
    o.device.bind_interrupt(IrqIndex::MSIX, 64, &irqs[1])?;
    o.device
        .trigger_interrupts(IrqIndex::MSIX, 0, NVME_VECTORS)?;
    ensure!(fired(&irqs)? == [0, 1], "fired");
    let paths = env.backend.host_paths();
    paths.vector_irq(&nvme, IrqIndex::MSIX, 7)?;
    paths.vector_irq(&nvme, IrqIndex::MSIX, 64)?;
    let e = paths
        .vector_irq(&nvme, IrqIndex::MSIX, 8)
        .expect_err("unbound vector listed");
    ensure!(e.kind() == ErrorKind::NotFound, "{e}");
    o.device.unbind_interrupts(IrqIndex::MSIX, 7, 1)?;
    o.device
        .trigger_interrupts(IrqIndex::MSIX, 0, NVME_VECTORS)?;
    ensure!(fired(&irqs)? == [1], "after unbinding 7");
    Ok(())
}

/// Counts past the index's vectors are the kernel's EINVAL, before anything
/// is allocated for them: the library answers a huge unbind or unbound
/// enable the same way, and the raw call with a huge count is refused by the
/// kernel's own validation.
pub fn huge_vector_counts_are_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    expect_error(
        "enable 66 unbound",
        o.device
            .enable_interrupts_unbound(IrqIndex::MSIX, NVME_VECTORS + 1),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    let raw = vec![None; NVME_VECTORS as usize + 1];
    expect_error(
        "raw enable 66",
        o.device.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            0,
            IrqData::Eventfds(&raw),
        ),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    ensure!(
        o.device.enabled_interrupts(IrqIndex::MSIX).is_none(),
        "enabled"
    );
    let irqs = interrupts(env, 1)?;
    o.device.enable_interrupts(IrqIndex::MSIX, &[&irqs[0]])?;
    expect_error(
        "unbind u32::MAX",
        o.device.unbind_interrupts(IrqIndex::MSIX, 0, u32::MAX),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    expect_error(
        "raw trigger u32::MAX",
        o.device.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            1,
            IrqData::None { count: u32::MAX },
        ),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, 1)?;
    ensure!(fired(&irqs)? == [0], "the bound vector no longer fires");
    Ok(())
}

/// How long to wait for an interrupt that should not arrive.
const STAYS_AWAY: Duration = Duration::from_millis(300);

/// `edu` registers: raise (OR into the status) and acknowledge (clear) an
/// interrupt.
const EDU_IRQ_RAISE: u64 = 0x60;
const EDU_IRQ_ACK: u64 = 0x64;

/// An MSI the device sends is a memory write, so it needs Bus Master Enable:
/// with it clear, `edu` raising its interrupt delivers nothing, while a
/// loopback trigger (the kernel signalling the eventfd itself) still fires.
/// With it set, the device's MSI arrives.
pub fn device_msi_needs_bus_master_enable_but_loopback_does_not<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let irq = env.backend.new_interrupt()?;
    o.device.enable_interrupts(IrqIndex::MSI, &[&irq])?;
    o.device.set_bus_master(false)?;
    let bar = o.device.map_region(vfio_core::region::BAR0)?;
    bar.write_u32(EDU_IRQ_RAISE, 1)?;
    ensure!(
        irq.wait(Some(STAYS_AWAY))?.is_none(),
        "an MSI arrived with bus mastering off"
    );
    o.device.trigger_interrupts(IrqIndex::MSI, 0, 1)?;
    ensure!(
        irq.wait(Some(ARRIVES))?.is_some(),
        "the loopback did not fire"
    );
    bar.write_u32(EDU_IRQ_ACK, 1)?;
    o.device.set_bus_master(true)?;
    bar.write_u32(EDU_IRQ_RAISE, 1)?;
    ensure!(
        irq.wait(Some(ARRIVES))?.is_some(),
        "no MSI with bus mastering on"
    );
    bar.write_u32(EDU_IRQ_ACK, 1)?;
    Ok(())
}

/// An unmask eventfd (`ACTION_UNMASK | DATA_EVENTFD` on INTx) unmasks when
/// signalled, as the unmask ioctl does, and the kernel consumes its count:
/// while the line is still asserted the interrupt stays masked and the
/// trigger is signalled again; once the device lowers it, the next
/// interrupt is delivered.
pub fn intx_unmask_eventfd_unmasks_like_the_ioctl<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let trigger = env.backend.new_interrupt()?;
    let unmask = vfio_core::EventFdInterrupt::new()?;
    o.device.enable_interrupts(IrqIndex::INTX, &[&trigger])?;
    o.device.set_irqs(
        IrqIndex::INTX,
        IrqAction::Unmask,
        0,
        IrqData::Eventfds(&[Some(unmask.as_fd())]),
    )?;
    let bar = o.device.map_region(vfio_core::region::BAR0)?;
    bar.write_u32(EDU_IRQ_RAISE, 1)?;
    ensure!(trigger.wait(Some(ARRIVES))?.is_some(), "INTx did not fire");
    // Automasked: acknowledging and raising again delivers nothing.
    bar.write_u32(EDU_IRQ_ACK, 1)?;
    bar.write_u32(EDU_IRQ_RAISE, 1)?;
    ensure!(
        trigger.wait(Some(STAYS_AWAY))?.is_none(),
        "a masked INTx fired"
    );
    // Unmasking with the line asserted re-signals the trigger.
    unmask.signal()?;
    ensure!(
        trigger.wait(Some(ARRIVES))?.is_some(),
        "unmask with the line asserted did not re-signal"
    );
    ensure!(
        unmask.try_consume()?.is_none(),
        "the unmask eventfd's count was left"
    );
    // Lowered, then unmasked: the next interrupt is delivered.
    bar.write_u32(EDU_IRQ_ACK, 1)?;
    unmask.signal()?;
    bar.write_u32(EDU_IRQ_RAISE, 1)?;
    ensure!(
        trigger.wait(Some(ARRIVES))?.is_some(),
        "no INTx after the eventfd unmask"
    );
    bar.write_u32(EDU_IRQ_ACK, 1)?;
    Ok(())
}

/// How many MSI-X vectors the guest's 2 CPUs can take with nothing else
/// bound: 201 per CPU on x86-64, less the 7 the host's own irqs hold. The
/// same on the 6.1 and the 6.12 guest: 6.12 no longer reserves vector 0x20
/// (`IRQ_MOVE_CLEANUP_VECTOR`), but its system vectors start one lower
/// (`FIRST_SYSTEM_VECTOR` is `POSTED_MSI_NOTIFICATION_VECTOR`, 0xeb); both
/// kernels have 32-bit syscall emulation, whose vector 0x80 is a system one.
pub(crate) const GUEST_VECTOR_BUDGET: u32 = 395;

/// The budget in the guest without an IOMMU, one more: there is no
/// `dmar0` fault irq holding a vector (396, measured on the 6.12 guest
/// booted without intel-iommu).
pub(crate) const NOIOMMU_GUEST_VECTOR_BUDGET: u32 = GUEST_VECTOR_BUDGET + 1;

/// The host's CPUs have a limited number of interrupt vectors: a device with
/// 2048 MSI-X vectors enables them all (allocation is lazy), but binding
/// eventfds requests a CPU vector each, and past the budget `request_irq`
/// fails with ENOSPC. A failed bind into the enabled index leaves the
/// vectors from its start up to the failing one unbound and the rest as they
/// were; a failed bind that was to enable the index leaves it disabled.
pub fn binding_past_the_host_vector_budget_is_no_space<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let big = env.targets.big_nvme;
    // Its IOMMU group is 4 in the IOMMU guest; without an IOMMU it is the
    // fourth device vfio-pci binds, in no-IOMMU group 3.
    let want = if env.mode == crate::Mode::NoIommu {
        3
    } else {
        4
    };
    let group = env.group_of(&big)?;
    ensure!(group == want, "the 2048-vector NVMe is in group {group}");
    let o = env.open(&big)?;
    let paths = env.backend.host_paths();
    let listed = |v: u32| paths.vector_irq(&big, IrqIndex::MSIX, v).is_ok();
    let count = o.device.irq_info(IrqIndex::MSIX)?.count;
    ensure!(count == 2048, "{count} vectors");
    // A few eventfds serve every vector, so the fd limit does not decide.
    let pool = interrupts(env, 8)?;
    let refs: Vec<&B::Interrupt> = (0..count as usize).map(|v| &pool[v % 8]).collect();

    let e = o
        .device
        .enable_interrupts(IrqIndex::MSIX, &refs)
        .expect_err("2048 bound vectors on 2 CPUs");
    ensure!(
        e.kind() == ErrorKind::NoSpace && e.errno() == Some(vfio_core::Errno::ENOSPC),
        "{e}"
    );
    ensure!(
        o.device.enabled_interrupts(IrqIndex::MSIX).is_none(),
        "the failed enable left MSI-X enabled"
    );
    expect_error(
        "trigger after the failed enable",
        o.device.trigger_interrupts(IrqIndex::MSIX, 0, 1),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;

    o.device.enable_interrupts_unbound(IrqIndex::MSIX, count)?;
    let e = o
        .device
        .bind_interrupts(IrqIndex::MSIX, 0, &refs)
        .expect_err("bind 2048 into the enabled index");
    ensure!(e.errno() == Some(vfio_core::Errno::ENOSPC), "{e}");
    ensure!(!listed(0) && !listed(394), "vectors stayed bound");

    let mut bound = 0;
    while bound < count {
        match o
            .device
            .bind_interrupt(IrqIndex::MSIX, bound, refs[bound as usize])
        {
            Ok(()) => bound += 1,
            Err(e) if e.errno() == Some(vfio_core::Errno::ENOSPC) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let budget = if env.mode == crate::Mode::NoIommu {
        NOIOMMU_GUEST_VECTOR_BUDGET
    } else {
        GUEST_VECTOR_BUDGET
    };
    ensure!(
        bound == budget,
        "{bound} vectors bound before ENOSPC, want {budget}"
    );
    let start = bound - 5;
    let e = o
        .device
        .bind_interrupts(
            IrqIndex::MSIX,
            start,
            &refs[start as usize..start as usize + 10],
        )
        .expect_err("a block past the budget");
    ensure!(e.errno() == Some(vfio_core::Errno::ENOSPC), "{e}");
    let gone: Vec<u32> = (start..bound).filter(|&v| listed(v)).collect();
    ensure!(
        gone.is_empty(),
        "vectors {gone:?} of the failed block stayed bound"
    );
    ensure!(
        listed(start - 1) && listed(0),
        "vectors before the block lost their eventfds"
    );
    o.device.disable_interrupts(IrqIndex::MSIX)?;
    Ok(())
}
