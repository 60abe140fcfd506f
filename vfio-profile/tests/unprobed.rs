//! What capture leaves alone: the bits its probe plan leaves out are never
//! written, and are marked unprobed.

mod common;

use common::{capture_at, guest_profile, source};
use parking_lot::Mutex;
use std::sync::Arc;
use vfio_core::PciAddress;
use vfio_mock::{BarSpec, DeviceContext, DeviceModel, MockHost, PciDeviceBuilder};
use vfio_profile::{CaptureOptions, probe_plan};

/// A model that records every config write that reaches it: the body of
/// its vendor-specific capability.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(u16, u8, u32)>>>);

impl DeviceModel for Recorder {
    fn read(&self, _: &DeviceContext<'_>, _: u32, _: u64, _: u8) -> Option<u64> {
        None
    }
    fn write(&self, _: &DeviceContext<'_>, _: u32, _: u64, _: u8, _: u64) -> bool {
        false
    }
    fn config_read(&self, _: &DeviceContext<'_>, offset: u16, width: u8) -> Option<u32> {
        // Distinct bytes, so a capture shows them.
        Some(
            u32::from(offset).wrapping_mul(0x0101_0101) & (u32::MAX >> (32 - 8 * u32::from(width))),
        )
    }
    fn config_write(&self, _: &DeviceContext<'_>, offset: u16, width: u8, value: u32) -> bool {
        self.0.lock().push((offset, width, value));
        false
    }
    fn reset(&self) {}
}

#[test]
fn a_vendor_capability_is_read_but_never_written() -> anyhow::Result<()> {
    let address = PciAddress::new(0, 0, 6, 0).expect("slot 6 is a valid address");
    let recorder = Recorder::default();
    let device = PciDeviceBuilder::new(0x1af4, 0x1041)
        .bar(0, BarSpec::memory32(4096))
        .vendor_capability(16)
        .at(0x60)
        .msi(4, true, true)
        .pm()
        .model(recorder.clone());
    let host = MockHost::builder().device(address, 3, device).build()?;
    let profile = capture_at(&host, &address, &CaptureOptions::new(source(&address)))?;
    assert!(recorder.0.lock().is_empty(), "{:?}", recorder.0.lock());
    let config = profile.config.bytes.as_slice();
    // The body the model answers was read (offset 0x63 reads 0x63).
    assert_eq!(config[0x60], 0x09);
    assert_eq!(config[0x63], 0x63);
    // Header probed, body not.
    assert_eq!(
        &profile.config.probed.as_slice()[0x60..0x70],
        &[0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    Ok(())
}

#[test]
fn registers_with_side_effects_are_left_out_of_the_plan() {
    let nvme = guest_profile(true);
    let config = nvme.config.bytes.as_slice();
    let plan = probe_plan(config).expect("a well-formed config space");
    assert_eq!(plan, nvme.config.probed.as_slice());
    // NVMe: PM at 0x60, PCIe at 0x80, MSI-X at 0x40.
    let untouched: &[(usize, u8, &str)] = &[
        (0x04, 0x07, "command: I/O, memory, bus master"),
        (0x06, 0xff, "status"),
        (0x07, 0xff, "status"),
        (0x0f, 0xff, "BIST"),
        (0x64, 0xff, "PM control/status"),
        (0x65, 0xff, "PM control/status"),
        (0x42, 0xff, "MSI-X message control"),
        (0x43, 0xff, "MSI-X message control"),
        (0x88, 0xff, "PCIe device control"),
        (0x89, 0xff, "PCIe device control"),
        (0x8a, 0xff, "PCIe device status"),
        (0x90, 0xff, "PCIe link control"),
        (0x92, 0xff, "PCIe link status"),
        (0xa8, 0xff, "PCIe device control 2"),
        (0xb0, 0xff, "PCIe link control 2"),
        (0xc0, 0xff, "outside any capability"),
        (0x200, 0xff, "extended space outside any capability"),
    ];
    for &(at, bits, what) in untouched {
        assert_eq!(plan[at] & bits, 0, "{what} at {at:#x}");
        assert_eq!(nvme.config.writable.as_slice()[at] & bits, 0, "{what}");
    }
    // And what is probed shows: BAR0's size bits, the interrupt line.
    assert_eq!(nvme.config.writable.as_slice()[0x11], 0xc0);
    assert_eq!(nvme.config.writable.as_slice()[0x3c], 0xff);
    assert_eq!(nvme.config.writable.as_slice()[0x05], 0x05);
}

/// A config write that fails mid-probe: the byte is put back, the capture
/// fails naming the byte and the kernel's errno, and config space reads as
/// before.
#[test]
fn a_failed_probe_write_leaves_config_space_as_it_was() -> anyhow::Result<()> {
    use vfio_core::{Errno, Operation};
    let host = vfio_mock::profiles::qemu_guest().build()?;
    let address = vfio_mock::profiles::nvme_address();
    common::with_device(&host, &address, |device| -> anyhow::Result<()> {
        let before = read_config(device)?;
        host.fail_next(Operation::RegionWrite, Errno::EIO, 1);
        let e = vfio_profile::capture::<vfio_mock::MockBackend>(
            device,
            &CaptureOptions::new(source(&address)),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "capture failed: probing config byte 0x0");
        let vfio_profile::ProfileError::Device { source, .. } = &e else {
            panic!("{e:?}");
        };
        assert_eq!(source.errno(), Some(Errno::EIO));
        host.assert_faults_consumed();
        assert_eq!(read_config(device)?, before);
        Ok(())
    })?
}

fn read_config(device: &vfio_mock::MockDevice) -> anyhow::Result<Vec<u8>> {
    let mut config = vec![0u8; 4096];
    vfio_core::access::read_exact::<vfio_mock::MockBackend, _>(device, 7, 0, &mut config)?;
    Ok(config)
}
