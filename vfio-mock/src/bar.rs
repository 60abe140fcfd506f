//! Memory behind a BAR: atomic 64-bit words, allocated a page at a time.
//!
//! Every access is one atomic load, store or read-modify-write on the word
//! that holds it, so any number of threads may access a BAR at once with
//! well-defined results and no lock. Pages are allocated on first write, so
//! a large 64-bit BAR costs little until it is used.
//!
//! A BAR of up to [`EAGER_MAX_BYTES`] (four pages) has all its words
//! allocated up front, in one block: its registers are one pointer away.
//! A BAR of up to [`FLAT_MAX_BYTES`] has one slot per page (8 KiB of slots
//! at most). A larger one has a three-level directory: a top level of one
//! slot per GiB, each allocated on first write to a 1 GiB directory of 2 MiB
//! tables, each allocated on first write to 512 page slots. A 1 TiB BAR
//! ([`MAX_BAR_BYTES`], the most the builder accepts) costs 16 KiB of slots
//! up front, and 20 KiB more per 4 KiB page first written in a fresh GiB.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const PAGE_BYTES: u64 = 4096;
const WORDS_PER_PAGE: usize = (PAGE_BYTES / 8) as usize;
/// Slots per table and per directory.
const FANOUT: usize = 512;
/// Bytes a table of page slots covers (2 MiB).
const TABLE_BYTES: u64 = PAGE_BYTES * FANOUT as u64;
/// Bytes a directory of tables covers (1 GiB).
const DIR_BYTES: u64 = TABLE_BYTES * FANOUT as u64;

/// The largest BAR kept as a flat array of page slots: one table's worth.
pub(crate) const FLAT_MAX_BYTES: u64 = TABLE_BYTES;
/// The largest BAR (or ROM) [`BarMemory`] supports: 1 TiB, 1024 top-level
/// slots. The builder refuses larger ones.
pub(crate) const MAX_BAR_BYTES: u64 = 1 << 40;

type Page = Box<[AtomicU64; WORDS_PER_PAGE]>;
type Table = [OnceLock<Page>; FANOUT];
type Dir = [OnceLock<Box<Table>>; FANOUT];

/// The largest BAR whose words are allocated up front, in one block: four
/// pages (NVMe's BAR0 is one), cheap to allocate and one pointer closer
/// to a register access than a page slot.
pub(crate) const EAGER_MAX_BYTES: u64 = 4 * PAGE_BYTES;

/// Where a BAR's pages hang.
#[derive(Debug)]
enum Pages {
    /// Every word, for BARs of up to [`EAGER_MAX_BYTES`].
    Eager(Box<[AtomicU64]>),
    /// One slot per page, for BARs of up to [`FLAT_MAX_BYTES`].
    Flat(Box<[OnceLock<Page>]>),
    /// One slot per GiB, then a directory per GiB and a table per 2 MiB.
    Sparse(Box<[OnceLock<Box<Dir>>]>),
}

/// Plain little-endian storage for one BAR.
#[derive(Debug)]
pub(crate) struct BarMemory {
    pages: Pages,
    len: u64,
}

fn zeroed_page() -> Page {
    Box::new(std::array::from_fn(|_| AtomicU64::new(0)))
}

fn empty_slots<T, const N: usize>() -> Box<[OnceLock<T>; N]> {
    Box::new(std::array::from_fn(|_| OnceLock::new()))
}

fn slots<T>(n: u64) -> Box<[OnceLock<T>]> {
    (0..n).map(|_| OnceLock::new()).collect()
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
    /// `len` bytes of zeroes. `len` is a BAR size the builder has checked;
    /// anything past [`MAX_BAR_BYTES`] is clamped to it (never a huge
    /// allocation), and accesses past the clamped length are refused.
    pub(crate) fn new(len: u64) -> Self {
        let len = len.min(MAX_BAR_BYTES);
        let pages = if len <= EAGER_MAX_BYTES {
            Pages::Eager((0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect())
        } else if len <= FLAT_MAX_BYTES {
            Pages::Flat(slots(len.div_ceil(PAGE_BYTES)))
        } else {
            Pages::Sparse(slots(len.div_ceil(DIR_BYTES)))
        };
        Self { pages, len }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The word within its page, and the bit shift of `offset` within the
    /// word, of an in-bounds `offset`.
    #[inline]
    fn locate(offset: u64) -> (usize, u32) {
        // Both are below 512 and 64: the casts cannot truncate.
        (
            ((offset % PAGE_BYTES) / 8) as usize,
            ((offset % 8) * 8) as u32,
        )
    }

    /// The page holding in-bounds `offset`, if it has been written.
    #[inline]
    fn page(&self, offset: u64) -> Option<&Page> {
        match &self.pages {
            Pages::Eager(_) => None,
            Pages::Flat(pages) => pages.get(usize::try_from(offset / PAGE_BYTES).ok()?)?.get(),
            Pages::Sparse(dirs) => {
                let dir = dirs.get(usize::try_from(offset / DIR_BYTES).ok()?)?.get()?;
                let table = dir[((offset % DIR_BYTES) / TABLE_BYTES) as usize].get()?;
                table[((offset % TABLE_BYTES) / PAGE_BYTES) as usize].get()
            }
        }
    }

    /// The page holding in-bounds `offset`, allocated (with its directory
    /// and table) if this is the first write there.
    #[inline]
    fn page_or_alloc(&self, offset: u64) -> Option<&Page> {
        match &self.pages {
            Pages::Eager(_) => None,
            Pages::Flat(pages) => {
                let slot = pages.get(usize::try_from(offset / PAGE_BYTES).ok()?)?;
                Some(slot.get_or_init(zeroed_page))
            }
            Pages::Sparse(dirs) => {
                let dir = dirs
                    .get(usize::try_from(offset / DIR_BYTES).ok()?)?
                    .get_or_init(empty_slots);
                let table =
                    dir[((offset % DIR_BYTES) / TABLE_BYTES) as usize].get_or_init(empty_slots);
                Some(table[((offset % TABLE_BYTES) / PAGE_BYTES) as usize].get_or_init(zeroed_page))
            }
        }
    }

    /// Every page written so far.
    fn written_pages(&self) -> Box<dyn Iterator<Item = &Page> + '_> {
        match &self.pages {
            Pages::Eager(_) => Box::new(std::iter::empty()),
            Pages::Flat(pages) => Box::new(pages.iter().filter_map(OnceLock::get)),
            Pages::Sparse(dirs) => Box::new(
                dirs.iter()
                    .filter_map(OnceLock::get)
                    .flat_map(|dir| dir.iter().filter_map(OnceLock::get))
                    .flat_map(|table| table.iter().filter_map(OnceLock::get)),
            ),
        }
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
        self.read_fitting(offset, width)
    }

    /// [`read`](Self::read) of an access the caller has found to fit (a
    /// mapped region's fast path, which checks its own bounds): an access
    /// that does not is still never out of bounds, and reads as 0 or as
    /// part of the word holding `offset`.
    #[inline(always)]
    pub(crate) fn read_fitting(&self, offset: u64, width: u8) -> u64 {
        let (word, shift) = Self::locate(offset);
        let w = match &self.pages {
            Pages::Eager(words) => usize::try_from(offset / 8).ok().and_then(|i| words.get(i)),
            _ => self.page(offset).and_then(|words| words.get(word)),
        };
        w.map_or(0, |w| {
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
        self.write_fitting(offset, width, value);
    }

    /// [`write`](Self::write) of an access the caller has found to fit, as
    /// [`read_fitting`](Self::read_fitting).
    #[inline(always)]
    pub(crate) fn write_fitting(&self, offset: u64, width: u8, value: u64) {
        let (word, shift) = Self::locate(offset);
        let w = match &self.pages {
            Pages::Eager(words) => usize::try_from(offset / 8).ok().and_then(|i| words.get(i)),
            _ => self.page_or_alloc(offset).and_then(|words| words.get(word)),
        };
        let Some(w) = w else {
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
        if let Pages::Eager(words) = &self.pages {
            for w in words.iter() {
                w.store(0, Ordering::Release);
            }
        }
        for page in self.written_pages() {
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
        // Eager (two pages) and page slots (eight pages).
        for len in [0x2000, 0x8000] {
            let m = BarMemory::new(len);
            assert_eq!(m.read(0x1ff8, 8), 0);
            m.write(0x1000, 8, 0x1122_3344_5566_7788);
            m.write(0x1002, 2, 0xbeef);
            m.write(0x1007, 1, 0xaa);
            assert_eq!(m.read(0x1000, 8), 0xaa22_3344_beef_7788);
            assert_eq!(m.read(0x1004, 4), 0xaa22_3344);
            assert_eq!(m.read(0x1006, 2), 0xaa22);
            assert_eq!(m.read_fitting(0x1004, 4), 0xaa22_3344);
            m.write_fitting(len - 4, 4, 0x0bad_cafe);
            assert_eq!(m.read(len - 8, 8), 0x0bad_cafe_0000_0000);
            m.clear();
            assert_eq!(m.read(0x1000, 8), 0);
            assert_eq!(m.read(len - 4, 4), 0);
        }
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

    /// Slots allocated so far: (top-level or flat slots, or eager words,
    /// directories, tables, pages).
    fn footprint(m: &BarMemory) -> (usize, usize, usize, usize) {
        match &m.pages {
            Pages::Eager(words) => (words.len(), 0, 0, 0),
            Pages::Flat(pages) => (pages.len(), 0, 0, m.written_pages().count()),
            Pages::Sparse(dirs) => {
                let live: Vec<_> = dirs.iter().filter_map(OnceLock::get).collect();
                let tables = live
                    .iter()
                    .map(|d| d.iter().filter_map(OnceLock::get).count())
                    .sum();
                (dirs.len(), live.len(), tables, m.written_pages().count())
            }
        }
    }

    #[test]
    fn a_one_tib_bar_costs_a_thousand_slots_until_written() {
        let m = BarMemory::new(1 << 40);
        assert_eq!(footprint(&m), (1024, 0, 0, 0));
        assert_eq!(m.read((1 << 40) - 8, 8), 0);
        // The last word, the first, and one in the middle of a 2 MiB table.
        m.write((1 << 40) - 8, 8, 0x0123_4567_89ab_cdef);
        m.write(0, 4, 0xdead_beef);
        m.write(0x1234_5678_9000 % (1 << 40) + 0x20_0ff8, 2, 0xbeef);
        assert_eq!(m.read((1 << 40) - 8, 8), 0x0123_4567_89ab_cdef);
        assert_eq!(m.read((1 << 40) - 4, 4), 0x0123_4567);
        assert_eq!(m.read(0, 4), 0xdead_beef);
        assert_eq!(m.read(0x1234_5678_9000 % (1 << 40) + 0x20_0ff8, 2), 0xbeef);
        // Neighbours of written words read as zero, written page or not.
        assert_eq!(m.read((1 << 40) - 16, 8), 0);
        assert_eq!(m.read(4096, 8), 0);
        assert_eq!(footprint(&m), (1024, 3, 3, 3));
        assert!(!m.fits(1 << 40, 1));
        m.clear();
        assert_eq!(m.read((1 << 40) - 8, 8), 0);
        assert_eq!(m.read(0, 4), 0);
    }

    #[test]
    fn small_bars_stay_flat_and_large_ones_go_sparse_at_every_boundary() {
        // Up to four pages: every word up front.
        assert_eq!(footprint(&BarMemory::new(16)), (2, 0, 0, 0));
        assert_eq!(footprint(&BarMemory::new(EAGER_MAX_BYTES)), (2048, 0, 0, 0));
        assert!(matches!(
            BarMemory::new(EAGER_MAX_BYTES + PAGE_BYTES).pages,
            Pages::Flat(_)
        ));
        assert_eq!(footprint(&BarMemory::new(FLAT_MAX_BYTES)), (512, 0, 0, 0));
        let m = BarMemory::new(4 << 30);
        assert_eq!(footprint(&m), (4, 0, 0, 0));
        // Words on either side of each page, table and directory boundary.
        let edges = [PAGE_BYTES, TABLE_BYTES, DIR_BYTES, 3 * DIR_BYTES];
        for (i, &edge) in edges.iter().enumerate() {
            m.write(edge - 8, 8, i as u64 + 1);
            m.write(edge, 8, (i as u64 + 1) << 32);
        }
        for (i, &edge) in edges.iter().enumerate() {
            assert_eq!(m.read(edge - 8, 8), i as u64 + 1, "below {edge:#x}");
            assert_eq!(m.read(edge, 8), (i as u64 + 1) << 32, "at {edge:#x}");
        }
    }

    #[test]
    fn a_length_past_the_supported_maximum_is_clamped_not_allocated() {
        let m = BarMemory::new(u64::MAX);
        assert_eq!(m.len(), MAX_BAR_BYTES);
        assert_eq!(footprint(&m).0, 1024);
        assert!(!m.fits(MAX_BAR_BYTES, 1));
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
