//! `VFIO_DEVICE_RESET`: what a function-level reset of the NVMe controller
//! does to interrupts, registers, config space and mappings, and what the
//! refused reset of `edu` leaves alone.

use crate::cases::config::{dump, ensure_same_bytes};
use crate::{Env, fired};
use anyhow::{Context, Result, ensure};
use vfio_core::{Device, Errno, ErrorKind, IrqIndex, MappedRegion, VfioBackend, region};

/// NVMe register offsets in BAR0.
mod nvme {
    pub const VS: u64 = 0x08;
    pub const INTMS: u64 = 0x0c;
    pub const CC: u64 = 0x14;
    pub const CSTS: u64 = 0x1c;
    pub const AQA: u64 = 0x24;
    pub const ASQ: u64 = 0x28;
    pub const ACQ: u64 = 0x30;
}

/// MSI-X vectors bound before a reset stay bound: the same Linux irqs are
/// listed in /proc/interrupts, a loopback trigger still fires every one, and
/// MSI-X Enable still reads set.
pub fn reset_keeps_msix_vectors_bound_listed_and_firing<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let nvme = env.targets.nvme;
    let irqs = (0..4)
        .map(|_| Ok(env.backend.new_interrupt()?))
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&B::Interrupt> = irqs.iter().collect();
    o.device.enable_interrupts(IrqIndex::MSIX, &refs)?;
    let paths = env.backend.host_paths();
    let listed = |when: &str| -> Result<Vec<u32>> {
        (0..4)
            .map(|v| {
                paths
                    .vector_irq(&nvme, IrqIndex::MSIX, v)
                    .with_context(|| format!("vector {v} {when} the reset"))
            })
            .collect()
    };
    let before = listed("before")?;
    o.device.reset()?;
    let after = listed("after")?;
    ensure!(before == after, "irqs {before:?} became {after:?}");
    ensure!(fired(&irqs)?.is_empty(), "the reset fired vectors");
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, 4)?;
    let got = fired(&irqs)?;
    ensure!(got == [0, 1, 2, 3], "fired {got:?}");
    let control = u16::from_le_bytes(o.device.read_config::<2>(0x42)?);
    ensure!(control == 0x8040, "MSI-X control {control:#06x}");
    Ok(())
}

/// QEMU's controller on a function-level reset: CC, CSTS and INTMS read 0
/// again (an enabled, ready controller is disabled), VS is unchanged, and
/// AQA, ASQ and ACQ keep what was written.
pub fn nvme_reset_clears_cc_and_the_interrupt_mask_but_keeps_the_admin_queues<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let bar = o.device.map_region(region::BAR0)?;
    bar.write_u32(nvme::AQA, 0x001f_001f)?;
    bar.write_u64(nvme::ASQ, 0x1000)?;
    bar.write_u64(nvme::ACQ, 0x2000)?;
    bar.write_u32(nvme::INTMS, 0x5)?;
    bar.write_u32(nvme::CC, 0x0046_0001)?;
    let mut csts = 0;
    for _ in 0..1000 {
        csts = bar.read_u32(nvme::CSTS)?;
        if csts & 1 == 1 {
            break;
        }
    }
    ensure!(csts & 1 == 1, "CSTS {csts:#x} before the reset");
    o.device.reset()?;
    let got = (
        bar.read_u32(nvme::VS)?,
        bar.read_u32(nvme::CC)?,
        bar.read_u32(nvme::CSTS)?,
        bar.read_u32(nvme::INTMS)?,
        bar.read_u32(nvme::AQA)?,
        bar.read_u64(nvme::ASQ)?,
        bar.read_u64(nvme::ACQ)?,
    );
    ensure!(
        got == (0x0001_0400, 0, 0, 0, 0x001f_001f, 0x1000, 0x2000),
        "(VS, CC, CSTS, INTMS, AQA, ASQ, ACQ) after the reset: {got:x?}"
    );
    Ok(())
}

/// A reset leaves config space as the user left it, byte for byte: the
/// command register (here bus master and INTx disable), the interrupt line
/// and the virtual BARs are saved and restored around it.
pub fn reset_leaves_config_space_as_it_was<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    o.device.write_config(0x04, &[0x06, 0x04])?;
    o.device.write_config(0x3c, &[0x33])?;
    o.device.write_config(0x10, &[0; 8])?;
    let before = dump::<B>(&o.device)?;
    o.device.reset()?;
    ensure_same_bytes(
        "NVMe config space after reset",
        &dump::<B>(&o.device)?,
        &before,
    )?;
    let command = u16::from_le_bytes(o.device.read_config::<2>(0x04)?);
    ensure!(command == 0x0406, "command {command:#06x}");
    Ok(())
}

/// A mapping made before a reset reaches the registers again after it
/// (vfio-pci zaps the mapping during the reset and faults it back in).
pub fn a_mapping_reaches_the_registers_again_after_a_reset<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let bar = o.device.map_region(region::BAR0)?;
    ensure!(bar.read_u32(nvme::VS)? == 0x0001_0400, "VS before");
    o.device.reset()?;
    let vs = bar.read_u32(nvme::VS)?;
    ensure!(vs == 0x0001_0400, "VS after the reset {vs:#x}");
    Ok(())
}

/// A reset with memory decode off leaves it off: the command register still
/// reads 0 and a BAR read through the device file is still EIO; turning
/// decode back on makes it work.
pub fn reset_with_memory_decode_off_leaves_it_off<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    o.device.write_config(0x04, &[0, 0])?;
    o.device.reset()?;
    let command = u16::from_le_bytes(o.device.read_config::<2>(0x04)?);
    ensure!(command == 0, "command {command:#06x} after the reset");
    let mut buf = [0u8; 4];
    let e = o
        .device
        .read_region(region::BAR0, nvme::VS, &mut buf)
        .expect_err("BAR read with decode off");
    ensure!(
        e.kind() == ErrorKind::Io && e.errno() == Some(Errno::EIO),
        "{e} ({:?})",
        e.errno()
    );
    o.device.write_config(0x04, &[0x02, 0])?;
    o.device.read_region(region::BAR0, nvme::VS, &mut buf)?;
    ensure!(u32::from_le_bytes(buf) == 0x0001_0400, "VS {buf:x?}");
    Ok(())
}

/// `edu` cannot be reset (EINVAL), and the refused reset leaves its
/// registers and config space alone.
pub fn refused_edu_reset_leaves_registers_and_config_alone<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let bar = o.device.map_region(region::BAR0)?;
    bar.write_u32(0x04, 0x1234_5678)?;
    o.device.write_config(0x3c, &[0x22])?;
    let before = dump::<B>(&o.device)?;
    let e = o.device.reset().expect_err("edu reset");
    ensure!(
        e.kind() == ErrorKind::InvalidArgument && e.errno() == Some(Errno::EINVAL),
        "{e} ({:?})",
        e.errno()
    );
    let liveness = bar.read_u32(0x04)?;
    ensure!(liveness == !0x1234_5678, "liveness {liveness:#x}");
    ensure_same_bytes("edu config space", &dump::<B>(&o.device)?, &before)
}

/// An INTx eventfd bound before a reset stays bound: the same Linux irq is
/// listed in /proc/interrupts and a loopback trigger still fires it.
pub fn reset_keeps_intx_bound_listed_and_firing<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let nvme = env.targets.nvme;
    let irq = env.backend.new_interrupt()?;
    o.device.enable_interrupts(IrqIndex::INTX, &[&irq])?;
    let paths = env.backend.host_paths();
    let before = paths.vector_irq(&nvme, IrqIndex::INTX, 0)?;
    o.device.reset()?;
    let after = paths
        .vector_irq(&nvme, IrqIndex::INTX, 0)
        .context("INTx after the reset")?;
    ensure!(before == after, "irq {before} became {after}");
    ensure!(
        vfio_core::Interrupt::try_consume(&irq)?.is_none(),
        "the reset fired INTx"
    );
    o.device.trigger_interrupts(IrqIndex::INTX, 0, 1)?;
    ensure!(
        vfio_core::Interrupt::try_consume(&irq)?.is_some(),
        "INTx did not fire after the reset"
    );
    o.device.unmask_intx()?;
    o.device.disable_interrupts(IrqIndex::INTX)?;
    Ok(())
}
