//! Opening and capturing the mock's guest devices.

// Each test file uses a part of these.
#![allow(dead_code)]

use vfio_core::{Container, Group, IommuType, PciAddress, VfioBackend};
use vfio_mock::{MockBackend, MockDevice, MockHost};
use vfio_profile::{CaptureOptions, DeviceProfile, Source, capture};

/// A `source` block for `address`.
pub fn source(address: &PciAddress) -> Source {
    Source {
        kernel_release: "6.1.0-54-amd64".into(),
        pci_address: address.to_string(),
        driver: "vfio-pci".into(),
        iommu_group: None,
        date: Some("2026-12-02".into()),
    }
}

/// Opens `address` of `host` through its group and a type1 container, and
/// hands the device to `f`.
pub fn with_device<R>(
    host: &MockHost,
    address: &PciAddress,
    f: impl FnOnce(&MockDevice) -> R,
) -> anyhow::Result<R> {
    let backend = host.backend();
    let group = backend.open_group(backend.host_paths().iommu_group(address)?)?;
    let container = backend.open_container()?;
    group.set_container(&container)?;
    container.set_iommu(IommuType::Type1v2)?;
    let device = group.open_device(&address.to_string())?;
    Ok(f(&device))
}

/// Captures `address` of `host` with `options`.
pub fn capture_at(
    host: &MockHost,
    address: &PciAddress,
    options: &CaptureOptions,
) -> anyhow::Result<DeviceProfile> {
    Ok(with_device(host, address, |d| {
        capture::<MockBackend>(d, options)
    })??)
}

/// The profile of the guest's `edu` (256-byte config space) or NVMe
/// controller (4096 bytes).
pub fn guest_profile(nvme: bool) -> DeviceProfile {
    let host = vfio_mock::profiles::qemu_guest()
        .build()
        .expect("the guest host builds");
    let address = if nvme {
        vfio_mock::profiles::nvme_address()
    } else {
        vfio_mock::profiles::edu_address()
    };
    capture_at(&host, &address, &CaptureOptions::new(source(&address)))
        .expect("the guest device captures")
}
