//! How a call failed: the kind and the errno, as the kernel gives them.

use anyhow::{Result, bail};
use std::fmt;
use vfio_core::{Errno, Error, ErrorKind};

/// Checks that `result` failed with `kind` and `errno`, and returns the
/// error. `errno` is `None` for a refusal with no kernel call behind it (an
/// access through a mapping, a name that cannot be a C string): such an
/// error must then carry no errno. `what` names the call in the message,
/// which gives what was wanted and what came back.
pub fn expect_error<T: fmt::Debug>(
    what: impl fmt::Display,
    result: vfio_core::Result<T>,
    kind: ErrorKind,
    errno: Option<Errno>,
) -> Result<Error> {
    let want = Shown(kind, errno);
    match result {
        Ok(value) => bail!("{what}: want {want}, got success ({value:?})"),
        Err(e) if e.kind() == kind && e.errno() == errno => Ok(e),
        Err(e) => bail!(
            "{what}: want {want}, got {} ({e})",
            Shown(e.kind(), e.errno())
        ),
    }
}

/// A kind and errno as `invalid argument, EINVAL`.
struct Shown(ErrorKind, Option<Errno>);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(errno) => write!(f, "{}, {errno:?}", self.0),
            None => write!(f, "{}, no errno", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::Operation;

    #[test]
    fn kind_and_errno_must_both_match() {
        let einval = || Err::<(), _>(Error::from_errno(Operation::SetIrqs, Errno::EINVAL));
        assert!(
            expect_error(
                "bind",
                einval(),
                ErrorKind::InvalidArgument,
                Some(Errno::EINVAL)
            )
            .is_ok()
        );
        let e = expect_error("bind", einval(), ErrorKind::InvalidArgument, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bind: want invalid argument, no errno, got invalid argument, EINVAL \
             (set IRQs failed (invalid argument))"
        );
        let e = expect_error("bind", Ok(7), ErrorKind::Busy, Some(Errno::EBUSY)).unwrap_err();
        assert_eq!(e.to_string(), "bind: want busy, EBUSY, got success (7)");
    }

    #[test]
    fn an_errno_of_the_same_kind_is_not_enough() {
        let enoent = Err::<(), _>(Error::from_errno(Operation::OpenGroup, Errno::ENOENT));
        let e = expect_error("open", enoent, ErrorKind::NotFound, Some(Errno::ENODEV)).unwrap_err();
        assert!(
            e.to_string()
                .contains("want not found, ENODEV, got not found, ENOENT"),
            "{e}"
        );
    }
}
