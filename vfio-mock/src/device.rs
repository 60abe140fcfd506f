//! An opened device (`VFIO_GROUP_GET_DEVICE_FD`): info, region I/O, mmap,
//! reset and interrupts.

use crate::group::GroupFile;
use crate::host::{HostInner, MockBackend};
use crate::pci_device::PciDevice;
use crate::region::MockRegion;
use nix::errno::Errno;
use nix::sys::eventfd::EventFd;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use vfio_core::{
    Device, DeviceInfo, Error, IrqAction, IrqData, IrqIndex, IrqInfo, IrqTracker, Operation,
    RegionFlags, RegionInfo, Result,
};

/// One open device file. Mapped regions hold it too (a mapping keeps the
/// file open), and it holds the group file.
#[derive(Debug)]
pub(crate) struct OpenDevice {
    pub device: Arc<PciDevice>,
    pub group: Arc<GroupFile>,
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        self.device.close_fd();
        self.group.core.device_closed();
    }
}

/// A device opened through a [`MockGroup`](crate::MockGroup).
///
/// Dropping the last handle (and every region mapped from it) releases the
/// device as the kernel does: interrupts are disabled and their vectors
/// leave `/proc/interrupts`.
#[derive(Debug)]
pub struct MockDevice {
    open: Arc<OpenDevice>,
    name: String,
    /// A real fd, so the device is `AsFd` like a kernel device fd.
    fd: EventFd,
    host: Arc<HostInner>,
    /// The interrupt mode enabled through this handle.
    irqs: IrqTracker,
}

impl MockDevice {
    pub(crate) fn new(
        open: Arc<OpenDevice>,
        name: String,
        fd: EventFd,
        host: Arc<HostInner>,
    ) -> Self {
        Self {
            open,
            name,
            fd,
            host,
            irqs: IrqTracker::new(),
        }
    }

    fn dev(&self) -> &PciDevice {
        &self.open.device
    }

    fn err(&self, op: Operation, errno: Errno) -> Error {
        Error::from_errno(op, errno).with_target(&self.name)
    }

    /// The injected fault for `op`, or ENODEV once the device was removed.
    fn enter(&self, op: Operation) -> Result<()> {
        if let Some(errno) = self.host.faults.take(op) {
            return Err(self.err(op, errno));
        }
        if self.dev().is_removed() {
            return Err(self.err(op, Errno::ENODEV));
        }
        Ok(())
    }

    /// vfio-linux's own check before `pread`/`pwrite`: the region exists
    /// and `offset` is inside it, refused with vfio-pci's errno (EFAULT in
    /// config space, EINVAL elsewhere and for a region the device lacks).
    fn check_offset(&self, op: Operation, index: u32, offset: u64) -> Result<()> {
        let size = self.dev().region_size(index).ok_or_else(|| {
            self.err(op, Errno::EINVAL)
                .with_detail(format_args!("no region {index}"))
        })?;
        if offset >= size {
            let errno = if index == vfio_core::region::CONFIG {
                Errno::EFAULT
            } else {
                Errno::EINVAL
            };
            return Err(self.err(op, errno).with_detail(format_args!(
                "offset {offset:#x} is past the end of region {index} ({size:#x} bytes)"
            )));
        }
        Ok(())
    }
}

impl AsFd for MockDevice {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Device<MockBackend> for MockDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn info(&self) -> Result<DeviceInfo> {
        self.enter(Operation::DeviceInfo)?;
        Ok(self.dev().info())
    }

    fn region_info(&self, index: u32) -> Result<RegionInfo> {
        self.enter(Operation::RegionInfo)?;
        self.dev()
            .region_info(index)
            .map_err(|e| self.err(Operation::RegionInfo, e))
    }

    fn irq_info(&self, index: IrqIndex) -> Result<IrqInfo> {
        self.enter(Operation::IrqInfo)?;
        self.dev()
            .irq_info(index, self.host.kernel.dynamic_msix())
            .map_err(|e| self.err(Operation::IrqInfo, e))
    }

    fn bind_iommufd(&self, _iommufd: std::os::fd::BorrowedFd<'_>) -> Result<u32> {
        Err(crate::iommufd::unsupported(Operation::BindIommufd))
    }

    fn attach_pt(&self, _pt_id: u32) -> Result<u32> {
        Err(crate::iommufd::unsupported(Operation::AttachPt))
    }

    fn detach_pt(&self) -> Result<()> {
        Err(crate::iommufd::unsupported(Operation::DetachPt))
    }

    fn reset(&self) -> Result<()> {
        self.enter(Operation::Reset)?;
        self.dev()
            .reset()
            .map_err(|e| self.err(Operation::Reset, e))
    }

    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.check_offset(Operation::RegionRead, index, offset)?;
        self.enter(Operation::RegionRead)?;
        self.dev()
            .read_region(index, offset, buf)
            .map_err(|e| self.err(Operation::RegionRead, e))
    }

    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize> {
        self.check_offset(Operation::RegionWrite, index, offset)?;
        self.enter(Operation::RegionWrite)?;
        self.dev()
            .write_region(index, offset, buf)
            .map_err(|e| self.err(Operation::RegionWrite, e))
    }

    fn map_region(&self, index: u32) -> Result<MockRegion> {
        let region = self.region_info(index)?;
        // As vfio-linux: EINVAL, vfio-pci's and mmap's answer.
        if !region.flags.contains(RegionFlags::MMAP) {
            return Err(self
                .err(Operation::MapRegion, Errno::EINVAL)
                .with_detail(format_args!("region {index} cannot be mmapped")));
        }
        if region.size == 0 {
            return Err(self
                .err(Operation::MapRegion, Errno::EINVAL)
                .with_detail(format_args!("region {index} has size {:#x}", region.size)));
        }
        self.enter(Operation::MapRegion)?;
        let writable = region.flags.contains(RegionFlags::WRITE);
        let mapped = MockRegion::new(self.open.clone(), index, region.size, writable);
        match vfio_core::uapi::sparse_areas(&region) {
            None => Ok(mapped),
            Some(areas) => {
                for area in areas.iter().filter(|a| a.size != 0) {
                    vfio_core::uapi::check_region_range(&region, area.offset, area.size)
                        .map_err(|e| e.with_target(&self.name))?;
                }
                if areas.iter().all(|a| a.size == 0) {
                    return Err(Error::new(
                        Operation::MapRegion,
                        vfio_core::ErrorKind::InvalidArgument,
                    )
                    .with_target(&self.name)
                    .with_detail(format_args!(
                        "region {index} has a sparse-mmap capability with no area to map"
                    )));
                }
                Ok(mapped.sparse(areas))
            }
        }
    }

    fn map_region_range(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        access: vfio_core::uapi::RegionAccess,
    ) -> Result<MockRegion> {
        let region = self.region_info(index)?;
        vfio_core::uapi::check_region_range(&region, offset, len)
            .map_err(|e| e.with_target(&self.name))?;
        self.enter(Operation::MapRegion)?;
        let writable = access == vfio_core::uapi::RegionAccess::ReadWrite
            && region.flags.contains(RegionFlags::WRITE);
        Ok(MockRegion::new(self.open.clone(), index, len, writable).range(offset))
    }

    fn device_feature(&self, flags: vfio_core::uapi::FeatureFlags, data: &mut [u8]) -> Result<()> {
        self.enter(Operation::DeviceFeature)?;
        crate::hot_reset::feature(flags, data.len()).map_err(|e| {
            self.err(Operation::DeviceFeature, e)
                .with_detail(format_args!("flags {:#x}", flags.bits()))
        })
    }

    fn hot_reset_info(&self) -> Result<vfio_core::uapi::HotResetInfo> {
        self.enter(Operation::HotResetInfo)?;
        crate::hot_reset::info(&self.host, self.dev())
            .map_err(|e| self.err(Operation::HotResetInfo, e))
    }

    fn hot_reset(&self, groups: &[&crate::MockGroup]) -> Result<()> {
        self.enter(Operation::HotReset)?;
        let numbers: Vec<u32> = groups
            .iter()
            .map(|g| vfio_core::Group::number(*g))
            .collect();
        crate::hot_reset::hot_reset(&self.host, self.dev(), &numbers)
            .map_err(|e| self.err(Operation::HotReset, e))
    }

    fn set_irqs(
        &self,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> Result<()> {
        if u32::try_from(data.count()).is_err() {
            return Err(self.err(Operation::SetIrqs, Errno::EINVAL));
        }
        self.enter(Operation::SetIrqs)?;
        // Like vfio-linux: refuse a block with a non-eventfd before acting, so
        // a failed bind leaves the earlier bindings as they were (6.1 itself
        // would tear down the vectors it had already reached).
        if let IrqData::Eventfds(fds) = &data {
            vfio_core::check_eventfds(fds).map_err(|e| e.with_target(&self.name))?;
        }
        let written = self.irqs.track(index, action, start, &data, || {
            let (result, written) = self.dev().set_irqs(index, action, start, data);
            result.map_err(|e| self.err(Operation::SetIrqs, e))?;
            Ok(written)
        })?;
        written.map_err(|e| {
            Error::from_io(Operation::SetIrqs, e)
                .with_target(&self.name)
                .with_detail("the mock could not rewrite its /proc/interrupts")
        })
    }

    fn enabled_interrupts(&self, index: IrqIndex) -> Option<u32> {
        self.irqs.enabled(index)
    }
}
