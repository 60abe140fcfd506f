//! Bring-up against controllers that misbehave: one that never becomes
//! ready and one that reports a fatal status when enabled. Each is a small
//! register model on a mock device laid out as QEMU's NVMe is (BAR0 with
//! the registers and, from 0x2000, the MSI-X table), so the driver gets as
//! far as enabling the controller and no further.

use nvme::{ErrorKind, Nvme, NvmeError, Options};
use nvme_spec::regs;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfio_core::{Container, Group, IommuType, PciAddress, VfioBackend};
use vfio_mock::{BarSpec, DeviceContext, DeviceModel, MockHost, PciDeviceBuilder};

/// What the controller does when CC.EN is set.
#[derive(Debug, Clone, Copy)]
enum OnEnable {
    /// Nothing: CSTS.RDY never sets.
    Stall,
    /// CSTS.CFS sets, RDY stays clear.
    Fatal,
}

/// CAP with MQES 63, CQR, TO `to` (500 ms units), the NVM command set and
/// 4 KiB minimum pages.
fn cap(to: u8) -> u64 {
    63 | (1 << 16) | (u64::from(to) << 24) | (1 << 37)
}

#[derive(Debug)]
struct Registers {
    to: u8,
    on_enable: OnEnable,
    cc: Mutex<u32>,
}

impl DeviceModel for Registers {
    fn read(&self, _ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
        if bar != 0 || offset >= 0x1000 {
            return None;
        }
        let enabled = *self.cc.lock() & 1 != 0;
        let csts = match (enabled, self.on_enable) {
            (true, OnEnable::Fatal) => 2,
            _ => 0,
        };
        Some(match (offset, width) {
            (regs::CAP, 8) => cap(self.to),
            (regs::CAP, 4) => cap(self.to) & 0xffff_ffff,
            (o, 4) if o == regs::CAP + 4 => cap(self.to) >> 32,
            (regs::VS, 4) => 0x0001_0400,
            (regs::CC, 4) => u64::from(*self.cc.lock()),
            (regs::CSTS, 4) => csts,
            _ => 0,
        })
    }

    fn write(
        &self,
        _ctx: &DeviceContext<'_>,
        bar: u32,
        offset: u64,
        width: u8,
        value: u64,
    ) -> bool {
        if bar != 0 || offset >= 0x1000 {
            return false;
        }
        if offset == regs::CC && width == 4 {
            *self.cc.lock() = value as u32;
        }
        true
    }

    fn reset(&self) {
        *self.cc.lock() = 0;
    }
}

fn address() -> PciAddress {
    PciAddress::new(0, 0, 3, 0).expect("an address")
}

/// Brings the driver up on a controller that does `on_enable`, with CAP.TO `to`.
fn bring_up(to: u8, on_enable: OnEnable) -> (NvmeError, Duration) {
    let device = PciDeviceBuilder::new(0x1b36, 0x0010)
        .class(0x010802)
        .bar(0, BarSpec::memory64(0x4000))
        .msix(4, 0, 0x2000, 0, 0x3000)
        .model(Registers {
            to,
            on_enable,
            cc: Mutex::new(0),
        });
    let host = MockHost::builder()
        .device(address(), 1, device)
        .build()
        .expect("the host");
    let backend = host.backend();
    let group = backend.open_group(1).expect("the group");
    let container = Arc::new(backend.open_container().expect("a container"));
    group.set_container(&container).expect("attach");
    container.set_iommu(IommuType::Type1v2).expect("Type1v2");
    let device = group
        .open_device(&address().to_string())
        .expect("the device");
    let start = Instant::now();
    let err =
        Nvme::new(&backend, device, container, Options::default()).expect_err("bring-up must fail");
    let took = start.elapsed();
    host.run_until_idle();
    host.assert_faults_consumed();
    (err, took)
}

#[test]
fn a_controller_that_never_becomes_ready_times_out_after_cap_to_with_the_figure() {
    let (err, took) = bring_up(1, OnEnable::Stall);
    match &err {
        NvmeError::ReadyTimeout { ready, to, csts } => {
            assert!(*ready, "it was waiting for RDY to set: {err}");
            assert_eq!((*to, *csts), (1, 0));
        }
        other => panic!("not a ready timeout: {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let message = err.to_string();
    assert!(message.contains("CAP.TO 1 (500 ms)"), "{message}");
    // CAP.TO is 500 ms: the driver waited that long, and not much more.
    assert!(took >= Duration::from_millis(500), "gave up after {took:?}");
    assert!(took < Duration::from_secs(5), "waited {took:?}");
}

#[test]
fn a_controller_reporting_fatal_status_on_enable_is_a_typed_error_at_once() {
    let (err, took) = bring_up(15, OnEnable::Fatal);
    match &err {
        NvmeError::ControllerFatal { csts } => assert_eq!(*csts & 2, 2),
        other => panic!("not a fatal status: {other}"),
    }
    assert_eq!(err.kind(), ErrorKind::Controller);
    // CAP.TO is 7.5 s; a fatal status ends the wait long before.
    assert!(took < Duration::from_secs(2), "waited {took:?}");
}
