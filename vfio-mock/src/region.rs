//! A BAR mapped into the process: every access is checked, then goes to
//! the device's model or BAR memory, exactly as `read_region` does.

use crate::bar::BarMemory;
use crate::device::OpenDevice;
use crate::fault::Faults;
use crate::pci_device::PciDevice;
use nix::errno::Errno;
use std::sync::Arc;
use vfio_core::access::check_register_access;
use vfio_core::{Error, ErrorKind, MappedRegion, Operation, Result, SparseArea};

/// A mapped BAR of a [`MockDevice`](crate::MockDevice). It keeps the
/// device open, as a real mapping keeps the device file open.
///
/// An access to plain BAR memory (a device with no model, or the MSI-X
/// table and PBA, which are never the model's) takes a lock-free fast
/// path: the checked path's checks (bounds and alignment, a planned fault,
/// removal, memory decode) in its order, inlined, then one atomic load or
/// read-modify-write of the BAR's word. Anything else (a sparse mapping, a
/// read-only one's writes, a register a model may claim) and every
/// refusal take the checked path, which gives the same answers as before.
#[derive(Debug)]
pub struct MockRegion {
    open: Arc<OpenDevice>,
    /// `open.device`, one pointer away.
    device: Arc<PciDevice>,
    bar: u32,
    len: u64,
    writable: bool,
    /// Where offset 0 of the mapping is in the BAR (a partial mapping).
    base: u64,
    /// The mapped areas of a sparse mapping, in BAR offsets.
    areas: Option<Arc<[SparseArea]>>,
    /// The command register bit that lets the BAR decode.
    decode_bit: u16,
    /// The BAR's memory, for the fast path: none if the mapping does not
    /// lie inside it, 8-byte aligned (never the case for a mapping the
    /// device gave out), so that an access that fits the mapping fits the
    /// BAR with the same alignment.
    memory: Option<Arc<BarMemory>>,
    /// The host's planned faults (`device.faults`), one pointer away.
    faults: Arc<Faults>,
    /// The BAR offsets no model claims, as (start, length): see
    /// [`PciDevice::plain_ranges`].
    plain: [(u64, u64); 2],
}

impl MockRegion {
    pub(crate) fn new(open: Arc<OpenDevice>, bar: u32, len: u64, writable: bool) -> Self {
        let device = open.device.clone();
        Self {
            decode_bit: device.decode_bit(bar),
            memory: device.bar_memory(bar).filter(|m| len <= m.len()),
            faults: device.faults.clone(),
            plain: device.plain_ranges(bar),
            device,
            open,
            bar,
            len,
            writable,
            base: 0,
            areas: None,
        }
    }

    /// `len` bytes of the BAR from `base`.
    pub(crate) fn range(mut self, base: u64) -> Self {
        self.base = base;
        let len = self.len;
        self.memory = self
            .memory
            .take()
            .filter(|m| base % 8 == 0 && base.checked_add(len).is_some_and(|end| end <= m.len()));
        self
    }

    /// Only `areas` of the BAR are mapped.
    pub(crate) fn sparse(mut self, areas: &[SparseArea]) -> Self {
        self.areas = Some(areas.iter().copied().filter(|a| a.size != 0).collect());
        // Holes are refused on the checked path.
        self.memory = None;
        self
    }

    /// Whether an access of `width` bytes at `offset` can take the fast
    /// path, as far as the mapping itself decides: in bounds, aligned, and
    /// plain memory (its first byte outside any register a model may
    /// claim, as `mmio_read` decides). A sparse mapping has no fast path.
    #[inline(always)]
    fn plain(&self, offset: u64, width: u8) -> bool {
        let width = u64::from(width);
        let fits = (offset & (width - 1) == 0)
            & offset.checked_add(width).is_some_and(|end| end <= self.len);
        let at = self.base.wrapping_add(offset);
        let [(s0, l0), (s1, l1)] = self.plain;
        let plain = (at.wrapping_sub(s0) < l0) | (at.wrapping_sub(s1) < l1);
        fits & plain
    }

    /// The device-side checks of the fast path, in [`enter`](Self::enter)'s
    /// order: a planned fault is taken and returned here; a removed
    /// device or decode off gives false, and the checked path the answer.
    #[inline(always)]
    fn live(&self, op: Operation) -> Result<bool> {
        let device = &*self.device;
        if let Some(errno) = self.faults.take(op) {
            return Err(fault(op, errno));
        }
        Ok(!device.is_removed() & (device.command() & self.decode_bit != 0))
    }

    /// The checks of an access before it reaches the device: bounds and
    /// alignment, an injected fault, a removed device (NotFound: the kernel
    /// would have torn the mapping down), memory decoding turned off (a
    /// real mapping would raise SIGBUS; like vfio-linux's regions, the mock
    /// returns EIO, as a read through the device file does).
    fn enter(&self, op: Operation, offset: u64, width: u8) -> Result<()> {
        check_register_access(op, self.len, offset, u64::from(width))?;
        if let Some(areas) = &self.areas {
            let end = offset + u64::from(width);
            if !areas
                .iter()
                .any(|a| offset >= a.offset && end <= a.offset.saturating_add(a.size))
            {
                return Err(vfio_core::uapi::sparse_hole(op, offset, u64::from(width)));
            }
        }
        let device = &self.open.device;
        if let Some(errno) = device.faults.take(op) {
            return Err(fault(op, errno));
        }
        if device.is_removed() {
            return Err(Error::new(op, ErrorKind::NotFound)
                .with_target(device.address)
                .with_detail("the device has been removed"));
        }
        if !device.decodes(self.bar) {
            return Err(Error::from_errno(op, Errno::EIO)
                .with_target(device.address)
                .with_detail(
                    "memory decoding is off in the command register (hardware would raise SIGBUS)",
                ));
        }
        Ok(())
    }

    #[inline(always)]
    fn read(&self, offset: u64, width: u8) -> Result<u64> {
        if let Some(memory) = &self.memory {
            if self.plain(offset, width) && self.live(Operation::RegisterRead)? {
                return Ok(memory.read_fitting(self.base.wrapping_add(offset), width));
            }
        }
        self.read_checked(offset, width)
    }

    #[inline(never)]
    fn read_checked(&self, offset: u64, width: u8) -> Result<u64> {
        self.enter(Operation::RegisterRead, offset, width)?;
        Ok(self
            .open
            .device
            .mmio_read(self.bar, self.base + offset, width))
    }

    #[inline(always)]
    fn write(&self, offset: u64, width: u8, value: u64) -> Result<()> {
        if let Some(memory) = self.memory.as_ref().filter(|_| self.writable) {
            if self.plain(offset, width) && self.live(Operation::RegisterWrite)? {
                memory.write_fitting(self.base.wrapping_add(offset), width, value);
                return Ok(());
            }
        }
        self.write_checked(offset, width, value)
    }

    #[inline(never)]
    fn write_checked(&self, offset: u64, width: u8, value: u64) -> Result<()> {
        self.enter(Operation::RegisterWrite, offset, width)?;
        if !self.writable {
            return Err(
                Error::new(Operation::RegisterWrite, ErrorKind::PermissionDenied)
                    .with_detail("the region was mapped read-only"),
            );
        }
        self.open
            .device
            .mmio_write(self.bar, self.base + offset, width, value);
        Ok(())
    }
}

/// The error of a planned fault.
#[cold]
#[inline(never)]
fn fault(op: Operation, errno: Errno) -> Error {
    Error::from_errno(op, errno)
}

impl MappedRegion for MockRegion {
    fn len(&self) -> u64 {
        self.len
    }
    #[inline(always)]
    fn read_u8(&self, offset: u64) -> Result<u8> {
        self.read(offset, 1).map(|v| v as u8)
    }
    #[inline(always)]
    fn read_u16(&self, offset: u64) -> Result<u16> {
        self.read(offset, 2).map(|v| v as u16)
    }
    #[inline(always)]
    fn read_u32(&self, offset: u64) -> Result<u32> {
        self.read(offset, 4).map(|v| v as u32)
    }
    #[inline(always)]
    fn read_u64(&self, offset: u64) -> Result<u64> {
        self.read(offset, 8)
    }
    #[inline(always)]
    fn write_u8(&self, offset: u64, value: u8) -> Result<()> {
        self.write(offset, 1, value.into())
    }
    #[inline(always)]
    fn write_u16(&self, offset: u64, value: u16) -> Result<()> {
        self.write(offset, 2, value.into())
    }
    #[inline(always)]
    fn write_u32(&self, offset: u64, value: u32) -> Result<()> {
        self.write(offset, 4, value.into())
    }
    #[inline(always)]
    fn write_u64(&self, offset: u64, value: u64) -> Result<()> {
        self.write(offset, 8, value)
    }
}
