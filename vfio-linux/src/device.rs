//! An opened vfio device: info, region I/O, mmap, reset and interrupts.

use crate::decode::{self, MemoryDecode};
use crate::memory::LinuxRegion;
use crate::mmap::Mapping;
use crate::{LinuxBackend, sys};
use nix::errno::Errno;
use nix::sys::uio::{pread, pwrite};
use std::fs::File;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::OnceLock;
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
};
use vfio_core::parse::vfio_caps;
use vfio_core::{
    Device, DeviceFlags, DeviceInfo, Error, ErrorKind, IrqAction, IrqData, IrqFlags, IrqIndex,
    IrqInfo, IrqTracker, Operation, RegionFlags, RegionInfo, Result, region,
};

/// How many region infos a device caches at open, whatever `num_regions`
/// the kernel reports (a `u32`: a buggy or hostile answer could ask for four
/// billion ioctls and entries). vfio-pci has 9 fixed regions (BAR0-5, ROM,
/// config space, VGA: `VFIO_PCI_NUM_REGIONS`) and device-specific ones after
/// them (Intel IGD's OpRegion and bridge config spaces, NVLink2's), a
/// handful at most. Regions past the bound are queried when asked for.
pub(crate) const MAX_CACHED_REGIONS: u32 = 16;

/// A device fd from `VFIO_GROUP_GET_DEVICE_FD`, or a device cdev
/// (`/dev/vfio/devices/vfioN`).
///
/// Opening it through its group reads the infos of its first 16 regions
/// (all of vfio-pci's fixed ones and room for device-specific ones),
/// however many regions the kernel reports; [`region_info`](Device::region_info)
/// and region I/O ask the kernel again for any region beyond those. A cdev
/// answers nothing before it is bound to an iommufd, so its infos are read
/// when [`bind_iommufd`](Device::bind_iommufd) succeeds; until then every
/// call goes to the kernel, which refuses it with EINVAL. The interrupt
/// tracking and the memory-decode gate work the same on both.
///
/// The cdev calls (`VFIO_DEVICE_BIND_IOMMUFD`,
/// `VFIO_DEVICE_{ATTACH,DETACH}_IOMMUFD_PT`) and their errnos, from Linux
/// 6.12's `drivers/vfio/device_cdev.c` and `drivers/iommu/iommufd/device.c`,
/// are documented on the methods.
#[derive(Debug)]
pub struct LinuxDevice {
    file: File,
    name: String,
    /// Region infos read once at open: offsets and sizes do not change while
    /// the device is open, and reading them per access would cost an ioctl.
    /// `None` where the kernel refused the query (vfio-pci answers EINVAL for
    /// the VGA region of a device that is not VGA). At most
    /// [`MAX_CACHED_REGIONS`] long. Unset on a cdev until it is bound.
    regions: OnceLock<Vec<Option<RegionInfo>>>,
    /// The interrupt mode enabled through this handle.
    irqs: IrqTracker,
    /// Memory decode as last read back through this handle, shared with
    /// every BAR mapped from it (see `decode.rs`).
    decode: MemoryDecode,
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
    /// A device opened through its group: usable at once, so its region
    /// infos and command register are read now.
    pub(crate) fn new(file: File, name: String) -> Result<Self> {
        let device = Self::new_cdev(file, name);
        device.load()?;
        Ok(device)
    }

    /// A device cdev, not bound yet: nothing can be read from it.
    pub(crate) fn new_cdev(file: File, name: String) -> Self {
        Self {
            file,
            name,
            regions: OnceLock::new(),
            irqs: IrqTracker::new(),
            decode: MemoryDecode::new(0),
        }
    }

    /// Reads the region infos into the cache and the command register into
    /// the decode gate.
    fn load(&self) -> Result<()> {
        let info = self.info()?;
        let regions = cache_regions(info.num_regions, |i| self.query_region_info(i))?;
        // Set once: a group device loads at open, a cdev at its one bind.
        let _ = self.regions.set(regions);
        self.refresh_decode()
    }

    /// The cached region infos: empty on a cdev not bound yet.
    fn regions(&self) -> &[Option<RegionInfo>] {
        self.regions.get().map_or(&[], Vec::as_slice)
    }

    /// Reads the command register back into the memory-decode gate. A
    /// device without a config region (not PCI) is left decoding.
    fn refresh_decode(&self) -> Result<()> {
        let has_config = self
            .regions()
            .get(vfio_core::region::CONFIG as usize)
            .is_some_and(|r| r.as_ref().is_some_and(|r| r.size > decode::COMMAND + 1));
        let command = if has_config {
            u16::from_le_bytes(self.read_config::<2>(decode::COMMAND)?)
        } else {
            0xffff
        };
        self.decode.update(command);
        Ok(())
    }

    fn err(&self, op: Operation, errno: Errno) -> Error {
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

    /// The file offset of `offset` within region `index`.
    ///
    /// Offsets at or past a region's end are refused here, since the size of
    /// a region's window in the device file (past which the next region's
    /// begins) is vfio-pci's to choose, but with the errno vfio-pci gives:
    /// EFAULT in config space (`vfio_config_do_rw`), EINVAL in a BAR, the ROM
    /// or the VGA region (`vfio_pci_bar_rw`, `vfio_pci_vga_rw`). A region the
    /// device does not have is EINVAL, as the kernel's index check answers. A
    /// region past the cache is queried (one ioctl per access).
    fn file_offset(&self, op: Operation, index: u32, offset: u64) -> Result<u64> {
        let queried;
        let region = match self.regions().get(index as usize) {
            Some(Some(region)) => region,
            Some(None) => {
                return Err(self
                    .err(op, Errno::EINVAL)
                    .with_detail(format_args!("no region {index}")));
            }
            None => {
                queried = self.query_region_info(index).map_err(|e| {
                    self.err(op, e.errno().unwrap_or(Errno::EINVAL))
                        .with_detail(format_args!("no region {index}"))
                        .with_source(e)
                })?;
                &queried
            }
        };
        if offset >= region.size {
            let errno = if index == region::CONFIG {
                Errno::EFAULT
            } else {
                Errno::EINVAL
            };
            return Err(self.err(op, errno).with_detail(format_args!(
                "offset {offset:#x} is past the end of region {index} ({:#x} bytes)",
                region.size
            )));
        }
        region
            .offset
            .checked_add(offset)
            .ok_or_else(|| self.err(op, Errno::EINVAL))
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
        match self.regions().get(index as usize) {
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

    /// `VFIO_DEVICE_BIND_IOMMUFD` (`vfio_df_ioctl_bind_iommufd`), then
    /// the region infos and command register are read, as a group device's
    /// are at open. The kernel's answers: EINVAL for a device opened
    /// through its group or one already bound, and for a device whose
    /// IOMMU cannot enforce cache coherency (`iommufd_device_bind`); EBUSY
    /// while the device's group is open (`vfio_device_block_group`); EBADF
    /// for a closed descriptor and EBADFD for a file that is not an iommufd
    /// (`iommufd_ctx_from_fd`); EPERM when the platform cannot isolate MSIs
    /// and iommufd's `allow_unsafe_interrupts` is off (`iommufd_device_bind`);
    /// otherwise the errors of the driver's open (`vfio_df_open`). Seen on
    /// Linux 6.12: EINVAL for a second bind and for a group-opened device,
    /// EBUSY with the group open, EBADFD for an eventfd; the coherency
    /// EINVAL and the EPERM are from the source, not checked. If the bind
    /// succeeds but the reads after it fail, the error says so (the device
    /// stays bound).
    fn bind_iommufd(&self, iommufd: BorrowedFd<'_>) -> Result<u32> {
        let devid = sys::device_bind_iommufd(self.as_fd(), iommufd)
            .map_err(|e| self.err(Operation::BindIommufd, e))?;
        self.load().map_err(|e| {
            e.with_detail(format_args!(
                "the device was bound (devid {devid}), but its region infos or command \
                 register could not be read"
            ))
        })?;
        Ok(devid)
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` (`vfio_df_ioctl_attach_pt`,
    /// `iommufd_device_change_pt`): ENOENT for an id naming no object of
    /// the bound iommufd, EINVAL for one that is neither an IOAS nor a
    /// hardware page table, and on a cdev not bound yet; ENOTTY on a
    /// device opened through its group (vfio-pci has no such ioctl there);
    /// otherwise the IOMMU driver's refusal of the attach. Seen on Linux
    /// 6.12: ENOENT, the EINVAL of an unbound cdev, ENOTTY; the pt id
    /// returned for an IOAS is that of the hardware page table the kernel
    /// made for it (3 for IOAS 1 with device id 2).
    fn attach_pt(&self, pt_id: u32) -> Result<u32> {
        sys::device_attach_iommufd_pt(self.as_fd(), pt_id).map_err(|e| {
            Error::from_errno(Operation::AttachPt, e)
                .with_target(format_args!("{} to pt {pt_id}", self.name))
        })
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT` (`vfio_df_ioctl_detach_pt`): 0 even
    /// when nothing was attached; EINVAL on a cdev not bound yet, ENOTTY on
    /// a device opened through its group (0 twice in a row and ENOTTY seen
    /// on Linux 6.12).
    fn detach_pt(&self) -> Result<()> {
        sys::device_detach_iommufd_pt(self.as_fd()).map_err(|e| self.err(Operation::DetachPt, e))
    }

    fn reset(&self) -> Result<()> {
        sys::device_reset(self.as_fd()).map_err(|e| self.err(Operation::Reset, e))?;
        self.refresh_decode().map_err(|e| {
            e.with_detail("the device was reset, but its command register could not be read back")
        })
    }

    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let at = self.file_offset(Operation::RegionRead, index, offset)?;
        // A negative file offset is EINVAL to pread.
        let at = i64::try_from(at).map_err(|_| self.err(Operation::RegionRead, Errno::EINVAL))?;
        pread(&self.file, buf, at).map_err(|e| self.err(Operation::RegionRead, e))
    }

    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize> {
        let at = self.file_offset(Operation::RegionWrite, index, offset)?;
        let at = i64::try_from(at).map_err(|_| self.err(Operation::RegionWrite, Errno::EINVAL))?;
        let n = pwrite(&self.file, buf, at).map_err(|e| self.err(Operation::RegionWrite, e))?;
        if index == vfio_core::region::CONFIG && decode::covers_command(offset, n) {
            self.refresh_decode().map_err(|e| {
                e.with_detail(format_args!(
                    "{n} bytes were written, but the command register could not be read back"
                ))
            })?;
        }
        Ok(n)
    }

    /// Maps the whole of region `index`. A region without the MMAP flag, or
    /// of size 0, is refused before any mmap with the kernel's answer to
    /// one: EINVAL (`vfio_pci_core_mmap` refuses the ROM, config space and
    /// BARs it did not mark mmappable; mmap refuses a length of 0).
    fn map_region(&self, index: u32) -> Result<LinuxRegion> {
        let region = self.region_info(index)?;
        if !region.flags.contains(RegionFlags::MMAP) {
            return Err(self
                .err(Operation::MapRegion, Errno::EINVAL)
                .with_detail(format_args!("region {index} cannot be mmapped")));
        }
        let len = usize::try_from(region.size)
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| {
                self.err(Operation::MapRegion, Errno::EINVAL)
                    .with_detail(format_args!("region {index} has size {:#x}", region.size))
            })?;
        if let Some(areas) = vfio_core::uapi::sparse_areas(&region) {
            return crate::uapi::map_sparse(self.as_fd(), &region, areas, self.decode.clone())
                .map_err(|e| e.with_target(&self.name));
        }
        let writable = region.flags.contains(RegionFlags::WRITE);
        let map = Mapping::map_file(self.as_fd(), region.offset, len, writable)
            .map_err(|e| self.err(Operation::MapRegion, e))?;
        Ok(LinuxRegion::new(map, writable).gated_by(self.decode.clone()))
    }

    fn map_region_range(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        access: vfio_core::uapi::RegionAccess,
    ) -> Result<LinuxRegion> {
        let region = self.region_info(index)?;
        crate::uapi::map_region_range(
            self.as_fd(),
            &region,
            offset,
            len,
            access,
            self.decode.clone(),
        )
        .map_err(|e| e.with_target(&self.name))
    }

    fn device_feature(&self, flags: vfio_core::uapi::FeatureFlags, data: &mut [u8]) -> Result<()> {
        crate::sys_uapi::device_feature(self.as_fd(), flags.bits(), data).map_err(|e| {
            self.err(Operation::DeviceFeature, e)
                .with_detail(format_args!("flags {:#x}", flags.bits()))
        })
    }

    fn hot_reset_info(&self) -> Result<vfio_core::uapi::HotResetInfo> {
        crate::uapi::hot_reset_info(self.as_fd()).map_err(|e| e.with_target(&self.name))
    }

    fn hot_reset(&self, groups: &[&crate::LinuxGroup]) -> Result<()> {
        let fds: Vec<BorrowedFd<'_>> = groups.iter().map(|g| g.as_fd()).collect();
        crate::sys_uapi::device_pci_hot_reset(self.as_fd(), &fds)
            .map_err(|e| self.err(Operation::HotReset, e))?;
        self.refresh_decode().map_err(|e| {
            e.with_detail("the bus was reset, but the command register could not be read back")
        })
    }

    fn set_irqs(
        &self,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        // More vectors than `count` can say: what the kernel answers a
        // count past the index's vectors.
        let count =
            u32::try_from(data.count()).map_err(|_| self.err(Operation::SetIrqs, Errno::EINVAL))?;
        let flag = match action {
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
            flags: flag | data_flag,
            index: index.0,
            start,
            count,
        };
        self.irqs.track(index, action, start, &data, || {
            sys::device_set_irqs(self.as_fd(), header, &payload)
                .map_err(|e| self.err(Operation::SetIrqs, e))
        })
    }

    fn enabled_interrupts(&self, index: IrqIndex) -> Option<u32> {
        self.irqs.enabled(index)
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
