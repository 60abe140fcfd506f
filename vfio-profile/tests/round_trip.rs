//! Capture of a mock device, replay of the capture in a new mock, and
//! capture again: the same profile, byte for byte.

mod common;

use common::{capture_at, source, with_device};
use vfio_core::{Device, MappedRegion, PciAddress};
use vfio_mock::{BarSpec, MockHost, PciDeviceBuilder, profiles};
use vfio_profile::{CaptureOptions, DeviceProfile};

/// Captures `address` of `host`, replays the capture at the same address
/// in a new host, captures that, and checks both files are equal; returns
/// the replaying host and the profile.
fn round_trip(
    host: &MockHost,
    address: &PciAddress,
    group: u32,
    options: &CaptureOptions,
) -> anyhow::Result<(MockHost, DeviceProfile)> {
    let first = capture_at(host, address, options)?;
    let text = first.to_json();
    assert!(text.ends_with("}\n"));
    let read = DeviceProfile::from_json(&text)?;
    assert_eq!(read, first);
    let replay = MockHost::builder()
        .profiled_device(*address, group, &read)
        .build()?;
    let second = capture_at(&replay, address, options)?;
    assert_eq!(second.to_json(), text);
    Ok((replay, second))
}

#[test]
fn edu_capture_replays_to_the_same_profile() -> anyhow::Result<()> {
    let host = profiles::qemu_guest().build()?;
    let edu = profiles::edu_address();
    let (_replay, profile) = round_trip(
        &host,
        &edu,
        profiles::QEMU_GUEST_GROUPS.0,
        &CaptureOptions::new(source(&edu)),
    )?;
    assert_eq!((profile.ids.vendor, profile.ids.device), (0x1234, 0x11e8));
    assert_eq!(profile.config.bytes.len(), 256);
    // BAR0 is 1 MiB of 32-bit memory: its register's size bits are writable.
    let bar0 = &profile.bars[0];
    assert_eq!((bar0.index, bar0.size), (0, 1 << 20));
    assert_eq!(profile.config.writable.as_slice()[0x12], 0xf0);
    assert_eq!(profile.config.writable.as_slice()[0x13], 0xff);
    Ok(())
}

#[test]
fn nvme_capture_replays_to_the_same_profile() -> anyhow::Result<()> {
    let host = profiles::qemu_guest().build()?;
    let nvme = profiles::nvme_address();
    let (_replay, profile) = round_trip(
        &host,
        &nvme,
        profiles::QEMU_GUEST_GROUPS.1,
        &CaptureOptions::new(source(&nvme)),
    )?;
    assert_eq!(profile.config.bytes.len(), 4096);
    // IDs as lspci spells them.
    let text = profile.to_json();
    for field in [
        "\"vendor\": \"0x1b36\"",
        "\"device\": \"0x0010\"",
        "\"class\": \"0x010802\"",
        "\"revision\": \"0x02\"",
    ] {
        assert!(text.contains(field), "{field}");
    }
    let msix = &profile.irqs[2];
    assert_eq!(msix.count, 65);
    assert!(
        profile.regions[0]
            .caps
            .contains(&vfio_profile::RegionCapProfile::MsixMappable)
    );
    Ok(())
}

#[test]
fn the_2048_vector_nvme_capture_replays_on_6_12() -> anyhow::Result<()> {
    let host = profiles::qemu_guest()
        .kernel(vfio_mock::KernelVersion::V6_12)
        .build()?;
    let nvme = profiles::big_nvme_address();
    let mut source = source(&nvme);
    source.kernel_release = "6.12.95".into();
    let first = capture_at(&host, &nvme, &CaptureOptions::new(source.clone()))?;
    let kernel = vfio_mock::profile_kernel(&first).expect("a 6.12 release");
    let replay = MockHost::builder()
        .kernel(kernel)
        .profiled_device(nvme, 4, &first)
        .build()?;
    let second = capture_at(&replay, &nvme, &CaptureOptions::new(source))?;
    assert_eq!(second.to_json(), first.to_json());
    assert_eq!(second.irqs[2].count, 2048);
    Ok(())
}

#[test]
fn bar_contents_are_captured_and_replayed_when_asked() -> anyhow::Result<()> {
    let address = PciAddress::new(0, 0, 4, 0).expect("slot 4 is a valid address");
    let device = PciDeviceBuilder::new(0x1af4, 0x1110)
        .class(0x05_00_00)
        .bar(0, BarSpec::memory32(4096))
        .bar(2, BarSpec::memory64(16 << 10).prefetchable())
        .msix(4, 2, 0x1000, 2, 0x1800)
        .interrupt_pin(1);
    let host = MockHost::builder().device(address, 7, device).build()?;
    with_device(&host, &address, |d| -> anyhow::Result<()> {
        let bar0 = d.map_region(0)?;
        bar0.write_u32(0x10, 0xdead_beef)?;
        bar0.write_u32(0xffc, 0x1234_5678)?;
        Ok(())
    })??;
    // The first host's BARs lose their bytes at the last close only on a
    // device that resets; this one does not, so they are still there.
    let options = CaptureOptions::new(source(&address)).with_bar_contents();
    let (replay, profile) = round_trip(&host, &address, 7, &options)?;
    let contents = profile.bars[0].contents.as_ref().expect("asked for");
    assert_eq!(
        &contents.as_slice()[0x10..0x14],
        &0xdead_beefu32.to_le_bytes()
    );
    let bar2 = &profile.bars[1];
    assert_eq!(
        (bar2.index, bar2.kind, bar2.prefetchable),
        (2, vfio_profile::BarKindProfile::Memory64, true)
    );
    // The replay reads the captured bytes through a mapping, too.
    let read = with_device(&replay, &address, |d| -> anyhow::Result<u32> {
        Ok(d.map_region(0)?.read_u32(0xffc)?)
    })??;
    assert_eq!(read, 0x1234_5678);
    Ok(())
}

/// A profile as a real PCIe function has it, beyond what the mock's own
/// devices show: AER, DSN and a vendor-specific extended capability, a
/// sparse-mmap region capability and one vfio-core does not decode. The
/// replay of it captures to the same file, and capture probes AER's masks
/// but not its status registers nor the vendor-specific body.
#[test]
fn extended_capabilities_and_undecoded_region_caps_replay() -> anyhow::Result<()> {
    use vfio_profile::{AreaProfile, HexBytes, RegionCapProfile, probe_plan};
    let mut profile = common::guest_profile(true);
    let config = &mut profile.config.bytes.0;
    // AER (id 1, version 2) at 0x100 -> DSN at 0x148 -> vendor-specific at 0x158.
    config[0x100..0x104].copy_from_slice(&(0x0001u32 | (2 << 16) | (0x148 << 20)).to_le_bytes());
    config[0x104..0x108].copy_from_slice(&0x0000_0010u32.to_le_bytes());
    config[0x108..0x10c].copy_from_slice(&0x0040_0000u32.to_le_bytes());
    config[0x148..0x14c].copy_from_slice(&(0x0003u32 | (1 << 16) | (0x158 << 20)).to_le_bytes());
    config[0x14c..0x154].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_le_bytes());
    config[0x158..0x15c].copy_from_slice(&(0x000bu32 | (1 << 16)).to_le_bytes());
    config[0x15c..0x160].copy_from_slice(&0x0100_0001u32.to_le_bytes());
    let probed = probe_plan(config)?;
    // As a device would have it: the uncorrectable mask's low bits writable.
    let mut writable = vec![0u8; 4096];
    writable[0x108] = 0x30;
    writable[0x10a] = 0x7f;
    for (w, p) in writable.iter_mut().zip(&probed) {
        *w &= p;
    }
    profile.config.probed = HexBytes(probed.clone());
    profile.config.writable = HexBytes(writable);
    profile.regions[0].caps.push(RegionCapProfile::Unknown {
        id: 0x7f,
        version: 1,
        data: HexBytes(vec![1, 2, 3, 4, 5, 6, 7, 8]),
    });
    profile.regions[0].caps.insert(
        0,
        RegionCapProfile::SparseMmap {
            areas: vec![AreaProfile {
                offset: 0x3000,
                size: 0x1000,
            }],
        },
    );
    profile.validate()?;
    assert_eq!(&probed[0x104..0x108], &[0; 4], "uncorrectable status");
    assert_eq!(&probed[0x108..0x10c], &[0xff; 4], "uncorrectable mask");
    assert_eq!(&probed[0x14c..0x154], &[0xff; 8], "serial number");
    assert_eq!(&probed[0x158..0x160], &[0; 8], "vendor-specific");

    let address = profiles::nvme_address();
    let host = MockHost::builder()
        .profiled_device(address, 2, &profile)
        .build()?;
    let options = CaptureOptions::new(profile.source.clone());
    let (_replay, again) = round_trip(&host, &address, 2, &options)?;
    assert_eq!(again.to_json(), profile.to_json());
    Ok(())
}

#[test]
fn the_source_block_names_the_driver_sysfs_links() -> anyhow::Result<()> {
    let host = profiles::qemu_guest().build()?;
    let source = vfio_profile::Source::of_device(
        host.paths(),
        &profiles::nvme_address(),
        "6.1.0-54-amd64\n",
    )?;
    assert_eq!(source.driver, "vfio-pci");
    assert_eq!(source.pci_address, "0000:00:03.0");
    assert_eq!(source.kernel_release, "6.1.0-54-amd64");
    assert_eq!(source.iommu_group, Some(profiles::QEMU_GUEST_GROUPS.1));
    let watchdog =
        vfio_profile::Source::of_device(host.paths(), &profiles::watchdog_address(), "6.1")?;
    assert_eq!(watchdog.driver, "i6300ESB timer");
    let absent = PciAddress::new(0, 9, 9, 0).expect("a valid address");
    let e = vfio_profile::Source::of_device(host.paths(), &absent, "6.1").unwrap_err();
    assert!(e.to_string().starts_with("cannot read "), "{e}");
    Ok(())
}

#[test]
fn fields_are_written_in_the_documented_order() -> anyhow::Result<()> {
    let text = common::guest_profile(false).to_json();
    let at = |key: &str| {
        text.find(&format!("\n  \"{key}\": "))
            .unwrap_or_else(|| panic!("no top-level {key}"))
    };
    let keys = [
        "format", "version", "source", "ids", "device", "regions", "irqs", "config", "bars",
    ];
    let positions: Vec<usize> = keys.iter().map(|k| at(k)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert!(text.starts_with("{\n  \"format\": \"vfio-device-profile\",\n  \"version\": 1,\n"));
    // Written twice, the same bytes.
    assert_eq!(DeviceProfile::from_json(&text)?.to_json(), text);
    Ok(())
}
