//! Awaiting interrupts on tokio's reactor (the `tokio` feature).
//!
//! An [`Interrupt`] is a file descriptor that becomes readable when the
//! vector fires, so any reactor can wait on it; this adapter does it for
//! tokio, for any backend's interrupts (the mock's and the kernel's alike).
//!
//! tokio's reactor needs a file descriptor that stays open, and stays the
//! same file, for as long as it is registered. A safe [`AsFd`] impl promises
//! neither across calls: it may hand out a different fd each time. So the
//! adapter asks once, duplicates that fd (`F_DUPFD_CLOEXEC`), and registers
//! the duplicate, which it owns and never lets go of while registered. The
//! duplicate shares the interrupt's open file description (the eventfd and
//! its count), so it turns readable exactly when the interrupt fires;
//! the count is still consumed through [`Interrupt::try_consume`].

use crate::error::{Error, Operation, Result};
use crate::interrupt::Interrupt;
use std::os::fd::OwnedFd;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// An interrupt whose firing a task can await on tokio's reactor.
///
/// ```no_run
/// # async fn example() -> vfio_core::Result<()> {
/// use vfio_core::{AsyncInterrupt, EventFdInterrupt};
/// let irq = AsyncInterrupt::new(EventFdInterrupt::new()?)?;
/// // ... bind irq.get_ref() to a vector ...
/// let fired = irq.wait().await?;
/// # let _ = fired;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncInterrupt<I: Interrupt> {
    interrupt: I,
    /// A duplicate of the fd `interrupt.as_fd()` returned at construction.
    registered: AsyncFd<OwnedFd>,
}

impl<I: Interrupt> AsyncInterrupt<I> {
    /// Registers `interrupt` with the current tokio runtime's reactor (call it
    /// from within a runtime, with tokio's `net` or `rt` reactor enabled).
    ///
    /// The fd `interrupt.as_fd()` returns now is the one waited on for the
    /// adapter's whole life; [`try_consume`](Interrupt::try_consume) must be
    /// non-blocking, as [`EventFdInterrupt`](crate::EventFdInterrupt)'s is.
    /// Duplicating the fd can fail like any `dup` (EMFILE: out of file
    /// descriptors), and registering it like `epoll_ctl` (EPERM for a file
    /// that cannot be polled).
    pub fn new(interrupt: I) -> Result<Self> {
        let fd = interrupt
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::from_io(Operation::WaitInterrupt, e))?;
        // `with_interest` is deprecated because it is unsound for a `T` whose
        // `as_raw_fd()` may change or close while registered. Here `T` is an
        // `OwnedFd` held privately for as long as it is registered (no
        // `get_mut` is ever called on it): its fd stays open and the same
        // until the `AsyncFd` deregisters it in `drop` or `into_inner`.
        #[expect(deprecated)]
        let registered = AsyncFd::with_interest(fd, Interest::READABLE)
            .map_err(|e| Error::from_io(Operation::WaitInterrupt, e))?;
        Ok(Self {
            interrupt,
            registered,
        })
    }

    /// Waits until the interrupt fires and returns how many times it fired
    /// since last consumed.
    pub async fn wait(&self) -> Result<u64> {
        loop {
            let mut ready = self
                .registered
                .readable()
                .await
                .map_err(|e| Error::from_io(Operation::WaitInterrupt, e))?;
            match self.interrupt.try_consume()? {
                Some(n) => return Ok(n),
                None => ready.clear_ready(),
            }
        }
    }

    /// The interrupt inside, e.g. to bind it to a vector.
    pub fn get_ref(&self) -> &I {
        &self.interrupt
    }

    /// Unregisters (closing the duplicate fd) and returns the interrupt.
    pub fn into_inner(self) -> I {
        drop(self.registered);
        self.interrupt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventFdInterrupt;
    use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "current_thread")]
    #[cfg_attr(miri, ignore = "eventfd and epoll are syscalls Miri does not model")]
    async fn wait_resolves_when_another_thread_fires() {
        let irq = Arc::new(AsyncInterrupt::new(EventFdInterrupt::new().unwrap()).unwrap());
        let other = irq.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            other.get_ref().signal().unwrap();
        });
        let fired = tokio::time::timeout(Duration::from_secs(10), irq.wait()).await;
        assert_eq!(fired.expect("the interrupt arrived").unwrap(), 1);
        t.join().unwrap();
        // Consumed: nothing is pending now.
        assert_eq!(irq.get_ref().try_consume().unwrap(), None);
    }

    /// An eventfd seen through a different fd at every `as_fd()` call: it
    /// holds several duplicates of one eventfd and hands them out in turn.
    /// Safe code may do this; the adapter must stay sound and still wait.
    #[derive(Debug)]
    struct Rotating {
        irq: EventFdInterrupt,
        dups: Vec<OwnedFd>,
        calls: AtomicUsize,
    }

    impl AsFd for Rotating {
        fn as_fd(&self) -> BorrowedFd<'_> {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            self.dups[n % self.dups.len()].as_fd()
        }
    }

    impl Interrupt for Rotating {
        fn wait(&self, timeout: Option<Duration>) -> Result<Option<u64>> {
            self.irq.wait(timeout)
        }
        fn try_consume(&self) -> Result<Option<u64>> {
            self.irq.try_consume()
        }
    }

    #[tokio::test(flavor = "current_thread")]
    #[cfg_attr(miri, ignore = "eventfd and epoll are syscalls Miri does not model")]
    async fn an_interrupt_whose_fd_changes_at_every_call_is_still_awaited() {
        let irq = EventFdInterrupt::new().unwrap();
        let dups = (0..3)
            .map(|_| irq.as_fd().try_clone_to_owned().unwrap())
            .collect();
        let rotating = Rotating {
            irq,
            dups,
            calls: AtomicUsize::new(0),
        };
        let first = rotating.as_fd().as_raw_fd();
        assert_ne!(
            rotating.as_fd().as_raw_fd(),
            first,
            "the fd changes per call"
        );

        let irq = Arc::new(AsyncInterrupt::new(rotating).unwrap());
        for round in 1..=3u64 {
            let other = irq.clone();
            let t = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                for _ in 0..round {
                    other.get_ref().irq.signal().unwrap();
                }
            });
            let fired = tokio::time::timeout(Duration::from_secs(10), irq.wait()).await;
            t.join().unwrap();
            // Signals may land across the await: count what arrived in total.
            let mut total = fired.expect("the interrupt arrived").unwrap();
            total += irq.get_ref().try_consume().unwrap().unwrap_or(0);
            assert_eq!(total, round);
            // Every fd the impl handed out meanwhile stays open: the adapter
            // owns its own duplicate and closed none of them.
            let _ = irq.get_ref().as_fd().as_raw_fd();
        }
        let rotating = Arc::try_unwrap(irq).unwrap().into_inner();
        assert!(rotating.calls.load(Ordering::Relaxed) >= 3);
        assert_eq!(rotating.try_consume().unwrap(), None);

        // Deregistered by the fd that was registered: the eventfd firing now
        // reaches no stale registration, and a new adapter (which may reuse
        // the reactor's slot) sees only its own interrupt.
        let fresh = AsyncInterrupt::new(EventFdInterrupt::new().unwrap()).unwrap();
        for _ in 0..10 {
            rotating.irq.signal().unwrap();
            tokio::task::yield_now().await;
        }
        let quiet = tokio::time::timeout(Duration::from_millis(20), fresh.wait()).await;
        assert!(quiet.is_err(), "the new adapter saw the old eventfd fire");
    }

    #[tokio::test(flavor = "current_thread")]
    #[cfg_attr(miri, ignore = "eventfd and epoll are syscalls Miri does not model")]
    async fn the_adapter_closes_only_its_own_duplicate() {
        let irq = AsyncInterrupt::new(EventFdInterrupt::new().unwrap()).unwrap();
        let fd = irq.get_ref().as_fd().as_raw_fd();
        assert_ne!(irq.registered.as_raw_fd(), fd);
        let irq = irq.into_inner();
        // The interrupt's own fd is untouched and works.
        assert_eq!(irq.as_fd().as_raw_fd(), fd);
        irq.signal().unwrap();
        assert_eq!(irq.try_consume().unwrap(), Some(1));
    }
}
