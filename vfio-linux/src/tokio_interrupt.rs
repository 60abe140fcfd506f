//! Awaiting interrupts on tokio's reactor (the `tokio` feature).
//!
//! An [`Interrupt`] is a file descriptor that becomes readable when the
//! vector fires, so any reactor can wait on it; this adapter does it for
//! tokio. It works with any backend's interrupts, the mock's included.

// UNSAFETY: registering a file descriptor with tokio's reactor is unsafe
// because tokio cannot check that it stays open while registered.
#![expect(unsafe_code)]

use std::os::fd::{AsFd, AsRawFd, RawFd};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use vfio_core::{Error, Interrupt, Operation, Result};

/// An interrupt registered with tokio's reactor.
#[derive(Debug)]
pub struct AsyncInterrupt<I: Interrupt> {
    fd: AsyncFd<Registered<I>>,
}

/// What tokio registers: the interrupt, seen through the raw fd it needs.
#[derive(Debug)]
struct Registered<I>(I);

impl<I: AsFd> AsRawFd for Registered<I> {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl<I: Interrupt> AsyncInterrupt<I> {
    /// Registers `interrupt` with the current tokio runtime's reactor (call it
    /// from within a runtime). The interrupt must be non-blocking, as
    /// [`EventFdInterrupt`](crate::EventFdInterrupt) is.
    pub fn new(interrupt: I) -> Result<Self> {
        // SAFETY: `Registered` returns the fd of the interrupt it owns, which
        // the AsyncFd owns in turn: the fd is open and the same file for as
        // long as it is registered, and is deregistered before it is dropped
        // (AsyncFd deregisters in drop and in into_inner).
        unsafe { AsyncFd::register_with_interest(Registered(interrupt), Interest::READABLE) }
            .map(|fd| Self { fd })
            .map_err(|e| Error::from_io(Operation::WaitInterrupt, e.into_parts().1))
    }

    /// Waits until the interrupt fires and returns how many times it fired
    /// since last consumed.
    pub async fn wait(&self) -> Result<u64> {
        loop {
            let mut ready = self
                .fd
                .readable()
                .await
                .map_err(|e| Error::from_io(Operation::WaitInterrupt, e))?;
            match self.fd.get_ref().0.try_consume()? {
                Some(n) => return Ok(n),
                None => ready.clear_ready(),
            }
        }
    }

    /// The interrupt inside, e.g. to bind it to a vector.
    pub fn get_ref(&self) -> &I {
        &self.fd.get_ref().0
    }

    /// Unregisters and returns the interrupt.
    pub fn into_inner(self) -> I {
        self.fd.into_inner().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use vfio_core::EventFdInterrupt;

    #[tokio::test(flavor = "current_thread")]
    #[cfg_attr(miri, ignore = "eventfd and epoll are syscalls Miri does not model")]
    async fn wait_resolves_when_another_thread_fires() {
        let irq = AsyncInterrupt::new(EventFdInterrupt::new().unwrap()).unwrap();
        let fd = irq.get_ref().as_fd().try_clone_to_owned().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            nix::unistd::write(&fd, &1u64.to_ne_bytes()).unwrap();
        });
        let fired = tokio::time::timeout(Duration::from_secs(10), irq.wait()).await;
        assert_eq!(fired.expect("the interrupt arrived").unwrap(), 1);
        t.join().unwrap();
        // Consumed: nothing is pending now.
        assert_eq!(irq.get_ref().try_consume().unwrap(), None);
    }
}
