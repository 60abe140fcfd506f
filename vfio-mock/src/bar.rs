//! Memory behind a BAR: atomic 64-bit words, allocated a page at a time.
//!
//! Every access is one atomic load, store or read-modify-write on the word
//! that holds it, so any number of threads may access a BAR at once with
//! well-defined results and no lock. Pages are allocated on first write, so
//! a large 64-bit BAR costs nothing until it is used.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const PAGE_BYTES: u64 = 4096;
const WORDS_PER_PAGE: usize = (PAGE_BYTES / 8) as usize;

type Page = Box<[AtomicU64]>;

/// Plain little-endian storage for one BAR.
#[derive(Debug)]
pub(crate) struct BarMemory {
    pages: Box<[OnceLock<Page>]>,
    len: u64,
}

/// The bits of a `width`-byte value (width 1, 2, 4 or 8).
#[inline]
fn value_mask(width: u8) -> u64 {
    match width {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

impl BarMemory {
    /// `len` bytes of zeroes. `len` is a BAR size the builder has checked.
    pub(crate) fn new(len: u64) -> Self {
        let pages = len.div_ceil(PAGE_BYTES);
        let pages = usize::try_from(pages).unwrap_or(0);
        Self {
            pages: (0..pages).map(|_| OnceLock::new()).collect(),
            len,
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Where the word holding `offset` lives: page, word within the page,
    /// and the bit shift of `offset` within the word.
    #[inline]
    fn locate(&self, offset: u64) -> Option<(usize, usize, u32)> {
        if offset >= self.len {
            return None;
        }
        let page = usize::try_from(offset / PAGE_BYTES).ok()?;
        let word = usize::try_from((offset % PAGE_BYTES) / 8).ok()?;
        let shift = u32::try_from((offset % 8) * 8).ok()?;
        Some((page, word, shift))
    }

    /// Whether a `width`-byte access at `offset` is in bounds and naturally aligned.
    #[inline]
    pub(crate) fn fits(&self, offset: u64, width: u8) -> bool {
        matches!(width, 1 | 2 | 4 | 8)
            && offset % u64::from(width) == 0
            && offset
                .checked_add(u64::from(width))
                .is_some_and(|end| end <= self.len)
    }

    /// Reads `width` bytes at `offset`; 0 for an access that does not fit.
    #[inline]
    pub(crate) fn read(&self, offset: u64, width: u8) -> u64 {
        if !self.fits(offset, width) {
            return 0;
        }
        let Some((page, word, shift)) = self.locate(offset) else {
            return 0;
        };
        let Some(words) = self.pages.get(page).and_then(OnceLock::get) else {
            return 0;
        };
        words.get(word).map_or(0, |w| {
            (w.load(Ordering::Acquire) >> shift) & value_mask(width)
        })
    }

    /// Writes the low `width` bytes of `value` at `offset`; an access that
    /// does not fit is dropped.
    #[inline]
    pub(crate) fn write(&self, offset: u64, width: u8, value: u64) {
        if !self.fits(offset, width) {
            return;
        }
        let Some((page, word, shift)) = self.locate(offset) else {
            return;
        };
        let Some(slot) = self.pages.get(page) else {
            return;
        };
        let words = slot.get_or_init(|| (0..WORDS_PER_PAGE).map(|_| AtomicU64::new(0)).collect());
        let Some(w) = words.get(word) else {
            return;
        };
        if width == 8 {
            w.store(value, Ordering::Release);
            return;
        }
        let mask = value_mask(width) << shift;
        let bits = (value << shift) & mask;
        // A masked read-modify-write: other bytes of the word are untouched
        // even if another thread writes them at the same time.
        let _ = w.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
            Some((old & !mask) | bits)
        });
    }

    /// Zeroes every byte (a device reset).
    pub(crate) fn clear(&self) {
        for page in self.pages.iter().filter_map(OnceLock::get) {
            for w in page.iter() {
                w.store(0, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sub_word_writes_touch_only_their_bytes() {
        let m = BarMemory::new(0x2000);
        assert_eq!(m.read(0x1ff8, 8), 0);
        m.write(0x1000, 8, 0x1122_3344_5566_7788);
        m.write(0x1002, 2, 0xbeef);
        m.write(0x1007, 1, 0xaa);
        assert_eq!(m.read(0x1000, 8), 0xaa22_3344_beef_7788);
        assert_eq!(m.read(0x1004, 4), 0xaa22_3344);
        assert_eq!(m.read(0x1006, 2), 0xaa22);
        m.clear();
        assert_eq!(m.read(0x1000, 8), 0);
    }

    #[test]
    fn accesses_that_do_not_fit_are_ignored() {
        let m = BarMemory::new(16);
        m.write(16, 1, 0xff);
        m.write(2, 4, 0xffff_ffff);
        m.write(u64::MAX - 1, 2, 1);
        assert_eq!(m.read(0, 8), 0);
        assert_eq!(m.read(8, 8), 0);
        assert_eq!(m.read(16, 1), 0);
        assert!(!m.fits(0, 3));
    }

    #[test]
    fn concurrent_byte_writers_never_lose_each_others_bytes() {
        let m = Arc::new(BarMemory::new(4096));
        let threads: Vec<_> = (0..8u64)
            .map(|lane| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for i in 0..2000u64 {
                        m.write(lane, 1, (i + lane) & 0xff);
                    }
                    m.write(lane, 1, 0x10 + lane);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.read(0, 8), 0x1716_1514_1312_1110);
    }
}
