//! The controller registers (the 4 KiB block before the doorbells) and
//! what writing them does (`nvme_write_bar`, `nvme_start_ctrl`).

use super::{CAP, Ctrl, Shared, VS, irq, queues, reg};
use crate::model::DeviceContext;
use std::sync::Arc;

/// Size of the register block; the doorbells follow it.
pub(super) const BLOCK: u64 = 0x1000;

/// CSTS.SHST "shutdown processing complete".
const SHST_COMPLETE: u32 = 2 << 2;
/// CSTS.SHST's bits.
const SHST_MASK: u32 = 3 << 2;

/// The register block, little-endian, as QEMU keeps it (`NvmeBar`).
#[derive(Debug)]
pub(super) struct Regs(Box<[u8; BLOCK as usize]>);

impl Regs {
    /// CAP and VS set, everything else 0.
    pub(super) fn power_on() -> Self {
        let mut r = Self(Box::new([0; BLOCK as usize]));
        r.set(reg::CAP, 8, CAP);
        r.set(reg::VS, 4, u64::from(VS));
        r
    }

    /// `nvme_mmio_read`: any width and alignment inside the block; past
    /// its end (the doorbells) 0.
    pub(super) fn read(&self, offset: u64, width: u8) -> u64 {
        let mut v = [0u8; 8];
        let w = usize::from(width.min(8));
        let Ok(at) = usize::try_from(offset) else {
            return 0;
        };
        match at.checked_add(w).and_then(|end| self.0.get(at..end)) {
            Some(s) => v[..w].copy_from_slice(s),
            None => return 0,
        }
        u64::from_le_bytes(v)
    }

    pub(super) fn set(&mut self, offset: u64, width: u8, value: u64) {
        let w = usize::from(width.min(8));
        let Ok(at) = usize::try_from(offset) else {
            return;
        };
        if let Some(d) = at.checked_add(w).and_then(|end| self.0.get_mut(at..end)) {
            d.copy_from_slice(&value.to_le_bytes()[..w]);
        }
    }

    pub(super) fn get32(&self, offset: u64) -> u32 {
        self.read(offset, 4) as u32
    }

    pub(super) fn set32(&mut self, offset: u64, value: u32) {
        self.set(offset, 4, value.into());
    }
}

/// A write to the register block (`nvme_write_bar`). Misaligned and narrow
/// writes are taken as QEMU takes them: by the offset they start at.
pub(super) fn write(
    shared: &Arc<Shared>,
    ctx: &DeviceContext<'_>,
    offset: u64,
    width: u8,
    value: u64,
) {
    let mut c = shared.lock(ctx);
    let data = value as u32;
    match offset {
        reg::INTMS | reg::INTMC => {
            // QEMU logs INTMS/INTMC writes under MSI-X as undefined and
            // applies them anyway.
            let mut mask = c.regs.get32(reg::INTMS);
            if offset == reg::INTMS {
                mask |= data;
            } else {
                mask &= !data;
            }
            c.regs.set32(reg::INTMS, mask);
            c.regs.set32(reg::INTMC, mask);
            irq::irq_check(&mut c, ctx);
        }
        reg::CC => write_cc(&mut c, ctx, data),
        // CSTS is read-only; NSSR is not supported (CAP.NSSRS is 0).
        reg::CSTS | reg::NSSR => {}
        // QEMU stores AQA whole, reserved bits included; ASQS and ACQS are
        // its low 12 bits of each half.
        reg::AQA => c.regs.set32(reg::AQA, data),
        reg::ASQ | reg::ACQ => c.regs.set(offset, width, value),
        o if o == reg::ASQ + 4 || o == reg::ACQ + 4 => c.regs.set32(offset, data),
        // CAP, VS, CMBLOC, CMBSZ, the PMR registers and the rest of the
        // block are read-only or absent here.
        _ => {}
    }
}

/// CC: shutdown notification first, then enable or reset.
fn write_cc(c: &mut Ctrl, ctx: &DeviceContext<'_>, cc: u32) {
    let old = c.regs.get32(reg::CC);
    let mut csts = c.regs.get32(reg::CSTS);
    c.regs.set32(reg::CC, cc);
    let (shn, old_shn) = ((cc >> 14) & 3, (old >> 14) & 3);
    if shn != 0 && old_shn == 0 {
        // QEMU flushes the drive and reports the shutdown complete at
        // once; it never shows "shutdown occurring", and the queues keep
        // working (the specification leaves the controller's behaviour
        // after a shutdown undefined).
        csts = (csts & !SHST_MASK) | SHST_COMPLETE;
    } else if shn == 0 && old_shn != 0 {
        csts &= !SHST_MASK;
    }
    let (en, old_en) = (cc & 1 != 0, old & 1 != 0);
    if en && !old_en {
        csts = if start(c, ctx.now()) {
            super::CSTS_RDY
        } else {
            super::CSTS_CFS
        };
    } else if !en && old_en {
        // A controller reset. QEMU first drains the drive, so I/O in
        // flight reaches the namespace (its completions go with the
        // queues); CC itself reads 0 afterwards (QEMU clears the whole
        // register, not only EN).
        let mut dropped = queues::Todo::default();
        for qid in 1..=super::IO_QUEUE_PAIRS as u16 {
            if let Some(serial) = c.sqs[usize::from(qid)].as_ref().map(|s| s.serial) {
                queues::finish_inflight(c, ctx, qid, serial, None, &mut dropped);
            }
        }
        c.reset();
        return;
    }
    c.regs.set32(reg::CSTS, csts);
}

/// `nvme_start_ctrl`: true if the controller could start, with the admin
/// queues created from AQA, ASQ and ACQ.
fn start(c: &mut Ctrl, now: std::time::Duration) -> bool {
    let cc = c.regs.get32(reg::CC);
    let aqa = c.regs.get32(reg::AQA);
    let asq = c.regs.read(reg::ASQ, 8);
    let acq = c.regs.read(reg::ACQ, 8);
    let mps = (cc >> 7) & 0xf;
    let css = (cc >> 4) & 0x7;
    let (iosqes, iocqes) = ((cc >> 16) & 0xf, (cc >> 20) & 0xf);
    let page = 1u64 << (12 + mps);
    let mpsmin = ((CAP >> 48) & 0xf) as u32;
    let mpsmax = ((CAP >> 52) & 0xf) as u32;
    let (asqs, acqs) = (aqa & 0xfff, (aqa >> 16) & 0xfff);
    // QEMU does not require ASQ and ACQ to be nonzero (the specification
    // does not either), only page-aligned.
    let ok = c.cqs[0].is_none()
        && c.sqs[0].is_none()
        && asq % page == 0
        && acq % page == 0
        && (CAP >> 37) & 0xff & (1 << css) != 0
        && (mpsmin..=mpsmax).contains(&mps)
        && iocqes == 4
        && iosqes == 6
        && asqs != 0
        && acqs != 0;
    if !ok {
        return false;
    }
    c.page = page;
    let serial = c.take_serial();
    c.cqs[0] = Some(queues::Cq::new(acq, acqs as u16 + 1, true, 0));
    c.sqs[0] = Some(queues::Sq::new(asq, asqs as u16 + 1, 0, serial));
    c.features.set_timestamp(0, now);
    true
}
