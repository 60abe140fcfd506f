//! Mapped device regions and DMA buffers, as the vfio-core traits see them.

use crate::barrier;
use crate::decode::MemoryDecode;
use crate::mmap::{Mapping, Primitive};
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use vfio_core::access::check_register_access;
use vfio_core::{
    DmaMemory, Error, ErrorKind, HUGE_PAGE_SIZE, HugePages, MappedRegion, Operation, Result,
};

/// A device region mapped with mmap: register access is one branch (bounds,
/// alignment and the memory-decode gate, tested together) and one volatile
/// load or store (for [`anonymous`](Self::anonymous) regions, an atomic
/// one).
#[derive(Debug)]
pub struct LinuxRegion {
    /// Its fast path is closed for a sparse region (whose accesses take the
    /// slow path), and for writes if the region is read-only.
    map: Mapping,
    writable: bool,
    /// Memory decode of the device the BAR was mapped from (always on for
    /// a region mapped without a device): access is refused with EIO while
    /// it is off. Always present, so the hot path has no `Option` to test.
    decode: MemoryDecode,
    /// Sparse mapping: where `map` starts in the region, the other areas,
    /// and the region's length (see `crate::uapi`).
    sparse: Option<Box<Sparse>>,
}

/// The areas of a region mapped with a sparse-mmap capability beyond the
/// first, which `LinuxRegion::map` holds.
#[derive(Debug)]
pub(crate) struct Sparse {
    /// Offset of `LinuxRegion::map` in the region.
    pub(crate) base: u64,
    /// The other areas: offset in the region, mapping.
    pub(crate) more: Vec<(u64, Mapping)>,
    /// The whole region's length.
    pub(crate) span: u64,
}

impl LinuxRegion {
    /// A region over `map`, writable if both the region allows it and the
    /// range was mapped writable.
    pub(crate) fn new(mut map: Mapping, writable: bool) -> Self {
        let writable = writable && map.writable();
        map.close_fast_path(false, !writable);
        Self {
            map,
            writable,
            decode: MemoryDecode::always_on(),
            sparse: None,
        }
    }

    /// The region as the sparse areas of one of `span` bytes: `first`
    /// mapped at region offset `base`, the others in `more`.
    pub(crate) fn sparse(
        first: Mapping,
        base: u64,
        more: Vec<(u64, Mapping)>,
        span: u64,
        writable: bool,
    ) -> Self {
        let all_writable = more.iter().all(|(_, m)| m.writable());
        let mut region = Self::new(first, writable && all_writable);
        region.sparse = Some(Box::new(Sparse { base, more, span }));
        region.map.close_fast_path(true, true);
        region
    }

    /// Where a `T` at region offset `offset` is: in `map`, or for a sparse
    /// region in whichever area holds it.
    #[inline]
    fn locate<T: Primitive>(&self, offset: u64) -> Option<crate::mmap::At<'_, T>> {
        match &self.sparse {
            None => self.map.at::<T>(offset),
            Some(sparse) => self.locate_sparse(sparse, offset),
        }
    }

    #[cold]
    #[inline(never)]
    fn locate_sparse<'a, T: Primitive>(
        &'a self,
        sparse: &'a Sparse,
        offset: u64,
    ) -> Option<crate::mmap::At<'a, T>> {
        std::iter::once((sparse.base, &self.map))
            .chain(sparse.more.iter().map(|(b, m)| (*b, m)))
            .find_map(|(base, map)| map.at::<T>(offset.checked_sub(base)?))
    }

    /// The region refuses access while `decode` is off (see `decode.rs`).
    pub(crate) fn gated_by(mut self, decode: MemoryDecode) -> Self {
        self.decode = decode;
        self
    }

    /// A region backed by `len` bytes of zeroed anonymous memory, readable
    /// and writable: for testing and benchmarking register-access code
    /// without a device. Accesses are checked exactly as on a mapped BAR, but
    /// this is RAM, not MMIO: any number of threads may access it at once, so
    /// each access is an atomic one on the aligned 64-bit word holding it
    /// (`Relaxed`; a write narrower than 8 bytes is a compare-exchange that
    /// leaves the word's other bytes alone), not a volatile one, which
    /// would be a data race.
    ///
    /// `len` 0 is [`ErrorKind::InvalidArgument`]; a failed mmap is the errno.
    pub fn anonymous(len: usize) -> Result<Self> {
        let size = NonZeroUsize::new(len).ok_or_else(|| {
            Error::new(Operation::MapRegion, ErrorKind::InvalidArgument)
                .with_detail("an anonymous region needs at least one byte")
        })?;
        let map =
            Mapping::anonymous(size).map_err(|e| Error::from_errno(Operation::MapRegion, e))?;
        Ok(Self::new(map, true))
    }

    /// The hot path: a region that is not sparse, decode on, the access in
    /// bounds and aligned, tested in one branch, then the access. Anything
    /// else takes [`read_slow`](Self::read_slow).
    #[inline(always)]
    fn read<T: Primitive>(&self, offset: u64) -> Result<T> {
        match self.map.read_if::<T>(offset, self.decode.refuse()) {
            Some(value) => Ok(value),
            None => self.read_slow(offset),
        }
    }

    /// One check of bounds and alignment, then the decode gate, then the
    /// access: the order vfio-pci checks a region access in. Sparse
    /// regions and refusals come here.
    #[inline(never)]
    fn read_slow<T: Primitive>(&self, offset: u64) -> Result<T> {
        let Some(at) = self.locate::<T>(offset) else {
            return Err(self.refused::<T>(Operation::RegisterRead, offset));
        };
        self.decode.check(Operation::RegisterRead)?;
        Ok(at.read())
    }

    /// As [`read`](Self::read), with the region's write permission in the
    /// one branch too.
    #[inline(always)]
    fn write<T: Primitive>(&self, offset: u64, value: T) -> Result<()> {
        if self.map.write_if::<T>(offset, value, self.decode.refuse()) {
            Ok(())
        } else {
            self.write_slow(offset, value)
        }
    }

    /// As [`read_slow`](Self::read_slow): bounds and alignment, the write
    /// permission, the decode gate, then the access.
    #[inline(never)]
    fn write_slow<T: Primitive>(&self, offset: u64, value: T) -> Result<()> {
        let Some(at) = self.locate::<T>(offset) else {
            return Err(self.refused::<T>(Operation::RegisterWrite, offset));
        };
        if !self.writable {
            return Err(read_only());
        }
        self.decode.check(Operation::RegisterWrite)?;
        at.write(value);
        Ok(())
    }

    /// The error for an access [`Mapping::at`] refused.
    #[cold]
    #[inline(never)]
    fn refused<T>(&self, op: Operation, offset: u64) -> Error {
        let width = size_of::<T>() as u64;
        match check_register_access(op, self.len(), offset, width) {
            Err(e) => e,
            // Inside the region, aligned, in no area: a hole.
            Ok(_) if self.sparse.is_some() => vfio_core::uapi::sparse_hole(op, offset, width),
            // Unreachable: what `at` refuses, the check refuses too.
            Ok(_) => Error::new(op, ErrorKind::OutOfRange),
        }
    }
}

#[cold]
#[inline(never)]
fn read_only() -> Error {
    Error::new(Operation::RegisterWrite, ErrorKind::PermissionDenied)
        .with_detail("the region was mapped read-only")
}

impl MappedRegion for LinuxRegion {
    fn len(&self) -> u64 {
        match &self.sparse {
            None => self.map.len() as u64,
            Some(sparse) => sparse.span,
        }
    }
    #[inline]
    fn read_u8(&self, offset: u64) -> Result<u8> {
        self.read(offset)
    }
    #[inline]
    fn read_u16(&self, offset: u64) -> Result<u16> {
        self.read(offset).map(u16::from_le)
    }
    #[inline]
    fn read_u32(&self, offset: u64) -> Result<u32> {
        self.read(offset).map(u32::from_le)
    }
    #[inline]
    fn read_u64(&self, offset: u64) -> Result<u64> {
        self.read(offset).map(u64::from_le)
    }
    #[inline]
    fn write_u8(&self, offset: u64, value: u8) -> Result<()> {
        self.write(offset, value)
    }
    #[inline]
    fn write_u16(&self, offset: u64, value: u16) -> Result<()> {
        self.write(offset, value.to_le())
    }
    #[inline]
    fn write_u32(&self, offset: u64, value: u32) -> Result<()> {
        self.write(offset, value.to_le())
    }
    #[inline]
    fn write_u64(&self, offset: u64, value: u64) -> Result<()> {
        self.write(offset, value.to_le())
    }
}

/// Anonymous shared memory for DMA, page-granular: base pages, or 2 MiB
/// pages from the hugetlb pool (`MAP_HUGETLB`) when asked for and the pool
/// has them.
///
/// Every CPU access is atomic (see [`DmaMemory`]): the copies and typed
/// accesses may run on any number of threads at once, and while devices
/// access the memory, with `Relaxed` accesses to aligned 64-bit words
/// (whole words in the middle of a copy, compare-exchanges for the partial
/// words at its ends), so they never race. They order nothing; the
/// barriers are the architecture's (see the table in `barrier.rs`, and
/// `docs/design.md`).
///
/// # Physical addresses (no-IOMMU mode)
///
/// [`physical_address`](DmaMemory::physical_address) reads the page frame
/// number from `/proc/self/pagemap`, which needs `CAP_SYS_ADMIN` (without
/// it the kernel shows 0 and the call is
/// [`ErrorKind::PermissionDenied`]). A device given a physical address
/// needs the page to be there and to stay there, so the first call locks
/// the whole buffer (`mlock(2)`): every page is faulted in and kept
/// resident, never swapped out or reclaimed. That costs the buffer's size
/// against `RLIMIT_MEMLOCK` (`ulimit -l`) unless the process has
/// `CAP_IPC_LOCK`; past the limit the call fails with ENOMEM, and with a
/// limit of 0 with EPERM. The lock lasts until the memory is dropped.
///
/// Locking is not pinning: Linux may still *migrate* an mlocked base page
/// to another frame, for memory compaction (allowed by default,
/// `vm.compact_unevictable_allowed=1`), NUMA balancing or memory
/// hot-remove, and a device DMAing to the old address would then reach a
/// frame that belongs to someone else. No-IOMMU mode offers no protection
/// against that; it is one reason the kernel taints itself when the mode is
/// used. Hugetlb pages ([`HugePages::Require`]) are the sturdier choice:
/// they are never swapped, and compaction does not move them (it isolates
/// them only for contiguous-range allocations, `alloc_contig_range`:
/// CMA and gigantic pages); memory hot-remove and memory-failure handling
/// can still move or retire them. Setting `vm.compact_unevictable_allowed`
/// to 0 keeps compaction away from mlocked base pages too.
#[derive(Debug)]
pub struct LinuxDmaMemory {
    /// Shared with the iommufd IOASes that map it, which keep it mapped
    /// until their mapping is gone (see `iommufd.rs`).
    map: Arc<Mapping>,
    page_size: usize,
    /// `mlock` succeeded on the whole buffer (see [`Self::lock`]).
    locked: AtomicBool,
}

impl LinuxDmaMemory {
    pub(crate) fn alloc(size: usize, pages: HugePages) -> Result<Self> {
        if size == 0 {
            return Err(too_big(size));
        }
        if pages != HugePages::Never {
            let len = size
                .checked_next_multiple_of(HUGE_PAGE_SIZE)
                .and_then(NonZeroUsize::new)
                .ok_or_else(|| too_big(size))?;
            match Mapping::anonymous_huge(len) {
                Ok(map) => return Ok(Self::new(map, HUGE_PAGE_SIZE)),
                Err(e) if pages == HugePages::Require => {
                    return Err(Error::from_errno(Operation::AllocDma, e).with_detail(
                        format_args!(
                            "no {len:#x} bytes of 2 MiB hugetlb pages (see /proc/sys/vm/nr_hugepages)"
                        ),
                    ));
                }
                // No pool, or not enough free in it: base pages instead.
                Err(_) => {}
            }
        }
        let page = page_size();
        let len = size
            .checked_next_multiple_of(page)
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| too_big(size))?;
        let map = Mapping::anonymous(len).map_err(|e| Error::from_errno(Operation::AllocDma, e))?;
        Ok(Self::new(map, page))
    }

    fn new(map: Mapping, page_size: usize) -> Self {
        Self {
            map: Arc::new(map),
            page_size,
            locked: AtomicBool::new(false),
        }
    }

    /// The process address of the buffer, as handed to `VFIO_IOMMU_MAP_DMA`.
    pub(crate) fn addr(&self) -> usize {
        self.map.addr()
    }

    /// The mapping behind the buffer, for an IOAS to keep while it maps it.
    pub(crate) fn mapping(&self) -> Arc<Mapping> {
        self.map.clone()
    }

    /// Faults in and locks the whole buffer (`mlock`), once: see the type's
    /// documentation. Two threads racing here both lock, which is harmless
    /// (mlock is idempotent and not counted twice).
    fn lock(&self) -> Result<()> {
        if self.locked.load(Ordering::Acquire) {
            return Ok(());
        }
        self.map.lock().map_err(|e| {
            Error::from_errno(Operation::PhysicalAddress, e).with_detail(format_args!(
                "mlock of {:#x} bytes failed: the physical address of memory that is not \
                 locked could change; locked memory counts against RLIMIT_MEMLOCK \
                 (`ulimit -l`) unless the process has CAP_IPC_LOCK",
                self.len()
            ))
        })?;
        self.locked.store(true, Ordering::Release);
        Ok(())
    }
}

/// Where the process's page table is shown.
const PAGEMAP: &str = "/proc/self/pagemap";

fn too_big(size: usize) -> Error {
    Error::new(Operation::AllocDma, ErrorKind::InvalidArgument)
        .with_detail(format_args!("cannot allocate {size} bytes of DMA memory"))
}

impl DmaMemory for LinuxDmaMemory {
    #[inline]
    fn len(&self) -> usize {
        self.map.len()
    }

    /// The physical address of byte `offset`: the first call locks the
    /// buffer (`mlock`), then the page's frame is read from
    /// `/proc/self/pagemap`. See the type's documentation for what that
    /// costs, what it needs (`CAP_SYS_ADMIN`) and how long the address
    /// holds. Past the end is [`ErrorKind::OutOfRange`] with no errno; a
    /// failed mlock is its errno (ENOMEM past `RLIMIT_MEMLOCK`, EPERM with
    /// a limit of 0).
    fn physical_address(&self, offset: usize) -> Result<u64> {
        if offset >= self.len() {
            return Err(
                Error::new(Operation::PhysicalAddress, ErrorKind::OutOfRange).with_detail(
                    format_args!("byte {offset:#x} of {:#x} bytes of DMA memory", self.len()),
                ),
            );
        }
        self.lock()?;
        crate::pagemap::physical_address(Path::new(PAGEMAP), self.addr() + offset, page_size())
    }

    fn page_size(&self) -> usize {
        self.page_size
    }

    #[inline]
    fn words(&self) -> &[AtomicU64] {
        self.map.words()
    }

    #[inline]
    fn dma_wmb(&self) {
        barrier::dma_wmb();
    }

    #[inline]
    fn dma_rmb(&self) {
        barrier::dma_rmb();
    }

    #[inline]
    fn dma_mb(&self) {
        barrier::dma_mb();
    }

    #[inline]
    fn wmb(&self) {
        barrier::wmb();
    }

    #[inline]
    fn rmb(&self) {
        barrier::rmb();
    }
}

/// The system page size (4 KiB when it cannot be read).
pub(crate) fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .filter(|v| v.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn dma_memory_rounds_up_to_a_page_and_checks_bounds() {
        let m = LinuxDmaMemory::alloc(100, HugePages::Never).unwrap();
        assert_eq!(m.len(), page_size());
        m.write_at(10, b"hello").unwrap();
        let mut buf = [0u8; 5];
        m.read_at(10, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        let e = m.read_at(m.len() - 2, &mut buf).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        let e = m.write_at(usize::MAX, b"x").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
    }

    /// Two threads, each writing then reading back its own interleaved
    /// 12-byte records of one buffer through `&self`, with records sharing
    /// words: what a submission and a completion thread do with a ring.
    #[test]
    fn dma_memory_is_shared_by_two_threads_without_losing_bytes() {
        const ROUNDS: u32 = if cfg!(miri) { 20 } else { 500 };
        let m = std::sync::Arc::new(LinuxDmaMemory::alloc(4096, HugePages::Never).unwrap());
        let threads: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|lane| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut back = [0u8; 12];
                    for round in 0..ROUNDS {
                        for record in (lane..300).step_by(2) {
                            let mut rec = [0u8; 12];
                            rec[..4].copy_from_slice(&round.to_le_bytes());
                            rec[4..8].copy_from_slice(&(record as u32).to_le_bytes());
                            rec[8..].copy_from_slice(&(!round).to_le_bytes());
                            m.write_at(4 + record * 12, &rec).unwrap();
                            m.read_at(4 + record * 12, &mut back).unwrap();
                            assert_eq!(back, rec, "lane {lane} record {record}");
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut rec = [0u8; 12];
        for record in 0..300 {
            m.read_at(4 + record * 12, &mut rec).unwrap();
            assert_eq!(rec[..4], (ROUNDS - 1).to_le_bytes());
            assert_eq!(rec[4..8], (record as u32).to_le_bytes());
        }
    }

    /// The kernel's page size for the mapping at `addr`, from
    /// `/proc/self/smaps` (`KernelPageSize`), in bytes.
    fn kernel_page_size(addr: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            if let Some((range, _)) = line.split_once(' ') {
                if let Some((start, end)) = range.split_once('-') {
                    if let (Ok(start), Ok(end)) = (
                        usize::from_str_radix(start, 16),
                        usize::from_str_radix(end, 16),
                    ) {
                        inside = (start..end).contains(&addr);
                        continue;
                    }
                }
            }
            if let Some(kb) = line.strip_prefix("KernelPageSize:") {
                if inside {
                    let kb = kb.trim().trim_end_matches("kB").trim();
                    return kb.parse::<usize>().unwrap() * 1024;
                }
            }
        }
        panic!("no mapping at {addr:#x} in /proc/self/smaps")
    }

    /// Free 2 MiB pages in the hugetlb pool, from `/proc/meminfo`.
    fn free_huge_pages() -> usize {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
        let size = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("Hugepagesize:"))
            .map(|v| {
                v.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<usize>()
                    .unwrap()
            });
        if size != Some(2048) {
            return 0;
        }
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix("HugePages_Free:"))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// Base pages: the system page size, as the kernel maps them.
    #[test]
    #[cfg_attr(miri, ignore = "Miri's mappings are not in the process's smaps")]
    fn base_page_memory_reports_the_kernels_page_size() {
        let m = LinuxDmaMemory::alloc(5000, HugePages::Never).unwrap();
        assert_eq!(m.page_size(), page_size());
        assert_eq!(m.len(), 2 * page_size());
        m.write_u64(8, 1).unwrap();
        assert_eq!(kernel_page_size(m.addr()), m.page_size());
    }

    /// `Prefer` gives 2 MiB pages exactly when the kernel maps them (seen in
    /// smaps), and 4 KiB pages, still usable, when the pool has none.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map hugetlb pages")]
    fn preferred_huge_pages_are_what_the_kernel_maps() {
        let m = LinuxDmaMemory::alloc(4096, HugePages::Prefer).unwrap();
        m.write_u64(m.len() - 8, 0x5a).unwrap();
        assert_eq!(m.read_u64(m.len() - 8).unwrap(), 0x5a);
        assert_eq!(kernel_page_size(m.addr()), m.page_size());
        if m.page_size() == HUGE_PAGE_SIZE {
            assert_eq!(m.len(), HUGE_PAGE_SIZE);
            assert_eq!(m.addr() % HUGE_PAGE_SIZE, 0);
        } else {
            assert_eq!((m.page_size(), m.len()), (page_size(), page_size()));
        }
    }

    /// `Require` is 2 MiB pages or ENOMEM, never base pages. With pages
    /// reserved (`echo 2 > /proc/sys/vm/nr_hugepages`) the huge path runs;
    /// without, the refusal does.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot map hugetlb pages")]
    fn required_huge_pages_are_huge_or_enomem() {
        let free = free_huge_pages();
        match LinuxDmaMemory::alloc(HUGE_PAGE_SIZE + 1, HugePages::Require) {
            Ok(m) => {
                assert_eq!(
                    (m.page_size(), m.len()),
                    (HUGE_PAGE_SIZE, 2 * HUGE_PAGE_SIZE)
                );
                m.write_at(HUGE_PAGE_SIZE - 3, b"across").unwrap();
                let mut back = [0u8; 6];
                m.read_at(HUGE_PAGE_SIZE - 3, &mut back).unwrap();
                assert_eq!(&back, b"across");
                assert_eq!(kernel_page_size(m.addr()), HUGE_PAGE_SIZE);
            }
            Err(e) => {
                assert_eq!(
                    (e.kind(), e.errno()),
                    (ErrorKind::NoSpace, Some(Errno::ENOMEM))
                );
                assert!(free < 2, "{free} free huge pages, yet: {e}");
            }
        }
    }

    #[test]
    fn typed_access_to_mapped_dma_memory_is_checked_and_little_endian() {
        let m = LinuxDmaMemory::alloc(4096, HugePages::Never).unwrap();
        m.write_u64(0, 0x0807_0605_0403_0201).unwrap();
        m.write_u16(2, 0xbeef).unwrap();
        let mut bytes = [0u8; 8];
        m.read_at(0, &mut bytes).unwrap();
        assert_eq!(bytes, [1, 2, 0xef, 0xbe, 5, 6, 7, 8]);
        assert_eq!(m.read_u32(4).unwrap(), 0x0807_0605);
        m.store_release_u32(4092, 9).unwrap();
        assert_eq!(m.load_acquire_u32(4092).unwrap(), 9);
        assert_eq!(m.read_obj::<[u32; 2]>(0).unwrap()[1], 0x0807_0605);
        let e = m.read_u64(4).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::Misaligned, None));
        let e = m.write_u32(4096, 0).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::OutOfRange, None));
        let e = m.load_acquire_u64(4090).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
    }

    /// A producer thread fills 24-byte records and publishes each with a
    /// release store; the consumer polls with acquire loads and sees each
    /// record whole: the ring handshake, on mapped memory with the
    /// architecture's barriers.
    #[test]
    fn release_and_acquire_hand_records_between_threads() {
        const RECORDS: u64 = if cfg!(miri) { 40 } else { 2000 };
        let m = std::sync::Arc::new(LinuxDmaMemory::alloc(4096, HugePages::Never).unwrap());
        let producer = {
            let m = m.clone();
            std::thread::spawn(move || {
                for seq in 1..=RECORDS {
                    let at = (seq as usize % 8) * 32;
                    while m.load_acquire_u64(at + 24).unwrap() != 0 {
                        std::thread::yield_now();
                    }
                    m.write_obj(at, &[seq, !seq, seq << 8]).unwrap();
                    m.store_release_u64(at + 24, seq).unwrap();
                }
            })
        };
        for seq in 1..=RECORDS {
            let at = (seq as usize % 8) * 32;
            while m.load_acquire_u64(at + 24).unwrap() != seq {
                std::thread::yield_now();
            }
            assert_eq!(m.read_obj::<[u64; 3]>(at).unwrap(), [seq, !seq, seq << 8]);
            m.store_release_u64(at + 24, 0).unwrap();
        }
        producer.join().unwrap();
    }

    /// Root (CAP_SYS_ADMIN) reads real frame numbers: two bytes of one page
    /// are as far apart physically as virtually, and a second page has a
    /// frame of its own. Without the capability, the refusal names it.
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no /proc/self/pagemap and no mlock")]
    fn physical_addresses_are_page_consistent() {
        let page = page_size();
        let m = LinuxDmaMemory::alloc(2 * page, HugePages::Never).unwrap();
        let a = match m.physical_address(0x10) {
            Ok(a) => a,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
                assert!(e.detail().unwrap().contains("CAP_SYS_ADMIN"), "{e}");
                return;
            }
        };
        assert!(m.locked.load(Ordering::Relaxed));
        assert_ne!(a, 0);
        assert_eq!(a % page as u64, 0x10);
        let b = m.physical_address(0x7f8).unwrap();
        assert_eq!(b - a, 0x7f8 - 0x10);
        let second = m.physical_address(page + 8).unwrap();
        assert_eq!(second % page as u64, 8);
        assert_ne!(second / page as u64, a / page as u64);
        // Asking again gives the same answer: the pages stayed put.
        assert_eq!(m.physical_address(0x10).unwrap(), a);
        let e = m.physical_address(m.len()).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::OutOfRange, None));
    }

    /// A hugetlb buffer (when the pool has pages) is physically contiguous
    /// across its base pages: one 2 MiB frame.
    #[test]
    #[cfg_attr(miri, ignore = "Miri has no /proc/self/pagemap and no hugetlb pages")]
    fn a_huge_page_is_physically_contiguous() {
        let Ok(m) = LinuxDmaMemory::alloc(HUGE_PAGE_SIZE, HugePages::Require) else {
            return;
        };
        let Ok(a) = m.physical_address(0) else {
            return;
        };
        assert_eq!(a % HUGE_PAGE_SIZE as u64, 0);
        let end = m.physical_address(HUGE_PAGE_SIZE - 1).unwrap();
        assert_eq!(end - a, HUGE_PAGE_SIZE as u64 - 1);
    }

    #[test]
    fn zero_sized_dma_memory_is_invalid() {
        assert_eq!(
            LinuxDmaMemory::alloc(0, HugePages::Never)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn an_anonymous_region_is_zeroed_writable_and_checked() {
        let r = LinuxRegion::anonymous(4096).unwrap();
        assert_eq!(r.len(), 4096);
        assert_eq!(r.read_u64(4088).unwrap(), 0);
        r.write_u32(0x28, 0xdead_beef).unwrap();
        assert_eq!(r.read_u32(0x28).unwrap(), 0xdead_beef);
        assert_eq!(r.read_u32(4096).unwrap_err().kind(), ErrorKind::OutOfRange);
        assert_eq!(r.write_u32(2, 0).unwrap_err().kind(), ErrorKind::Misaligned);
    }

    #[test]
    fn an_empty_anonymous_region_is_invalid() {
        let e = LinuxRegion::anonymous(0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(e.operation(), Operation::MapRegion);
    }

    #[test]
    fn a_sparse_region_reaches_its_areas_and_refuses_its_holes() {
        let page = || Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap();
        // Areas at 0..0x1000 and 0x3000..0x4000 of a 0x4000-byte region.
        let r = LinuxRegion::sparse(page(), 0, vec![(0x3000, page())], 0x4000, true);
        assert_eq!(r.len(), 0x4000);
        r.write_u32(0x3ffc, 0x0bad_cafe).unwrap();
        r.write_u64(0x8, 7).unwrap();
        assert_eq!(r.read_u32(0x3ffc).unwrap(), 0x0bad_cafe);
        assert_eq!(r.read_u64(0x8).unwrap(), 7);
        for hole in [0x1000, 0x2ffc, 0x2000] {
            let e = r.read_u32(hole).unwrap_err();
            assert_eq!((e.kind(), e.errno()), (ErrorKind::OutOfRange, None));
            let e = r.write_u32(hole, 0).unwrap_err();
            assert_eq!((e.kind(), e.errno()), (ErrorKind::OutOfRange, None));
        }
        assert_eq!(
            r.read_u32(0x4000).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            r.read_u32(0x3001).unwrap_err().kind(),
            ErrorKind::Misaligned
        );
        // The first area need not start the region.
        let r = LinuxRegion::sparse(page(), 0x2000, Vec::new(), 0x4000, false);
        assert_eq!(r.read_u32(0x2000).unwrap(), 0);
        assert_eq!(
            r.read_u32(0x1ffc).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        assert_eq!(
            r.write_u32(0x2000, 1).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn region_access_is_checked_before_touching_memory() {
        let r = LinuxRegion::new(
            Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap(),
            true,
        );
        r.write_u32(0x10, 0x0100_00ed).unwrap();
        assert_eq!(r.read_u32(0x10).unwrap(), 0x0100_00ed);
        assert_eq!(r.read_u16(0x12).unwrap(), 0x0100);
        assert_eq!(r.read_u32(4096).unwrap_err().kind(), ErrorKind::OutOfRange);
        assert_eq!(r.read_u64(4).unwrap_err().kind(), ErrorKind::Misaligned);
        assert_eq!(
            r.write_u16(u64::MAX, 0).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
        let ro = LinuxRegion::new(
            Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap(),
            false,
        );
        assert_eq!(
            ro.write_u8(0, 1).unwrap_err().kind(),
            ErrorKind::PermissionDenied
        );
    }

    /// A region over one page of a memfd, mapped as `map_region` maps a
    /// BAR: every access volatile.
    fn memfd_region(len: usize, writable: bool) -> LinuxRegion {
        let fd =
            nix::sys::memfd::memfd_create("bar", nix::sys::memfd::MFdFlags::MFD_CLOEXEC).unwrap();
        nix::unistd::ftruncate(&fd, 4096).unwrap();
        let map = Mapping::map_file(
            std::os::fd::AsFd::as_fd(&fd),
            0,
            NonZeroUsize::new(len).unwrap(),
            writable,
        )
        .unwrap();
        LinuxRegion::new(map, writable)
    }

    /// The hot path's one comparison against the checks it stands for: at
    /// every width, on offsets around the end, misaligned ones, and ones
    /// with high bits set (which the rotation must not let through), an
    /// access succeeds exactly when `check_register_access` passes it, and
    /// fails with its kind otherwise; with decode off, an access that fits
    /// is EIO and one that does not keeps its bounds error (the order
    /// vfio-pci checks in); a read-only region refuses every write.
    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot mmap a file")]
    fn the_one_branch_fast_path_refuses_all_the_checked_path_refuses() {
        // A length that is not a multiple of 8 puts the end inside a word.
        for len in [4096, 4092, 6] {
            let device = memfd_region(len, true);
            let ram = LinuxRegion::new(
                Mapping::anonymous(NonZeroUsize::new(len).unwrap()).unwrap(),
                true,
            );
            let decode = MemoryDecode::new(0x0002);
            let gated = memfd_region(len, true).gated_by(decode.clone());
            let l = len as u64;
            let mut offsets = vec![
                0,
                1,
                2,
                3,
                4,
                6,
                7,
                8,
                l - 1,
                l,
                l + 1,
                u64::MAX,
                u64::MAX - 7,
            ];
            for size in [1u64, 2, 4, 8] {
                offsets.extend([l.wrapping_sub(size), l + size, 1 << 63, (1 << 63) | 0x28]);
                offsets.extend((1..4).map(|k| 1u64 << (64 - k)));
                offsets.extend((1..4).map(|k| (1u64 << (64 - k)) | 0x28));
            }
            for r in [&device, &ram, &gated] {
                for &offset in &offsets {
                    for width in [1u64, 2, 4, 8] {
                        let expected =
                            check_register_access(Operation::RegisterRead, l, offset, width)
                                .map(|_| ())
                                .map_err(|e| e.kind());
                        let got = match width {
                            1 => r
                                .write_u8(offset, 0x5a)
                                .and_then(|()| r.read_u8(offset).map(u64::from)),
                            2 => r
                                .write_u16(offset, 0x5a5a)
                                .and_then(|()| r.read_u16(offset).map(u64::from)),
                            4 => r
                                .write_u32(offset, 0x5a5a_5a5a)
                                .and_then(|()| r.read_u32(offset).map(u64::from)),
                            _ => r
                                .write_u64(offset, 0x5a5a_5a5a_5a5a_5a5a)
                                .and_then(|()| r.read_u64(offset)),
                        };
                        assert_eq!(
                            got.as_ref().map(|_| ()).map_err(|e| e.kind()),
                            expected,
                            "len {len} offset {offset:#x} width {width}"
                        );
                        if let Ok(v) = got {
                            assert_eq!(v, 0x5a5a_5a5a_5a5a_5a5a >> (64 - 8 * width));
                        }
                    }
                }
            }
            decode.update(0x0000);
            for &offset in &offsets {
                let expected = match check_register_access(Operation::RegisterRead, l, offset, 4) {
                    Ok(_) => (ErrorKind::Io, Some(Errno::EIO)),
                    Err(e) => (e.kind(), None),
                };
                let e = gated.read_u32(offset).unwrap_err();
                assert_eq!((e.kind(), e.errno()), expected, "read at {offset:#x}");
                let e = gated.write_u32(offset, 1).unwrap_err();
                assert_eq!((e.kind(), e.errno()), expected, "write at {offset:#x}");
            }
            decode.update(0x0002);
            assert!(gated.read_u16(0).is_ok());
            let ro = memfd_region(len, false);
            assert_eq!(
                ro.write_u8(0, 1).unwrap_err().kind(),
                ErrorKind::PermissionDenied
            );
            assert_eq!(ro.read_u8(0).unwrap(), 0);
            // A writable mapping of a region without the WRITE flag.
            let ro = LinuxRegion::new(
                Mapping::anonymous(NonZeroUsize::new(len).unwrap()).unwrap(),
                false,
            );
            assert_eq!(
                ro.write_u16(0, 1).unwrap_err().kind(),
                ErrorKind::PermissionDenied
            );
            assert_eq!(ro.read_u16(0).unwrap(), 0);
        }
    }

    /// RAM's sub-word stores and loads are shifts of one atomic word: each
    /// lands on exactly its bytes, in memory order, at every offset of a
    /// word, and leaves the others alone.
    #[test]
    fn ram_accesses_land_on_their_bytes_at_every_offset_of_a_word() {
        let r = LinuxRegion::anonymous(16).unwrap();
        let mut bytes = [0u8; 16];
        let check = |bytes: &[u8; 16]| {
            let mut seen = [0u8; 16];
            vfio_core::words::read(r.map.words(), 0, &mut seen, Ordering::Relaxed);
            assert_eq!(&seen, bytes);
        };
        for offset in 0..16u64 {
            let at = offset as usize;
            r.write_u8(offset, 0x80 | offset as u8).unwrap();
            bytes[at] = 0x80 | offset as u8;
            check(&bytes);
            if offset % 2 == 0 {
                r.write_u16(offset, 0xa1b2).unwrap();
                bytes[at..at + 2].copy_from_slice(&0xa1b2u16.to_le_bytes());
                check(&bytes);
                assert_eq!(r.read_u16(offset).unwrap(), 0xa1b2);
            }
            if offset % 4 == 0 {
                r.write_u32(offset, 0xc3d4_e5f6 ^ offset as u32).unwrap();
                bytes[at..at + 4].copy_from_slice(&(0xc3d4_e5f6 ^ offset as u32).to_le_bytes());
                check(&bytes);
                assert_eq!(r.read_u32(offset).unwrap(), 0xc3d4_e5f6 ^ offset as u32);
            }
            assert_eq!(r.read_u8(offset).unwrap(), bytes[at]);
        }
        assert_eq!(
            r.read_u64(8).unwrap(),
            u64::from_le_bytes(bytes[8..].try_into().unwrap())
        );
    }
}
