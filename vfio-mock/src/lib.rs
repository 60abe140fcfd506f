//! A simulated VFIO host and PCI devices that behave like Linux 6.1's and
//! 6.12's vfio-pci (and 6.12's iommufd), errors included, so drivers written against
//! [`vfio_core::VfioBackend`] run in CI without hardware.
//!
//! A [`MockHost`] holds simulated PCI functions ([`PciDeviceBuilder`]) in
//! IOMMU groups, a temporary directory with fake `sys/`, `proc/` and `dev/`
//! trees (so vfio-core's [`HostPaths`](vfio_core::HostPaths) lookups work
//! unchanged), and a plan of injected faults. Its [`MockBackend`] is the
//! `VfioBackend`: containers with type1 DMA bookkeeping, groups with
//! viability and container rules, devices with region and IRQ info as
//! vfio-pci reports them, memory-backed BARs with an optional
//! [`DeviceModel`] for registers with side effects, and interrupts
//! delivered by signalling the very eventfd the driver bound. Every rule
//! says in a comment which kernel behaviour it mirrors; the shared
//! conformance suite holds the mock to the real kernel.
//!
//! [`profiles`] has QEMU's `edu` and NVMe devices and the project's QEMU
//! guest topology:
//!
//! ```
//! use vfio_core::{Container, Device, Group, IommuType, MappedRegion, VfioBackend};
//! use vfio_mock::profiles;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = profiles::qemu_guest().build()?;
//! let backend = host.backend();
//! let edu = profiles::edu_address();
//! let group = backend.open_group(backend.host_paths().iommu_group(&edu)?)?;
//! let container = backend.open_container()?;
//! group.set_container(&container)?;
//! container.set_iommu(IommuType::Type1v2)?;
//! let device = group.open_device(&edu.to_string())?;
//! let bar0 = device.map_region(0)?;
//! assert_eq!(bar0.read_u32(0)?, 0x0100_00ed);
//! host.assert_faults_consumed();
//! # Ok(())
//! # }
//! ```
//!
//! A device can also be replayed from a profile captured from a real one
//! (the `vfio-profile` crate): [`PciDeviceBuilder::from_profile`] and
//! [`MockHostBuilder::profiled_device`] give a device that answers device,
//! region, IRQ and config-space calls as the profile says, and capturing it
//! gives the same profile back.
//!
//! A [`DeviceModel`] answers register accesses and can finish work on its
//! own time: [`DeviceContext::defer`] runs it on the device's own thread,
//! [`DeviceContext::schedule`] when a test moves the host's virtual clock
//! with [`MockHost::advance`] or [`MockHost::run_until_idle`], so a device
//! can be made slow, fast or reordered deterministically (see
//! [`DeviceModel`] for the locking rules a model lives under). Work pending
//! when the device is reset (`VFIO_DEVICE_RESET`, or vfio-pci's reset at
//! the open and last close of a device that can reset) or when its removal
//! completes is dropped without running, as a reset aborts a device's work.
//! A device that cannot reset keeps its work across a close, but the close
//! clears bus mastering, so its DMA fails with
//! [`DmaFault::BusMasterDisabled`] and its MSIs are lost. Work already
//! running finishes. Dropping the host ends each device's worker thread: an
//! idle one is joined, one in the middle of a job ends when the job returns
//! (the drop does not wait for it), and jobs still queued are dropped. A model may own the body of a
//! vendor-specific capability ([`PciDeviceBuilder::vendor_capability`]);
//! the rest of config space and the MSI-X table and PBA are the mock's, as
//! vfio-pci virtualizes a real function's.
//!
//! Device DMA goes through the container's mappings: every mapped byte of a
//! transfer moves and the rest is refused, and each refusal is a record in
//! [`MockHost::iommu_faults`], what intel-iommu prints to the kernel log.
//!
//! A host built with [`KernelVersion::V6_12`] also offers what the 6.12
//! guest kernel does beyond the container and group: `/dev/iommu`
//! ([`MockIommuFd`], its IOASes [`MockIoas`], object ids, IOVA ranges and
//! kernel-chosen IOVAs as `drivers/iommu/iommufd` gives them) and each
//! vfio-pci device's cdev (`/dev/vfio/devices/vfioN`, opened with
//! [`VfioBackend::open_device_cdev`](vfio_core::VfioBackend::open_device_cdev)),
//! which answers EINVAL until bound to an iommufd, excludes the group while
//! bound, and DMAs through the IOAS it is attached to.
//! [`vfio_core::open::open_device`] opens a device in any mode:
//!
//! ```
//! use vfio_core::open::{Mode, open_device};
//! use vfio_core::{DmaFlags, DmaSpace, Ioas, VfioBackend};
//! use vfio_mock::{KernelVersion, profiles};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = profiles::qemu_guest().kernel(KernelVersion::V6_12).build()?;
//! let backend = host.backend();
//! let opened = open_device(&backend, &profiles::edu_address(), Mode::Iommufd)?;
//! let ioas = opened.dma.ioas().expect("iommufd mode");
//! let memory = backend.alloc_dma(4096)?;
//! let page = ioas.map_dma_anywhere(&memory, 0, 4096, DmaFlags::READ | DmaFlags::WRITE)?;
//! // The lowest free IOVA from 4 KiB up, as iopt_alloc_iova picks it.
//! assert_eq!(page.iova(), 0x1000);
//! # Ok(())
//! # }
//! ```
//!
//! In no-IOMMU mode ([`NoIommuMode::Enabled`],
//! [`MockHostBuilder::noiommu_device`]) nothing translates DMA: every DMA
//! buffer has simulated physical addresses
//! ([`DmaMemory::physical_address`](vfio_core::DmaMemory::physical_address)),
//! no two base pages of one contiguous, and a device's DMA to an address no
//! live buffer holds is [`DmaFault::NoMemory`]. The kernel shows itself
//! tainted (`/proc/sys/kernel/tainted` is 64).
//!
//! Fault injection follows embedded-hal-mock: [`MockHost::fail_next`]
//! makes the next calls of an operation fail with an errno,
//! [`MockHost::done`] checks they all happened, and
//! [`MockHost::remove_device`] removes a device as its sysfs `remove` does:
//! the user is asked to release it (REQ), and it goes once released.
#![deny(missing_docs)]

mod bar;
mod builder;
mod clock;
mod config_space;
mod container;
mod device;
mod fault;
mod fault_log;
mod group;
mod host;
mod hot_reset;
mod iommu;
mod iommufd;
mod irq;
mod memory;
mod model;
mod pci_device;
mod procfs;
mod profile;
pub mod profiles;
mod region;
mod scheduler;
mod sysfs;
mod trigger;
mod virqfd;

pub use builder::{BarKind, BarSpec, BuildError, MsiSpec, MsixSpec, PciDeviceBuilder};
pub use clock::MockClock;
pub use container::MockContainer;
pub use device::MockDevice;
pub use fault::{PendingFault, UnconsumedFaults};
pub use fault_log::{FaultAccess, IommuFault, REASON_BEYOND_MGAW, REASON_NO_READ, REASON_NO_WRITE};
pub use group::MockGroup;
pub use host::{KeepAlive, KernelVersion, MockBackend, MockHost, MockHostBuilder, Removal};
pub use iommufd::{MockIoas, MockIommuFd};
pub use memory::MockDmaMemory;
pub use model::{Delivery, DeviceContext, DeviceModel, DmaFault, Irq};
pub use pci_device::Driver;
pub use profile::profile_kernel;
pub use region::MockRegion;
pub use sysfs::NoIommuMode;
