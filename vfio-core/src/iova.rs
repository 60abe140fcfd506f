//! Choosing IOVAs: an allocator over the ranges a container's IOMMU
//! translates.
//!
//! `VFIO_IOMMU_MAP_DMA` takes the IOVA from the caller and refuses one
//! outside the ranges `VFIO_IOMMU_GET_INFO` reports (EINVAL; on x86 VT-d
//! the interrupt window 0xfee00000..=0xfeefffff is already cut out of them)
//! or one overlapping a mapping (EEXIST). An [`IovaAllocator`] hands out
//! IOVAs that avoid both: inside one reported range, aligned to the IOMMU
//! page sizes, disjoint from each other and, if asked, with unmapped guard
//! pages between them, so a device running past the end of one buffer
//! faults instead of reaching the next.

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::info::{IommuInfo, IovaRange};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

/// How an [`IovaAllocator`] places what it hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IovaOptions {
    /// Pages of the smallest IOMMU page size left free between any two
    /// allocations (0: allocations may touch).
    pub guard_pages: u64,
    /// Only IOVAs inside this window are handed out: a device's DMA mask
    /// (`0..=(1 << 28) - 1` for a 28-bit device), or a part of the space a
    /// driver keeps for itself. Everything by default.
    pub window: RangeInclusive<u64>,
}

impl Default for IovaOptions {
    fn default() -> Self {
        Self {
            guard_pages: 0,
            window: 0..=u64::MAX,
        }
    }
}

/// Hands out IOVA ranges for DMA mappings.
///
/// A clone is another handle to the same allocator; an [`IovaLease`] keeps
/// its range allocated until it is dropped. Every range handed out:
///
/// - lies inside one of the ranges the allocator was built from (and inside
///   [`IovaOptions::window`]);
/// - starts at a multiple of the largest IOMMU page size that divides its
///   size, so a 2 MiB-multiple mapping can use 2 MiB IOMMU pages (and a
///   1 GiB-multiple one 1 GiB pages) wherever the memory behind it allows;
/// - is disjoint from every other live lease, with at least
///   [`IovaOptions::guard_pages`] free pages between them.
///
/// Placement is first fit from the lowest IOVA, so it is deterministic: the
/// same sequence of allocations and frees gives the same IOVAs.
#[derive(Debug, Clone)]
pub struct IovaAllocator {
    space: Arc<Mutex<Space>>,
}

#[derive(Debug)]
struct Space {
    /// Sorted, disjoint, page-aligned, non-empty.
    ranges: Vec<IovaRange>,
    /// The IOMMU page sizes (bit n: 2^n bytes).
    pgsizes: u64,
    /// The smallest IOMMU page.
    page: u64,
    /// Guard bytes between allocations.
    guard: u64,
    /// Live allocations: start -> size.
    used: BTreeMap<u64, u64>,
}

impl IovaAllocator {
    /// An allocator over the IOVA ranges and page sizes a container reports
    /// ([`Container::iommu_info`](crate::Container::iommu_info)).
    ///
    /// A container that reports no IOVA ranges (kernels before 5.4 have no
    /// such capability) is [`ErrorKind::Unsupported`]: the allocator will
    /// not guess which addresses the IOMMU reserves.
    pub fn new(info: &IommuInfo, options: IovaOptions) -> Result<Self> {
        let ranges = info.iova_ranges.as_deref().ok_or_else(|| {
            Error::new(Operation::AllocIova, ErrorKind::Unsupported)
                .with_detail("the container reports no IOVA ranges")
        })?;
        Self::from_ranges(ranges, info.iova_pgsizes, options)
    }

    /// An allocator over `ranges` (inclusive, as the kernel reports them)
    /// with IOMMU page sizes `pgsizes` (bit n set: 2^n bytes).
    ///
    /// Each range is shrunk to whole pages of the smallest size and clipped
    /// to the window; ranges overlapping an earlier one lose the overlap.
    /// No page size, or guard pages whose size overflows, is
    /// [`ErrorKind::InvalidArgument`] (with no errno: no kernel call is
    /// involved).
    pub fn from_ranges(ranges: &[IovaRange], pgsizes: u64, options: IovaOptions) -> Result<Self> {
        let invalid = |what: &str| {
            Error::new(Operation::AllocIova, ErrorKind::InvalidArgument).with_detail(what)
        };
        if pgsizes == 0 {
            return Err(invalid("the IOMMU reports no page sizes"));
        }
        let page = pgsizes & pgsizes.wrapping_neg();
        let guard = options
            .guard_pages
            .checked_mul(page)
            .ok_or_else(|| invalid("the guard pages overflow the IOVA space"))?;
        let mut sorted: Vec<IovaRange> = ranges.to_vec();
        sorted.sort_by_key(|r| r.start);
        let mut clipped: Vec<IovaRange> = Vec::with_capacity(sorted.len());
        for r in sorted {
            let mut start = r.start.max(*options.window.start());
            let end = r.end.min(*options.window.end());
            if let Some(prev) = clipped.last() {
                match prev.end.checked_add(1) {
                    Some(after) => start = start.max(after),
                    None => continue,
                }
            }
            // Whole pages only: round the start up and the end down.
            let Some(start) = start.checked_next_multiple_of(page) else {
                continue;
            };
            // The page size divides 2^64, so an end at u64::MAX stays.
            let end = match end.checked_add(1) {
                Some(after) => match (after - after % page).checked_sub(1) {
                    Some(end) => end,
                    None => continue,
                },
                None => u64::MAX,
            };
            if start <= end {
                clipped.push(IovaRange { start, end });
            }
        }
        Ok(Self {
            space: Arc::new(Mutex::new(Space {
                ranges: clipped,
                pgsizes,
                page,
                guard,
                used: BTreeMap::new(),
            })),
        })
    }

    /// The ranges allocations come from: the reported ranges as clipped to
    /// whole pages and the window.
    pub fn ranges(&self) -> Vec<IovaRange> {
        self.space.lock().ranges.clone()
    }

    /// The alignment an allocation of `size` bytes gets: the largest IOMMU
    /// page size that divides `size` rounded up to the smallest page.
    pub fn alignment(&self, size: u64) -> u64 {
        let s = self.space.lock();
        s.alignment(s.round(size).unwrap_or(s.page))
    }

    /// Allocates `size` bytes of IOVA space, rounded up to a whole number
    /// of the smallest IOMMU page.
    ///
    /// A size of 0 is [`ErrorKind::InvalidArgument`]; no free range large
    /// enough (the space, or the window, exhausted) is
    /// [`ErrorKind::NoSpace`]. Neither carries an errno: the allocator
    /// makes no kernel call.
    pub fn alloc(&self, size: u64) -> Result<IovaLease> {
        let mut s = self.space.lock();
        let size = s.round(size).ok_or_else(|| {
            Error::new(Operation::AllocIova, ErrorKind::InvalidArgument).with_detail(format_args!(
                "cannot allocate {size:#x} bytes of IOVA space"
            ))
        })?;
        let align = s.alignment(size);
        let iova = s.find(size, align).ok_or_else(|| {
            Error::new(Operation::AllocIova, ErrorKind::NoSpace).with_detail(format_args!(
                "no free {size:#x}-byte range aligned to {align:#x} in the IOVA space"
            ))
        })?;
        s.used.insert(iova, size);
        Ok(IovaLease {
            space: self.space.clone(),
            iova,
            size,
            retained: false,
        })
    }
}

impl Space {
    /// `size` rounded up to whole smallest pages; `None` for 0 or overflow.
    fn round(&self, size: u64) -> Option<u64> {
        size.checked_next_multiple_of(self.page).filter(|&s| s != 0)
    }

    /// The largest page size dividing `size` (a multiple of `self.page`).
    fn alignment(&self, size: u64) -> u64 {
        let low = size & size.wrapping_neg();
        let fitting = self.pgsizes & (low | (low - 1));
        1 << (63 - fitting.leading_zeros())
    }

    /// The lowest `align`-aligned start of `size` free bytes inside a range,
    /// `guard` bytes away from every allocation.
    fn find(&self, size: u64, align: u64) -> Option<u64> {
        let fit_in_ranges = |lo: u64, hi: u64| {
            self.ranges.iter().find_map(|r| {
                let lo = lo.max(r.start);
                let hi = hi.min(r.end);
                let at = lo.checked_next_multiple_of(align)?;
                let last = at.checked_add(size - 1)?;
                (lo <= hi && last <= hi).then_some(at)
            })
        };
        // Walk the gaps between allocations, lowest first.
        let mut lo = Some(0u64);
        for (&start, &len) in &self.used {
            if let Some(l) = lo {
                let hi = start.checked_sub(self.guard).and_then(|h| h.checked_sub(1));
                if let Some(at) = hi.and_then(|h| fit_in_ranges(l, h)) {
                    return Some(at);
                }
            }
            lo = start
                .checked_add(len)
                .and_then(|end| end.checked_add(self.guard));
        }
        lo.and_then(|l| fit_in_ranges(l, u64::MAX))
    }
}

/// An allocated IOVA range, free again when dropped.
///
/// [`DmaSpace::map_dma_in`](crate::DmaSpace::map_dma_in) keeps one in the
/// mapping it returns, so the range is freed after the mapping is unmapped.
#[derive(Debug)]
pub struct IovaLease {
    space: Arc<Mutex<Space>>,
    iova: u64,
    size: u64,
    retained: bool,
}

impl IovaLease {
    /// The first IOVA of the range.
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The size of the range in bytes (a whole number of IOMMU pages).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Keeps the range allocated for the allocator's lifetime instead of
    /// freeing it: for a range that may still be mapped (its unmap failed),
    /// which must never be handed out again.
    pub fn retain(mut self) {
        self.retained = true;
    }
}

impl Drop for IovaLease {
    fn drop(&mut self) {
        if !self.retained {
            self.space.lock().used.remove(&self.iova);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const K4: u64 = 0x1000;
    const M2: u64 = 0x20_0000;
    const G1: u64 = 0x4000_0000;
    const VTD: u64 = 0x4020_1000;

    fn vtd_ranges() -> Vec<IovaRange> {
        vec![
            IovaRange {
                start: 0,
                end: 0xfedf_ffff,
            },
            IovaRange {
                start: 0xfef0_0000,
                end: (1 << 39) - 1,
            },
        ]
    }

    fn window(window: RangeInclusive<u64>, guard_pages: u64) -> IovaOptions {
        IovaOptions {
            guard_pages,
            window,
        }
    }

    #[test]
    fn sizes_are_aligned_to_the_largest_page_that_divides_them() {
        let a = IovaAllocator::from_ranges(&vtd_ranges(), VTD, IovaOptions::default()).unwrap();
        assert_eq!(a.alignment(1), K4);
        assert_eq!(a.alignment(3 * K4), K4);
        assert_eq!(a.alignment(M2), M2);
        assert_eq!(a.alignment(3 * M2), M2);
        assert_eq!(a.alignment(2 * G1), G1);
        let small = a.alloc(K4).unwrap();
        let huge = a.alloc(M2).unwrap();
        assert_eq!((small.iova(), huge.iova()), (0, M2));
        let only4k = IovaAllocator::from_ranges(&vtd_ranges(), K4, IovaOptions::default()).unwrap();
        assert_eq!(only4k.alignment(M2), K4);
    }

    #[test]
    fn the_msi_window_is_skipped_and_exhaustion_is_no_space() {
        let a =
            IovaAllocator::from_ranges(&vtd_ranges(), VTD, window(0xfedf_0000..=0xfef0_ffff, 0))
                .unwrap();
        let first = a.alloc(0x10000).unwrap();
        let second = a.alloc(0x10000).unwrap();
        assert_eq!((first.iova(), second.iova()), (0xfedf_0000, 0xfef0_0000));
        let e = a.alloc(K4).unwrap_err();
        assert_eq!(
            (e.kind(), e.errno(), e.operation()),
            (ErrorKind::NoSpace, None, Operation::AllocIova)
        );
        drop(first);
        assert_eq!(a.alloc(0x10000).unwrap().iova(), 0xfedf_0000);
    }

    #[test]
    fn guard_pages_separate_allocations() {
        let a = IovaAllocator::from_ranges(&vtd_ranges(), VTD, window(0..=u64::MAX, 2)).unwrap();
        let x = a.alloc(K4).unwrap();
        let y = a.alloc(K4).unwrap();
        assert_eq!((x.iova(), y.iova()), (0, 3 * K4));
    }

    #[test]
    fn a_retained_lease_is_never_handed_out_again() {
        let a = IovaAllocator::from_ranges(&vtd_ranges(), VTD, IovaOptions::default()).unwrap();
        a.alloc(K4).unwrap().retain();
        assert_eq!(a.alloc(K4).unwrap().iova(), K4);
    }

    #[test]
    fn bad_arguments_are_invalid_without_an_errno() {
        let no_ranges = IommuInfo {
            iova_pgsizes: VTD,
            ..IommuInfo::default()
        };
        let e = IovaAllocator::new(&no_ranges, IovaOptions::default()).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::Unsupported, None));
        let e = IovaAllocator::from_ranges(&vtd_ranges(), 0, IovaOptions::default()).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::InvalidArgument, None));
        let e = IovaAllocator::from_ranges(&vtd_ranges(), VTD, window(0..=u64::MAX, u64::MAX))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let a = IovaAllocator::from_ranges(&vtd_ranges(), VTD, IovaOptions::default()).unwrap();
        for size in [0, u64::MAX] {
            let e = a.alloc(size).unwrap_err();
            assert_eq!((e.kind(), e.errno()), (ErrorKind::InvalidArgument, None));
        }
    }

    #[test]
    fn ranges_are_clipped_to_pages_the_window_and_each_other() {
        let ranges = [
            IovaRange {
                start: 0x10_0800,
                end: 0x20_0fff,
            },
            IovaRange {
                start: 0x18_0000,
                end: 0x30_07ff,
            },
            IovaRange {
                start: u64::MAX - 0x2fff,
                end: u64::MAX,
            },
        ];
        let a = IovaAllocator::from_ranges(&ranges, K4, IovaOptions::default()).unwrap();
        assert_eq!(
            a.ranges(),
            [
                IovaRange {
                    start: 0x10_1000,
                    end: 0x20_0fff
                },
                IovaRange {
                    start: 0x20_1000,
                    end: 0x2f_ffff
                },
                IovaRange {
                    start: u64::MAX - 0x2fff,
                    end: u64::MAX
                },
            ]
        );
        let w = IovaAllocator::from_ranges(&ranges, K4, window(0x20_0000..=0x20_1fff, 0)).unwrap();
        assert_eq!(w.ranges().len(), 2);
        let low = a.alloc(0x10_0000).unwrap();
        let middle = a.alloc(0xf_f000).unwrap();
        let top = a.alloc(0x3000).unwrap();
        assert_eq!(
            (low.iova(), middle.iova(), top.iova()),
            (0x10_1000, 0x20_1000, u64::MAX - 0x2fff)
        );
        assert_eq!(a.alloc(K4).unwrap_err().kind(), ErrorKind::NoSpace);
    }

    /// One step of a property test: allocate `pages` pages (or 2 MiB-
    /// multiples), or free the live lease at `index % live`.
    #[derive(Debug, Clone)]
    enum Step {
        Alloc(u64),
        Free(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1u64..=8).prop_map(|p| Step::Alloc(p * K4)),
            1 => (1u64..=2).prop_map(|n| Step::Alloc(n * M2)),
            1 => (1u64..=3).prop_map(|p| Step::Alloc(p * K4 - 0x10)),
            2 => any::<usize>().prop_map(Step::Free),
        ]
    }

    /// Up to three ranges of up to 4 MiB, at page offsets below 32 MiB, and
    /// maybe one at the very top of the 64-bit space.
    fn ranges() -> impl Strategy<Value = Vec<IovaRange>> {
        (
            proptest::collection::vec((0u64..8192, 1u64..=1024), 1..=3),
            any::<bool>(),
        )
            .prop_map(|(spans, top)| {
                let mut v: Vec<IovaRange> = spans
                    .into_iter()
                    .map(|(at, pages)| IovaRange {
                        start: at * K4,
                        end: (at + pages) * K4 - 1,
                    })
                    .collect();
                if top {
                    v.push(IovaRange {
                        start: u64::MAX - 2 * M2 + 1,
                        end: u64::MAX,
                    });
                }
                v
            })
    }

    /// True if `[at, at + size)` is free of every lease, `guard` away.
    fn free_at(leases: &[IovaLease], at: u64, size: u64, guard: u64) -> bool {
        let last = at + (size - 1);
        leases.iter().all(|l| {
            let l_last = l.iova() + (l.size() - 1);
            last.saturating_add(guard) < l.iova() || l_last.saturating_add(guard) < at
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn allocations_stay_inside_aligned_disjoint_and_guarded(
            ranges in ranges(),
            pgsizes in prop_oneof![Just(K4), Just(K4 | M2), Just(VTD)],
            guard_pages in 0u64..3,
            steps in proptest::collection::vec(step(), 1..40),
        ) {
            let a = IovaAllocator::from_ranges(
                &ranges, pgsizes, window(0..=u64::MAX, guard_pages)).unwrap();
            let usable = a.ranges();
            let guard = guard_pages * K4;
            let mut live: Vec<IovaLease> = Vec::new();
            for step in steps {
                match step {
                    Step::Free(i) if !live.is_empty() => {
                        let n = live.len();
                        live.remove(i % n);
                    }
                    Step::Free(_) => {}
                    Step::Alloc(size) => {
                        let rounded = size.next_multiple_of(K4);
                        let align = a.alignment(size);
                        prop_assert_eq!(align, if pgsizes & M2 != 0 && rounded % M2 == 0 { M2 } else { K4 });
                        match a.alloc(size) {
                            Ok(l) => {
                                prop_assert_eq!(l.size(), rounded);
                                prop_assert_eq!(l.iova() % align, 0);
                                let last = l.iova() + (l.size() - 1);
                                prop_assert!(usable.iter().any(|r| l.iova() >= r.start && last <= r.end),
                                    "{:#x}+{:#x} outside {:x?}", l.iova(), l.size(), usable);
                                prop_assert!(free_at(&live, l.iova(), l.size(), guard),
                                    "{:#x}+{:#x} overlaps or crowds a live lease", l.iova(), l.size());
                                live.push(l);
                            }
                            Err(e) => {
                                prop_assert_eq!((e.kind(), e.errno()), (ErrorKind::NoSpace, None));
                                // Nothing was free: no aligned start in any range fits.
                                for r in &usable {
                                    let mut at = r.start.checked_next_multiple_of(align);
                                    while let Some(start) = at.filter(|&s| s.checked_add(rounded - 1).is_some_and(|l| l <= r.end)) {
                                        prop_assert!(!free_at(&live, start, rounded, guard),
                                            "refused {:#x} bytes but {:#x} was free", rounded, start);
                                        at = start.checked_add(align);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
