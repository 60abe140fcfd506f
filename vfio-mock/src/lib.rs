//! A simulated VFIO host and PCI devices that behave like Linux 6.1's vfio-pci.
#![deny(missing_docs)]

mod bar;
mod builder;
mod clock;
mod config_space;
mod container;
mod device;
mod fault;
mod group;
mod host;
mod iommu;
mod irq;
mod memory;
mod model;
mod pci_device;
mod procfs;
pub mod profiles;
mod region;
mod sysfs;
mod trigger;

pub use builder::{BarKind, BarSpec, BuildError, MsiSpec, MsixSpec, PciDeviceBuilder};
pub use clock::MockClock;
pub use container::MockContainer;
pub use device::MockDevice;
pub use fault::{PendingFault, UnconsumedFaults};
pub use group::MockGroup;
pub use host::{KeepAlive, MockBackend, MockHost, MockHostBuilder};
pub use memory::MockDmaMemory;
pub use model::{Delivery, DeviceContext, DeviceModel, DmaFault, Irq};
pub use pci_device::Driver;
pub use region::MockRegion;
pub use sysfs::NoIommuMode;
