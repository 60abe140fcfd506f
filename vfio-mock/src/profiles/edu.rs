//! QEMU's `edu` educational device (QEMU `docs/specs/edu.rst`, `hw/misc/edu.c`).
//!
//! Differences from QEMU, all in timing: the factorial is computed at once
//! when 0x08 is written (QEMU uses a thread, so the "computing" bit 0 of
//! 0x20 is never seen set here), and a DMA runs when the command register
//! is written (QEMU waits 100 ms of virtual time). A driver that polls the
//! status bits or waits for the interrupt works on both. Where QEMU would
//! stop the whole VM (a DMA outside the device buffer: `hw_error`), the
//! mock drops the transfer and records it in [`EduModel::last_dma_fault`].

use crate::builder::{BarSpec, PciDeviceBuilder};
use crate::model::{DeviceContext, DeviceModel, DmaFault, Irq};
use parking_lot::Mutex;
use std::sync::Arc;

/// The identification register: major 1, minor 0, "ed".
pub const ID: u32 = 0x0100_00ed;
/// Status bit: a factorial is being computed.
pub const STATUS_COMPUTING: u32 = 0x01;
/// Status bit: raise an interrupt when a factorial is done.
pub const STATUS_IRQ_FACT: u32 = 0x80;
/// Interrupt status bit for a finished factorial.
pub const IRQ_FACT: u32 = 0x0000_0001;
/// Interrupt status bit for a finished DMA.
pub const IRQ_DMA: u32 = 0x0000_0100;
/// DMA command: start.
pub const DMA_RUN: u64 = 1;
/// DMA command: direction device to RAM (clear: RAM to device).
pub const DMA_TO_RAM: u64 = 2;
/// DMA command: raise [`IRQ_DMA`] when done.
pub const DMA_IRQ: u64 = 4;
/// The device address of the DMA buffer.
pub const DMA_BUFFER: u64 = 0x40000;
/// The size of the DMA buffer.
pub const DMA_BUFFER_SIZE: usize = 4096;
/// QEMU's default `dma_mask`: DMA addresses are cut to 28 bits.
pub const DMA_MASK: u64 = (1 << 28) - 1;

#[derive(Debug)]
struct State {
    /// What 0x04 reads: the inverse of the last value written.
    liveness: u32,
    fact: u32,
    status: u32,
    irq_status: u32,
    dma_src: u64,
    dma_dst: u64,
    dma_cnt: u64,
    dma_cmd: u64,
    buffer: Box<[u8]>,
    last_dma_fault: Option<DmaFault>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            liveness: 0,
            fact: 0,
            status: 0,
            irq_status: 0,
            dma_src: 0,
            dma_dst: 0,
            dma_cnt: 0,
            dma_cmd: 0,
            buffer: vec![0; DMA_BUFFER_SIZE].into_boxed_slice(),
            last_dma_fault: None,
        }
    }
}

/// The `edu` register model. Clones share state, so a test can keep one
/// to inspect the device: `profiles::edu().model(model.clone())`.
#[derive(Debug, Clone, Default)]
pub struct EduModel {
    state: Arc<Mutex<State>>,
}

impl EduModel {
    /// A device at power-on.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last DMA the device could not do: an IOMMU fault, bus mastering
    /// off, or (where QEMU would abort) a range outside its buffer.
    pub fn last_dma_fault(&self) -> Option<DmaFault> {
        self.state.lock().last_dma_fault
    }

    /// A copy of the device's 4 KiB DMA buffer.
    pub fn buffer(&self) -> Vec<u8> {
        self.state.lock().buffer.to_vec()
    }

    /// `edu_raise_irq`: OR into the status; MSI if enabled, else assert INTx.
    fn raise(ctx: &DeviceContext<'_>, s: &mut State, bits: u32) {
        s.irq_status |= bits;
        if s.irq_status != 0 {
            if ctx.msi_enabled() {
                ctx.raise(Irq::Msi(0));
            } else {
                ctx.raise(Irq::Intx);
            }
        }
    }

    /// `edu_lower_irq`: clear bits; deassert INTx once none are left.
    fn lower(ctx: &DeviceContext<'_>, s: &mut State, bits: u32) {
        s.irq_status &= !bits;
        if s.irq_status == 0 && !ctx.msi_enabled() {
            ctx.lower_intx();
        }
    }

    /// The DMA engine, run as soon as the command is written.
    fn run_dma(ctx: &DeviceContext<'_>, s: &mut State) {
        let to_ram = s.dma_cmd & DMA_TO_RAM != 0;
        let (device_side, ram_side) = if to_ram {
            (s.dma_src, s.dma_dst)
        } else {
            (s.dma_dst, s.dma_src)
        };
        let in_buffer = device_side
            .checked_sub(DMA_BUFFER)
            .and_then(|start| Some((start, start.checked_add(s.dma_cnt)?)))
            .filter(|&(_, end)| end <= DMA_BUFFER_SIZE as u64)
            .and_then(|(start, end)| {
                Some(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
            });
        let result = match in_buffer {
            None => Err(DmaFault::Unmapped {
                iova: device_side,
                completed: 0,
            }),
            Some(range) => {
                let iova = ram_side & DMA_MASK;
                let Some(chunk) = s.buffer.get_mut(range) else {
                    return;
                };
                if to_ram {
                    ctx.dma_write(iova, chunk)
                } else {
                    // QEMU's DMA read gives zeros for the bytes the IOMMU
                    // refuses (`dma_across_the_end_of_a_mapping_moves_the_mapped_part_and_faults_the_rest`).
                    chunk.fill(0);
                    ctx.dma_read(iova, chunk)
                }
            }
        };
        if let Err(fault) = result {
            s.last_dma_fault = Some(fault);
        }
        s.dma_cmd &= !DMA_RUN;
        if s.dma_cmd & DMA_IRQ != 0 {
            Self::raise(ctx, s, IRQ_DMA);
        }
    }
}

/// n! modulo 2^32, as the device computes it. From 34! on the product has
/// 32 factors of two and is 0, so the loop stops there: a hostile n costs
/// at most 34 multiplications, not four billion.
fn factorial(n: u32) -> u32 {
    (1..=n.min(34)).fold(1u32, |acc, k| acc.wrapping_mul(k))
}

impl DeviceModel for EduModel {
    fn read(&self, _ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
        if bar != 0 {
            return None;
        }
        // QEMU's memory core refuses accesses narrower than 4 bytes (they
        // read as 0); the device answers all-ones where it has no register.
        if width < 4 {
            return Some(0);
        }
        let s = self.state.lock();
        let value = match (offset, width) {
            (0x00..0x80, 8) => u64::MAX,
            (0x00, _) => u64::from(ID),
            (0x04, _) => u64::from(s.liveness),
            (0x08, _) => u64::from(s.fact),
            (0x20, _) => u64::from(s.status),
            (0x24, _) => u64::from(s.irq_status),
            (0x80, _) => s.dma_src,
            (0x88, _) => s.dma_dst,
            (0x90, _) => s.dma_cnt,
            (0x98, _) => s.dma_cmd,
            _ => u64::MAX,
        };
        Some(if width == 4 {
            value & 0xffff_ffff
        } else {
            value
        })
    }

    fn write(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8, value: u64) -> bool {
        if bar != 0 {
            return false;
        }
        // Registers below 0x80 take 4-byte writes only, the DMA ones 4 or 8.
        if width < 4 || (offset < 0x80 && width != 4) {
            return true;
        }
        let v32 = value as u32;
        let mut s = self.state.lock();
        match offset {
            0x04 => s.liveness = !v32,
            0x08 if s.status & STATUS_COMPUTING == 0 => {
                s.fact = factorial(v32);
                if s.status & STATUS_IRQ_FACT != 0 {
                    Self::raise(ctx, &mut s, IRQ_FACT);
                }
            }
            0x20 => s.status = (s.status & !STATUS_IRQ_FACT) | (v32 & STATUS_IRQ_FACT),
            0x60 => Self::raise(ctx, &mut s, v32),
            0x64 => Self::lower(ctx, &mut s, v32),
            // DMA registers are ignored while a transfer runs (never, here).
            0x80 if s.dma_cmd & DMA_RUN == 0 => s.dma_src = value,
            0x88 if s.dma_cmd & DMA_RUN == 0 => s.dma_dst = value,
            0x90 if s.dma_cmd & DMA_RUN == 0 => s.dma_cnt = value,
            0x98 if value & DMA_RUN != 0 && s.dma_cmd & DMA_RUN == 0 => {
                s.dma_cmd = value;
                Self::run_dma(ctx, &mut s);
            }
            _ => {}
        }
        true
    }

    fn reset(&self) {
        *self.state.lock() = State::default();
    }
}

/// QEMU's `edu` as the guest has it: vendor 0x1234, device 0x11e8,
/// revision 0x10, class 0x00ff00, subsystem 0x1af4:0x1100, conventional
/// PCI (256-byte config space), BAR0 1 MiB 32-bit non-prefetchable MMIO,
/// INTA#, one 64-bit MSI vector (no per-vector masking, no MSI-X), and no
/// reset method vfio-pci can use.
pub fn edu() -> PciDeviceBuilder {
    PciDeviceBuilder::new(0x1234, 0x11e8)
        .revision(0x10)
        .class(0x00ff00)
        .bar(0, BarSpec::memory32(1 << 20))
        .interrupt_pin(1)
        .msi(1, true, false)
        .model(EduModel::new())
}

#[cfg(test)]
mod tests {
    use super::factorial;

    #[test]
    fn factorial_wraps_like_the_device_and_a_huge_n_is_cheap() {
        assert_eq!(factorial(0), 1);
        assert_eq!(factorial(12), 479_001_600);
        assert_eq!(factorial(13), 1_932_053_504);
        assert_eq!(factorial(33), 2_147_483_648);
        assert_eq!(factorial(34), 0);
        assert_eq!(factorial(u32::MAX), 0);
    }
}
