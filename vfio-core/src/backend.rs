//! The `VfioBackend` trait family.
//!
//! A backend names its handle types once, as associated types, and drivers are
//! generic over `B: VfioBackend`: static dispatch, no boxing, no downcasts.
//! Every method has one meaning on every backend: the meaning Linux's
//! vfio-pci gives the corresponding ioctl.

use crate::error::Result;
use crate::host::HostPaths;
use crate::info::{
    DeviceInfo, DmaFlags, Extension, GroupStatus, IommuInfo, IommuType, IrqIndex, IrqInfo,
    RegionInfo,
};
use crate::interrupt::Interrupt;
use crate::irq::{IrqAction, IrqData};
use std::fmt::Debug;
use std::os::fd::{AsFd, BorrowedFd};

/// A VFIO implementation: the real kernel, or a simulation of it.
pub trait VfioBackend: Sized + Send + Sync + Debug + 'static {
    /// An IOMMU context (`/dev/vfio/vfio`).
    type Container: Container<Self>;
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

    /// The host paths this backend's lookups read.
    fn host_paths(&self) -> &HostPaths;

    /// Opens a new container.
    fn open_container(&self) -> Result<Self::Container>;

    /// Opens IOMMU group `number` (`/dev/vfio/<number>`).
    fn open_group(&self, number: u32) -> Result<Self::Group>;

    /// Opens no-IOMMU group `number` (`/dev/vfio/noiommu-<number>`).
    fn open_noiommu_group(&self, number: u32) -> Result<Self::Group>;

    /// Creates an interrupt handle to bind to a vector.
    fn new_interrupt(&self) -> Result<Self::Interrupt>;

    /// Allocates `size` bytes (rounded up to a page) of zeroed memory for DMA.
    fn alloc_dma(&self, size: usize) -> Result<Self::DmaMemory>;
}

/// Container operations (`VFIO_GET_API_VERSION` .. `VFIO_IOMMU_UNMAP_DMA`).
pub trait Container<B: VfioBackend>: Send + Sync + Debug {
    /// `VFIO_GET_API_VERSION` (0 on every kernel so far).
    fn api_version(&self) -> Result<i32>;

    /// `VFIO_CHECK_EXTENSION`: the kernel's answer, 0 meaning unsupported.
    fn check_extension(&self, extension: Extension) -> Result<u32>;

    /// `VFIO_SET_IOMMU`. The container needs a group first.
    fn set_iommu(&self, iommu: IommuType) -> Result<()>;

    /// `VFIO_IOMMU_GET_INFO` with its capabilities (IOVA ranges, DMA limit).
    fn iommu_info(&self) -> Result<IommuInfo>;

    /// `VFIO_IOMMU_MAP_DMA`: makes `size` bytes of `memory` starting at
    /// `offset` visible to devices at `iova`.
    fn map_dma(
        &self,
        memory: &B::DmaMemory,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<()>;

    /// `VFIO_IOMMU_UNMAP_DMA`: returns how many bytes were unmapped.
    fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64>;
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

    /// `VFIO_GROUP_GET_DEVICE_FD` for `name` (for vfio-pci, the PCI address),
    /// retried once after 250 ms (on the backend's clock) if it fails with
    /// `ENODEV`: Linux 6.1 can report that briefly after a device appears.
    /// A name with a NUL byte is refused as invalid with no errno: the kernel
    /// would read only the part before the NUL.
    fn open_device(&self, name: &str) -> Result<B::Device>;

    /// The downstream keep-alive ioctl: upstream kernels answer `ENOTTY`,
    /// which surfaces as [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported).
    /// Retried once on `ENODEV` like [`open_device`](Group::open_device).
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

    /// Reads region `index` at `offset` through the device file (`pread`).
    /// Returns the byte count, which the kernel may shorten at a region's end.
    fn read_region(&self, index: u32, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Writes region `index` at `offset` through the device file (`pwrite`).
    /// Returns the byte count, which the kernel may shorten at a region's end.
    fn write_region(&self, index: u32, offset: u64, buf: &[u8]) -> Result<usize>;

    /// Maps all of region `index`. A region without the mmap flag (config
    /// space never has it) is refused with EINVAL, vfio-pci's answer.
    fn map_region(&self, index: u32) -> Result<B::Region>;

    /// `VFIO_DEVICE_SET_IRQS`, as the uAPI defines it: `action` on vectors
    /// `start..` of `index`, with `data` saying which and how many.
    fn set_irqs(
        &self,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> Result<()>;

    /// Binds `interrupts[i]` to vector `start + i` of `index` (enabling the
    /// index if needed). One ioctl, however many vectors.
    fn bind_interrupts(
        &self,
        index: IrqIndex,
        start: u32,
        interrupts: &[&B::Interrupt],
    ) -> Result<()> {
        let fds: Vec<Option<BorrowedFd<'_>>> = interrupts.iter().map(|i| Some(i.as_fd())).collect();
        self.set_irqs(index, IrqAction::Trigger, start, IrqData::Eventfds(&fds))
    }

    /// Unbinds vectors `start..start + count` of `index`, leaving the others
    /// bound and the index enabled (eventfd -1 for each, as the kernel expects).
    fn unbind_interrupts(&self, index: IrqIndex, start: u32, count: u32) -> Result<()> {
        let fds = vec![None; count as usize];
        self.set_irqs(index, IrqAction::Trigger, start, IrqData::Eventfds(&fds))
    }

    /// Disables every vector of `index` (`DATA_NONE`, `count` 0).
    fn disable_interrupts(&self, index: IrqIndex) -> Result<()> {
        self.set_irqs(index, IrqAction::Trigger, 0, IrqData::None { count: 0 })
    }

    /// Signals the eventfds bound to vectors `start..start + count`, as if the
    /// device had fired them (`DATA_NONE` trigger: a loopback test).
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
    fn read_config<const N: usize>(&self, offset: u64) -> Result<[u8; N]> {
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
        let cmd = u16::from_le_bytes(self.read_config::<2>(COMMAND)?);
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

/// Memory a device may read and write by DMA once mapped into a container.
///
/// The device may change it at any time, so the CPU side is copy-in/copy-out
/// only: no slice of it is ever lent out.
pub trait DmaMemory: Send + Sync + Debug {
    /// Length in bytes (a whole number of pages).
    fn len(&self) -> usize;

    /// True when the buffer has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `buf.len()` bytes at `offset` out of the buffer.
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()>;

    /// Copies `data` into the buffer at `offset`.
    fn write_at(&self, offset: usize, data: &[u8]) -> Result<()>;
}
