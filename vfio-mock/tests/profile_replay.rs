//! A device replayed from a profile: its sysfs entries follow the profile,
//! and a broken profile is a build error, not a device.

use vfio_core::{Container, Device, Group, IommuType, PciAddress, VfioBackend};
use vfio_mock::{MockHost, PciDeviceBuilder, profiles};
use vfio_profile::{CaptureOptions, DeviceProfile, Source, capture};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn edu_profile() -> Result<DeviceProfile> {
    let host = profiles::qemu_guest().build()?;
    let backend = host.backend();
    let edu = profiles::edu_address();
    let group = backend.open_group(backend.host_paths().iommu_group(&edu)?)?;
    let container = backend.open_container()?;
    group.set_container(&container)?;
    container.set_iommu(IommuType::Type1v2)?;
    let device = group.open_device(&edu.to_string())?;
    let source = Source {
        kernel_release: "6.1.0-54-amd64".into(),
        pci_address: edu.to_string(),
        driver: "vfio-pci".into(),
        iommu_group: None,
        date: None,
    };
    Ok(capture::<vfio_mock::MockBackend>(
        &device,
        &CaptureOptions::new(source),
    )?)
}

#[test]
fn sysfs_entries_of_a_replayed_device_follow_its_profile() -> Result<()> {
    let mut profile = edu_profile()?;
    // Another function of the same layout: new IDs, in config space and ids.
    profile.config.bytes.0[0x02..0x04].copy_from_slice(&0x5678u16.to_le_bytes());
    profile.config.bytes.0[0x09..0x0c].copy_from_slice(&[0x01, 0x80, 0x12]);
    profile.ids.device = 0x5678;
    profile.ids.class = 0x12_80_01;
    let address = PciAddress::new(0, 2, 0, 0).expect("bus 2 is a valid address");
    let host = MockHost::builder()
        .profiled_device(address, 9, &profile)
        .build()?;
    let dir = host.paths().pci_device_dir(&address);
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    assert_eq!(read("vendor")?, "0x1234\n");
    assert_eq!(read("device")?, "0x5678\n");
    assert_eq!(read("class")?, "0x128001\n");
    assert_eq!(
        read("revision")?,
        format!("{:#04x}\n", profile.ids.revision)
    );
    assert_eq!(
        std::fs::read(dir.join("config"))?,
        profile.config.bytes.as_slice()
    );
    assert_eq!(host.paths().iommu_group(&address)?, 9);
    // And the device answers as the profile says.
    let backend = host.backend();
    let group = backend.open_group(9)?;
    let container = backend.open_container()?;
    group.set_container(&container)?;
    container.set_iommu(IommuType::Type1v2)?;
    let device = group.open_device(&address.to_string())?;
    assert_eq!(device.read_config::<2>(0x02)?, 0x5678u16.to_le_bytes());
    assert_eq!(device.region_info(0)?.size, profile.regions[0].size);
    Ok(())
}

#[test]
fn a_host_replaying_a_profile_has_its_kernel_address_and_group() -> Result<()> {
    let mut profile = edu_profile()?;
    profile.source.kernel_release = "6.12.95".into();
    profile.source.iommu_group = Some(12);
    let host = MockHost::replaying(&profile)?.build()?;
    assert_eq!(host.kernel(), vfio_mock::KernelVersion::V6_12);
    assert_eq!(host.paths().iommu_group(&profiles::edu_address())?, 12);
    profile.source.pci_address = "00:02".into();
    let e = MockHost::replaying(&profile).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("the profile's source address `00:02`"),
        "{e}"
    );
    Ok(())
}

#[test]
fn a_broken_profile_is_a_build_error() -> Result<()> {
    let mut profile = edu_profile()?;
    profile.config.bytes.0[0x41] = 0x40;
    let e = MockHost::builder()
        .device(
            profiles::edu_address(),
            1,
            PciDeviceBuilder::from_profile(&profile),
        )
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "0000:00:02.0: profile refused: PCI capability list broken at 0x41: points back to 0x40: loop"
    );
    Ok(())
}
