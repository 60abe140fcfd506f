//! A BAR mapped into the process: every access is checked, then goes to
//! the device's model or BAR memory, exactly as `read_region` does.

use crate::device::OpenDevice;
use nix::errno::Errno;
use std::sync::Arc;
use vfio_core::access::check_register_access;
use vfio_core::{Error, ErrorKind, MappedRegion, Operation, Result, SparseArea};

/// A mapped BAR of a [`MockDevice`](crate::MockDevice). It keeps the
/// device open, as a real mapping keeps the device file open.
#[derive(Debug)]
pub struct MockRegion {
    open: Arc<OpenDevice>,
    bar: u32,
    len: u64,
    writable: bool,
    /// Where offset 0 of the mapping is in the BAR (a partial mapping).
    base: u64,
    /// The mapped areas of a sparse mapping, in BAR offsets.
    areas: Option<Arc<[SparseArea]>>,
}

impl MockRegion {
    pub(crate) fn new(open: Arc<OpenDevice>, bar: u32, len: u64, writable: bool) -> Self {
        Self {
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
        self
    }

    /// Only `areas` of the BAR are mapped.
    pub(crate) fn sparse(mut self, areas: &[SparseArea]) -> Self {
        self.areas = Some(areas.iter().copied().filter(|a| a.size != 0).collect());
        self
    }

    /// The checks of an access before it reaches the device: bounds and
    /// alignment, an injected fault, a removed device (NotFound: the kernel
    /// would have torn the mapping down), memory decoding turned off (a
    /// real mapping would raise SIGBUS; like vfio-linux's regions, the mock
    /// returns EIO, as a read through the device file does).
    #[inline]
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
            return Err(Error::from_errno(op, errno));
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

    #[inline]
    fn read(&self, offset: u64, width: u8) -> Result<u64> {
        self.enter(Operation::RegisterRead, offset, width)?;
        Ok(self
            .open
            .device
            .mmio_read(self.bar, self.base + offset, width))
    }

    #[inline]
    fn write(&self, offset: u64, width: u8, value: u64) -> Result<()> {
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

impl MappedRegion for MockRegion {
    fn len(&self) -> u64 {
        self.len
    }
    fn read_u8(&self, offset: u64) -> Result<u8> {
        self.read(offset, 1).map(|v| v as u8)
    }
    fn read_u16(&self, offset: u64) -> Result<u16> {
        self.read(offset, 2).map(|v| v as u16)
    }
    fn read_u32(&self, offset: u64) -> Result<u32> {
        self.read(offset, 4).map(|v| v as u32)
    }
    fn read_u64(&self, offset: u64) -> Result<u64> {
        self.read(offset, 8)
    }
    fn write_u8(&self, offset: u64, value: u8) -> Result<()> {
        self.write(offset, 1, value.into())
    }
    fn write_u16(&self, offset: u64, value: u16) -> Result<()> {
        self.write(offset, 2, value.into())
    }
    fn write_u32(&self, offset: u64, value: u32) -> Result<()> {
        self.write(offset, 4, value.into())
    }
    fn write_u64(&self, offset: u64, value: u64) -> Result<()> {
        self.write(offset, 8, value)
    }
}
