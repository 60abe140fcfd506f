//! A simulated host with one device, set up the way a driver does it:
//! container, group, IOMMU type, device.
//!
//! Building a host writes a fake sysfs tree to a temporary directory (a few
//! milliseconds), so targets build one per thread and device kind and reuse
//! it, returning the device to its power-on state before each input.

use vfio_core::{Container, Group, IommuType, PciAddress, VfioBackend};
use vfio_mock::{MockBackend, MockContainer, MockDevice, MockGroup, MockHost, PciDeviceBuilder};

/// Where the device under test sits.
pub fn address() -> PciAddress {
    PciAddress::new(0, 0, 2, 0).expect("00:02.0 is a valid address")
}

/// The IOMMU group it is alone in.
pub const GROUP: u32 = 1;

/// A host with one device at [`address`], its group attached to a type1v2
/// container. Fields drop in order: the group before the host.
#[derive(Debug)]
pub struct OneDevice {
    /// The device's group, attached to `container`.
    pub group: MockGroup,
    /// A type1v2 container.
    pub container: MockContainer,
    /// The backend a driver uses.
    pub backend: MockBackend,
    /// The host, for acting as the device and checking its bookkeeping.
    pub host: MockHost,
    /// [`address`] as `VFIO_GROUP_GET_DEVICE_FD` takes it, printed once.
    name: String,
}

impl OneDevice {
    /// Builds the host and attaches the group.
    ///
    /// Setting up a healthy simulated host does not depend on the fuzzer's
    /// input, so a failure here is a bug in the mock (or in this function)
    /// and panics.
    pub fn new(device: PciDeviceBuilder) -> Self {
        let host = MockHost::builder()
            .cpus(2)
            .device(address(), GROUP, device)
            .build()
            .expect("building a one-device host");
        let backend = host.backend();
        let container = backend.open_container().expect("opening the container");
        let group = backend.open_group(GROUP).expect("opening the group");
        group
            .set_container(&container)
            .expect("attaching the group");
        container
            .set_iommu(IommuType::Type1v2)
            .expect("setting the IOMMU type");
        Self {
            group,
            container,
            backend,
            host,
            name: address().to_string(),
        }
    }

    /// Opens the device (`VFIO_GROUP_GET_DEVICE_FD`).
    pub fn open(&self) -> MockDevice {
        self.group
            .open_device(&self.name)
            .expect("opening the device")
    }
}
