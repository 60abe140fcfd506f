//! The simulated side: a mock host shaped like the QEMU guest, and the few
//! cases only the mock can run (they need fault injection or device removal,
//! which the real kernel cannot be told to do on demand).

use crate::{Case, Env};
use anyhow::{Result, ensure};
use std::time::Duration;
use vfio_core::{Errno, ErrorKind, Group, Operation, VfioBackend};
use vfio_mock::{MockBackend, profiles};

/// A fresh mock host with the guest's topology: `edu` at 00:02.0 and NVMe at
/// 00:03.0, each in its own group, both bound to vfio-pci.
pub fn env() -> Result<Env<MockBackend>> {
    let host = profiles::qemu_guest().build()?;
    Ok(Env::new(host.backend()).with_host(std::sync::Arc::new(MockHostControl(host))))
}

/// Device removal on the simulated host ([`MockHost::remove_device`]).
#[derive(Debug)]
pub struct MockHostControl(pub vfio_mock::MockHost);

impl crate::HostControl for MockHostControl {
    fn remove(&self, device: &vfio_core::PciAddress) -> Result<()> {
        let removal = self
            .0
            .remove_device(*device)
            .ok_or_else(|| anyhow::anyhow!("{device} is not there or already being removed"))?;
        // The kernel's writer waits as long as the user holds the device.
        removal.wait(Duration::MAX);
        Ok(())
    }

    /// Every case has a host of its own, so nothing needs bringing back.
    fn restore(&self, _device: &vfio_core::PciAddress) -> Result<()> {
        Ok(())
    }
}

/// A case only the mock runs, and why.
#[derive(Debug)]
pub struct MockOnly {
    /// The case.
    pub case: Case<MockBackend>,
    /// Why the kernel cannot run it.
    pub why: &'static str,
}

const INJECTION: &str = "fault injection";

/// Every mock-only case.
pub fn only_cases() -> Vec<MockOnly> {
    macro_rules! list {
        ($($name:ident: $why:expr),* $(,)?) => {
            vec![$(MockOnly { case: Case::new(stringify!($name), $name), why: $why }),*]
        };
    }
    list![
        enodev_on_open_is_retried_once_after_250_ms: INJECTION,
        a_second_enodev_on_open_is_returned: INJECTION,
        injected_errors_surface_with_their_kind_and_errno: INJECTION,
        an_unconsumed_fault_is_reported_by_done: INJECTION,
    ]
}

/// The race Linux 6.1 has when a device appears: one ENODEV, then success
/// after the 250 ms retry (on the mock's virtual clock, so instantly).
pub fn enodev_on_open_is_retried_once_after_250_ms(env: &Env<MockBackend>) -> Result<()> {
    let host = env.backend.host();
    let o = env.open_edu()?;
    drop(o.device);
    let before = host.clock().now();
    host.fail_next(Operation::OpenDevice, Errno::ENODEV, 1);
    o.group.open_device(&env.targets.edu.to_string())?;
    ensure!(
        host.clock().now() - before == Duration::from_millis(250),
        "slept {:?}",
        host.clock().sleeps()
    );
    host.done()?;
    Ok(())
}

/// Two ENODEVs in a row: the retry's answer is returned.
pub fn a_second_enodev_on_open_is_returned(env: &Env<MockBackend>) -> Result<()> {
    let host = env.backend.host();
    let o = env.open_edu()?;
    host.fail_next(Operation::OpenDevice, Errno::ENODEV, 2);
    let e = o
        .group
        .open_device(&env.targets.edu.to_string())
        .expect_err("two ENODEVs");
    ensure!(
        e.kind() == ErrorKind::NotFound && e.errno() == Some(Errno::ENODEV),
        "{e}"
    );
    host.done()?;
    Ok(())
}

/// An injected errno reaches the caller as the same typed error the kernel's
/// would: EBUSY on attaching a container is `Busy`, and is not retried.
pub fn injected_errors_surface_with_their_kind_and_errno(env: &Env<MockBackend>) -> Result<()> {
    let host = env.backend.host();
    let group = env.backend.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    host.fail_next(Operation::SetContainer, Errno::EBUSY, 1);
    let e = group.set_container(&c).expect_err("injected EBUSY");
    ensure!(
        e.kind() == ErrorKind::Busy && e.errno() == Some(Errno::EBUSY),
        "{e}"
    );
    group.set_container(&c)?;
    host.done()?;
    Ok(())
}

/// A planned fault that never happens is reported at the end.
pub fn an_unconsumed_fault_is_reported_by_done(env: &Env<MockBackend>) -> Result<()> {
    let host = env.backend.host();
    host.fail_next(Operation::Reset, Errno::EIO, 1);
    ensure!(host.done().is_err(), "done() accepted an unused fault");
    Ok(())
}
