//! An opened device (`VFIO_GROUP_GET_DEVICE_FD`, or its cdev
//! `/dev/vfio/devices/vfioN`): info, region I/O, mmap, reset and
//! interrupts, and for a cdev its binding to an iommufd.

use crate::group::{GroupCore, GroupFile};
use crate::host::{HostInner, MockBackend};
use crate::iommufd::{Binding, Ctx};
use crate::pci_device::PciDevice;
use crate::region::MockRegion;
use nix::errno::Errno;
use nix::sys::eventfd::EventFd;
use parking_lot::Mutex;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, OnceLock};
use vfio_core::{
    Device, DeviceInfo, Error, IrqAction, IrqData, IrqIndex, IrqInfo, IrqTracker, Operation,
    RegionFlags, RegionInfo, Result,
};

/// One open of the device (`vfio_df_open`): a device file from the group,
/// or a cdev once bound. Mapped regions hold it too (a mapping keeps the
/// file open); it holds the group file, or the cdev's iommufd binding.
#[derive(Debug)]
pub(crate) struct OpenDevice {
    pub device: Arc<PciDevice>,
    pub group: Option<Arc<GroupFile>>,
    /// Dropped after the device is closed, as `vfio_df_unbind_iommufd`
    /// closes the device before it lets go of the iommufd.
    pub binding: Option<Binding>,
}

impl Drop for OpenDevice {
    fn drop(&mut self) {
        self.device.close_fd();
        if let Some(group) = &self.group {
            group.core.device_closed();
        }
    }
}

/// What a device file opened through its cdev has besides the device.
#[derive(Debug)]
struct Cdev {
    group: Arc<GroupCore>,
    /// `dev_set->lock`: one bind at a time.
    bind: Mutex<()>,
    /// The registration the open file holds.
    _hold: Hold,
}

/// An open cdev's hold on the device's registration
/// (`vfio_device_try_get_registration`): a removal completes only once it
/// is closed.
#[derive(Debug)]
pub(crate) struct Hold(pub Arc<PciDevice>);

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.release_hold();
    }
}

/// A device opened through a [`MockGroup`](crate::MockGroup) or through its
/// cdev ([`VfioBackend::open_device_cdev`](vfio_core::VfioBackend::open_device_cdev)).
///
/// Dropping the last handle (and every region mapped from it) releases the
/// device as the kernel does: interrupts are disabled and their vectors
/// leave `/proc/interrupts`; a bound cdev is detached from its page table
/// and unbound from its iommufd.
///
/// A cdev answers EINVAL to everything but `VFIO_DEVICE_BIND_IOMMUFD` until
/// it is bound (`vfio_device_fops_unl_ioctl`, read, write and mmap all check
/// `access_granted`).
#[derive(Debug)]
pub struct MockDevice {
    /// Set when opened through the group, or when a cdev is bound.
    open: OnceLock<Arc<OpenDevice>>,
    device: Arc<PciDevice>,
    cdev: Option<Cdev>,
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
        let device = open.device.clone();
        Self {
            open: OnceLock::from(open),
            device,
            cdev: None,
            name,
            fd,
            host,
            irqs: IrqTracker::new(),
        }
    }

    /// A device file opened through the cdev, not yet bound. `hold` is the
    /// registration it took.
    pub(crate) fn new_cdev(
        group: Arc<GroupCore>,
        hold: Hold,
        name: String,
        fd: EventFd,
        host: Arc<HostInner>,
    ) -> Self {
        Self {
            open: OnceLock::new(),
            device: hold.0.clone(),
            cdev: Some(Cdev {
                group,
                bind: Mutex::new(()),
                _hold: hold,
            }),
            name,
            fd,
            host,
            irqs: IrqTracker::new(),
        }
    }

    fn dev(&self) -> &PciDevice {
        &self.device
    }

    fn err(&self, op: Operation, errno: Errno) -> Error {
        Error::from_errno(op, errno).with_target(&self.name)
    }

    /// The open device: a cdev not bound yet is EINVAL (`access_granted`).
    fn opened(&self, op: Operation) -> Result<&Arc<OpenDevice>> {
        self.open.get().ok_or_else(|| {
            self.err(op, Errno::EINVAL)
                .with_detail("the cdev is not bound to an iommufd")
        })
    }

    /// EINVAL for a cdev not bound, the injected fault for `op`, or ENODEV
    /// once the device was removed.
    fn enter(&self, op: Operation) -> Result<()> {
        self.opened(op)?;
        if let Some(errno) = self.host.faults.take(op) {
            return Err(self.err(op, errno));
        }
        if self.dev().is_removed() {
            return Err(self.err(op, Errno::ENODEV));
        }
        Ok(())
    }

    /// The cdev's binding, for the cdev-only ioctls: a device opened
    /// through its group has none, and the ioctl reaches vfio-pci, which
    /// does not know it (ENOTTY).
    fn binding(&self, op: Operation) -> Result<&Binding> {
        self.enter(op)?;
        self.open
            .get()
            .and_then(|o| o.binding.as_ref())
            .ok_or_else(|| {
                self.err(op, Errno::ENOTTY)
                    .with_detail("a device opened through its group has no iommufd binding")
            })
    }

    /// `vfio_df_ioctl_bind_iommufd`, in its order of checks.
    fn bind(&self, iommufd: BorrowedFd<'_>) -> Result<u32> {
        let op = Operation::BindIommufd;
        let Some(cdev) = &self.cdev else {
            return Err(self
                .err(op, Errno::EINVAL)
                .with_detail("only a device opened through its cdev can bind"));
        };
        if let Some(errno) = self.host.faults.take(op) {
            return Err(self.err(op, errno));
        }
        let _dev_set = cdev.bind.lock();
        // vfio_device_block_group.
        cdev.group
            .block_for_cdev()
            .map_err(|e| self.err(op, e).with_detail("the device's group is open"))?;
        let unblock = |e: Error| {
            cdev.group.unblock_for_cdev();
            e
        };
        if self.open.get().is_some() {
            return Err(unblock(
                self.err(op, Errno::EINVAL).with_detail("already bound"),
            ));
        }
        let ctx = Ctx::from_fd(iommufd, &self.host)
            .map_err(|e| unblock(self.err(op, e).with_detail("the file is not an iommufd")))?;
        // vfio_df_open: the cdev path opens a device nothing has open.
        if self.device.is_open() {
            return Err(unblock(
                self.err(op, Errno::EINVAL)
                    .with_detail("the device is open already"),
            ));
        }
        // vfio_df_device_first_open: iommufd_device_bind claims the group's
        // DMA before the device is opened (and reset).
        if let Err(e) = cdev.group.claim_dma_owner(ctx.id()) {
            return Err(unblock(self.err(op, e).with_detail(
                "another iommufd, or a kernel driver of the group, owns the group's DMA",
            )));
        }
        if !self.device.open_fd_exclusive() {
            cdev.group.release_dma_owner();
            return Err(unblock(
                self.err(op, Errno::EINVAL)
                    .with_detail("the device is open already"),
            ));
        }
        let devid = match ctx.bind(&cdev.group) {
            Ok(devid) => devid,
            Err(e) => {
                self.device.close_fd();
                cdev.group.release_dma_owner();
                return Err(unblock(self.err(op, e)));
            }
        };
        let open = Arc::new(OpenDevice {
            device: self.device.clone(),
            group: None,
            binding: Some(Binding {
                ctx,
                devid,
                group: cdev.group.clone(),
            }),
        });
        let _ = self.open.set(open);
        Ok(devid)
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

    /// `VFIO_DEVICE_BIND_IOMMUFD`: EINVAL for a device opened through its
    /// group, a cdev bound already or a device open already; EBUSY while
    /// the group file is open (`vfio_device_block_group`); EBADF for a
    /// closed fd and EBADFD for a file that is not an iommufd
    /// (`iommufd_ctx_from_fd`); EPERM while another iommufd, or a kernel
    /// driver of another device of the group, owns the group's DMA
    /// (`iommu_device_claim_dma_owner`). The device is opened as by its
    /// group (`vfio_df_open`: a device that can reset is reset) and its id
    /// in the iommufd returned.
    fn bind_iommufd(&self, iommufd: BorrowedFd<'_>) -> Result<u32> {
        self.bind(iommufd)
    }

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT` (`iommufd_device_change_pt`): ENOENT
    /// for an id naming nothing, EINVAL for a bound device's id or a page
    /// table of another IOAS than the one another device of the group is
    /// attached to, EADDRINUSE for an IOAS with a mapping the device's
    /// domain cannot hold (in the MSI window, past the aperture, or not
    /// page-aligned). An IOAS gets a hardware page table made for it (a new
    /// id) or the one it already has; attaching again replaces the page
    /// table.
    fn attach_pt(&self, pt_id: u32) -> Result<u32> {
        let b = self.binding(Operation::AttachPt)?;
        b.ctx.attach(b.devid, b.group.number, pt_id).map_err(|e| {
            self.err(Operation::AttachPt, e)
                .with_detail(format_args!("page table {pt_id}"))
        })
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`: 0 even with nothing attached.
    fn detach_pt(&self) -> Result<()> {
        let b = self.binding(Operation::DetachPt)?;
        b.ctx.detach(b.devid, b.group.number);
        Ok(())
    }

    fn reset(&self) -> Result<()> {
        self.enter(Operation::Reset)?;
        self.dev()
            .reset()
            .map_err(|e| self.err(Operation::Reset, e))
    }

    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.opened(Operation::RegionRead)?;
        self.check_offset(Operation::RegionRead, index, offset)?;
        self.enter(Operation::RegionRead)?;
        self.dev()
            .read_region(index, offset, buf)
            .map_err(|e| self.err(Operation::RegionRead, e))
    }

    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize> {
        self.opened(Operation::RegionWrite)?;
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
        let mapped = MockRegion::new(
            self.opened(Operation::MapRegion)?.clone(),
            index,
            region.size,
            writable,
        );
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
        Ok(MockRegion::new(
            self.opened(Operation::MapRegion)?.clone(),
            index,
            len,
            writable,
        )
        .range(offset))
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
