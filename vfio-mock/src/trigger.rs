//! An eventfd the mock signals: the kernel's `eventfd_ctx`, held by
//! duplicating the caller's fd.

use nix::errno::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// A reference to a caller's eventfd, kept after the call returns.
#[derive(Debug)]
pub(crate) struct Trigger {
    fd: OwnedFd,
}

impl Trigger {
    /// Takes a reference to `fd` as `eventfd_ctx_fdget` does: `EBADF` when
    /// the fd cannot be looked up, `EINVAL` when it is not an eventfd. The
    /// eventfd of a live [`EventFdInterrupt`](vfio_core::EventFdInterrupt)
    /// is one by construction; any other fd is decided from
    /// `/proc/self/fdinfo/<fd>`, which lists `eventfd-count` for eventfds only.
    pub(crate) fn from_fd(fd: BorrowedFd<'_>) -> Result<Self, Errno> {
        if !vfio_core::EventFdInterrupt::is_live_eventfd(fd) {
            let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
                .map_err(|_| Errno::EBADF)?;
            if !info.lines().any(|l| l.starts_with("eventfd-count:")) {
                return Err(Errno::EINVAL);
            }
        }
        let fd = fd
            .try_clone_to_owned()
            .map_err(|e| e.raw_os_error().map_or(Errno::EBADF, Errno::from_raw))?;
        Ok(Self { fd })
    }

    /// Adds 1 to the eventfd's count, as `eventfd_signal(ctx, 1)` does. A
    /// count already at its maximum stays there (the write would block; the
    /// fd is non-blocking or the write is skipped).
    pub(crate) fn signal(&self) {
        // EAGAIN at the maximum count is the only expected failure, and the
        // kernel's eventfd_signal saturates in the same case.
        let _ = nix::unistd::write(self.fd.as_fd(), &1u64.to_ne_bytes());
    }

    /// Reads and clears the count if it is non-zero, as the kernel's
    /// `eventfd_ctx_do_read` does: true if there was one. Never blocks, even
    /// on an eventfd the user made blocking.
    pub(crate) fn consume(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
        if !matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1)) {
            return false;
        }
        let mut count = [0u8; 8];
        matches!(nix::unistd::read(&self.fd, &mut count), Ok(8))
    }
}

impl AsFd for Trigger {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::{EventFdInterrupt, Interrupt};

    #[test]
    fn an_eventfd_is_accepted_and_signalled_through_the_duplicate() {
        let irq = EventFdInterrupt::new().unwrap();
        let t = Trigger::from_fd(irq.as_fd()).unwrap();
        t.signal();
        t.signal();
        assert_eq!(irq.try_consume().unwrap(), Some(2));
    }

    #[test]
    fn a_file_that_is_not_an_eventfd_is_invalid() {
        let f = tempfile::tempfile().unwrap();
        assert_eq!(Trigger::from_fd(f.as_fd()).unwrap_err(), Errno::EINVAL);
    }
}
