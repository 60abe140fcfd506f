//! What the mock's benchmarks share: criterion settings that keep the whole
//! suite short, and opening a device the way a driver does.

use criterion::Criterion;
use std::time::Duration;
use vfio_core::{Container, Group, IommuType, PciAddress, VfioBackend};
use vfio_mock::{MockBackend, MockContainer, MockDevice, MockGroup};

/// Few samples, short warm-up and measurement: ratios, not fine detail.
pub fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
}

/// A device opened through the vfio-core traits, with the group and
/// container it needs. Fields drop in order: device, group, container.
#[derive(Debug)]
pub struct Opened {
    pub device: MockDevice,
    pub _group: MockGroup,
    pub _container: MockContainer,
}

/// Opens `address`'s group, attaches a new Type1v2 container and opens the
/// device (as conformance-tests' `Env::open`). Panics on failure: this is
/// benchmark setup.
pub fn open(backend: &MockBackend, address: PciAddress) -> Opened {
    let number = backend
        .host_paths()
        .iommu_group(&address)
        .expect("the device's IOMMU group");
    let group = backend.open_group(number).expect("open the group");
    let container = backend.open_container().expect("open a container");
    group.set_container(&container).expect("attach the group");
    container
        .set_iommu(IommuType::Type1v2)
        .expect("set the IOMMU type");
    let device = group
        .open_device(&address.to_string())
        .expect("open the device");
    Opened {
        device,
        _group: group,
        _container: container,
    }
}
