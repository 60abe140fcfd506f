//! The mock's own machinery, which no kernel can be asked to reproduce on
//! demand: planned faults (`fail_next`, `done`) and the ENODEV retry on the
//! virtual clock. (Removal, which the kernel does show, is a conformance case.)

mod common;

use common::{guest, open};
use std::time::Duration;
use vfio_core::retry::open_device_with_retry;
use vfio_core::{Errno, ErrorKind, Group, Operation, VfioBackend};
use vfio_mock::{MockBackend, profiles};

/// The race Linux 6.1 has when a device appears: one ENODEV, then success
/// after the opt-in 250 ms retry (on the virtual clock, so instantly).
#[test]
fn enodev_on_open_is_retried_once_after_250_ms() {
    let (host, b) = guest();
    let o = open(&b, profiles::edu_address());
    drop(o.device);
    let before = host.clock().now();
    host.fail_next(Operation::OpenDevice, Errno::ENODEV, 1);
    open_device_with_retry::<MockBackend>(&o.group, "0000:00:02.0", &**host.clock()).unwrap();
    assert_eq!(
        host.clock().now() - before,
        Duration::from_millis(250),
        "slept {:?}",
        host.clock().sleeps()
    );
    host.done().unwrap();
}

/// Two ENODEVs in a row: the retry's answer is returned.
#[test]
fn a_second_enodev_on_open_is_returned() {
    let (host, b) = guest();
    let o = open(&b, profiles::edu_address());
    host.fail_next(Operation::OpenDevice, Errno::ENODEV, 2);
    let e = open_device_with_retry::<MockBackend>(&o.group, "0000:00:02.0", &**host.clock())
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::NotFound, Some(Errno::ENODEV)),
        "{e}"
    );
    host.done().unwrap();
}

/// Without the opt-in retry, an open is one call: ENODEV at once, no sleep.
#[test]
fn a_plain_open_is_not_retried() {
    let (host, b) = guest();
    let o = open(&b, profiles::edu_address());
    host.fail_next(Operation::OpenDevice, Errno::ENODEV, 1);
    let e = o.group.open_device("0000:00:02.0").unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENODEV));
    assert!(host.clock().sleeps().is_empty());
    host.done().unwrap();
}

/// An injected errno reaches the caller as the same typed error the kernel's
/// would: EBUSY on attaching a container is `Busy`, and is not retried.
#[test]
fn injected_errors_surface_with_their_kind_and_errno() {
    let (host, b) = guest();
    let number = b
        .host_paths()
        .iommu_group(&profiles::edu_address())
        .unwrap();
    let group = b.open_group(number).unwrap();
    let c = b.open_container().unwrap();
    host.fail_next(Operation::SetContainer, Errno::EBUSY, 1);
    let e = group.set_container(&c).unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::Busy, Some(Errno::EBUSY)),
        "{e}"
    );
    group.set_container(&c).unwrap();
    host.done().unwrap();
}

/// A planned fault that never happens is reported at the end.
#[test]
fn an_unconsumed_fault_is_reported_by_done() {
    let (host, _b) = guest();
    host.fail_next(Operation::Reset, Errno::EIO, 1);
    assert!(host.done().is_err(), "done() accepted an unused fault");
}
