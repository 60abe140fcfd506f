//! The real VFIO backend: Linux's vfio ioctls, mmap, eventfds, sysfs and procfs.
//!
//! [`LinuxBackend`] implements the [`vfio_core::VfioBackend`] trait family on
//! the kernel's `/dev/vfio` interface. Raw calls live in three private modules
//! (`sys` for ioctls, `mmap` for mappings, `barrier` for the barrier
//! instructions DMA ordering needs); everything else is safe code but
//! one block, `LinuxContainer`'s call of `VFIO_IOMMU_MAP_DMA`, whose
//! precondition (no Rust reference ever reaches DMA-able memory) is met there.
//!
//! ```no_run
//! use vfio_core::{Container, Device, Group, IommuType, MappedRegion, VfioBackend, PciAddress};
//! use vfio_linux::LinuxBackend;
//!
//! # fn main() -> vfio_core::Result<()> {
//! let backend = LinuxBackend::new();
//! let address: PciAddress = "0000:00:02.0".parse().expect("a PCI address");
//! let group = backend.open_group(backend.host_paths().iommu_group(&address)?)?;
//! let container = backend.open_container()?;
//! group.set_container(&container)?;
//! container.set_iommu(IommuType::Type1v2)?;
//! let device = group.open_device(&address.to_string())?;
//! let bar0 = device.map_region(0)?;
//! println!("edu identification: {:#010x}", bar0.read_u32(0)?);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod barrier;
mod container;
mod decode;
mod device;
mod group;
mod iommufd;
mod memory;
mod mmap;
mod sys;
mod sys_uapi;
mod uapi;

pub use container::LinuxContainer;
pub use device::LinuxDevice;
pub use group::LinuxGroup;
pub use iommufd::{LinuxIoas, LinuxIommuFd};
pub use memory::{LinuxDmaMemory, LinuxRegion};
/// vfio-core's adapter for awaiting interrupts on tokio (feature `tokio`),
/// re-exported; it works with any backend, so mock-only code can depend on
/// vfio-core's `tokio` feature instead.
#[cfg(feature = "tokio")]
pub use vfio_core::AsyncInterrupt;

use std::fs::{File, OpenOptions};
use std::path::Path;
use vfio_core::{Error, EventFdInterrupt, HostPaths, HugePages, Operation, Result, VfioBackend};

/// The kernel's VFIO, reached through the files under a [`HostPaths`].
#[derive(Debug, Clone)]
pub struct LinuxBackend {
    paths: HostPaths,
}

impl Default for LinuxBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl LinuxBackend {
    /// The host's real `/dev`, `/sys` and `/proc`.
    pub fn new() -> Self {
        Self::with_paths(HostPaths::default())
    }

    /// A backend whose files live under `paths`.
    pub fn with_paths(paths: HostPaths) -> Self {
        Self { paths }
    }

    fn open_rw(op: Operation, path: &Path) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::from_io(op, e).with_target(path.display()))
    }

    fn open_group_at(&self, path: &Path, number: u32) -> Result<LinuxGroup> {
        let file = Self::open_rw(Operation::OpenGroup, path)?;
        Ok(LinuxGroup::new(file, number))
    }
}

impl VfioBackend for LinuxBackend {
    type Container = LinuxContainer;
    type Group = LinuxGroup;
    type Device = LinuxDevice;
    type Region = LinuxRegion;
    type DmaMemory = LinuxDmaMemory;
    type Interrupt = EventFdInterrupt;
    type IommuFd = LinuxIommuFd;
    type Ioas = LinuxIoas;

    fn host_paths(&self) -> &HostPaths {
        &self.paths
    }

    fn open_container(&self) -> Result<LinuxContainer> {
        Self::open_rw(Operation::OpenContainer, &self.paths.container_path())
            .map(LinuxContainer::new)
    }

    fn open_group(&self, number: u32) -> Result<LinuxGroup> {
        self.open_group_at(&self.paths.group_path(number), number)
    }

    fn open_noiommu_group(&self, number: u32) -> Result<LinuxGroup> {
        self.open_group_at(&self.paths.noiommu_group_path(number), number)
    }

    fn open_iommufd(&self) -> Result<LinuxIommuFd> {
        Err(iommufd::unsupported(Operation::OpenIommufd))
    }

    fn open_device_cdev(&self, _address: &vfio_core::PciAddress) -> Result<LinuxDevice> {
        Err(iommufd::unsupported(Operation::OpenDeviceCdev))
    }

    fn new_interrupt(&self) -> Result<EventFdInterrupt> {
        EventFdInterrupt::new()
    }

    fn alloc_dma_with(&self, size: usize, pages: HugePages) -> Result<LinuxDmaMemory> {
        LinuxDmaMemory::alloc(size, pages)
    }
}
