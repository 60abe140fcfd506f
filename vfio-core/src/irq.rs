//! The arguments of `VFIO_DEVICE_SET_IRQS`.

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
/// unbinds the vectors of the call it had already processed: a failed bind
/// would leave the previous bindings half torn down. Checking first makes the
/// failure change nothing. The check reads this process's `/proc/self/fd`
/// links; where procfs is not mounted it is skipped and the kernel decides.
pub fn check_eventfds(fds: &[Option<BorrowedFd<'_>>]) -> crate::Result<()> {
    use crate::error::{Error, Operation};
    use std::os::fd::AsRawFd;
    for (i, fd) in fds.iter().enumerate() {
        let Some(fd) = fd else { continue };
        let link = std::path::PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        match std::fs::read_link(&link) {
            Ok(target) if target.as_os_str() == "anon_inode:[eventfd]" => {}
            Ok(target) => {
                return Err(
                    Error::from_errno(Operation::SetIrqs, nix::errno::Errno::EINVAL).with_detail(
                        format_args!(
                            "fd {} (entry {i}) is {}, not an eventfd",
                            fd.as_raw_fd(),
                            target.display()
                        ),
                    ),
                );
            }
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::os::fd::AsFd;

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
}
