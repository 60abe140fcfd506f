//! Little-endian reads from byte slices that return `None` instead of panicking.

/// `N` bytes at `at`, or `None` when they are not all inside `buf`.
pub(super) fn array<const N: usize>(buf: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    buf.get(at..end)?.try_into().ok()
}

/// The byte at `at`.
pub(super) fn u8_at(buf: &[u8], at: usize) -> Option<u8> {
    buf.get(at).copied()
}

/// The little-endian `u16` at `at`.
pub(super) fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    array(buf, at).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `at`.
pub(super) fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    array(buf, at).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `at`.
pub(super) fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    array(buf, at).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_outside() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u8_at(&b, 8), Some(9));
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u32_at(&b, 5), Some(0x0908_0706));
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(u8_at(&b, 9), None);
        assert_eq!(u16_at(&b, 8), None);
        assert_eq!(u64_at(&b, 2), None);
        assert_eq!(u32_at(&b, usize::MAX), None);
    }
}
