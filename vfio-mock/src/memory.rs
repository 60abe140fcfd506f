//! DMA-able memory: page-granular atomic words the CPU reaches through the
//! [`DmaMemory`] trait and devices reach through the mock IOMMU.
//!
//! Like a BAR, the buffer is lock-free: every access, the driver's and a
//! model's DMA alike, is an atomic access to its aligned 64-bit words
//! ([`vfio_core::words`]), so a model's DMA never waits for the driver (or
//! the reverse) and typed access costs what it costs on vfio-linux. The
//! driver's side is `Relaxed`, as on real memory, with the barriers as Rust
//! fences (the devices here are threads); a device's side loads with
//! `Acquire` and stores with `Release`, so a driver that reads a done bit
//! with `load_acquire_u32` sees everything the model wrote before it.
//!
//! Every buffer also has simulated physical addresses ([`PhysMemory`]),
//! which a device in a no-IOMMU container DMAs to.

use crate::fault::Faults;
use crate::iommu::{Access, Outcome};
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Weak};
use vfio_core::{DmaMemory, Error, ErrorKind, HUGE_PAGE_SIZE, HugePages, Operation, Result, words};

/// The page size of the simulated host.
pub(crate) const PAGE_SIZE: usize = 4096;

/// The simulated host's pool of reserved 2 MiB hugetlb pages
/// (`/proc/sys/vm/nr_hugepages`): how many are free.
#[derive(Debug, Default)]
pub(crate) struct HugetlbPool {
    free: AtomicUsize,
    /// Changes of the pool's size, against takes and gives.
    resize: parking_lot::Mutex<usize>,
}

impl HugetlbPool {
    /// A pool of `pages` free pages.
    pub(crate) fn new(pages: usize) -> Self {
        Self {
            free: AtomicUsize::new(pages),
            resize: parking_lot::Mutex::new(pages),
        }
    }

    /// Sets the pool to `pages` pages in all, as writing
    /// `/proc/sys/vm/nr_hugepages` does: pages in use stay in use, so the
    /// pool never shrinks below them. Returns the pool's size.
    pub(crate) fn resize(&self, pages: usize) -> usize {
        let mut total = self.resize.lock();
        let old_total = *total;
        // From the free count as it is at the swap, so a page taken or
        // given meanwhile is counted once.
        let new_free = |free: usize| {
            let in_use = old_total.saturating_sub(free);
            pages.max(in_use) - in_use
        };
        let free = self
            .free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| Some(new_free(f)))
            .unwrap_or_else(|f| f);
        let in_use = old_total.saturating_sub(free);
        *total = pages.max(in_use);
        *total
    }

    /// Takes `pages` pages if that many are free.
    fn take(&self, pages: usize) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| {
                free.checked_sub(pages)
            })
            .is_ok()
    }

    /// Free pages left.
    pub(crate) fn free(&self) -> usize {
        self.free.load(Ordering::Acquire)
    }
}

/// Where the simulated host's frames start (16 MiB, past what firmware and
/// the kernel image take on the 1 GiB guest). Early buffers of a host lie
/// below 256 MiB, which QEMU's `edu` can reach (its DMA mask is 28 bits).
const FRAMES_START: u64 = 0x0100_0000;

/// The simulated host's physical memory: it hands out the page frames of
/// every DMA buffer, and resolves a physical address back to the buffer
/// holding it (a no-IOMMU device's DMA).
///
/// A buffer's pages get frames two pages apart, so that no two base pages
/// of one buffer are physically contiguous (a driver that gives a device
/// one address for a multi-page buffer fails here as it does on a real
/// machine, where the pages are scattered), while each 2 MiB huge page is
/// contiguous within itself. Frames are never handed out twice, so the
/// address of a dropped buffer names nothing: a DMA there faults instead
/// of reaching a newer buffer.
#[derive(Debug, Default)]
pub(crate) struct PhysMemory {
    state: parking_lot::Mutex<PhysState>,
}

#[derive(Debug, Default)]
struct PhysState {
    /// Bytes of physical memory handed out so far, from [`FRAMES_START`].
    used: u64,
    /// The live buffers by their first frame.
    runs: BTreeMap<u64, Run>,
}

/// The frames of one buffer: `pages` frames of `page` bytes, `stride`
/// bytes apart.
#[derive(Debug)]
struct Run {
    buffer: Weak<DmaBuffer>,
    pages: u64,
    page: u64,
    stride: u64,
}

/// Where one buffer's frames lie.
#[derive(Debug, Clone, Copy)]
struct Frames {
    start: u64,
    page: u64,
    stride: u64,
}

impl Frames {
    fn address(&self, offset: usize) -> u64 {
        let offset = offset as u64;
        self.start + offset / self.page * self.stride + offset % self.page
    }
}

impl PhysMemory {
    /// Frames for `len` bytes in pages of `page` bytes.
    fn take(&self, len: usize, page: usize) -> Frames {
        let page = page as u64;
        let stride = 2 * page;
        let pages = (len as u64).div_ceil(page);
        let mut s = self.state.lock();
        // A huge page starts on its own size, as a 2 MiB frame does.
        let start = FRAMES_START
            .saturating_add(s.used)
            .checked_next_multiple_of(page)
            .unwrap_or(u64::MAX);
        s.used = (start - FRAMES_START).saturating_add(pages.saturating_mul(stride));
        Frames {
            start,
            page,
            stride,
        }
    }

    fn register(&self, frames: Frames, pages: u64, buffer: &Arc<DmaBuffer>) {
        self.state.lock().runs.insert(
            frames.start,
            Run {
                buffer: Arc::downgrade(buffer),
                pages,
                page: frames.page,
                stride: frames.stride,
            },
        );
    }

    fn forget(&self, start: u64) {
        self.state.lock().runs.remove(&start);
    }

    /// The buffer and offset of physical address `addr`, and how many bytes
    /// from there are contiguous in it; otherwise how many bytes from
    /// `addr` belong to no buffer (`u64::MAX` up to the top).
    fn resolve(&self, addr: u64) -> Result<(Arc<DmaBuffer>, usize, u64), u64> {
        let s = self.state.lock();
        let next_run = |after: u64| {
            s.runs
                .range(after..)
                .next()
                .map_or(u64::MAX, |(&start, _)| start - addr)
        };
        let Some((&start, run)) = s.runs.range(..=addr).next_back() else {
            return Err(next_run(addr));
        };
        let rel = addr - start;
        let (index, within) = (rel / run.stride, rel % run.stride);
        if index < run.pages && within < run.page {
            if let Some(buffer) = run.buffer.upgrade() {
                let offset = usize::try_from(index * run.page + within).unwrap_or(usize::MAX);
                return Ok((buffer, offset, run.page - within));
            }
            return Err(next_run(addr.saturating_add(1)).max(1));
        }
        if index + 1 < run.pages {
            // In the hole after a frame: up to the next frame.
            return Err(run.stride - within);
        }
        Err(next_run(addr.saturating_add(1)).max(1))
    }

    /// A no-IOMMU device's DMA at physical address `addr`: every byte that
    /// lies in a live buffer moves, the rest is refused (the refused runs
    /// come back in the [`Outcome`]).
    pub(crate) fn access(&self, addr: u64, access: Access<'_>) -> Outcome {
        let len = match &access {
            Access::Read(b) => b.len(),
            Access::Write(d) => d.len(),
        };
        let mut access = access;
        let mut out = Outcome::default();
        let mut at = 0usize;
        while at < len {
            let left = len - at;
            let Some(pa) = addr.checked_add(at as u64) else {
                out.refuse(addr.wrapping_add(at as u64), left, false);
                break;
            };
            // The buffer is used after the lock is dropped: dropping the
            // last reference to it takes the lock again.
            match self.resolve(pa) {
                Ok((buffer, offset, contiguous)) => {
                    let n = usize::try_from(contiguous).unwrap_or(usize::MAX).min(left);
                    let copied = match &mut access {
                        Access::Read(buf) => buffer.read(offset, &mut buf[at..at + n]),
                        Access::Write(data) => buffer.write(offset, &data[at..at + n]),
                    };
                    if copied {
                        out.done += n;
                    } else {
                        out.refuse(pa, n, false);
                    }
                    at += n;
                }
                Err(hole) => {
                    let n = usize::try_from(hole).unwrap_or(usize::MAX).min(left);
                    out.refuse(pa, n, false);
                    at += n;
                }
            }
        }
        out
    }
}

/// The bytes behind a [`MockDmaMemory`]; a DMA mapping keeps them alive
/// (the kernel pins the pages) even after the memory handle is dropped.
#[derive(Debug)]
pub(crate) struct DmaBuffer {
    words: Box<[AtomicU64]>,
    page_size: usize,
    /// The hugetlb pages it holds, given back when the last reference goes.
    huge: Option<(Arc<HugetlbPool>, usize)>,
    /// Its page frames in the host's physical memory.
    frames: Frames,
    phys: Arc<PhysMemory>,
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        self.phys.forget(self.frames.start);
        if let Some((pool, pages)) = &self.huge {
            pool.free.fetch_add(*pages, Ordering::AcqRel);
        }
    }
}

impl DmaBuffer {
    pub(crate) fn len(&self) -> usize {
        self.words.len() * words::WORD
    }

    /// The size of its pages.
    pub(crate) fn page_size(&self) -> usize {
        self.page_size
    }

    /// A device reads `buf.len()` bytes at `offset` (`Acquire` loads);
    /// false if out of range.
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if !words::fits(&self.words, offset, buf.len()) {
            return false;
        }
        words::read(&self.words, offset, buf, Ordering::Acquire);
        true
    }

    /// A device writes `data` at `offset` (`Release` stores); false if out
    /// of range.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> bool {
        if !words::fits(&self.words, offset, data.len()) {
            return false;
        }
        words::write(&self.words, offset, data, Ordering::Release);
        true
    }
}

/// Zeroed memory for DMA, from [`VfioBackend::alloc_dma`](vfio_core::VfioBackend::alloc_dma).
///
/// Its page size is the simulated host's: 4 KiB, or 2 MiB when huge pages
/// are asked for and the host was built with enough free
/// ([`MockHostBuilder::hugetlb_pages`](crate::MockHostBuilder::hugetlb_pages)).
/// Faults planned for [`Operation::DmaAccess`] fail the copies
/// (`read_at`, `write_at`, and `read_obj`/`write_obj` through them), not
/// the typed word accesses.
#[derive(Debug)]
pub struct MockDmaMemory {
    pub(crate) buffer: Arc<DmaBuffer>,
    faults: Arc<Faults>,
}

impl MockDmaMemory {
    /// `size` bytes rounded up to a page; zero is invalid, as on vfio-linux.
    /// A size the process cannot allocate is ENOMEM (as a failed mmap is on
    /// vfio-linux), never an abort.
    #[cfg(test)]
    pub(crate) fn alloc(size: usize, faults: Arc<Faults>) -> Result<Self> {
        Self::alloc_with(
            size,
            HugePages::Never,
            &Arc::default(),
            &Arc::default(),
            faults,
        )
    }

    /// `size` bytes in the pages `pages` asks for, taking 2 MiB pages from
    /// `pool` as vfio-linux takes them from the hugetlb pool: `Prefer`
    /// falls back to 4 KiB pages when the pool is short, `Require` fails
    /// with ENOMEM, as mmap with `MAP_HUGETLB` does. Its frames come from
    /// `phys`.
    pub(crate) fn alloc_with(
        size: usize,
        pages: HugePages,
        pool: &Arc<HugetlbPool>,
        phys: &Arc<PhysMemory>,
        faults: Arc<Faults>,
    ) -> Result<Self> {
        if let Some(errno) = faults.take(Operation::AllocDma) {
            return Err(Error::from_errno(Operation::AllocDma, errno));
        }
        let too_big = || {
            Error::new(Operation::AllocDma, ErrorKind::InvalidArgument)
                .with_detail(format_args!("cannot allocate {size} bytes of DMA memory"))
        };
        if size == 0 {
            return Err(too_big());
        }
        let mut huge = None;
        if pages != HugePages::Never {
            let len = size
                .checked_next_multiple_of(HUGE_PAGE_SIZE)
                .ok_or_else(too_big)?;
            let count = len / HUGE_PAGE_SIZE;
            if pool.take(count) {
                huge = Some((pool.clone(), count));
            } else if pages == HugePages::Require {
                return Err(
                    Error::from_errno(Operation::AllocDma, Errno::ENOMEM).with_detail(
                        format_args!("{count} hugetlb pages asked for, {} free", pool.free()),
                    ),
                );
            }
        }
        let page_size = if huge.is_some() {
            HUGE_PAGE_SIZE
        } else {
            PAGE_SIZE
        };
        let len = size
            .checked_next_multiple_of(page_size)
            .ok_or_else(too_big)?;
        let mut cells = Vec::new();
        let reserved = cells.try_reserve_exact(len / words::WORD);
        if reserved.is_err() {
            return Err(Error::from_errno(Operation::AllocDma, Errno::ENOMEM)
                .with_detail(format_args!("cannot allocate {len} bytes of DMA memory")));
        }
        cells.resize_with(len / words::WORD, || AtomicU64::new(0));
        let frames = phys.take(len, page_size);
        let buffer = Arc::new(DmaBuffer {
            words: cells.into_boxed_slice(),
            page_size,
            huge,
            frames,
            phys: phys.clone(),
        });
        phys.register(frames, (len / page_size) as u64, &buffer);
        Ok(Self { buffer, faults })
    }

    fn fault(&self) -> Result<()> {
        match self.faults.take(Operation::DmaAccess) {
            Some(errno) => Err(Error::from_errno(Operation::DmaAccess, errno)),
            None => Ok(()),
        }
    }
}

impl DmaMemory for MockDmaMemory {
    #[inline]
    fn len(&self) -> usize {
        self.buffer.len()
    }

    /// The simulated host's physical address of byte `offset` (see
    /// [`MockHostBuilder`](crate::MockHostBuilder)): contiguous within a
    /// page, never across two.
    fn physical_address(&self, offset: usize) -> Result<u64> {
        if let Some(errno) = self.faults.take(Operation::PhysicalAddress) {
            return Err(Error::from_errno(Operation::PhysicalAddress, errno));
        }
        vfio_core::access::check_range(
            Operation::PhysicalAddress,
            self.len() as u64,
            offset as u64,
            1,
        )?;
        Ok(self.buffer.frames.address(offset))
    }

    #[inline]
    fn page_size(&self) -> usize {
        self.buffer.page_size
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        &self.buffer.words
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.fault()?;
        vfio_core::access::check_range(
            Operation::DmaAccess,
            self.len() as u64,
            offset as u64,
            buf.len() as u64,
        )?;
        words::read(self.words(), offset, buf, Ordering::Relaxed);
        Ok(())
    }

    fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.fault()?;
        vfio_core::access::check_range(
            Operation::DmaAccess,
            self.len() as u64,
            offset as u64,
            data.len() as u64,
        )?;
        words::write(self.words(), offset, data, Ordering::Relaxed);
        Ok(())
    }

    #[inline]
    fn dma_wmb(&self) {
        fence(Ordering::Release);
    }

    #[inline]
    fn dma_rmb(&self) {
        fence(Ordering::Acquire);
    }

    #[inline]
    fn dma_mb(&self) {
        fence(Ordering::AcqRel);
    }

    #[inline]
    fn wmb(&self) {
        fence(Ordering::Release);
    }

    #[inline]
    fn rmb(&self) {
        fence(Ordering::Acquire);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hugetlb_pool_resizes_around_the_pages_in_use() {
        let pool = HugetlbPool::new(2);
        assert!(pool.take(1));
        // Shrinking below the page in use keeps it.
        assert_eq!(pool.resize(0), 1);
        assert_eq!(pool.free(), 0);
        assert!(!pool.take(1));
        assert_eq!(pool.resize(3), 3);
        assert_eq!(pool.free(), 2);
        assert!(pool.take(2));
        assert_eq!(pool.free(), 0);
    }

    #[test]
    fn memory_rounds_up_to_a_page_and_checks_bounds() {
        let m = MockDmaMemory::alloc(100, Arc::default()).unwrap();
        assert_eq!(m.len(), PAGE_SIZE);
        m.write_at(10, b"hello").unwrap();
        let mut buf = [0u8; 5];
        m.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(
            m.read_at(PAGE_SIZE - 2, &mut buf).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            m.write_at(usize::MAX, b"x").unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        let e = MockDmaMemory::alloc(0, Arc::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    }

    /// Two threads copying interleaved records in and out of one buffer
    /// through `&self`, records sharing words: every access is atomic, so
    /// no byte is lost or torn, and Miri finds no race.
    #[test]
    fn two_threads_share_the_buffer_without_losing_bytes() {
        let m = Arc::new(MockDmaMemory::alloc(PAGE_SIZE, Arc::default()).unwrap());
        let rounds = if cfg!(miri) { 10u32 } else { 500 };
        let threads: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|lane| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut back = [0u8; 12];
                    for round in 0..rounds {
                        for record in (lane..40).step_by(2) {
                            let mut rec = [lane as u8; 12];
                            rec[..4].copy_from_slice(&round.to_le_bytes());
                            m.write_at(3 + record * 12, &rec).unwrap();
                            m.read_at(3 + record * 12, &mut back).unwrap();
                            assert_eq!(back, rec);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut rec = [0u8; 12];
        for record in 0..40 {
            m.read_at(3 + record * 12, &mut rec).unwrap();
            assert_eq!(rec[..4], (rounds - 1).to_le_bytes());
            assert_eq!(rec[4..], [(record % 2) as u8; 8]);
        }
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "a million atomic words per 2 MiB page take minutes to interpret"
    )]
    fn huge_pages_come_from_the_pool_and_go_back_to_it() {
        let pool = Arc::new(HugetlbPool::new(3));
        let phys = Arc::<PhysMemory>::default();
        let faults = Arc::<Faults>::default;
        let base =
            MockDmaMemory::alloc_with(100, HugePages::Never, &pool, &phys, faults()).unwrap();
        assert_eq!((base.page_size(), base.len()), (PAGE_SIZE, PAGE_SIZE));
        let two = MockDmaMemory::alloc_with(
            HUGE_PAGE_SIZE + 1,
            HugePages::Require,
            &pool,
            &phys,
            faults(),
        )
        .unwrap();
        assert_eq!(
            (two.page_size(), two.len()),
            (HUGE_PAGE_SIZE, 2 * HUGE_PAGE_SIZE)
        );
        assert_eq!(pool.free(), 1);
        // Two more than are free: Prefer falls back, Require is ENOMEM.
        let fallback = MockDmaMemory::alloc_with(
            2 * HUGE_PAGE_SIZE,
            HugePages::Prefer,
            &pool,
            &phys,
            faults(),
        )
        .unwrap();
        assert_eq!(fallback.page_size(), PAGE_SIZE);
        assert_eq!(fallback.len(), 2 * HUGE_PAGE_SIZE);
        let e = MockDmaMemory::alloc_with(
            2 * HUGE_PAGE_SIZE,
            HugePages::Require,
            &pool,
            &phys,
            faults(),
        )
        .unwrap_err();
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::NoSpace, Some(Errno::ENOMEM))
        );
        assert_eq!(pool.free(), 1, "a refusal takes nothing");
        // A mapping's reference keeps the pages, as the kernel's pin does.
        let pinned = two.buffer.clone();
        drop(two);
        assert_eq!(pool.free(), 1);
        drop(pinned);
        assert_eq!(pool.free(), 3);
    }

    /// The model's side (`Release` stores) publishes to a driver's
    /// `load_acquire_u32`: a completion entry written whole before its
    /// phase tag is read whole after it. Miri checks it for races.
    #[test]
    fn a_device_write_is_seen_whole_after_an_acquire_load_of_its_tag() {
        let m = Arc::new(MockDmaMemory::alloc(PAGE_SIZE, Arc::default()).unwrap());
        let rounds: u32 = if cfg!(miri) { 6 } else { 500 };
        let device = {
            let buffer = m.buffer.clone();
            std::thread::spawn(move || {
                for seq in 1..=rounds {
                    let mut entry = [0u8; 16];
                    entry[..4].copy_from_slice(&seq.to_le_bytes());
                    entry[4..12].copy_from_slice(&u64::from(!seq).to_le_bytes());
                    assert!(buffer.write(0, &entry[..12]));
                    assert!(buffer.write(12, &seq.to_le_bytes()));
                    while {
                        let mut ack = [0u8; 4];
                        assert!(buffer.read(16, &mut ack));
                        u32::from_le_bytes(ack) != seq
                    } {
                        std::thread::yield_now();
                    }
                }
            })
        };
        for seq in 1..=rounds {
            while m.load_acquire_u32(12).unwrap() != seq {
                std::thread::yield_now();
            }
            assert_eq!(m.read_u32(0).unwrap(), seq);
            assert_eq!(
                m.read_obj::<[u8; 8]>(4).unwrap(),
                u64::from(!seq).to_le_bytes()
            );
            m.store_release_u32(16, seq).unwrap();
        }
        device.join().unwrap();
    }

    #[test]
    fn base_pages_are_scattered_and_physical_dma_reaches_only_live_buffers() {
        let phys = Arc::new(PhysMemory::default());
        let alloc = |size| {
            MockDmaMemory::alloc_with(
                size,
                HugePages::Never,
                &Arc::default(),
                &phys,
                Arc::default(),
            )
            .unwrap()
        };
        let a = alloc(2 * PAGE_SIZE);
        let b = alloc(PAGE_SIZE);
        let p0 = a.physical_address(0).unwrap();
        let p1 = a.physical_address(PAGE_SIZE).unwrap();
        assert_eq!(a.physical_address(100).unwrap(), p0 + 100);
        assert_ne!(p1, p0 + PAGE_SIZE as u64, "pages are not contiguous");
        assert_eq!(
            a.physical_address(2 * PAGE_SIZE).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        // A write across the page end reaches the first page only.
        let o = phys.access(p0 + PAGE_SIZE as u64 - 2, Access::Write(&[1, 2, 3, 4]));
        assert_eq!(o.done, 2);
        assert_eq!(o.refused[0].iova, p0 + PAGE_SIZE as u64);
        assert_eq!(a.read_u16(PAGE_SIZE - 2).unwrap(), 0x0201);
        // Each page on its own is reachable, the other buffer too.
        assert_eq!(phys.access(p1, Access::Write(&[9])).done, 1);
        assert_eq!(a.read_u8(PAGE_SIZE).unwrap(), 9);
        let pb = b.physical_address(8).unwrap();
        assert_eq!(phys.access(pb, Access::Write(&[7])).done, 1);
        assert_eq!(b.read_u8(8).unwrap(), 7);
        drop(b);
        let o = phys.access(pb, Access::Write(&[7]));
        assert_eq!(
            (o.done, o.refused.len()),
            (0, 1),
            "a dropped buffer is gone"
        );
        let mut back = [0u8; 2];
        assert_eq!(phys.access(0, Access::Read(&mut back)).done, 0);
    }

    #[test]
    fn injected_faults_fail_the_copies() {
        let faults = Arc::new(Faults::default());
        let m = MockDmaMemory::alloc(PAGE_SIZE, faults.clone()).unwrap();
        faults.fail_next(Operation::DmaAccess, Errno::EIO, 2);
        assert_eq!(m.write_at(0, b"x").unwrap_err().errno(), Some(Errno::EIO));
        assert_eq!(m.read_obj::<u64>(0).unwrap_err().errno(), Some(Errno::EIO));
        m.write_obj(0, &5u64).unwrap();
        assert_eq!(m.read_u64(0).unwrap(), 5);
    }

    #[test]
    #[cfg_attr(
        miri,
        ignore = "Miri stops at an allocation larger than its memory (resource exhaustion)"
    )]
    fn an_unallocatable_size_is_enomem_not_an_abort() {
        // Rounds up to a page without overflowing, then cannot be allocated.
        let e = MockDmaMemory::alloc(isize::MAX as usize - PAGE_SIZE, Arc::default()).unwrap_err();
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::NoSpace, Some(Errno::ENOMEM))
        );
        assert_eq!(e.operation(), Operation::AllocDma);
    }
}
