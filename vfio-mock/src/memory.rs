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

use crate::fault::Faults;
use nix::errno::Errno;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
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

/// The bytes behind a [`MockDmaMemory`]; a DMA mapping keeps them alive
/// (the kernel pins the pages) even after the memory handle is dropped.
#[derive(Debug)]
pub(crate) struct DmaBuffer {
    words: Box<[AtomicU64]>,
    page_size: usize,
    /// The hugetlb pages it holds, given back when the last reference goes.
    huge: Option<(Arc<HugetlbPool>, usize)>,
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        if let Some((pool, pages)) = &self.huge {
            pool.free.fetch_add(*pages, Ordering::AcqRel);
        }
    }
}

impl DmaBuffer {
    pub(crate) fn len(&self) -> usize {
        self.words.len() * words::WORD
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
        Self::alloc_with(size, HugePages::Never, &Arc::default(), faults)
    }

    /// `size` bytes in the pages `pages` asks for, taking 2 MiB pages from
    /// `pool` as vfio-linux takes them from the hugetlb pool: `Prefer`
    /// falls back to 4 KiB pages when the pool is short, `Require` fails
    /// with ENOMEM, as mmap with `MAP_HUGETLB` does.
    pub(crate) fn alloc_with(
        size: usize,
        pages: HugePages,
        pool: &Arc<HugetlbPool>,
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
        Ok(Self {
            buffer: Arc::new(DmaBuffer {
                words: cells.into_boxed_slice(),
                page_size,
                huge,
            }),
            faults,
        })
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

    fn physical_address(&self, _offset: usize) -> Result<u64> {
        Err(crate::iommufd::unsupported(Operation::PhysicalAddress))
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
        let faults = Arc::<Faults>::default;
        let base = MockDmaMemory::alloc_with(100, HugePages::Never, &pool, faults()).unwrap();
        assert_eq!((base.page_size(), base.len()), (PAGE_SIZE, PAGE_SIZE));
        let two =
            MockDmaMemory::alloc_with(HUGE_PAGE_SIZE + 1, HugePages::Require, &pool, faults())
                .unwrap();
        assert_eq!(
            (two.page_size(), two.len()),
            (HUGE_PAGE_SIZE, 2 * HUGE_PAGE_SIZE)
        );
        assert_eq!(pool.free(), 1);
        // Two more than are free: Prefer falls back, Require is ENOMEM.
        let fallback =
            MockDmaMemory::alloc_with(2 * HUGE_PAGE_SIZE, HugePages::Prefer, &pool, faults())
                .unwrap();
        assert_eq!(fallback.page_size(), PAGE_SIZE);
        assert_eq!(fallback.len(), 2 * HUGE_PAGE_SIZE);
        let e = MockDmaMemory::alloc_with(2 * HUGE_PAGE_SIZE, HugePages::Require, &pool, faults())
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
