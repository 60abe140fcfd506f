//! The arguments of `VFIO_DEVICE_SET_IRQS`.

use crate::info::IrqIndex;
use std::os::fd::BorrowedFd;

/// `VFIO_IRQ_SET_ACTION_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IrqAction {
    /// Mask the vectors (INTx only on vfio-pci).
    Mask,
    /// Unmask the vectors (INTx only on vfio-pci).
    Unmask,
    /// Bind, unbind, fire or disable the vectors' triggers.
    Trigger,
}

/// `VFIO_IRQ_SET_DATA_*` and the data that goes with it.
#[derive(Debug, Clone, Copy)]
pub enum IrqData<'a> {
    /// `DATA_NONE` for `count` vectors. With [`IrqAction::Trigger`] and a count
    /// of 0 it disables the index; with a count it fires the bound vectors.
    None {
        /// Number of vectors.
        count: u32,
    },
    /// `DATA_BOOL`: one flag per vector, acting on those set.
    Bool(&'a [bool]),
    /// `DATA_EVENTFD`: one eventfd per vector; `None` (fd -1) unbinds that vector.
    Eventfds(&'a [Option<BorrowedFd<'a>>]),
}

impl IrqData<'_> {
    /// How many vectors the call covers.
    pub fn count(&self) -> usize {
        match self {
            Self::None { count } => *count as usize,
            Self::Bool(b) => b.len(),
            Self::Eventfds(f) => f.len(),
        }
    }
}

/// Checks that every fd of a `DATA_EVENTFD` payload is an eventfd, before any
/// backend acts on it.
///
/// Linux 6.1 checks each fd only when it reaches that vector, and on a bad one
/// unbinds every vector of the call from `start` up to and including the bad
/// one: a failed bind would leave the previous bindings half torn down.
/// Checking every fd first makes that failure change nothing. The answer is
/// the kernel's: `EINVAL` for an open file that is not an eventfd
/// (`eventfd_ctx_fileget`), `EBADF` for an fd that cannot be looked up.
///
/// An fd that is a live [`EventFdInterrupt`](crate::EventFdInterrupt) of
/// this process passes without a system call; any other is looked up in
/// this process's `/proc/self/fd` links. Where procfs is not
/// mounted (no `/proc/self/fd` at all) nothing can be checked and `Ok` is
/// returned: the kernel then decides, with the partial teardown above.
pub fn check_eventfds(fds: &[Option<BorrowedFd<'_>>]) -> crate::Result<()> {
    check_eventfds_in(std::path::Path::new("/proc/self/fd"), fds)
}

/// [`check_eventfds`] against a given `fd` directory.
fn check_eventfds_in(dir: &std::path::Path, fds: &[Option<BorrowedFd<'_>>]) -> crate::Result<()> {
    use crate::error::{Error, Operation};
    use nix::errno::Errno;
    use std::os::fd::AsRawFd;
    // The eventfds this process created and still holds need no lookup: a
    // bind of those alone (the usual case) costs no system call here.
    let unknown = fds
        .iter()
        .enumerate()
        .filter_map(|(i, fd)| fd.map(|fd| (i, fd)))
        .filter(|(_, fd)| !crate::EventFdInterrupt::is_live_eventfd(*fd));
    let mut unknown = unknown.peekable();
    if unknown.peek().is_none() || !dir.is_dir() {
        return Ok(());
    }
    for (i, fd) in unknown {
        let raw = fd.as_raw_fd();
        match std::fs::read_link(dir.join(raw.to_string())) {
            Ok(target) if target.as_os_str() == "anon_inode:[eventfd]" => {}
            Ok(target) => {
                return Err(
                    Error::from_errno(Operation::SetIrqs, Errno::EINVAL).with_detail(format_args!(
                        "fd {raw} (entry {i}) is {}, not an eventfd",
                        target.display()
                    )),
                );
            }
            Err(e) => {
                return Err(
                    Error::from_errno(Operation::SetIrqs, Errno::EBADF).with_detail(format_args!(
                        "fd {raw} (entry {i}) cannot be looked up: {e}"
                    )),
                );
            }
        }
    }
    Ok(())
}

/// What a device handle has enabled: the interrupt mode and its vector count.
///
/// vfio-pci has one interrupt mode at a time per device (`vdev->irq_type`):
/// none, INTx, MSI or MSI-X. The kernel has no call that reports it, so a
/// backend follows it from the `VFIO_DEVICE_SET_IRQS` calls made through the
/// handle and their results, exactly as `vfio_pci_set_irqs_ioctl` changes it:
///
/// - a `DATA_EVENTFD` trigger on INTx, MSI or MSI-X with no mode enabled
///   enables that index (INTx with one vector, MSI and MSI-X with
///   `start + count`); if it fails, the kernel leaves the index disabled;
/// - a `DATA_NONE` trigger with count 0 on the enabled index disables it;
/// - nothing else changes the mode (ERR and REQ are single eventfds with no
///   mode of their own).
///
/// What it cannot see: calls made through another handle of the same device
/// (a second `open_device`), which share the kernel's state.
#[derive(Debug, Default)]
pub struct IrqTracker {
    /// `(index, vectors)` of the enabled mode; `None` when disabled.
    enabled: parking_lot::Mutex<Option<(IrqIndex, u32)>>,
}

impl IrqTracker {
    /// A tracker for a freshly opened device: nothing enabled.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many vectors `index` is enabled with, or `None` if it is not the
    /// enabled mode (always `None` for ERR and REQ).
    pub fn enabled(&self, index: IrqIndex) -> Option<u32> {
        match *self.enabled.lock() {
            Some((i, n)) if i == index => Some(n),
            _ => None,
        }
    }

    /// Forgets the enabled mode, for a backend whose device lost it
    /// (closed, removed).
    pub fn clear(&self) {
        *self.enabled.lock() = None;
    }

    /// Runs `call` (the `VFIO_DEVICE_SET_IRQS` for these arguments, after
    /// any checks of the backend's own) and follows the mode change its
    /// result implies. A failure gets a detail naming the vectors, and, for
    /// a bind into an enabled index, what Linux 6.1 has undone. Calls through one handle
    /// are serialized here, as the kernel serializes them per device.
    pub fn track<T>(
        &self,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: &IrqData<'_>,
        call: impl FnOnce() -> crate::Result<T>,
    ) -> crate::Result<T> {
        let mut enabled = self.enabled.lock();
        let count = data.count();
        let end = u64::from(start) + count as u64;
        // A bind within the enabled vectors passes the kernel's range checks,
        // so a failure happens while it is binding them one by one.
        let partway = count > 0
            && matches!(data, IrqData::Eventfds(_))
            && enabled.is_some_and(|(i, n)| i == index && end <= u64::from(n));
        let result = call().map_err(|e| {
            if partway {
                // vfio_msi_set_block: the vectors it had processed, and the
                // one that failed, are left unbound.
                e.with_detail(format_args!(
                    "{index} vectors {start}..{end}: the kernel failed partway and has \
                     unbound the vectors from {start} up to the one that failed"
                ))
            } else {
                e.with_detail(format_args!("{index} vectors {start}..{end}"))
            }
        });
        let moded = matches!(index, IrqIndex::INTX | IrqIndex::MSI | IrqIndex::MSIX);
        if result.is_ok() && moded && action == IrqAction::Trigger {
            match data {
                IrqData::None { count: 0 } if enabled.is_some_and(|(i, _)| i == index) => {
                    *enabled = None;
                }
                IrqData::Eventfds(fds) if enabled.is_none() => {
                    let vectors = if index == IrqIndex::INTX {
                        1
                    } else {
                        u32::try_from(fds.len())
                            .ok()
                            .and_then(|n| start.checked_add(n))
                            .unwrap_or(u32::MAX)
                    };
                    *enabled = Some((index, vectors));
                }
                _ => {}
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    #[cfg_attr(miri, ignore = "eventfd and /proc/self/fd are outside Miri")]
    fn eventfds_pass_and_other_files_are_invalid() {
        let irq = crate::EventFdInterrupt::new().unwrap();
        assert!(check_eventfds(&[Some(irq.as_fd()), None]).is_ok());
        let dir = std::fs::File::open("/").unwrap();
        let e = check_eventfds(&[Some(irq.as_fd()), Some(dir.as_fd())]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.errno(), Some(nix::errno::Errno::EINVAL));
        assert!(e.to_string().contains("entry 1"), "{e}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "eventfd and /proc/self/fd are outside Miri")]
    fn every_fd_is_checked_not_just_those_before_one_that_cannot_be_read() {
        // A directory standing in for /proc/self/fd that lists only the first fd:
        // the second cannot be looked up, and the third is not an eventfd.
        let irq = crate::EventFdInterrupt::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let raw = irq.as_fd().as_raw_fd();
        std::os::unix::fs::symlink("anon_inode:[eventfd]", dir.path().join(raw.to_string()))
            .unwrap();
        let file = tempfile::tempfile().unwrap();
        let e =
            check_eventfds_in(dir.path(), &[Some(irq.as_fd()), Some(file.as_fd())]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.errno(), Some(nix::errno::Errno::EBADF));
        assert!(e.to_string().contains("entry 1"), "{e}");
    }

    #[test]
    #[cfg_attr(miri, ignore = "files are outside Miri's isolation")]
    fn without_procfs_nothing_is_checked() {
        // A file that is not an eventfd passes when there is no fd
        // directory to look it up in: the kernel decides then.
        let file = tempfile::tempfile().unwrap();
        let fds = [Some(file.as_fd())];
        let dir = std::path::Path::new("/nonexistent/fd");
        assert!(check_eventfds_in(dir, &fds).is_ok());
        let real = std::path::Path::new("/proc/self/fd");
        assert!(
            check_eventfds_in(real, &fds).is_err(),
            "the same fd is caught with procfs"
        );
    }

    #[test]
    fn the_tracker_follows_enable_and_disable() {
        let t = IrqTracker::new();
        let unbound = [None, None, None];
        // (index, start, data, whether the call succeeds, then the mode:
        // which index is enabled with how many vectors).
        type Step<'a> = (IrqIndex, u32, IrqData<'a>, bool, Option<(IrqIndex, u32)>);
        let steps: [Step<'_>; 7] = [
            // A failed enable leaves the index disabled.
            (IrqIndex::MSIX, 2, IrqData::Eventfds(&unbound), false, None),
            (
                IrqIndex::MSIX,
                2,
                IrqData::Eventfds(&unbound),
                true,
                Some((IrqIndex::MSIX, 5)),
            ),
            // Rebinding within the enabled index keeps the count.
            (
                IrqIndex::MSIX,
                0,
                IrqData::Eventfds(&unbound),
                true,
                Some((IrqIndex::MSIX, 5)),
            ),
            // A loopback trigger changes nothing; DATA_NONE count 0 disables.
            (
                IrqIndex::MSIX,
                0,
                IrqData::None { count: 1 },
                true,
                Some((IrqIndex::MSIX, 5)),
            ),
            (IrqIndex::MSIX, 0, IrqData::None { count: 0 }, true, None),
            // INTx has one vector; ERR and REQ have no mode.
            (
                IrqIndex::INTX,
                0,
                IrqData::Eventfds(&unbound[..1]),
                true,
                Some((IrqIndex::INTX, 1)),
            ),
            (
                IrqIndex::REQ,
                0,
                IrqData::Eventfds(&unbound[..1]),
                true,
                Some((IrqIndex::INTX, 1)),
            ),
        ];
        for (i, (index, start, data, succeeds, mode)) in steps.into_iter().enumerate() {
            let r = t.track(index, IrqAction::Trigger, start, &data, || {
                if succeeds {
                    Ok(())
                } else {
                    Err(crate::Error::from_errno(
                        crate::Operation::SetIrqs,
                        nix::errno::Errno::EINVAL,
                    ))
                }
            });
            assert_eq!(r.is_ok(), succeeds, "step {i}");
            for probe in [IrqIndex::INTX, IrqIndex::MSI, IrqIndex::MSIX, IrqIndex::REQ] {
                let want = mode.filter(|(m, _)| *m == probe).map(|(_, n)| n);
                assert_eq!(t.enabled(probe), want, "step {i}: {probe}");
            }
        }
    }
}
