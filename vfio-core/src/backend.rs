//! The `VfioBackend` trait family.
//!
//! A backend names its handle types once, as associated types, and drivers are
//! generic over `B: VfioBackend`: static dispatch, no boxing, no downcasts.
//! Every method has one meaning on every backend: the meaning Linux's
//! vfio-pci gives the corresponding ioctl.

use crate::dma::{DmaMemory, HugePages};
use crate::dma_mapping::DmaMapping;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::host::HostPaths;
use crate::info::{
    DeviceInfo, DmaFlags, Extension, GroupStatus, IommuInfo, IommuType, IovaRange, IrqIndex,
    IrqInfo, RegionInfo,
};
use crate::interrupt::Interrupt;
use crate::iommufd::{Ioas, IommuFd};
use crate::iova::{IovaAllocator, IovaOptions};
use crate::irq::{IrqAction, IrqData};
use crate::pci_address::PciAddress;
use crate::uapi::{Feature, FeatureFlags, HotResetInfo, RegionAccess};
use std::fmt::Debug;
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};

/// A VFIO implementation: the real kernel, or a simulation of it.
pub trait VfioBackend: Sized + Send + Sync + Debug + 'static {
    /// An IOMMU context (`/dev/vfio/vfio`).
    type Container: Container<Self> + 'static;
    /// An IOMMU group (`/dev/vfio/N`).
    type Group: Group<Self>;
    /// An opened device.
    type Device: Device<Self>;
    /// A region mapped into the process.
    type Region: MappedRegion;
    /// Memory a device may reach by DMA.
    type DmaMemory: DmaMemory;
    /// An interrupt handle (eventfd).
    type Interrupt: Interrupt;
    /// An iommufd (`/dev/iommu`).
    type IommuFd: IommuFd<Self>;
    /// An I/O address space of an iommufd (`IOMMU_IOAS_ALLOC`).
    type Ioas: Ioas<Self> + 'static;

    /// The host paths this backend's lookups read.
    fn host_paths(&self) -> &HostPaths;

    /// Opens a new container.
    fn open_container(&self) -> Result<Self::Container>;

    /// Opens IOMMU group `number` (`/dev/vfio/<number>`).
    fn open_group(&self, number: u32) -> Result<Self::Group>;

    /// Opens no-IOMMU group `number` (`/dev/vfio/noiommu-<number>`).
    fn open_noiommu_group(&self, number: u32) -> Result<Self::Group>;

    /// Opens `/dev/iommu`. A kernel built without `CONFIG_IOMMUFD` has no
    /// such node: [`ErrorKind::NotFound`], with a detail naming the option.
    fn open_iommufd(&self) -> Result<Self::IommuFd>;

    /// Opens the VFIO device cdev of `address`: the `vfioN` that sysfs
    /// lists under the device's `vfio-dev/` directory, as
    /// `/dev/vfio/devices/vfioN` (Linux 6.6 and later, with
    /// `CONFIG_VFIO_DEVICE_CDEV`). The handle can do nothing until it is
    /// bound ([`Device::bind_iommufd`]): the kernel answers every other
    /// ioctl with EINVAL. A device with no `vfio-dev/` entry (not bound to
    /// a VFIO driver, or a kernel without cdev support) is
    /// [`ErrorKind::NotFound`]; a no-IOMMU device has the sysfs entry but
    /// no node, since the kernel gives no-IOMMU devices no cdev.
    fn open_device_cdev(&self, address: &PciAddress) -> Result<Self::Device>;

    /// Creates an interrupt handle to bind to a vector.
    fn new_interrupt(&self) -> Result<Self::Interrupt>;

    /// Allocates `size` bytes (rounded up to a base page) of zeroed memory
    /// for DMA: [`alloc_dma_with`](Self::alloc_dma_with) with base pages.
    fn alloc_dma(&self, size: usize) -> Result<Self::DmaMemory> {
        self.alloc_dma_with(size, HugePages::Never)
    }

    /// Allocates `size` bytes of zeroed memory for DMA, rounded up to a
    /// whole number of the pages `pages` asks for and the host gives
    /// ([`DmaMemory::page_size`] says which). Zero bytes is
    /// [`ErrorKind::InvalidArgument`]; memory the host cannot give is
    /// [`ErrorKind::NoSpace`] (ENOMEM).
    fn alloc_dma_with(&self, size: usize, pages: HugePages) -> Result<Self::DmaMemory>;
}

/// An IOMMU context devices DMA through: a container (`/dev/vfio/vfio`)
/// set to Type1, or an iommufd IOAS. Drivers map their DMA memory through
/// this trait, so one driver runs on both; [`DmaMapping`] holds any of them.
///
/// A space can also be untranslated: a container set to
/// [`IommuType::NoIommu`], where devices reach memory at its physical
/// address and there is nothing to map ([`translates`](DmaSpace::translates)
/// is false). The raw calls there are the kernel's refusal; a
/// [`DmaMapping`] made on such a space maps nothing and gives the device
/// the physical addresses ([`DmaMapping::device_address`]), so a driver that
/// takes its device addresses from its mappings runs unchanged in
/// no-IOMMU mode.
pub trait DmaSpace<B: VfioBackend>: Send + Sync + Debug {
    /// True when devices reach memory through this space's IOMMU mappings
    /// (IOVAs); false in no-IOMMU mode, where they use physical addresses.
    fn translates(&self) -> bool;

    /// The IOVA ranges mappings may use, sorted and disjoint
    /// (`VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`, `IOMMU_IOAS_IOVA_RANGES`).
    fn iova_ranges(&self) -> Result<Vec<IovaRange>>;

    /// The IOMMU page sizes a mapping may be aligned to, as a bitmap (bit n
    /// set: 2^n bytes): a container's `iova_pgsizes`; for an IOAS, every
    /// power of two from the alignment `IOMMU_IOAS_IOVA_RANGES` reports.
    fn iova_page_sizes(&self) -> Result<u64>;

    /// An [`IovaAllocator`] over this space's ranges and page sizes. On a
    /// space that does not translate, which has neither (the no-IOMMU
    /// container answers ENOTTY), an allocator over the whole window that
    /// [`map_dma_in`](DmaSpace::map_dma_in) never consults there: its
    /// mappings take their memory's physical addresses.
    fn iova_allocator(&self, options: IovaOptions) -> Result<IovaAllocator> {
        if !self.translates() {
            let whole = IovaRange {
                start: 0,
                end: u64::MAX,
            };
            return IovaAllocator::from_ranges(&[whole], 1 << 12, options);
        }
        IovaAllocator::from_ranges(&self.iova_ranges()?, self.iova_page_sizes()?, options)
    }

    /// Makes `size` bytes of `memory` starting at `offset` visible to devices
    /// at `iova`, and returns a mapping that borrows this space, holds
    /// `memory` (a reference, or an `Arc` for a mapping that owns its share)
    /// and unmaps the range when dropped. The memory cannot be dropped while
    /// the mapping lives: with a reference that does not compile, with an
    /// `Arc` the mapping keeps it.
    ///
    /// The kernel's answers are [`map_dma_raw`](DmaSpace::map_dma_raw)'s.
    /// On an untranslated space nothing is mapped and `iova` is ignored:
    /// see [`DmaMapping::new`].
    fn map_dma<M>(
        &self,
        memory: M,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<DmaMapping<B, &Self, M>>
    where
        Self: Sized,
        M: Deref<Target = B::DmaMemory>,
    {
        DmaMapping::new(self, memory, offset, size, iova, flags)
    }

    /// [`map_dma`](DmaSpace::map_dma) at an IOVA `iovas` allocates, given
    /// back when the mapping is unmapped ([`DmaMapping::new_in`]). An
    /// exhausted IOVA space is [`ErrorKind::NoSpace`] with no errno, before
    /// any kernel call.
    fn map_dma_in<M>(
        &self,
        iovas: &IovaAllocator,
        memory: M,
        offset: usize,
        size: u64,
        flags: DmaFlags,
    ) -> Result<DmaMapping<B, &Self, M>>
    where
        Self: Sized,
        M: Deref<Target = B::DmaMemory>,
    {
        DmaMapping::new_in(self, iovas, memory, offset, size, flags)
    }

    /// Maps with nothing to undo it (`VFIO_IOMMU_MAP_DMA`, or
    /// `IOMMU_IOAS_MAP` with `IOMMU_IOAS_MAP_FIXED_IOVA`): the raw escape
    /// hatch under [`map_dma`](DmaSpace::map_dma). The range stays mapped
    /// until [`unmap_dma`](DmaSpace::unmap_dma) or until the space is
    /// closed, whatever happens to `memory` meanwhile; memory dropped while
    /// mapped stays reachable by the space's devices (the kernel keeps the
    /// pages pinned, and the mock keeps the buffer) and unreachable by the
    /// process, until then.
    ///
    /// A range reaching past `memory` is refused with EFAULT, before the
    /// kernel sees it (the kernel pins whatever the process has mapped at
    /// those addresses, and answers EFAULT where nothing is); otherwise the
    /// kernel's answer. Type1: EINVAL for a size, IOVA or offset that is not
    /// page-aligned, a size of 0, no access flags, or an IOVA range outside
    /// the IOMMU's; EEXIST for an overlap; ENOSPC with no mappings left.
    /// An IOAS answers as `iommufd` does (the backend's documentation and
    /// the conformance suite list its errnos).
    fn map_dma_raw(
        &self,
        memory: &B::DmaMemory,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<()>;

    /// Unmaps `iova..iova + size`, whichever mappings lie there
    /// (`VFIO_IOMMU_UNMAP_DMA`, `IOMMU_IOAS_UNMAP`): returns how many bytes
    /// were unmapped. The raw escape hatch: a [`DmaMapping`] unmaps itself.
    fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64>;

    /// Unmaps every mapping of the space and returns how many bytes were
    /// unmapped, 0 when nothing was mapped. A Type1 container sends
    /// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_ALL`, IOVA 0 and
    /// size 0 (the kernel answers EINVAL for a nonzero IOVA or size, and
    /// offers the flag when `VFIO_CHECK_EXTENSION(VFIO_UNMAP_ALL)` is 1);
    /// an IOAS sends `IOMMU_IOAS_UNMAP` of IOVA 0, length `u64::MAX`.
    /// Mappings held by a [`DmaMapping`] are unmapped too: their drop then
    /// unmaps their range again, which by then holds nothing, or whatever
    /// was mapped there since (their IOVA leases are still held, so an
    /// allocator hands those IOVAs to no one else).
    fn unmap_all(&self) -> Result<u64>;
}

/// Container operations (`VFIO_GET_API_VERSION` .. `VFIO_IOMMU_GET_INFO`);
/// its DMA mappings are [`DmaSpace`]'s.
pub trait Container<B: VfioBackend>: DmaSpace<B> {
    /// `VFIO_GET_API_VERSION` (0 on every kernel so far).
    fn api_version(&self) -> Result<i32>;

    /// `VFIO_CHECK_EXTENSION`: the kernel's answer, 0 meaning unsupported.
    fn check_extension(&self, extension: Extension) -> Result<u32>;

    /// `VFIO_SET_IOMMU`. The container needs a group first.
    fn set_iommu(&self, iommu: IommuType) -> Result<()>;

    /// `VFIO_IOMMU_GET_INFO` with its capabilities (IOVA ranges, DMA limit).
    fn iommu_info(&self) -> Result<IommuInfo>;
}

/// Group operations (`VFIO_GROUP_*`).
pub trait Group<B: VfioBackend>: Send + Sync + Debug {
    /// The group's number.
    fn number(&self) -> u32;

    /// `VFIO_GROUP_GET_STATUS`.
    fn status(&self) -> Result<GroupStatus>;

    /// `VFIO_GROUP_SET_CONTAINER`.
    fn set_container(&self, container: &B::Container) -> Result<()>;

    /// `VFIO_GROUP_UNSET_CONTAINER`.
    fn unset_container(&self) -> Result<()>;

    /// `VFIO_GROUP_GET_DEVICE_FD` for `name` (for vfio-pci, the PCI address):
    /// one call, the kernel's answer. Linux 6.1 can answer `ENODEV` briefly
    /// after a device is bound; a driver that opens devices right after
    /// binding them opts in to one retry with
    /// [`retry::open_device_with_retry`](crate::retry::open_device_with_retry).
    /// A name with a NUL byte is refused as invalid with no errno: the kernel
    /// would read only the part before the NUL.
    fn open_device(&self, name: &str) -> Result<B::Device>;
}

/// The keep-alive ioctl some downstream kernels add to groups
/// (`VFIO_PRIVATE_BASE`, 200). Not part of [`Group`]: upstream Linux has no
/// such call, so a driver that wants it asks for it with a bound
/// (`B::Group: GroupKeepAlive<B>`), and both backends of this family
/// implement it.
pub trait GroupKeepAlive<B: VfioBackend>: Group<B> {
    /// Asks the kernel to keep device `name` of this group alive. Upstream
    /// kernels answer `ENOTTY`, which surfaces as
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    fn set_keep_alive(&self, name: &str) -> Result<()>;
}

/// Device operations (`VFIO_DEVICE_*`, region I/O, mmap).
pub trait Device<B: VfioBackend>: AsFd + Send + Sync + Debug {
    /// The name the device was opened by.
    fn name(&self) -> &str;

    /// `VFIO_DEVICE_GET_INFO`.
    fn info(&self) -> Result<DeviceInfo>;

    /// `VFIO_DEVICE_GET_REGION_INFO`, capability chain included.
    fn region_info(&self, index: u32) -> Result<RegionInfo>;

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    fn irq_info(&self, index: IrqIndex) -> Result<IrqInfo>;

    /// `VFIO_DEVICE_RESET`.
    fn reset(&self) -> Result<()>;

    /// `VFIO_DEVICE_BIND_IOMMUFD`: binds a device opened through its cdev
    /// ([`VfioBackend::open_device_cdev`]) to the iommufd `iommufd`
    /// (normally an [`IommuFd`]'s `as_fd()`) and returns the device's
    /// object id in that iommufd. Until this succeeds the device answers
    /// nothing else. The kernel's answers: EINVAL for a device opened
    /// through a group or one already bound, EBADFD for a file that is not
    /// an iommufd, EBUSY while the device's group is open, EPERM while
    /// another iommufd or a kernel driver owns the group's DMA.
    fn bind_iommufd(&self, iommufd: BorrowedFd<'_>) -> Result<u32>;

    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: attaches the bound device to the
    /// page table `pt_id` of its iommufd (an IOAS or a hardware page
    /// table) and returns the id the kernel reports back: for an IOAS, the
    /// hardware page table it created or reused for it. Attaching again
    /// replaces the page table. ENOENT for an id that names nothing of
    /// that iommufd; a device opened through its group answers ENOTTY.
    fn attach_pt(&self, pt_id: u32) -> Result<u32>;

    /// [`attach_pt`](Device::attach_pt) to `ioas`.
    fn attach_ioas(&self, ioas: &B::Ioas) -> Result<u32> {
        self.attach_pt(ioas.id())
    }

    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`: detaches the device from its page
    /// table; it can no longer DMA. The kernel answers 0 even when nothing
    /// was attached.
    fn detach_pt(&self) -> Result<()>;

    /// Reads region `index` at `offset` through the device file (`pread`).
    /// Returns the byte count, which the kernel may shorten at a region's end.
    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Writes region `index` at `offset` through the device file (`pwrite`).
    /// Returns the byte count, which the kernel may shorten at a region's end.
    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize>;

    /// Maps all of region `index`. A region without the mmap flag (config
    /// space never has it) is refused with EINVAL, vfio-pci's answer.
    ///
    /// A region with sparse-mmap areas (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`,
    /// e.g. a BAR whose MSI-X table may not be mapped) has only its areas
    /// mapped: the returned region still spans the whole region (offsets
    /// are the region's, [`MappedRegion::len`] its size), and an access
    /// outside every area is refused as [`ErrorKind::OutOfRange`] with no
    /// errno, as an access past the end is. A sparse cap with no areas
    /// leaves nothing to map: [`ErrorKind::InvalidArgument`], no errno.
    fn map_region(&self, index: u32) -> Result<B::Region>;

    /// Maps `len` bytes of region `index` from `offset` (`mmap` of the
    /// device file at the region's offset plus `offset`), for `access`.
    /// Offsets into the returned region are from `offset`, and its
    /// [`MappedRegion::len`] is `len`. Sparse areas are not consulted: the
    /// caller picked the range.
    ///
    /// The kernel's answers (`vfio_pci_core_mmap`, and mmap(2) itself):
    /// EINVAL for a region that cannot be mmapped (ROM, config space, a
    /// BAR vfio-pci did not mark mmappable), a length of 0, an offset that
    /// is not page-aligned, or a range ending past the region rounded up
    /// to a page; a range past the region is refused before the mmap, with
    /// that EINVAL, since the device file holds the next region there (see
    /// [`check_region_range`](crate::uapi::check_region_range)). A
    /// [`RegionAccess::ReadOnly`] mapping (`PROT_READ`) refuses every write
    /// as [`ErrorKind::PermissionDenied`] with no errno, before any store.
    fn map_region_range(
        &self,
        index: u32,
        offset: u64,
        len: u64,
        access: RegionAccess,
    ) -> Result<B::Region>;

    /// `VFIO_DEVICE_FEATURE` with `flags` (the feature number and GET, SET
    /// or PROBE) and `data` as the payload after the 8-byte header, read
    /// for SET and written by the kernel for GET. The kernel's answers
    /// (`vfio_ioctl_device_feature`, then the feature's handler): EINVAL
    /// for unknown flag bits, GET with SET without PROBE, a GET or SET the
    /// feature does not support, neither GET nor SET without PROBE, or
    /// data shorter than the feature's; ENOTTY for a feature the device
    /// does not have (on vfio-pci without a variant driver: everything but
    /// the LOW_POWER ones, and PCI_VF_TOKEN on a PF with SR-IOV).
    fn device_feature(&self, flags: FeatureFlags, data: &mut [u8]) -> Result<()>;

    /// Which of GET and SET `feature` accepts: three PROBE calls (alone,
    /// with GET, with SET), a refused GET or SET (EINVAL) leaving its bit
    /// out. A feature the device does not have is the kernel's ENOTTY
    /// ([`ErrorKind::Unsupported`]).
    fn probe_feature(&self, feature: Feature) -> Result<FeatureFlags> {
        let probe = FeatureFlags::PROBE | feature.flags();
        self.device_feature(probe, &mut [])?;
        let mut out = FeatureFlags::EMPTY;
        for op in [FeatureFlags::GET, FeatureFlags::SET] {
            match self.device_feature(probe | op, &mut []) {
                Ok(()) => out = out | op,
                Err(e) if e.errno() == Some(nix::errno::Errno::EINVAL) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the devices a bus or slot
    /// reset of this device would reset, with their groups; the buffer is
    /// sized from the kernel's ENOSPC-and-count answer. ENODEV when
    /// neither a slot nor a bus reset is possible (`pci_probe_reset_slot`
    /// and `pci_probe_reset_bus` both refuse: a device on the root bus).
    fn hot_reset_info(&self) -> Result<HotResetInfo>;

    /// `VFIO_DEVICE_PCI_HOT_RESET` with the fds of `groups`, which must
    /// cover every device the reset affects. The kernel's answers, in its
    /// order: with no groups, EINVAL for a device opened through its group
    /// (Linux 6.12 checks this first; 6.1 after the next check); ENODEV
    /// when no slot or bus reset is possible (a device on the root bus);
    /// EINVAL for more groups than affected devices, for an affected device
    /// bound to another driver, and for one whose group is not among
    /// `groups`; EBUSY when an affected device cannot be locked.
    fn hot_reset(&self, groups: &[&B::Group]) -> Result<()>;

    /// `VFIO_DEVICE_SET_IRQS`, as the uAPI defines it: `action` on vectors
    /// `start..` of `index`, with `data` saying which and how many.
    fn set_irqs(
        &self,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> Result<()>;

    /// How many vectors `index` is enabled with through this handle, or
    /// `None` if it is not the enabled interrupt mode (always `None` for ERR
    /// and REQ, which have no mode). Followed from this handle's
    /// [`set_irqs`](Device::set_irqs) calls, as [`IrqTracker`](crate::IrqTracker)
    /// describes; calls through another handle of the same device are not seen.
    fn enabled_interrupts(&self, index: IrqIndex) -> Option<u32>;

    /// Enables `index` (INTx, MSI or MSI-X) with `interrupts.len()` vectors,
    /// vector `i` bound to `interrupts[i]`: one `SET_IRQS` call, however
    /// many vectors. vfio-pci allocates the host vectors here, and MSI-X
    /// cannot be resized afterwards (`NORESIZE`): to change the count,
    /// [`disable_interrupts`](Device::disable_interrupts) and enable again.
    ///
    /// Refused without a kernel call, as [`ErrorKind::Busy`](crate::ErrorKind::Busy)
    /// with no errno, when this handle already has `index` enabled: the
    /// kernel would silently rebind the vectors instead. Otherwise the
    /// kernel's answer: `EINVAL` when another mode is enabled or the count
    /// exceeds the index's vectors, `ERANGE` for zero vectors.
    fn enable_interrupts(&self, index: IrqIndex, interrupts: &[&B::Interrupt]) -> Result<()> {
        let fds: Vec<Option<BorrowedFd<'_>>> = interrupts.iter().map(|i| Some(i.as_fd())).collect();
        enable_with(self, index, &fds)
    }

    /// Enables `index` with `count` vectors and no eventfd bound to any of
    /// them (bind them later with [`bind_interrupts`](Device::bind_interrupts)).
    /// Refused as [`enable_interrupts`](Device::enable_interrupts) is; a
    /// `count` past the index's vector count is the kernel's `EINVAL`,
    /// checked before anything is allocated for it.
    fn enable_interrupts_unbound(&self, index: IrqIndex, count: u32) -> Result<()> {
        let max = self.irq_info(index)?.count;
        if count > max {
            return Err(irq_range_error(index, 0, count, max));
        }
        let fds = vec![None; count as usize];
        enable_with(self, index, &fds)
    }

    /// Binds `interrupts[i]` to vector `start + i` of `index`, replacing
    /// whatever was bound there; the other vectors keep their bindings. INTx,
    /// MSI and MSI-X must be enabled through this handle first (refused as
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument) with
    /// no errno: on a disabled index the kernel would enable it instead); ERR
    /// and REQ take one eventfd at vector 0 and need no enabling. A range
    /// past the enabled vectors is the kernel's `EINVAL`, changing nothing.
    ///
    /// What a failure leaves: a call refused before the kernel acts changes
    /// nothing (the range checks above, and the kernel's own validation of
    /// index, range and count). The interrupts are eventfds by type, so
    /// vfio-pci cannot refuse one of them; if it fails partway for a reason of
    /// its own (the host out of interrupt vectors at `request_irq`), Linux
    /// 6.1 has unbound the vectors from `start` up to and including the one
    /// that failed, and the error's detail says so; the index stays enabled
    /// and vectors outside that span keep their eventfds.
    fn bind_interrupts(
        &self,
        index: IrqIndex,
        start: u32,
        interrupts: &[&B::Interrupt],
    ) -> Result<()> {
        let count = u32::try_from(interrupts.len()).unwrap_or(u32::MAX);
        check_enabled_range(self, index, start, count)?;
        let fds: Vec<Option<BorrowedFd<'_>>> = interrupts.iter().map(|i| Some(i.as_fd())).collect();
        self.set_irqs(index, IrqAction::Trigger, start, IrqData::Eventfds(&fds))
    }

    /// Binds `interrupt` to vector `vector` of `index`: [`bind_interrupts`]
    /// for one vector.
    ///
    /// [`bind_interrupts`]: Device::bind_interrupts
    fn bind_interrupt(&self, index: IrqIndex, vector: u32, interrupt: &B::Interrupt) -> Result<()> {
        self.bind_interrupts(index, vector, &[interrupt])
    }

    /// Unbinds vectors `start..start + count` of `index` (eventfd -1 for
    /// each), leaving the other vectors bound and the index enabled. Needs
    /// the index enabled through this handle, as
    /// [`bind_interrupts`](Device::bind_interrupts) does; a range past the
    /// enabled vectors is the kernel's `EINVAL`, checked before anything is
    /// allocated for it.
    fn unbind_interrupts(&self, index: IrqIndex, start: u32, count: u32) -> Result<()> {
        check_enabled_range(self, index, start, count)?;
        let fds = vec![None; count as usize];
        self.set_irqs(index, IrqAction::Trigger, start, IrqData::Eventfds(&fds))
    }

    /// Disables `index` (`DATA_NONE`, count 0): every vector unbound and the
    /// host vectors freed. On an index that is not enabled, the kernel's
    /// `EINVAL`.
    fn disable_interrupts(&self, index: IrqIndex) -> Result<()> {
        self.set_irqs(index, IrqAction::Trigger, 0, IrqData::None { count: 0 })
    }

    /// Signals the eventfds bound to vectors `start..start + count`, as if the
    /// device had fired them (`DATA_NONE` trigger: a loopback test). The
    /// kernel sends no message to the device, so Bus Master Enable plays no
    /// part; on an index that is not enabled, `EINVAL`.
    fn trigger_interrupts(&self, index: IrqIndex, start: u32, count: u32) -> Result<()> {
        self.set_irqs(index, IrqAction::Trigger, start, IrqData::None { count })
    }

    /// Unmasks INTx after the driver has handled it (INTx is automasked).
    fn unmask_intx(&self) -> Result<()> {
        self.set_irqs(
            IrqIndex::INTX,
            IrqAction::Unmask,
            0,
            IrqData::None { count: 1 },
        )
    }

    /// Reads `N` bytes of config space at `offset`.
    fn read_config<const N: usize>(&self, offset: u64) -> Result<[u8; N]>
    where
        Self: Sized,
    {
        let mut buf = [0u8; N];
        crate::access::read_exact(self, crate::info::region::CONFIG, offset, &mut buf)?;
        Ok(buf)
    }

    /// Sets or clears Bus Master Enable (bit 2 of the PCI command register).
    /// A device can neither DMA nor send MSI/MSI-X messages without it, and
    /// vfio-pci leaves it to the driver.
    fn set_bus_master(&self, enable: bool) -> Result<()> {
        const COMMAND: u64 = 0x04;
        const BUS_MASTER: u16 = 1 << 2;
        let mut cmd = [0u8; 2];
        crate::access::read_exact(self, crate::info::region::CONFIG, COMMAND, &mut cmd)?;
        let cmd = u16::from_le_bytes(cmd);
        let cmd = if enable {
            cmd | BUS_MASTER
        } else {
            cmd & !BUS_MASTER
        };
        self.write_config(COMMAND, &cmd.to_le_bytes())
    }

    /// Writes `bytes` to config space at `offset`.
    fn write_config(&self, offset: u64, bytes: &[u8]) -> Result<()> {
        crate::access::write_all(self, crate::info::region::CONFIG, offset, bytes)
    }
}

/// A region mapped into the process: fixed-width, bounds- and
/// alignment-checked volatile access. Never hands out a reference into device
/// memory; a bad offset is an error, never undefined behaviour: out of range
/// or misaligned, with no errno, since such an access never reaches the
/// kernel and the kernel has no answer for it.
pub trait MappedRegion: Send + Sync + Debug {
    /// Length in bytes.
    fn len(&self) -> u64;

    /// True when the mapping has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads a byte.
    fn read_u8(&self, offset: u64) -> Result<u8>;
    /// Reads a naturally aligned little-endian `u16`.
    fn read_u16(&self, offset: u64) -> Result<u16>;
    /// Reads a naturally aligned little-endian `u32`.
    fn read_u32(&self, offset: u64) -> Result<u32>;
    /// Reads a naturally aligned little-endian `u64`.
    fn read_u64(&self, offset: u64) -> Result<u64>;
    /// Writes a byte.
    fn write_u8(&self, offset: u64, value: u8) -> Result<()>;
    /// Writes a naturally aligned little-endian `u16`.
    fn write_u16(&self, offset: u64, value: u16) -> Result<()>;
    /// Writes a naturally aligned little-endian `u32`.
    fn write_u32(&self, offset: u64, value: u32) -> Result<()>;
    /// Writes a naturally aligned little-endian `u64`.
    fn write_u64(&self, offset: u64, value: u64) -> Result<()>;
}

/// The kernel's answer to vectors `start..start + count` of an index with
/// `max` of them: `EINVAL` (`vfio_set_irqs_validate_and_prepare`,
/// `vfio_msi_set_block`).
fn irq_range_error(index: IrqIndex, start: u32, count: u32, max: u32) -> Error {
    Error::from_errno(Operation::SetIrqs, nix::errno::Errno::EINVAL).with_detail(format_args!(
        "{index} vectors {start}..{} are past its {max} vectors",
        u64::from(start) + u64::from(count)
    ))
}

/// The `SET_IRQS` that enables `index` with `fds`, refused when `device`
/// already has it enabled.
fn enable_with<B: VfioBackend, D: Device<B> + ?Sized>(
    device: &D,
    index: IrqIndex,
    fds: &[Option<BorrowedFd<'_>>],
) -> Result<()> {
    if let Some(n) = device.enabled_interrupts(index) {
        return Err(Error::new(Operation::SetIrqs, ErrorKind::Busy)
            .with_target(device.name())
            .with_detail(format_args!(
                "{index} is already enabled with {n} vectors; disable it first"
            )));
    }
    device.set_irqs(index, IrqAction::Trigger, 0, IrqData::Eventfds(fds))
}

/// Checks that `start..start + count` lies within the vectors `device` has
/// enabled on `index` (INTx, MSI, MSI-X), or within vector 0 (ERR, REQ).
fn check_enabled_range<B: VfioBackend, D: Device<B> + ?Sized>(
    device: &D,
    index: IrqIndex,
    start: u32,
    count: u32,
) -> Result<()> {
    let moded = matches!(index, IrqIndex::INTX | IrqIndex::MSI | IrqIndex::MSIX);
    let max = if moded {
        device.enabled_interrupts(index).ok_or_else(|| {
            Error::new(Operation::SetIrqs, ErrorKind::InvalidArgument)
                .with_target(device.name())
                .with_detail(format_args!(
                    "{index} is not enabled on this handle; enable_interrupts first"
                ))
        })?
    } else {
        1
    };
    if u64::from(start) + u64::from(count) > u64::from(max) {
        return Err(irq_range_error(index, start, count, max).with_target(device.name()));
    }
    Ok(())
}

/// Every trait of the family can be a trait object: forming `dyn Trait<B>`
/// in this signature is checked for object safety when the crate compiles.
#[allow(dead_code)]
fn object_safe<B: VfioBackend>(
    _: (&dyn DmaSpace<B>, &dyn Container<B>),
    _: (&dyn IommuFd<B>, &dyn Ioas<B>),
    _: &dyn Group<B>,
    _: &dyn GroupKeepAlive<B>,
    _: &dyn Device<B>,
    _: &dyn MappedRegion,
    _: (&dyn DmaMemory, &dyn Interrupt),
) {
}
