//! The controller's interrupts (`nvme_irq_assert`, `nvme_irq_deassert`,
//! `nvme_irq_check`): the CQ's MSI-X vector when MSI-X is enabled, else
//! INTx, asserted while an unmasked vector has a pending CQ.

use super::{Ctrl, reg};
use crate::model::{DeviceContext, Irq};

/// `nvme_irq_assert`: the CQ's MSI-X vector, or its bit in the pin-based
/// interrupt status.
pub(super) fn irq_assert(c: &mut Ctrl, ctx: &DeviceContext<'_>, cqid: u16) {
    let Some(cq) = c.cqs.get(usize::from(cqid)).and_then(Option::as_ref) else {
        return;
    };
    if !cq.irq_enabled {
        return;
    }
    if ctx.msix_enabled() {
        // Sent once the controller's lock is let go (see `queues::run`).
        c.msix_out.push(cq.vector);
    } else {
        // QEMU asserts the vector is below 32 here; it can only be 0
        // without MSI-X unless MSI-X was disabled after the CQ was made.
        if let Some(bit) = 1u32.checked_shl(u32::from(cq.vector)) {
            c.irq_status |= bit;
        }
        irq_check(c, ctx);
    }
}

/// `nvme_irq_deassert`: without MSI-X, the CQ's status bit clears once no
/// CQ is pending.
pub(super) fn irq_deassert(c: &mut Ctrl, ctx: &DeviceContext<'_>, cqid: u16) {
    let Some(cq) = c.cqs.get(usize::from(cqid)).and_then(Option::as_ref) else {
        return;
    };
    if !cq.irq_enabled || ctx.msix_enabled() {
        return;
    }
    if c.cq_pending == 0 {
        if let Some(bit) = 1u32.checked_shl(u32::from(cq.vector)) {
            c.irq_status &= !bit;
        }
    }
    irq_check(c, ctx);
}

/// `nvme_irq_check`: without MSI-X, INTx follows the unmasked status bits.
pub(super) fn irq_check(c: &mut Ctrl, ctx: &DeviceContext<'_>) {
    if ctx.msix_enabled() {
        return;
    }
    let want = !c.regs.get32(reg::INTMS) & c.irq_status != 0;
    if want && !c.intx {
        ctx.raise(Irq::Intx);
        c.intx = true;
    } else if !want && c.intx {
        ctx.lower_intx();
        c.intx = false;
    }
}
