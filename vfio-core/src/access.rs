//! Offset, width and alignment checks shared by every register accessor.

use crate::backend::{Device, VfioBackend};
use crate::error::{Error, ErrorKind, Operation, Result};

/// Checks a `width`-byte access at `offset` into something `len` bytes long:
/// in bounds (with checked arithmetic) and aligned to `width`, which must be
/// a power of two. Returns the offset as a `usize` ready for indexing.
///
/// This sits on every register access, so the success path is inlined and
/// branch-only; the errors are built out of line.
///
/// The errors carry no errno: an access through a mapping never reaches the
/// kernel, which has no answer to give (past the mapping the CPU faults, and
/// what a misaligned access does is up to the CPU and the bus).
#[inline]
pub fn check_register_access(op: Operation, len: u64, offset: u64, width: u64) -> Result<usize> {
    debug_assert!(width.is_power_of_two());
    match offset.checked_add(width) {
        Some(end) if end <= len => {}
        _ => return Err(out_of_range(op, len, offset, width)),
    }
    if offset & (width - 1) != 0 {
        return Err(misaligned(op, offset, width));
    }
    usize::try_from(offset).map_err(|_| too_large(op, offset))
}

#[cold]
#[inline(never)]
fn out_of_range(op: Operation, len: u64, offset: u64, width: u64) -> Error {
    Error::new(op, ErrorKind::OutOfRange).with_detail(format_args!(
        "{width}-byte access at offset {offset:#x} is past the end of a {len:#x}-byte region"
    ))
}

#[cold]
#[inline(never)]
fn misaligned(op: Operation, offset: u64, width: u64) -> Error {
    Error::new(op, ErrorKind::Misaligned).with_detail(format_args!(
        "offset {offset:#x} is not aligned to {width} bytes"
    ))
}

#[cold]
#[inline(never)]
fn too_large(op: Operation, offset: u64) -> Error {
    Error::new(op, ErrorKind::OutOfRange)
        .with_detail(format_args!("offset {offset:#x} does not fit in usize"))
}

/// Checks that `[offset, offset + size)` lies within `len` bytes.
pub fn check_range(op: Operation, len: u64, offset: u64, size: u64) -> Result<()> {
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        _ => Err(
            Error::new(op, ErrorKind::OutOfRange).with_detail(format_args!(
                "{size:#x} bytes at offset {offset:#x} run past the end of a {len:#x}-byte object"
            )),
        ),
    }
}

/// Reads exactly `buf.len()` bytes of region `index` at `offset`. A read past
/// the region's end fails with the kernel's answer to the part at the end
/// (EINVAL in a BAR, EFAULT in config space), or, where a read returned 0
/// bytes, as [`ErrorKind::OutOfRange`] with no errno.
pub fn read_exact<B: VfioBackend, D: Device<B> + ?Sized>(
    device: &D,
    index: u32,
    offset: u64,
    buf: &mut [u8],
) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let at = offset.saturating_add(done as u64);
        let n = device.read_region(index, at, &mut buf[done..])?;
        if n == 0 {
            return Err(short(
                Operation::RegionRead,
                device.name(),
                index,
                offset,
                buf.len(),
                done,
            ));
        }
        done += n;
    }
    Ok(())
}

/// Writes all of `data` to region `index` at `offset`. A write past the
/// region's end fails as [`read_exact`] does.
pub fn write_all<B: VfioBackend, D: Device<B> + ?Sized>(
    device: &D,
    index: u32,
    offset: u64,
    data: &[u8],
) -> Result<()> {
    let mut done = 0;
    while done < data.len() {
        let at = offset.saturating_add(done as u64);
        let n = device.write_region(index, at, &data[done..])?;
        if n == 0 {
            return Err(short(
                Operation::RegionWrite,
                device.name(),
                index,
                offset,
                data.len(),
                done,
            ));
        }
        done += n;
    }
    Ok(())
}

fn short(op: Operation, name: &str, index: u32, offset: u64, want: usize, got: usize) -> Error {
    Error::new(op, ErrorKind::OutOfRange)
        .with_target(name)
        .with_detail(format_args!(
            "region {index}: only {got} of {want} bytes at offset {offset:#x} lie inside the region"
        ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OP: Operation = Operation::RegisterRead;

    #[test]
    fn in_bounds_aligned_access_is_accepted() {
        assert_eq!(check_register_access(OP, 0x1000, 0xffc, 4).unwrap(), 0xffc);
        assert_eq!(check_register_access(OP, 8, 0, 8).unwrap(), 0);
    }

    #[test]
    fn past_the_end_is_out_of_range() {
        let e = check_register_access(OP, 0x1000, 0x1000, 4).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        let e = check_register_access(OP, 0x1000, 0xffe, 4).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
    }

    #[test]
    fn overflowing_offset_is_out_of_range_not_a_panic() {
        let e = check_register_access(OP, u64::MAX, u64::MAX - 1, 4).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
    }

    #[test]
    fn misaligned_access_is_reported() {
        let e = check_register_access(OP, 0x1000, 2, 4).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misaligned);
    }

    proptest! {
        #[test]
        fn accepted_accesses_are_in_bounds_and_aligned(len in any::<u64>(), off in any::<u64>(), w in prop::sample::select(vec![1u64, 2, 4, 8])) {
            if let Ok(o) = check_register_access(OP, len, off, w) {
                prop_assert_eq!(o as u64, off);
                prop_assert!(off + w <= len);
                prop_assert_eq!(off % w, 0);
            }
        }

        #[test]
        fn check_range_agrees_with_wide_arithmetic(len in any::<u64>(), off in any::<u64>(), size in any::<u64>()) {
            let ok = (off as u128) + (size as u128) <= len as u128;
            prop_assert_eq!(check_range(OP, len, off, size).is_ok(), ok);
        }
    }
}
