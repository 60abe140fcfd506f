//! The real VFIO backend: Linux's vfio ioctls, mmap, eventfds, sysfs and procfs.
//!
//! [`LinuxBackend`] implements the [`vfio_core::VfioBackend`] trait family on
//! the kernel's `/dev/vfio` and `/dev/iommu` interfaces. Raw calls live in
//! three private modules (`sys` for ioctls, `mmap` for mappings and
//! `mlock`, `barrier` for the barrier instructions DMA ordering needs);
//! `mmap` also gives [`LinuxRegion::map_file`] (a file mapped as a BAR is,
//! `unsafe` because volatile access is not atomic) and [`SharedFileMap`]
//! (a file updated in place by atomic stores, which vfio-mock's fake
//! `/proc/interrupts` uses);
//! everything else is safe code but two blocks, the calls of
//! `VFIO_IOMMU_MAP_DMA` (in [`LinuxContainer`]) and `IOMMU_IOAS_MAP` (in
//! [`LinuxIoas`]), whose precondition (no Rust reference ever reaches
//! DMA-able memory, and the memory stays the process's until unmapped) is
//! met there.
//!
//! Three ways to give a device an IOMMU context, as [`vfio_core::open`]
//! drives them:
//!
//! - **Type1**: a group (`/dev/vfio/N`) in a container (`/dev/vfio/vfio`)
//!   set to `VFIO_TYPE1v2_IOMMU`, as in the example below.
//! - **iommufd** (Linux 6.6 and later, `CONFIG_IOMMUFD` and
//!   `CONFIG_VFIO_DEVICE_CDEV`): the device's cdev
//!   (`/dev/vfio/devices/vfioN`, [`VfioBackend::open_device_cdev`]) bound to
//!   an iommufd ([`LinuxIommuFd`]) and attached to one of its I/O address
//!   spaces ([`LinuxIoas`]).
//! - **no-IOMMU** (`CONFIG_VFIO_NOIOMMU` and
//!   `vfio.enable_unsafe_noiommu_mode=1`): a `/dev/vfio/noiommu-N` group in
//!   a container set to `VFIO_NOIOMMU_IOMMU`. Nothing translates: devices
//!   are given physical addresses ([`LinuxDmaMemory`]'s
//!   `physical_address`, read from `/proc/self/pagemap` with
//!   `CAP_SYS_ADMIN`), and nothing protects memory from the device.
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
mod pagemap;
mod sys;
mod sys_uapi;
mod uapi;

pub use container::LinuxContainer;
pub use device::LinuxDevice;
pub use group::LinuxGroup;
pub use iommufd::{LinuxIoas, LinuxIommuFd};
pub use memory::{LinuxDmaMemory, LinuxRegion};
pub use mmap::SharedFileMap;
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

    /// Opens `/dev/vfio/noiommu-<number>`. The kernel creates such groups
    /// only when built with `CONFIG_VFIO_NOIOMMU` and loaded with
    /// `vfio.enable_unsafe_noiommu_mode=1`, for devices without an IOMMU
    /// group (`vfio_noiommu_group_alloc`); a missing node is
    /// [`ErrorKind::NotFound`](vfio_core::ErrorKind::NotFound) with a
    /// detail saying so.
    fn open_noiommu_group(&self, number: u32) -> Result<LinuxGroup> {
        let path = self.paths.noiommu_group_path(number);
        self.open_group_at(&path, number).map_err(|e| {
            if e.errno() == Some(nix::errno::Errno::ENOENT) {
                e.with_detail(
                    "no such no-IOMMU group: the kernel creates them only with \
                     vfio.enable_unsafe_noiommu_mode=1 (which needs CONFIG_VFIO_NOIOMMU), \
                     for a device bound to vfio-pci that has no IOMMU group",
                )
            } else {
                e
            }
        })
    }

    /// Opens `/dev/iommu`. A kernel without `CONFIG_IOMMUFD` has no such
    /// node: [`ErrorKind::NotFound`](vfio_core::ErrorKind::NotFound) with a
    /// detail naming the option.
    fn open_iommufd(&self) -> Result<LinuxIommuFd> {
        let path = self.paths.iommufd_path();
        let file = Self::open_rw(Operation::OpenIommufd, &path).map_err(|e| {
            if e.errno() == Some(nix::errno::Errno::ENOENT) {
                e.with_detail("no iommufd: the kernel lacks CONFIG_IOMMUFD (Linux 6.2 and later)")
            } else {
                e
            }
        })?;
        Ok(LinuxIommuFd::new(file))
    }

    /// Opens `address`'s VFIO device cdev, `/dev/vfio/devices/vfioN`, `N`
    /// from its sysfs `vfio-dev/` entry (`vfio_device_fops_cdev_open`; ENODEV
    /// for a device being unregistered). The device is named by its PCI
    /// address. Until [`bind_iommufd`](vfio_core::Device::bind_iommufd)
    /// succeeds, every other call is the kernel's EINVAL
    /// (`vfio_device_fops_unl_ioctl` and the read, write and mmap handlers
    /// check `access_granted`), so the region infos are read at the bind.
    /// A device with the sysfs entry but no node is a no-IOMMU one: the
    /// kernel gives those no cdev (`vfio_device_add`), and they are opened
    /// through their `noiommu-N` group.
    fn open_device_cdev(&self, address: &vfio_core::PciAddress) -> Result<LinuxDevice> {
        let name = self.paths.device_cdev_name(address)?;
        let path = self.paths.device_cdev_path(&name);
        let file = Self::open_rw(Operation::OpenDeviceCdev, &path).map_err(|e| {
            if e.errno() == Some(nix::errno::Errno::ENOENT) {
                e.with_detail(format_args!(
                    "{address} has a sysfs vfio-dev/{name} entry but no device node: the \
                     kernel gives no-IOMMU devices no cdev; open it through its \
                     /dev/vfio/noiommu-N group"
                ))
            } else {
                e
            }
        })?;
        Ok(LinuxDevice::new_cdev(file, address.to_string()))
    }

    fn new_interrupt(&self) -> Result<EventFdInterrupt> {
        EventFdInterrupt::new()
    }

    fn alloc_dma_with(&self, size: usize, pages: HugePages) -> Result<LinuxDmaMemory> {
        LinuxDmaMemory::alloc(size, pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::{ErrorKind, PciAddress};

    fn backend(root: &Path) -> LinuxBackend {
        LinuxBackend::with_paths(HostPaths::under(root))
    }

    #[test]
    fn a_missing_dev_iommu_names_config_iommufd() {
        let root = tempfile::tempdir().unwrap();
        let e = backend(root.path()).open_iommufd().unwrap_err();
        assert_eq!(
            (e.operation(), e.kind()),
            (Operation::OpenIommufd, ErrorKind::NotFound)
        );
        assert!(e.detail().unwrap().contains("CONFIG_IOMMUFD"), "{e}");
        assert!(e.to_string().contains("dev/iommu"), "{e}");
    }

    #[test]
    fn a_sysfs_cdev_entry_without_a_node_is_a_noiommu_device() {
        let root = tempfile::tempdir().unwrap();
        let address: PciAddress = "0000:00:03.0".parse().unwrap();
        let b = backend(root.path());
        // Not bound to VFIO at all: no vfio-dev directory.
        let e = b.open_device_cdev(&address).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.detail().unwrap().contains("CONFIG_VFIO_DEVICE_CDEV"),
            "{e}"
        );
        // The sysfs entry, but no /dev/vfio/devices/vfio0.
        let dir = b
            .host_paths()
            .pci_device_dir(&address)
            .join("vfio-dev/vfio0");
        std::fs::create_dir_all(dir).unwrap();
        let e = b.open_device_cdev(&address).unwrap_err();
        assert_eq!(
            (e.operation(), e.kind()),
            (Operation::OpenDeviceCdev, ErrorKind::NotFound)
        );
        assert!(e.detail().unwrap().contains("no-IOMMU"), "{e}");
        assert!(e.to_string().contains("vfio/devices/vfio0"), "{e}");
    }

    #[test]
    fn a_missing_noiommu_group_names_the_module_parameter() {
        let root = tempfile::tempdir().unwrap();
        let e = backend(root.path()).open_noiommu_group(0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let detail = e.detail().unwrap();
        assert!(detail.contains("vfio.enable_unsafe_noiommu_mode=1"), "{e}");
        assert!(detail.contains("CONFIG_VFIO_NOIOMMU"), "{e}");
    }
}
