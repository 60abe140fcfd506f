//! An eventfd the host acts on when the user signals it: the kernel's
//! `virqfd`, which vfio-pci uses for the INTx unmask eventfd
//! (`VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_DATA_EVENTFD`).
//!
//! In the kernel the eventfd's wakeup consumes its count and runs the
//! handler in the writer's context. The mock cannot see the user's write, so
//! a thread of its own waits on the eventfd, consumes the count and runs the
//! handler; the device also drains it before acting on its own (see
//! [`Virqfd::drain`]), so a driver that signals the eventfd and then touches
//! the device sees the handler's effect already, as on the kernel.

use crate::trigger::Trigger;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What runs when the eventfd is signalled. Called with the `stopped` flag,
/// which the handler checks under the lock it takes, so that a handler racing
/// with [`Virqfd`]'s drop does nothing.
pub(crate) type Handler = Box<dyn Fn(&AtomicBool) + Send + Sync>;

/// A watched eventfd. Dropping it stops the watch; the thread ends on its own.
pub(crate) struct Virqfd {
    shared: Arc<Shared>,
}

struct Shared {
    /// The user's eventfd (a duplicate of the fd they gave).
    eventfd: Trigger,
    /// Written on drop to wake the thread.
    stop: EventFd,
    stopped: AtomicBool,
    handler: Handler,
    /// Held while consuming, so the thread and [`Virqfd::drain`] never both
    /// read after one poll (a blocking eventfd would hang the loser).
    consuming: parking_lot::Mutex<()>,
}

impl std::fmt::Debug for Virqfd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Virqfd")
            .field("stopped", &self.shared.stopped.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Virqfd {
    /// Watches `fd` (refused as `eventfd_ctx_fdget` refuses it: EBADF or
    /// EINVAL) and runs `handler` each time it is signalled.
    pub(crate) fn new(fd: BorrowedFd<'_>, handler: Handler) -> Result<Self, Errno> {
        let eventfd = Trigger::from_fd(fd)?;
        let stop =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let shared = Arc::new(Shared {
            eventfd,
            stop,
            stopped: AtomicBool::new(false),
            handler,
            consuming: parking_lot::Mutex::new(()),
        });
        let watched = shared.clone();
        std::thread::Builder::new()
            .name("vfio-mock-virqfd".into())
            .spawn(move || watch(&watched))
            .map_err(|e| e.raw_os_error().map_or(Errno::EAGAIN, Errno::from_raw))?;
        // A count already pending is acted on at once (the thread's first
        // poll sees it), as virqfd_enable does.
        Ok(Self { shared })
    }

    /// Consumes a pending signal from the caller's thread: true if there was
    /// one, and the caller then does what the handler would.
    pub(crate) fn drain(&self) -> bool {
        let _one = self.shared.consuming.lock();
        self.shared.eventfd.consume()
    }
}

impl Drop for Virqfd {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        let _ = self.shared.stop.write(1);
    }
}

/// The thread: wait for a signal or the stop, consume, run the handler.
fn watch(shared: &Shared) {
    loop {
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let mut fds = [
            PollFd::new(shared.eventfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(shared.stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        if shared.stopped.load(Ordering::Acquire) {
            return;
        }
        let consumed = {
            let _one = shared.consuming.lock();
            shared.eventfd.consume()
        };
        if consumed {
            (shared.handler)(&shared.stopped);
        }
    }
}
