//! VFIO groups: the unit of IOMMU isolation, and where devices are opened.

use crate::device::LinuxDevice;
use crate::{LinuxBackend, LinuxContainer, sys};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use vfio_core::{Error, ErrorKind, Group, GroupKeepAlive, GroupStatus, Operation, Result};

/// An open `/dev/vfio/N` (or `/dev/vfio/noiommu-N`).
#[derive(Debug)]
pub struct LinuxGroup {
    file: File,
    number: u32,
}

impl LinuxGroup {
    pub(crate) fn new(file: File, number: u32) -> Self {
        Self { file, number }
    }

    fn device_name(op: Operation, name: &str) -> Result<CString> {
        CString::new(name).map_err(|_| {
            Error::new(op, ErrorKind::InvalidArgument)
                .with_target(name.escape_debug())
                .with_detail("device name contains a NUL byte")
        })
    }
}

impl AsFd for LinuxGroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Group<LinuxBackend> for LinuxGroup {
    fn number(&self) -> u32 {
        self.number
    }

    fn status(&self) -> Result<GroupStatus> {
        sys::group_get_status(self.as_fd())
            .map(GroupStatus)
            .map_err(|e| {
                Error::from_errno(Operation::GroupStatus, e)
                    .with_target(format_args!("group {}", self.number))
            })
    }

    fn set_container(&self, container: &LinuxContainer) -> Result<()> {
        sys::group_set_container(self.as_fd(), container.as_fd()).map_err(|e| {
            Error::from_errno(Operation::SetContainer, e)
                .with_target(format_args!("group {}", self.number))
        })
    }

    fn unset_container(&self) -> Result<()> {
        sys::group_unset_container(self.as_fd()).map_err(|e| {
            Error::from_errno(Operation::UnsetContainer, e)
                .with_target(format_args!("group {}", self.number))
        })
    }

    /// Opens device `name` of the group: one `VFIO_GROUP_GET_DEVICE_FD`.
    ///
    /// A name with a NUL byte is refused before any ioctl, as
    /// [`ErrorKind::InvalidArgument`] with no errno: the kernel reads the
    /// name as a C string, so it could only be given the part before the
    /// NUL, and would open whatever device that names.
    fn open_device(&self, name: &str) -> Result<LinuxDevice> {
        let cname = Self::device_name(Operation::OpenDevice, name)?;
        let fd = sys::group_get_device_fd(self.as_fd(), &cname)
            .map_err(|e| Error::from_errno(Operation::OpenDevice, e).with_target(name))?;
        LinuxDevice::new(File::from(fd), name.to_owned())
    }
}

impl GroupKeepAlive<LinuxBackend> for LinuxGroup {
    fn set_keep_alive(&self, name: &str) -> Result<()> {
        let cname = Self::device_name(Operation::KeepAlive, name)?;
        sys::group_set_keep_alive(self.as_fd(), &cname)
            .map_err(|e| Error::from_errno(Operation::KeepAlive, e).with_target(name))
    }
}
