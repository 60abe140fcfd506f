//! What a command can fail with, and the exit code of each.

use std::fmt;
use vfio_core::{Error, ErrorKind};

/// The exit code of a command that did what it was asked.
pub const EXIT_OK: i32 = 0;
/// The exit code when VFIO, the kernel or the OS refused (the error names
/// its `ErrorKind` and errno), or output could not be written.
pub const EXIT_VFIO: i32 = 1;
/// The exit code of a usage error or bad input found before the device was
/// touched: an unknown option, a width that is not 1, 2, 4 or 8, a value
/// that does not fit its width, an offset past a region, a region that is
/// absent or refuses the access, a profile that cannot be read or is refused.
pub const EXIT_USAGE: i32 = 2;

/// A command's failure.
#[derive(Debug)]
pub enum ToolError {
    /// VFIO or the OS refused; carries vfio-core's error (operation,
    /// target, `ErrorKind`, errno).
    Vfio(Error),
    /// Bad input, found before any access to the device.
    Usage(String),
    /// Writing the output failed.
    Output(std::io::Error),
    /// A profile given with `--mock=PROFILE` that cannot be read, or that
    /// vfio-profile or the mock refuses (another version, a broken
    /// capability chain, ...): bad input.
    BadProfile(String),
    /// `capture` failed on the device (its message and causes).
    Capture(String),
}

impl ToolError {
    /// The exit code for this failure: [`EXIT_VFIO`] or [`EXIT_USAGE`].
    pub fn exit_code(&self) -> i32 {
        match self {
            ToolError::Vfio(_) | ToolError::Output(_) | ToolError::Capture(_) => EXIT_VFIO,
            ToolError::Usage(_) | ToolError::BadProfile(_) => EXIT_USAGE,
        }
    }

    /// The error's `ErrorKind`, for a VFIO error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ToolError::Vfio(e) => Some(e.kind()),
            _ => None,
        }
    }
}

impl From<Error> for ToolError {
    fn from(e: Error) -> Self {
        ToolError::Vfio(e)
    }
}

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Output(e)
    }
}

/// The stderr line: for a VFIO error, its message then
/// `[kind: NotFound, errno: ENODEV]` (`errno: none` when no kernel call
/// answered).
impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Vfio(e) => {
                write!(f, "{e}")?;
                let mut source = std::error::Error::source(e);
                while let Some(s) = source {
                    if s.downcast_ref::<vfio_core::Errno>().is_none() {
                        write!(f, ": {s}")?;
                    }
                    source = s.source();
                }
                match e.errno() {
                    Some(errno) => write!(f, " [kind: {:?}, errno: {errno:?}]", e.kind()),
                    None => write!(f, " [kind: {:?}, errno: none]", e.kind()),
                }
            }
            ToolError::Usage(msg) => write!(f, "{msg}"),
            ToolError::Output(e) => write!(f, "writing the output failed: {e}"),
            ToolError::BadProfile(msg) => write!(f, "{msg}"),
            ToolError::Capture(msg) => write!(f, "capture failed: {msg}"),
        }
    }
}

/// An error and its causes, `: `-separated.
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Shorthand for a usage error.
pub(crate) fn usage(msg: impl Into<String>) -> ToolError {
    ToolError::Usage(msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::{Errno, Operation};

    #[test]
    fn the_stderr_line_names_kind_and_errno() {
        let e = ToolError::from(
            Error::from_errno(Operation::OpenGroup, Errno::EACCES).with_target("/dev/vfio/1"),
        );
        assert_eq!(
            e.to_string(),
            "open group failed for /dev/vfio/1 (permission denied) [kind: PermissionDenied, errno: EACCES]"
        );
        assert_eq!(e.exit_code(), EXIT_VFIO);
        let e = ToolError::from(Error::new(Operation::OpenDevice, ErrorKind::NotFound));
        assert!(e.to_string().ends_with("[kind: NotFound, errno: none]"));
        assert_eq!(usage("width 3").exit_code(), EXIT_USAGE);
    }
}
