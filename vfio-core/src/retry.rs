//! The open-device retry, for drivers that open a device right after binding it.
//!
//! Linux 6.1 has a short window between a vfio device becoming visible to
//! userspace and its being added to the group's device list; an open in that
//! window fails with `ENODEV`. The remedy is one retry after a short delay.
//! It is a policy, not what the kernel does, so [`Group::open_device`] makes
//! one call and a driver opts in here.

use crate::backend::{Group, VfioBackend};
use crate::clock::Clock;
use crate::error::Result;
use nix::errno::Errno;
use std::time::Duration;

/// How long to wait before retrying an open that failed with `ENODEV`.
pub const ENODEV_RETRY_DELAY: Duration = Duration::from_millis(250);

/// Runs `op`; if it fails with `ENODEV`, sleeps [`ENODEV_RETRY_DELAY`] on
/// `clock` and runs it once more, returning the second result whatever it is.
pub fn retry_once_on_enodev<T>(clock: &dyn Clock, mut op: impl FnMut() -> Result<T>) -> Result<T> {
    match op() {
        Err(e) if e.errno() == Some(Errno::ENODEV) => {
            clock.sleep(ENODEV_RETRY_DELAY);
            op()
        }
        other => other,
    }
}

/// Opens device `name` of `group`, retried once after
/// [`ENODEV_RETRY_DELAY`] on `clock` if the first try fails with `ENODEV`
/// ([`SystemClock`](crate::SystemClock) on hardware, a mock's virtual clock
/// in tests).
pub fn open_device_with_retry<B: VfioBackend>(
    group: &B::Group,
    name: &str,
    clock: &dyn Clock,
) -> Result<B::Device> {
    retry_once_on_enodev(clock, || group.open_device(name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, Operation};
    use std::sync::atomic::{AtomicU64, Ordering};

    #[derive(Debug, Default)]
    struct CountingClock(AtomicU64);
    impl Clock for CountingClock {
        fn sleep(&self, d: Duration) {
            self.0.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
        }
    }

    fn fail(errno: Errno) -> Result<u32> {
        Err(Error::from_errno(Operation::OpenDevice, errno))
    }

    #[test]
    fn enodev_is_retried_once_after_the_delay() {
        let clock = CountingClock::default();
        let mut calls = 0;
        let r = retry_once_on_enodev(&clock, || {
            calls += 1;
            if calls == 1 {
                fail(Errno::ENODEV)
            } else {
                Ok(7)
            }
        });
        assert_eq!(r.unwrap(), 7);
        assert_eq!(calls, 2);
        assert_eq!(clock.0.load(Ordering::SeqCst), 250);
    }

    #[test]
    fn a_second_enodev_is_returned() {
        let clock = CountingClock::default();
        let mut calls = 0;
        let r = retry_once_on_enodev(&clock, || {
            calls += 1;
            fail(Errno::ENODEV)
        });
        assert_eq!(r.unwrap_err().errno(), Some(Errno::ENODEV));
        assert_eq!(calls, 2);
    }

    #[test]
    fn other_errors_are_not_retried() {
        let clock = CountingClock::default();
        let mut calls = 0;
        let r = retry_once_on_enodev(&clock, || {
            calls += 1;
            fail(Errno::EBUSY)
        });
        assert_eq!(r.unwrap_err().errno(), Some(Errno::EBUSY));
        assert_eq!(calls, 1);
        assert_eq!(clock.0.load(Ordering::SeqCst), 0);
    }
}
