//! Captures the mock's NVMe controller, writes its profile, and replays it.
//!
//! `cargo run -p vfio-profile --example replay_nvme [FILE]` writes the
//! profile to FILE (default: a file in the system's temporary directory),
//! reads it back, builds a new mock host with the controller replayed from
//! it, and shows the replay answers as the original: the same profile when
//! captured again, and with the NVMe register model attached, a working
//! controller behind the replayed config space.

use vfio_core::{Container, Device, Group, IommuType, MappedRegion, PciAddress, VfioBackend};
use vfio_mock::profiles::{self, NvmeModel};
use vfio_mock::{MockBackend, MockDevice, MockHost, PciDeviceBuilder};
use vfio_profile::{CaptureOptions, DeviceProfile, Source, capture};

/// The NVMe Version register (NVMe base specification, controller registers).
const VS: u64 = 0x08;

fn open(host: &MockHost, address: &PciAddress) -> anyhow::Result<(MockDevice, impl Sized)> {
    let backend = host.backend();
    let group = backend.open_group(backend.host_paths().iommu_group(address)?)?;
    let container = backend.open_container()?;
    group.set_container(&container)?;
    container.set_iommu(IommuType::Type1v2)?;
    let device = group.open_device(&address.to_string())?;
    Ok((device, (group, container)))
}

fn main() -> anyhow::Result<()> {
    let path = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("nvme-profile.json"));
    let address = profiles::nvme_address();
    let group = profiles::QEMU_GUEST_GROUPS.1;
    let options = CaptureOptions::new(Source {
        kernel_release: "6.1.0-54-amd64".into(),
        pci_address: address.to_string(),
        driver: "vfio-pci".into(),
        iommu_group: None,
        date: None,
    });

    let guest = profiles::qemu_guest().build()?;
    let (device, _context) = open(&guest, &address)?;
    let profile = capture::<MockBackend>(&device, &options)?;
    let version = device.map_region(0)?.read_u32(VS)?;
    drop(device);
    std::fs::write(&path, profile.to_json())?;
    println!(
        "captured {:04x}:{:04x} at {address}: {} regions, {} MSI-X vectors, {} bytes of config space -> {}",
        profile.ids.vendor,
        profile.ids.device,
        profile.regions.len(),
        profile.irqs[2].count,
        profile.config.bytes.len(),
        path.display()
    );

    let read = DeviceProfile::from_json(&std::fs::read_to_string(&path)?)?;
    let replay = MockHost::builder()
        .profiled_device(address, group, &read)
        .build()?;
    let (device, _context) = open(&replay, &address)?;
    let again = capture::<MockBackend>(&device, &options)?;
    anyhow::ensure!(again.to_json() == profile.to_json(), "the replay differs");
    println!("replayed: capturing the replay gives the same profile");
    drop(device);

    // The profile has no registers' behaviour: attach the model for that.
    let working = MockHost::builder()
        .device(
            address,
            group,
            PciDeviceBuilder::from_profile(&read).model(NvmeModel::new()),
        )
        .build()?;
    let (device, _context) = open(&working, &address)?;
    let replayed_version = device.map_region(0)?.read_u32(VS)?;
    anyhow::ensure!(replayed_version == version, "VS {replayed_version:#x}");
    println!("with the NVMe model: VS reads {version:#010x}, as on the original");
    Ok(())
}
