//! An opened vfio device: info, region I/O, mmap, reset and interrupts.

use crate::memory::LinuxRegion;
use crate::mmap::Mapping;
use crate::{LinuxBackend, sys};
use nix::sys::uio::{pread, pwrite};
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
};
use vfio_core::parse::vfio_caps;
use vfio_core::{
    Device, DeviceFlags, DeviceInfo, Error, ErrorKind, IrqAction, IrqData, IrqFlags, IrqIndex,
    IrqInfo, Operation, RegionFlags, RegionInfo, Result,
};

/// How many region infos a device caches at open, whatever `num_regions`
/// the kernel reports (a `u32`: a buggy or hostile answer could ask for four
/// billion ioctls and entries). vfio-pci has 9 fixed regions (BAR0-5, ROM,
/// config space, VGA: `VFIO_PCI_NUM_REGIONS`) and device-specific ones after
/// them (Intel IGD's OpRegion and bridge config spaces, NVLink2's), a
/// handful at most. Regions past the bound are queried when asked for.
pub(crate) const MAX_CACHED_REGIONS: u32 = 16;

/// A device fd from `VFIO_GROUP_GET_DEVICE_FD`.
///
/// Opening it reads the infos of its first 16 regions (all of vfio-pci's
/// fixed ones and room for device-specific ones), however many regions the
/// kernel reports; [`region_info`](Device::region_info) and region I/O ask
/// the kernel again for any region beyond those.
#[derive(Debug)]
pub struct LinuxDevice {
    file: File,
    name: String,
    /// Region infos read once at open: offsets and sizes do not change while
    /// the device is open, and reading them per access would cost an ioctl.
    /// `None` where the kernel refused the query (vfio-pci answers EINVAL for
    /// the VGA region of a device that is not VGA). At most
    /// [`MAX_CACHED_REGIONS`] long.
    regions: Vec<Option<RegionInfo>>,
}

/// The region infos to cache for a device reporting `num_regions`: those of
/// the first [`MAX_CACHED_REGIONS`] at most, `None` for each the kernel
/// refuses with EINVAL; any other error is the open's.
fn cache_regions(
    num_regions: u32,
    mut query: impl FnMut(u32) -> Result<RegionInfo>,
) -> Result<Vec<Option<RegionInfo>>> {
    (0..num_regions.min(MAX_CACHED_REGIONS))
        .map(|i| match query(i) {
            Ok(region) => Ok(Some(region)),
            Err(e) if e.kind() == ErrorKind::InvalidArgument => Ok(None),
            Err(e) => Err(e),
        })
        .collect()
}

impl LinuxDevice {
    pub(crate) fn new(file: File, name: String) -> Result<Self> {
        let mut device = Self {
            file,
            name,
            regions: Vec::new(),
        };
        let info = device.info()?;
        device.regions = cache_regions(info.num_regions, |i| device.query_region_info(i))?;
        Ok(device)
    }

    fn err(&self, op: Operation, errno: nix::errno::Errno) -> Error {
        Error::from_errno(op, errno).with_target(&self.name)
    }

    fn query_region_info(&self, index: u32) -> Result<RegionInfo> {
        let buf = sys::device_get_region_info(self.as_fd(), index)
            .map_err(|e| self.err(Operation::RegionInfo, e))?;
        let (header, _) = <sys::RegionInfoHeader as zerocopy::FromBytes>::read_from_prefix(&buf)
            .map_err(|_| {
                Error::new(Operation::RegionInfo, ErrorKind::Malformed).with_target(&self.name)
            })?;
        let flags = RegionFlags(header.flags);
        let caps = if flags.contains(RegionFlags::CAPS) {
            vfio_caps::region_caps(&buf, header.cap_offset).map_err(|e| {
                Error::new(Operation::RegionInfo, ErrorKind::Malformed)
                    .with_target(&self.name)
                    .with_source(e)
            })?
        } else {
            Vec::new()
        };
        Ok(RegionInfo {
            index,
            flags,
            size: header.size,
            offset: header.offset,
            caps,
        })
    }

    /// The file offset of `offset` within region `index`, refusing offsets at
    /// or past the region's end (they would alias the next region). A
    /// region past the cache is queried (one ioctl per access).
    fn file_offset(&self, op: Operation, index: u32, offset: u64) -> Result<u64> {
        let queried;
        let region = match self.regions.get(index as usize) {
            Some(Some(region)) => region,
            Some(None) => {
                return Err(Error::new(op, ErrorKind::InvalidArgument)
                    .with_target(&self.name)
                    .with_detail(format_args!("no region {index}")));
            }
            None => {
                queried = self.query_region_info(index).map_err(|e| {
                    Error::new(op, e.kind())
                        .with_target(&self.name)
                        .with_detail(format_args!("no region {index}"))
                        .with_source(e)
                })?;
                &queried
            }
        };
        if offset >= region.size {
            return Err(Error::new(op, ErrorKind::OutOfRange)
                .with_target(&self.name)
                .with_detail(format_args!(
                    "offset {offset:#x} is past the end of region {index} ({:#x} bytes)",
                    region.size
                )));
        }
        region
            .offset
            .checked_add(offset)
            .ok_or_else(|| Error::new(op, ErrorKind::OutOfRange).with_target(&self.name))
    }
}

impl AsFd for LinuxDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// The `VFIO_IRQ_SET_DATA_*` flag and payload bytes for `data`.
fn irq_payload(data: &IrqData<'_>) -> (u32, Vec<u8>) {
    match data {
        IrqData::None { .. } => (VFIO_IRQ_SET_DATA_NONE, Vec::new()),
        IrqData::Bool(flags) => (
            VFIO_IRQ_SET_DATA_BOOL,
            flags.iter().map(|&b| u8::from(b)).collect(),
        ),
        IrqData::Eventfds(fds) => (
            VFIO_IRQ_SET_DATA_EVENTFD,
            fds.iter()
                .flat_map(|fd| fd.map_or(-1, |fd| fd.as_raw_fd()).to_ne_bytes())
                .collect(),
        ),
    }
}

impl Device<LinuxBackend> for LinuxDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> Result<DeviceInfo> {
        let info =
            sys::device_get_info(self.as_fd()).map_err(|e| self.err(Operation::DeviceInfo, e))?;
        Ok(DeviceInfo {
            flags: DeviceFlags(info.flags),
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        })
    }

    fn region_info(&self, index: u32) -> Result<RegionInfo> {
        match self.regions.get(index as usize) {
            Some(Some(info)) => Ok(info.clone()),
            // Refused at open or past the table: let the kernel give its answer.
            _ => self.query_region_info(index),
        }
    }

    fn irq_info(&self, index: IrqIndex) -> Result<IrqInfo> {
        let info = sys::device_get_irq_info(self.as_fd(), index.0)
            .map_err(|e| self.err(Operation::IrqInfo, e))?;
        Ok(IrqInfo {
            index,
            flags: IrqFlags(info.flags),
            count: info.count,
        })
    }

    fn reset(&self) -> Result<()> {
        sys::device_reset(self.as_fd()).map_err(|e| self.err(Operation::Reset, e))
    }

    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let at = self.file_offset(Operation::RegionRead, index, offset)?;
        let at = i64::try_from(at)
            .map_err(|_| Error::new(Operation::RegionRead, ErrorKind::OutOfRange))?;
        pread(&self.file, buf, at).map_err(|e| self.err(Operation::RegionRead, e))
    }

    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize> {
        let at = self.file_offset(Operation::RegionWrite, index, offset)?;
        let at = i64::try_from(at)
            .map_err(|_| Error::new(Operation::RegionWrite, ErrorKind::OutOfRange))?;
        pwrite(&self.file, buf, at).map_err(|e| self.err(Operation::RegionWrite, e))
    }

    fn map_region(&self, index: u32) -> Result<LinuxRegion> {
        let region = self.region_info(index)?;
        if !region.flags.contains(RegionFlags::MMAP) {
            return Err(Error::new(Operation::MapRegion, ErrorKind::Unsupported)
                .with_target(&self.name)
                .with_detail(format_args!("region {index} cannot be mmapped")));
        }
        let len = usize::try_from(region.size)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| {
                Error::new(Operation::MapRegion, ErrorKind::InvalidArgument)
                    .with_target(&self.name)
                    .with_detail(format_args!("region {index} has size {:#x}", region.size))
            })?;
        let writable = region.flags.contains(RegionFlags::WRITE);
        let map = Mapping::map_file(self.as_fd(), region.offset, len, writable)
            .map_err(|e| self.err(Operation::MapRegion, e))?;
        Ok(LinuxRegion::new(map, writable))
    }

    fn set_irqs(
        &self,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        let count = u32::try_from(data.count()).map_err(|_| {
            Error::new(Operation::SetIrqs, ErrorKind::InvalidArgument).with_target(&self.name)
        })?;
        let action = match action {
            IrqAction::Mask => VFIO_IRQ_SET_ACTION_MASK,
            IrqAction::Unmask => VFIO_IRQ_SET_ACTION_UNMASK,
            IrqAction::Trigger => VFIO_IRQ_SET_ACTION_TRIGGER,
        };
        if let IrqData::Eventfds(fds) = &data {
            vfio_core::check_eventfds(fds).map_err(|e| e.with_target(&self.name))?;
        }
        let (data_flag, payload) = irq_payload(&data);
        let header = sys::IrqSetHeader {
            argsz: 0,
            flags: action | data_flag,
            index: index.0,
            start,
            count,
        };
        sys::device_set_irqs(self.as_fd(), header, &payload).map_err(|e| {
            self.err(Operation::SetIrqs, e).with_detail(format_args!(
                "{index} vectors {start}..{}",
                u64::from(start) + u64::from(count)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use vfio_core::EventFdInterrupt;

    #[test]
    fn an_eventfd_payload_has_one_entry_per_vector_whatever_the_count() {
        let irq = EventFdInterrupt::new().unwrap();
        let raw = irq.as_fd().as_raw_fd();
        // 2048 vectors (the MSI-X maximum), every third one unbound (fd -1).
        let fds: Vec<Option<BorrowedFd<'_>>> = (0..2048)
            .map(|i| (i % 3 != 0).then(|| irq.as_fd()))
            .collect();
        let (flag, payload) = irq_payload(&IrqData::Eventfds(&fds));
        assert_eq!(flag, VFIO_IRQ_SET_DATA_EVENTFD);
        assert_eq!(payload.len(), 2048 * 4);
        for (i, entry) in payload.chunks_exact(4).enumerate() {
            let fd = i32::from_ne_bytes(entry.try_into().unwrap());
            assert_eq!(fd, if i % 3 == 0 { -1 } else { raw }, "entry {i}");
        }
    }

    fn region(index: u32) -> RegionInfo {
        RegionInfo {
            index,
            flags: RegionFlags(0),
            size: 0x1000,
            offset: u64::from(index) << 40,
            caps: Vec::new(),
        }
    }

    #[test]
    fn a_huge_region_count_caches_a_bounded_number_of_infos() {
        let mut calls = 0u32;
        let regions = cache_regions(u32::MAX, |i| {
            calls += 1;
            Ok(region(i))
        })
        .unwrap();
        assert_eq!(calls, MAX_CACHED_REGIONS);
        assert_eq!(regions.len(), MAX_CACHED_REGIONS as usize);
        assert_eq!(regions[15].as_ref().map(|r| r.index), Some(15));
    }

    #[test]
    fn refused_regions_are_holes_and_other_errors_fail_the_open() {
        let regions = cache_regions(9, |i| {
            if i == 8 {
                Err(Error::from_errno(
                    Operation::RegionInfo,
                    nix::errno::Errno::EINVAL,
                ))
            } else {
                Ok(region(i))
            }
        })
        .unwrap();
        assert_eq!(regions.len(), 9);
        assert!(regions[7].is_some() && regions[8].is_none());
        let e = cache_regions(9, |_| {
            Err(Error::from_errno(
                Operation::RegionInfo,
                nix::errno::Errno::EIO,
            ))
        })
        .unwrap_err();
        assert_eq!(e.errno(), Some(nix::errno::Errno::EIO));
        assert_eq!(cache_regions(0, |_| unreachable!()).unwrap().len(), 0);
    }

    #[test]
    fn bool_and_none_payloads() {
        let (flag, payload) = irq_payload(&IrqData::Bool(&[true, false, true]));
        assert_eq!((flag, payload), (VFIO_IRQ_SET_DATA_BOOL, vec![1, 0, 1]));
        let (flag, payload) = irq_payload(&IrqData::None { count: 5 });
        assert_eq!((flag, payload.len()), (VFIO_IRQ_SET_DATA_NONE, 0));
    }
}
