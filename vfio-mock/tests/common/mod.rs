//! Helpers shared by the integration tests.
#![allow(dead_code)]

use vfio_core::{Container, Group, IommuType, VfioBackend};
use vfio_mock::{MockBackend, MockContainer, MockDevice, MockGroup, MockHost, profiles};

/// An opened device with the group and container it needs (dropped in this order).
pub struct Opened {
    pub device: MockDevice,
    pub group: MockGroup,
    pub container: MockContainer,
}

pub fn guest() -> (MockHost, MockBackend) {
    let host = profiles::qemu_guest()
        .build()
        .expect("the guest topology builds");
    let backend = host.backend();
    (host, backend)
}

pub fn open(backend: &MockBackend, address: vfio_core::PciAddress) -> Opened {
    let number = backend.host_paths().iommu_group(&address).expect("group");
    let group = backend.open_group(number).expect("open group");
    let container = backend.open_container().expect("container");
    group.set_container(&container).expect("set container");
    container.set_iommu(IommuType::Type1v2).expect("set iommu");
    let device = group
        .open_device(&address.to_string())
        .expect("open device");
    Opened {
        device,
        group,
        container,
    }
}
