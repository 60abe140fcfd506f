//! Interrupt handles: eventfds the kernel (or the mock) signals.

use crate::error::{Error, Operation, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

/// What a driver waits on for one interrupt vector.
///
/// An interrupt is `AsFd`, so it plugs into any reactor (epoll, tokio's
/// `AsyncFd`, mio); [`wait`](Interrupt::wait) and
/// [`try_consume`](Interrupt::try_consume) are there for drivers without one.
pub trait Interrupt: AsFd + Send + Sync + std::fmt::Debug {
    /// Blocks until the interrupt fires or `timeout` passes (`None`: forever).
    /// Returns how many times it fired since last consumed, or `None` on timeout.
    fn wait(&self, timeout: Option<Duration>) -> Result<Option<u64>>;

    /// Consumes pending fires without blocking: `Some(count)`, or `None` if none.
    fn try_consume(&self) -> Result<Option<u64>>;
}

/// An interrupt backed by a non-blocking, close-on-exec Linux eventfd.
///
/// Both backends use this type: the kernel signals it from vfio-pci's
/// interrupt handler, the mock by writing to it, so a driver's wait path is
/// the same code in tests as on hardware.
#[derive(Debug)]
pub struct EventFdInterrupt {
    fd: EventFd,
}

impl EventFdInterrupt {
    /// Creates a new eventfd with a zero count.
    pub fn new() -> Result<Self> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::from_errno(Operation::CreateInterrupt, e))?;
        Ok(Self { fd })
    }

    /// Adds one to the count, as a device firing the vector would.
    pub fn signal(&self) -> Result<()> {
        self.fd
            .write(1)
            .map(drop)
            .map_err(|e| Error::from_errno(Operation::WaitInterrupt, e))
    }
}

impl AsFd for EventFdInterrupt {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Interrupt for EventFdInterrupt {
    fn wait(&self, timeout: Option<Duration>) -> Result<Option<u64>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(n) = self.try_consume()? {
                return Ok(Some(n));
            }
            let remaining = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(None);
                    }
                    // Round up so a sub-millisecond remainder still waits.
                    let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
                }
            };
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, remaining) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::from_errno(Operation::WaitInterrupt, e)),
            }
        }
    }

    fn try_consume(&self) -> Result<Option<u64>> {
        match self.fd.read() {
            Ok(n) => Ok(Some(n)),
            Err(Errno::EAGAIN) => Ok(None),
            Err(e) => Err(Error::from_errno(Operation::WaitInterrupt, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "eventfd and poll are syscalls Miri does not model")]
    fn consume_returns_none_until_signalled_then_the_count() {
        let irq = EventFdInterrupt::new().unwrap();
        assert_eq!(irq.try_consume().unwrap(), None);
        irq.signal().unwrap();
        irq.signal().unwrap();
        assert_eq!(irq.try_consume().unwrap(), Some(2));
        assert_eq!(irq.try_consume().unwrap(), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "eventfd and poll are syscalls Miri does not model")]
    fn wait_times_out_when_nothing_fires() {
        let irq = EventFdInterrupt::new().unwrap();
        assert_eq!(irq.wait(Some(Duration::from_millis(5))).unwrap(), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "eventfd and poll are syscalls Miri does not model")]
    fn wait_wakes_when_another_thread_signals() {
        let irq = std::sync::Arc::new(EventFdInterrupt::new().unwrap());
        let other = irq.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            other.signal().unwrap();
        });
        assert_eq!(irq.wait(Some(Duration::from_secs(10))).unwrap(), Some(1));
        t.join().unwrap();
    }
}
