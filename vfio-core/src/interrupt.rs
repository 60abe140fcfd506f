//! Interrupt handles: eventfds the kernel (or the mock) signals.

use crate::error::{Error, Operation, Result};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use parking_lot::RwLock;
use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

/// What a driver waits on for one interrupt vector.
///
/// An interrupt is `AsFd`, so it plugs into any reactor (epoll, tokio's
/// `AsyncFd`, mio); [`wait`](Interrupt::wait) and
/// [`try_consume`](Interrupt::try_consume) are there for drivers without one.
pub trait Interrupt: AsFd + Send + Sync + std::fmt::Debug {
    /// Blocks until the interrupt fires or `timeout` passes (`None`: forever;
    /// a timeout too long to express as an `Instant` also waits forever).
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

/// The fd numbers of every live [`EventFdInterrupt`].
///
/// An fd number is in the set exactly while the interrupt that owns it
/// lives: it is added after `eventfd(2)` returns it and removed before the
/// fd is closed, and under I/O safety nothing else closes an fd it does not
/// own, so the number cannot name another file meanwhile.
static LIVE: RwLock<BTreeSet<RawFd>> = parking_lot::const_rwlock(BTreeSet::new());

impl EventFdInterrupt {
    /// Creates a new eventfd with a zero count.
    pub fn new() -> Result<Self> {
        let fd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::from_errno(Operation::CreateInterrupt, e))?;
        LIVE.write().insert(fd.as_fd().as_raw_fd());
        Ok(Self { fd })
    }

    /// True if `fd` is the eventfd of a live `EventFdInterrupt` (of this
    /// process): then it is an eventfd, known without asking the kernel.
    /// False says nothing: `fd` may be an eventfd made some other way.
    ///
    /// [`check_eventfds`](crate::check_eventfds) and the mock's `SET_IRQS`
    /// use it to skip the `/proc/self` lookup each other fd costs.
    pub fn is_live_eventfd(fd: BorrowedFd<'_>) -> bool {
        LIVE.read().contains(&fd.as_raw_fd())
    }

    /// Adds one to the count, as a device firing the vector would.
    pub fn signal(&self) -> Result<()> {
        self.fd
            .write(1)
            .map(drop)
            .map_err(|e| Error::from_errno(Operation::WaitInterrupt, e))
    }
}

impl Drop for EventFdInterrupt {
    fn drop(&mut self) {
        // Before the fd closes (when the field drops, after this), so that
        // a new fd given the same number is never taken for this one.
        LIVE.write().remove(&self.fd.as_fd().as_raw_fd());
    }
}

impl AsFd for EventFdInterrupt {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// When a wait of `timeout` that starts at `now` ends: `None` for no
/// timeout, and also for one so long that the deadline is not a
/// representable `Instant` (`Duration::MAX`, say), which is forever in
/// practice.
fn deadline(now: Instant, timeout: Option<Duration>) -> Option<Instant> {
    timeout.and_then(|t| now.checked_add(t))
}

/// The poll(2) timeout for `left` of a wait: whole milliseconds rounded up,
/// so a remainder of even a nanosecond still waits (rather than polling
/// with 0 until the deadline), capped at `i32::MAX` ms (the
/// wait loop polls again after a capped poll returns).
fn poll_timeout(left: Duration) -> PollTimeout {
    let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128);
    i32::try_from(ms)
        .ok()
        .and_then(|ms| PollTimeout::try_from(ms).ok())
        .unwrap_or(PollTimeout::MAX)
}

impl Interrupt for EventFdInterrupt {
    fn wait(&self, timeout: Option<Duration>) -> Result<Option<u64>> {
        let deadline = deadline(Instant::now(), timeout);
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
                    poll_timeout(left)
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
    #[cfg_attr(miri, ignore = "eventfd is a syscall Miri does not model")]
    fn only_a_live_interrupts_fd_is_known_as_an_eventfd() {
        use nix::fcntl::{FcntlArg, fcntl};
        let irq = EventFdInterrupt::new().unwrap();
        let raw = irq.as_fd().as_raw_fd();
        assert!(EventFdInterrupt::is_live_eventfd(irq.as_fd()));
        // A duplicate is an eventfd too, but not one this type made.
        let dup = irq.as_fd().try_clone_to_owned().unwrap();
        assert!(!EventFdInterrupt::is_live_eventfd(dup.as_fd()));
        drop(dup);
        drop(irq);
        // A file takes the lowest free number from the closed one up: that
        // number itself unless another test took it meanwhile. The number
        // a file holds is never taken for an eventfd. (The duplicate fd is
        // left open: closing a raw number needs unsafe code.)
        let file = tempfile::tempfile().unwrap();
        let at = fcntl(&file, FcntlArg::F_DUPFD_CLOEXEC(raw)).unwrap();
        assert!(!LIVE.read().contains(&at));
        if at == raw {
            // Held by the file, so no live interrupt can have it: the
            // interrupt's drop took it out of the set.
            assert!(!LIVE.read().contains(&raw));
        }
    }

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

    #[test]
    #[cfg_attr(miri, ignore = "eventfd and poll are syscalls Miri does not model")]
    fn a_timeout_too_long_for_an_instant_waits_instead_of_panicking() {
        let irq = EventFdInterrupt::new().unwrap();
        irq.signal().unwrap();
        assert_eq!(irq.wait(Some(Duration::MAX)).unwrap(), Some(1));
        irq.signal().unwrap();
        irq.signal().unwrap();
        let huge = Duration::from_secs(u64::MAX / 2);
        assert_eq!(irq.wait(Some(huge)).unwrap(), Some(2));
    }

    #[test]
    fn an_unrepresentable_deadline_is_no_deadline() {
        let now = Instant::now();
        assert_eq!(deadline(now, None), None);
        assert_eq!(deadline(now, Some(Duration::MAX)), None);
        assert_eq!(
            deadline(now, Some(Duration::from_millis(5))),
            Some(now + Duration::from_millis(5))
        );
    }

    #[test]
    fn poll_timeouts_round_up_and_saturate_without_overflow() {
        let ms = |n: i32| PollTimeout::try_from(n).unwrap();
        assert_eq!(poll_timeout(Duration::from_nanos(1)), ms(1));
        assert_eq!(poll_timeout(Duration::from_micros(1500)), ms(2));
        assert_eq!(poll_timeout(Duration::from_millis(7)), ms(7));
        // The largest remainders give the longest finite poll, i32::MAX ms.
        assert_eq!(
            poll_timeout(Duration::from_millis(i32::MAX as u64)),
            PollTimeout::MAX
        );
        assert_eq!(
            poll_timeout(Duration::from_millis(i32::MAX as u64 + 1)),
            PollTimeout::MAX
        );
        assert_eq!(poll_timeout(Duration::MAX), PollTimeout::MAX);
    }
}
