//! QEMU's NVMe controller (`hw/nvme/ctrl.c`, QEMU 7.2 defaults) as
//! vfio-pci presents it: the controller registers, with enable and ready
//! handshake. Commands are not processed: doorbell writes are accepted and
//! dropped, so admin and I/O queues never complete.

use crate::builder::{BarSpec, PciDeviceBuilder};
use crate::model::{DeviceContext, DeviceModel};
use parking_lot::Mutex;
use std::sync::Arc;

/// Size of BAR0: registers, doorbells, MSI-X table and PBA, rounded up to
/// a power of two (`nvme_bar_size` with 64 I/O queue pairs and 65 vectors).
pub const BAR0_SIZE: u64 = 16 << 10;
/// Offset of the MSI-X table in BAR0 (after the 4 KiB register block and
/// the doorbells, 4 KiB-aligned). Checked in the guest:
/// `nvme_config_space_matches_qemu_layout`.
pub const MSIX_TABLE_OFFSET: u32 = 0x2000;
/// Offset of the MSI-X pending-bit array in BAR0 (checked likewise).
pub const MSIX_PBA_OFFSET: u32 = 0x3000;
/// MSI-X vectors (`msix_qsize` default).
pub const MSIX_VECTORS: u16 = 65;

/// Controller Capabilities: MQES 0x7ff, CQR, TO 0xf (7.5 s), DSTRD 0,
/// CSS NVM + I/O command sets + admin-only, MPSMIN 0 (4 KiB), MPSMAX 4 (64 KiB).
pub const CAP: u64 = 0x7ff | (1 << 16) | (0xf << 24) | ((0x1 | 0x40 | 0x80) << 37) | (4 << 52);
/// Version: NVMe 1.4.
pub const VS: u32 = 0x0001_0400;

/// Register offsets.
pub mod reg {
    /// Controller Capabilities (u64).
    pub const CAP: u64 = 0x00;
    /// Version.
    pub const VS: u64 = 0x08;
    /// Interrupt Mask Set.
    pub const INTMS: u64 = 0x0c;
    /// Interrupt Mask Clear.
    pub const INTMC: u64 = 0x10;
    /// Controller Configuration.
    pub const CC: u64 = 0x14;
    /// Controller Status.
    pub const CSTS: u64 = 0x1c;
    /// NVM Subsystem Reset.
    pub const NSSR: u64 = 0x20;
    /// Admin Queue Attributes.
    pub const AQA: u64 = 0x24;
    /// Admin Submission Queue base (u64).
    pub const ASQ: u64 = 0x28;
    /// Admin Completion Queue base (u64).
    pub const ACQ: u64 = 0x30;
}

/// CC.EN.
pub const CC_EN: u32 = 1;
/// CSTS.RDY.
pub const CSTS_RDY: u32 = 1;
/// CSTS.CFS (controller fatal status: the enable was refused).
pub const CSTS_CFS: u32 = 2;

/// The register block (0x00..0x40), little-endian.
#[derive(Debug)]
struct Regs([u8; 0x40]);

impl Regs {
    fn power_on() -> Self {
        let mut r = Self([0; 0x40]);
        r.set(reg::CAP, 8, CAP);
        r.set(reg::VS, 4, u64::from(VS));
        r
    }

    fn get(&self, offset: u64, width: u8) -> u64 {
        let mut v = [0u8; 8];
        let (Ok(at), w) = (usize::try_from(offset), usize::from(width)) else {
            return 0;
        };
        if let (Some(d), Some(s)) = (
            v.get_mut(..w),
            at.checked_add(w).and_then(|end| self.0.get(at..end)),
        ) {
            d.copy_from_slice(s);
        }
        u64::from_le_bytes(v)
    }

    fn set(&mut self, offset: u64, width: u8, value: u64) {
        let (Ok(at), w) = (usize::try_from(offset), usize::from(width)) else {
            return;
        };
        if let (Some(d), Some(s)) = (
            at.checked_add(w).and_then(|end| self.0.get_mut(at..end)),
            value.to_le_bytes().get(..w),
        ) {
            d.copy_from_slice(s);
        }
    }
}

/// The NVMe controller-register model. Clones share state.
#[derive(Debug, Clone)]
pub struct NvmeModel {
    regs: Arc<Mutex<Regs>>,
}

impl Default for NvmeModel {
    fn default() -> Self {
        Self {
            regs: Arc::new(Mutex::new(Regs::power_on())),
        }
    }
}

impl NvmeModel {
    /// A controller at power-on (CC.EN and CSTS.RDY clear).
    pub fn new() -> Self {
        Self::default()
    }

    /// `nvme_start_ctrl`'s checks: admin queues set, page-aligned, sized;
    /// page size and command set within CAP.
    fn can_start(r: &Regs, cc: u32) -> bool {
        let mps = (cc >> 7) & 0xf;
        let css = (cc >> 4) & 0x7;
        let mpsmin = ((CAP >> 48) & 0xf) as u32;
        let mpsmax = ((CAP >> 52) & 0xf) as u32;
        let page = 1u64 << (12 + mps.min(20));
        let asq = r.get(reg::ASQ, 8);
        let acq = r.get(reg::ACQ, 8);
        let aqa = r.get(reg::AQA, 4);
        let css_supported = (CAP >> 37) & 0xff & (1 << css) != 0;
        asq != 0
            && acq != 0
            && asq % page == 0
            && acq % page == 0
            && (mpsmin..=mpsmax).contains(&mps)
            && css_supported
            && aqa & 0xfff != 0
            && (aqa >> 16) & 0xfff != 0
    }
}

impl DeviceModel for NvmeModel {
    fn read(&self, _ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
        if bar != 0 || offset >= 0x2000 {
            return None;
        }
        // Registers past the block and the doorbells read as 0.
        Some(self.regs.lock().get(offset, width))
    }

    fn write(
        &self,
        _ctx: &DeviceContext<'_>,
        bar: u32,
        offset: u64,
        width: u8,
        value: u64,
    ) -> bool {
        if bar != 0 || offset >= 0x2000 {
            return false;
        }
        let mut r = self.regs.lock();
        let v = value as u32;
        match offset {
            reg::INTMS => {
                let mask = r.get(reg::INTMS, 4) as u32 | v;
                r.set(reg::INTMS, 4, mask.into());
                r.set(reg::INTMC, 4, mask.into());
            }
            reg::INTMC => {
                let mask = r.get(reg::INTMS, 4) as u32 & !v;
                r.set(reg::INTMS, 4, mask.into());
                r.set(reg::INTMC, 4, mask.into());
            }
            reg::CC => {
                let old = r.get(reg::CC, 4) as u32;
                r.set(reg::CC, 4, v.into());
                if v & CC_EN != 0 && old & CC_EN == 0 {
                    let csts = if Self::can_start(&r, v) {
                        CSTS_RDY
                    } else {
                        CSTS_CFS
                    };
                    r.set(reg::CSTS, 4, csts.into());
                } else if v & CC_EN == 0 && old & CC_EN != 0 {
                    // Controller reset: not ready, no fatal status.
                    r.set(reg::CSTS, 4, 0);
                }
            }
            reg::AQA => r.set(reg::AQA, 4, u64::from(v & 0x0fff_0fff)),
            reg::ASQ | reg::ACQ => r.set(offset, width.min(8), value),
            o if o == reg::ASQ + 4 || o == reg::ACQ + 4 => r.set(offset, 4, v.into()),
            // CAP, VS, CSTS, NSSR and the rest are read-only or
            // unsupported; doorbells are accepted and dropped.
            _ => {}
        }
        true
    }

    /// A function-level reset as QEMU 7.2's controller does it: CC, CSTS
    /// and the interrupt mask clear, while AQA, ASQ and ACQ keep what was
    /// written (`nvme_reset_clears_cc_and_the_interrupt_mask_but_keeps_the_admin_queues`).
    fn reset(&self) {
        let mut r = self.regs.lock();
        let kept = [(reg::AQA, 4), (reg::ASQ, 8), (reg::ACQ, 8)].map(|(o, w)| (o, w, r.get(o, w)));
        *r = Regs::power_on();
        for (offset, width, value) in kept {
            r.set(offset, width, value);
        }
    }
}

/// QEMU's NVMe controller as the guest has it: vendor 0x1b36 device
/// 0x0010, subsystem 0x1af4:0x1100, class 0x010802, revision 2, PCI
/// Express (4 KiB config space) with PM at 0x60, the PCIe capability at
/// 0x80 and MSI-X at 0x40 (list order MSI-X, PCIe, PM), BAR0 16 KiB 64-bit
/// non-prefetchable MMIO holding the registers, the MSI-X table and the
/// PBA, 65 MSI-X vectors, no MSI, INTA#, and FLR (vfio-pci can reset it:
/// `nvme_advertises_reset_and_resets`).
pub fn nvme() -> PciDeviceBuilder {
    nvme_with_vectors(MSIX_VECTORS)
}

/// QEMU's NVMe controller with `vectors` MSI-X vectors (its `msix_qsize`,
/// 1 to 2048) and the default 64 I/O queue pairs: BAR0 laid out as QEMU's
/// `nvme_bar_size` does, see [`bar0_layout`].
pub fn nvme_with_vectors(vectors: u16) -> PciDeviceBuilder {
    let (size, table, pba) = bar0_layout(IO_QUEUE_PAIRS + 1, u32::from(vectors));
    PciDeviceBuilder::new(0x1b36, 0x0010)
        .subsystem(0x1af4, 0x1100)
        .class(0x010802)
        .revision(2)
        .interrupt_pin(1)
        .pm()
        .at(0x60)
        .pcie()
        .at(0x80)
        .bar(0, BarSpec::memory64(size))
        .msix(vectors, 0, table, 0, pba)
        .can_reset(true)
        .model(NvmeModel::new())
}

/// QEMU's default number of I/O queue pairs (`max_ioqpairs`).
const IO_QUEUE_PAIRS: u32 = 64;

/// BAR0's size and the offsets of the MSI-X table and PBA for `queues`
/// queues (admin included) and `vectors` vectors, as QEMU 7.2's
/// `nvme_bar_size` computes them: the 4 KiB register block and two doorbells
/// per queue, rounded up to 4 KiB; the table (16 bytes a vector), rounded
/// up to 4 KiB; the PBA (a bit a vector, in 64-bit words); the whole rounded
/// up to a power of two.
pub fn bar0_layout(queues: u32, vectors: u32) -> (u64, u32, u32) {
    let align = |n: u32| n.next_multiple_of(4096);
    let table = align(4096 + 2 * queues * 4);
    let pba = align(table + 16 * vectors);
    let end = pba + vectors.next_multiple_of(64) / 8;
    (u64::from(end).next_power_of_two(), table, pba)
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn the_default_layout_is_qemus() {
        assert_eq!(
            bar0_layout(IO_QUEUE_PAIRS + 1, u32::from(MSIX_VECTORS)),
            (BAR0_SIZE, MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET)
        );
    }

    #[test]
    fn two_thousand_vectors_need_a_64_kib_bar() {
        assert_eq!(bar0_layout(65, 2048), (64 << 10, 0x2000, 0xa000));
    }
}
