//! Memory mappings: device regions and anonymous memory.
//!
//! A [`Mapping`] owns an mmap'd range and offers only fixed-width,
//! bounds-checked access to it, of one of two kinds:
//!
//! - a device region (a BAR) is MMIO, outside Rust's memory: every access
//!   is one volatile load or store, never split, merged or elided, and no
//!   Rust reference into it is ever created;
//! - anonymous memory is RAM, which several threads (and, for DMA memory,
//!   devices) may read and write at once through `&self`. Volatile accesses
//!   are no defence against data races there, so every access is an atomic
//!   one on the aligned 64-bit words of the range (see [`vfio_core::words`]).

// UNSAFETY: mmap/munmap/mlock, volatile access through raw pointers into device
// mappings, and viewing anonymous mappings as atomic words.
#![expect(unsafe_code)]

use nix::sys::mman::{MapFlags, ProtFlags, mlock, mmap, mmap_anonymous, munmap};
use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// An owned mmap'd range, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Mapped with `PROT_WRITE`: a store anywhere else would fault.
    writable: bool,
    /// Anonymous RAM (atomic access) rather than a device region (volatile).
    ram: bool,
    /// The 64-bit words covering `len` (`len.div_ceil(8)`), kept so that
    /// [`words`](Self::words) is two loads.
    word_count: usize,
    /// For each access size `1 << k` (k = 0..4), the bound of
    /// [`read_if`](Self::read_if)'s one comparison, and of
    /// [`write_if`](Self::write_if)'s (all 0, refusing every write, for a
    /// range mapped read-only). See [`bounds`].
    read_bounds: [u64; 4],
    write_bounds: [u64; 4],
}

/// Bit 63 of the `refuse` mask of [`Mapping::read_if`] and
/// [`Mapping::write_if`]: set, the access is refused.
pub const REFUSE: u64 = 1 << 63;

/// The bounds that make one unsigned comparison test bounds and
/// alignment: an access of `1 << k` bytes at `offset` fits a range of `len`
/// bytes exactly when `offset.rotate_right(k) < bounds[k]`. The rotation
/// moves the misaligned low bits to the top, making a misaligned offset
/// huge; an aligned one becomes `offset >> k`, which must be at most
/// `(len - size) >> k`. A bound of 0, when `len < size`, passes nothing.
/// `len` is at most `isize::MAX`, so no bound exceeds `2^63` and a key
/// with [`REFUSE`] set passes nothing either.
fn bounds(len: usize) -> [u64; 4] {
    let len = len as u64;
    std::array::from_fn(|k| {
        let size = 1u64 << k;
        len.checked_sub(size).map_or(0, |last| (last >> k) + 1)
    })
}

// SAFETY: a Mapping is a plain address range in this process. A device
// mapping is reached only by volatile accesses to MMIO, outside Rust's
// memory, which are fine from any thread (the device-side meaning of
// concurrent register access is the driver's); RAM only by atomic ones.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` permits only volatile (device) or atomic
// (RAM) access, never a plain one or a reference into device memory.
unsafe impl Sync for Mapping {}

/// A value that can be read or written in one access: one volatile access
/// to a device region, or a (partial) atomic word of RAM.
pub trait Primitive: Copy {
    /// Reads the value at byte `offset` of atomic words (aligned to the
    /// value's size, so within one word).
    fn load(words: &[AtomicU64], offset: usize) -> Self;
    /// Writes the value at byte `offset` of atomic words.
    fn store(self, words: &[AtomicU64], offset: usize);
}

/// The word holding byte `offset`, and the bit shift of `offset` within it.
#[inline]
fn word_of(offset: usize) -> (usize, u32) {
    // `offset % 8 * 8` is below 64: the cast cannot truncate.
    (offset / 8, (offset % 8 * 8) as u32)
}

macro_rules! primitive {
    ($($t:ty),*) => {$(
        impl Primitive for $t {
            /// One load of the word, shifted: bits `shift..` of the word
            /// read as little-endian are bytes `offset % 8..` in memory.
            #[inline]
            fn load(w: &[AtomicU64], offset: usize) -> Self {
                let (index, shift) = word_of(offset);
                let le = u64::to_le(w[index].load(Ordering::Relaxed));
                // Truncation keeps exactly the value's bytes.
                <$t>::from_le((le >> shift) as $t)
            }
            /// A whole word is one store. Part of a word is one
            /// compare-exchange loop on shifted bits: the word's other
            /// bytes are left as another thread may be writing them, and
            /// the value's bytes change at once (a reader never sees half
            /// of it). No access of another size touches the word.
            #[inline]
            fn store(self, w: &[AtomicU64], offset: usize) {
                const BITS: u32 = <$t>::BITS;
                let (index, shift) = word_of(offset);
                let word = &w[index];
                if BITS == u64::BITS {
                    word.store(u64::from(self), Ordering::Relaxed);
                    return;
                }
                // Only the u8, u16 and u32 instances get here, so BITS < 64.
                let mask = ((1u64 << (BITS % u64::BITS)) - 1) << shift;
                // As in `load`: the word read as little-endian has the
                // value's bytes at bits `shift..`.
                let bits = u64::from_le((u64::from(<$t>::to_le(self)) << shift) & mask);
                let mask = u64::from_le(mask);
                let mut old = word.load(Ordering::Relaxed);
                loop {
                    match word.compare_exchange_weak(
                        old,
                        (old & !mask) | bits,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return,
                        Err(now) => old = now,
                    }
                }
            }
        }
    )*};
}
primitive!(u8, u16, u32, u64);

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, shared, readable and optionally writable.
    pub fn map_file(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: NonZeroUsize,
        write: bool,
    ) -> nix::Result<Self> {
        let mut prot = ProtFlags::PROT_READ;
        if write {
            prot |= ProtFlags::PROT_WRITE;
        }
        let offset = i64::try_from(offset).map_err(|_| nix::errno::Errno::EOVERFLOW)?;
        // SAFETY: no address hint is given, so the kernel picks a fresh range and
        // no existing mapping is replaced. The result is owned by the Mapping.
        let ptr = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, fd, offset) }?;
        Ok(Self {
            ptr: ptr.cast(),
            len: len.get(),
            writable: write,
            ram: false,
            word_count: len.get().div_ceil(size_of::<u64>()),
            read_bounds: bounds(len.get()),
            write_bounds: if write { bounds(len.get()) } else { [0; 4] },
        })
    }

    /// Maps `len` bytes of zeroed anonymous shared memory (RAM), readable and
    /// writable, reached only through atomic words.
    ///
    /// Shared, so that a `fork` does not make the pages copy-on-write in
    /// the parent, away from the ones the IOMMU maps. Under Miri, which has
    /// neither `fork` nor shared anonymous mappings, the mapping is private:
    /// the same memory for a single process.
    pub fn anonymous(len: NonZeroUsize) -> nix::Result<Self> {
        let flags = if cfg!(miri) {
            MapFlags::MAP_PRIVATE
        } else {
            MapFlags::MAP_SHARED
        };
        Self::anonymous_with(len, flags)
    }

    /// [`anonymous`](Self::anonymous) backed by 2 MiB pages of the
    /// hugetlb pool (`MAP_HUGETLB | MAP_HUGE_2MB`). `len` must be a
    /// multiple of 2 MiB. The kernel reserves the pages at mmap time, so
    /// without enough free pages in the pool (`/proc/sys/vm/nr_hugepages`)
    /// the call fails with ENOMEM rather than faulting later.
    pub fn anonymous_huge(len: NonZeroUsize) -> nix::Result<Self> {
        Self::anonymous_with(
            len,
            MapFlags::MAP_SHARED | MapFlags::MAP_HUGETLB | MapFlags::MAP_HUGE_2MB,
        )
    }

    fn anonymous_with(len: NonZeroUsize, flags: MapFlags) -> nix::Result<Self> {
        // SAFETY: as in `map_file`: a fresh range chosen by the kernel, owned by the Mapping.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                flags,
            )
        }?;
        Ok(Self {
            ptr: ptr.cast(),
            len: len.get(),
            writable: true,
            ram: true,
            word_count: len.get().div_ceil(size_of::<u64>()),
            read_bounds: bounds(len.get()),
            write_bounds: bounds(len.get()),
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range was mapped writable.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The start address, for handing to the kernel (e.g. `VFIO_IOMMU_MAP_DMA`).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// `mlock(2)` of the whole range: every page is faulted in (the kernel
    /// populates the range before returning) and kept resident, never
    /// swapped out. Idempotent: locking a locked range again changes
    /// nothing and is not counted twice against `RLIMIT_MEMLOCK`
    /// (`do_mlock` subtracts what is already locked). EPERM with a limit
    /// of 0 and no `CAP_IPC_LOCK`; ENOMEM past the limit (`mm/mlock.c`).
    /// A hugetlb range is populated but not marked locked
    /// (`mlock_fixup` skips such mappings): hugetlb pages are never
    /// swapped anyway.
    pub fn lock(&self) -> nix::Result<()> {
        // SAFETY: `ptr..ptr + len` is this mapping, alive for the call;
        // mlock changes no byte of it and no mapping, only how the kernel
        // keeps its pages.
        unsafe { mlock(self.ptr.cast(), self.len) }
    }

    /// Where a `T` at `offset` may be accessed: `Some` if the access lies
    /// inside the mapping and is aligned to `T`, checked once here so that
    /// the access through the returned [`At`] needs no check of its own.
    #[inline]
    pub fn at<T: Primitive>(&self, offset: u64) -> Option<At<'_, T>> {
        let offset = usize::try_from(offset).ok()?;
        self.fits::<T>(offset).then_some(At {
            map: self,
            offset,
            value: PhantomData,
        })
    }

    /// The range as atomic 64-bit words, covering at least `len` bytes.
    ///
    /// # Panics
    ///
    /// For a device mapping: MMIO is never viewed as Rust memory.
    #[inline]
    pub fn words(&self) -> &[AtomicU64] {
        assert!(self.ram, "a device mapping viewed as RAM");
        // SAFETY: the range is anonymous RAM mapped readable and writable, at
        // a page-aligned (so 8-byte aligned) address, in whole pages, so the
        // `word_count` (`len.div_ceil(8)`) words lie inside it; it stays mapped until `self`
        // drops, which the borrow outlives. The kernel zeroed it, and any
        // bits are a valid `AtomicU64`. Every CPU access to a RAM mapping
        // goes through these words (`read`, `write` and the copies use
        // nothing else), so no non-atomic or other-sized access races them;
        // a device's DMA is outside Rust's memory model.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU64>(), self.word_count)
        }
    }

    /// Reads a `T` at `offset` unless `refuse` has [`REFUSE`] set or the
    /// access does not lie inside the mapping, aligned to `T`; `None` then,
    /// without touching memory. `refuse` must be 0 or have bit 63 set.
    ///
    /// The hot path of a register read: the caller's conditions (the
    /// decode gate, say), the bounds and the alignment are one unsigned
    /// comparison (see [`bounds`]), so a device region's read is one
    /// branch and one volatile load.
    #[inline(always)]
    pub fn read_if<T: Primitive>(&self, offset: u64, refuse: u64) -> Option<T> {
        if !Self::passes::<T>(&self.read_bounds, offset, refuse) {
            return None;
        }
        // Lossless: the bound limits `offset` to `len`, a usize.
        let offset = offset as usize;
        if self.ram {
            return Some(T::load(self.words(), offset));
        }
        // SAFETY: the bound checked that the access lies inside the
        // mapping and is aligned (the mapping is page-aligned); the
        // mapping lives as long as the borrow of `self`.
        Some(unsafe { self.ptr.as_ptr().add(offset).cast::<T>().read_volatile() })
    }

    /// Writes `value` at `offset` unless `refuse` has [`REFUSE`] set, the
    /// range was mapped read-only or the access does not lie inside it,
    /// aligned to `T`: true if written, false (memory untouched)
    /// otherwise. As [`read_if`](Self::read_if), one comparison.
    #[inline(always)]
    pub fn write_if<T: Primitive>(&self, offset: u64, value: T, refuse: u64) -> bool {
        if !Self::passes::<T>(&self.write_bounds, offset, refuse) {
            return false;
        }
        // Lossless, as in `read_if`.
        let offset = offset as usize;
        if self.ram {
            value.store(self.words(), offset);
            return true;
        }
        // SAFETY: as in `read_if`; the write bounds are all 0 for a range
        // mapped read-only, so it is mapped writable and the store cannot
        // fault.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<T>()
                .write_volatile(value);
        }
        true
    }

    /// From now on [`read_if`](Self::read_if) (with `reads`) and
    /// [`write_if`](Self::write_if) (with `writes`) refuse every access,
    /// leaving it to the caller's slow path: for a mapping that is part of
    /// a sparse region, or a writable range of a read-only region. Folding
    /// this into the bounds spares the hot path a test of its own.
    pub fn close_fast_path(&mut self, reads: bool, writes: bool) {
        if reads {
            self.read_bounds = [0; 4];
        }
        if writes {
            self.write_bounds = [0; 4];
        }
    }

    /// The one comparison of [`bounds`].
    #[inline(always)]
    fn passes<T>(bounds: &[u64; 4], offset: u64, refuse: u64) -> bool {
        let k = size_of::<T>().trailing_zeros();
        // `k` is below 4 for every `Primitive`: the index is in bounds.
        let bound = bounds[k as usize];
        (offset.rotate_right(k) | refuse) < bound
    }

    #[inline]
    fn fits<T>(&self, offset: usize) -> bool {
        let size = size_of::<T>();
        offset.checked_add(size).is_some_and(|end| end <= self.len) && offset & (size - 1) == 0
    }
}

/// A `T`-sized access inside a [`Mapping`], bounds and alignment checked
/// by [`Mapping::at`]: it can only be made for that mapping, and only
/// while it is borrowed.
#[derive(Debug)]
pub struct At<'a, T> {
    map: &'a Mapping,
    offset: usize,
    value: PhantomData<T>,
}

impl<T: Primitive> At<'_, T> {
    /// One volatile load from a device region, an atomic word load from RAM.
    #[inline]
    pub fn read(self) -> T {
        let m = self.map;
        if m.ram {
            return T::load(m.words(), self.offset);
        }
        // SAFETY: `Mapping::at` checked that the access lies inside the
        // mapping and is aligned (the mapping is page-aligned); the mapping
        // lives as long as the borrow `self` holds.
        unsafe { m.ptr.as_ptr().add(self.offset).cast::<T>().read_volatile() }
    }

    /// One volatile store to a device region, an atomic store (or
    /// compare-exchange, for part of a word) to RAM.
    ///
    /// # Panics
    ///
    /// If the range was mapped read-only (callers refuse such writes with
    /// an error first).
    #[inline]
    pub fn write(self, value: T) {
        let m = self.map;
        assert!(m.writable, "write to a read-only mapping");
        if m.ram {
            return value.store(m.words(), self.offset);
        }
        // SAFETY: as in `read`, and the range is mapped writable (checked
        // just above), so the store cannot fault.
        unsafe {
            m.ptr
                .as_ptr()
                .add(self.offset)
                .cast::<T>()
                .write_volatile(value)
        }
    }
}

impl crate::LinuxRegion {
    /// Maps `len` bytes of `fd` from `offset` as a device region: shared,
    /// readable, and writable if `writable`. Accesses are checked exactly
    /// as on a BAR from [`map_region`](vfio_core::Device::map_region)
    /// (bounds, alignment; there is no device, so no decode gate to close)
    /// and each is one volatile load or store, as MMIO is reached.
    ///
    /// For a file whose mapping is device memory, such as a BAR's
    /// `resourceN` file in sysfs, and for measuring the register path a
    /// BAR takes on a file of RAM (a memfd) without a device. `len` 0 is
    /// [`ErrorKind::InvalidArgument`](vfio_core::ErrorKind::InvalidArgument);
    /// a failed mmap is its errno.
    ///
    /// # Safety
    ///
    /// Volatile accesses are not atomic. Unless the file is MMIO (whose
    /// device, not Rust, defines concurrent accesses), the caller must
    /// ensure that no two threads access the same bytes through the
    /// region at once when one of them writes, and that nothing in the
    /// process holds a Rust reference to the file's pages (another mapping
    /// read as `&[u8]`, say) while the region writes them: either is a
    /// data race, which is undefined behaviour.
    pub unsafe fn map_file(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        writable: bool,
    ) -> vfio_core::Result<Self> {
        use vfio_core::{Error, ErrorKind, Operation};
        let size = NonZeroUsize::new(len).ok_or_else(|| {
            Error::new(Operation::MapRegion, ErrorKind::InvalidArgument)
                .with_detail("a region needs at least one byte")
        })?;
        let map = Mapping::map_file(fd, offset, size, writable)
            .map_err(|e| Error::from_errno(Operation::MapRegion, e))?;
        Ok(Self::new(map, writable))
    }
}

/// A regular file mapped shared and writable, whose bytes are updated in
/// place by stores: no syscall, and what the stores write is what a
/// `read(2)` of the file sees at once (both go through the same page
/// cache pages), in other processes too.
///
/// For files that say how something stands, rewritten in place at a
/// fixed layout many times a second: vfio-mock's fake `/proc/interrupts`
/// counts each interrupt this way. It lives here because mapping a file
/// is unsafe code, which only this crate's small modules hold.
///
/// Every access is atomic, on the aligned 64-bit words of the mapping
/// (see [`vfio_core::words`]), so any number of threads (and mappings of
/// the same file) may read and write at once. The mapping covers the
/// file as it was when mapped: a file grown later is not seen past that
/// length, and one truncated by someone else under the mapping makes an
/// access to the cut pages raise SIGBUS, as with any shared file mapping.
#[derive(Debug)]
pub struct SharedFileMap {
    map: Mapping,
}

impl SharedFileMap {
    /// Maps all of `file`, which must be open for reading and writing.
    /// An empty file is EINVAL (mmap cannot map 0 bytes); a file opened
    /// read-only is EACCES, from mmap.
    pub fn new(file: &std::fs::File) -> std::io::Result<Self> {
        use std::os::fd::AsFd;
        let len = usize::try_from(file.metadata()?.len())
            .ok()
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| std::io::Error::from(nix::errno::Errno::EINVAL))?;
        let mut map = Mapping::map_file(file.as_fd(), 0, len, true)?;
        // File pages are memory, shared like anonymous RAM: atomic words.
        map.ram = true;
        map.close_fast_path(true, true);
        Ok(Self { map })
    }

    /// Length in bytes: the file's, when it was mapped.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false: an empty file is not mapped.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes `bytes` at `offset`: true, or false (nothing written) if
    /// they do not lie inside the mapping.
    pub fn write_at(&self, offset: usize, bytes: &[u8]) -> bool {
        if !self.fits(offset, bytes.len()) {
            return false;
        }
        vfio_core::words::write(self.map.words(), offset, bytes, Ordering::Relaxed);
        true
    }

    /// Reads `buf.len()` bytes at `offset`: true, or false (`buf` left as
    /// it was) if they do not lie inside the mapping.
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> bool {
        if !self.fits(offset, buf.len()) {
            return false;
        }
        vfio_core::words::read(self.map.words(), offset, buf, Ordering::Relaxed);
        true
    }

    fn fits(&self, offset: usize, len: usize) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing else
        // unmaps them; no reference into the range can outlive `self`.
        // A failure here cannot be reported from drop and leaves only a leak.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::words;

    #[test]
    fn anonymous_mapping_is_zeroed_and_round_trips_every_width() {
        let m = Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap();
        assert_eq!(m.at::<u64>(4088).unwrap().read(), 0);
        m.at::<u8>(1).unwrap().write(0xab);
        m.at::<u16>(2).unwrap().write(0xbeef);
        m.at::<u32>(4).unwrap().write(0x1234_5678);
        m.at::<u64>(8).unwrap().write(0x0102_0304_0506_0708);
        assert_eq!(m.at::<u8>(1).unwrap().read(), 0xab);
        assert_eq!(m.at::<u16>(2).unwrap().read(), 0xbeef);
        assert_eq!(m.at::<u32>(4).unwrap().read(), 0x1234_5678);
        assert_eq!(m.at::<u64>(8).unwrap().read(), 0x0102_0304_0506_0708);
        let mut buf = [0u8; 4];
        words::read(m.words(), 4, &mut buf, Ordering::Relaxed);
        assert_eq!(buf, 0x1234_5678u32.to_le_bytes());
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot mmap a file")]
    #[should_panic(expected = "write to a read-only mapping")]
    fn a_write_to_a_read_only_mapping_panics_instead_of_faulting() {
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let m = Mapping::map_file(
            std::os::fd::AsFd::as_fd(&zero),
            0,
            NonZeroUsize::new(4096).unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(m.at::<u64>(0).unwrap().read(), 0);
        m.at::<u32>(0).unwrap().write(1);
    }

    /// Two threads copying into and out of one page of RAM through `&self`
    /// at once (what a driver thread and a completion thread do with DMA
    /// memory), with ranges that share words: every access is atomic, and
    /// no byte of one writer is lost to the other.
    #[test]
    fn two_threads_hammering_one_page_of_ram() {
        let m = std::sync::Arc::new(Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap());
        let threads: Vec<_> = [(0usize, 0x11u8), (1, 0x22)]
            .into_iter()
            .map(|(lane, v)| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 13];
                    for _ in 0..if cfg!(miri) { 4 } else { 2000 } {
                        // 13-byte runs at odd offsets: unaligned heads and
                        // tails, whole words in between, words shared with
                        // the other lane's runs.
                        for run in (lane..100).step_by(2) {
                            words::write(m.words(), 1 + run * 13, &[v; 13], Ordering::Relaxed);
                        }
                        words::read(m.words(), 1 + lane * 13, &mut buf, Ordering::Relaxed);
                        assert_eq!(buf, [v; 13]);
                        m.at::<u16>(4094).unwrap().write(0xbeef);
                        let _ = m.at::<u32>(4092).unwrap().read();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut all = [0u8; 1 + 100 * 13];
        words::read(m.words(), 0, &mut all, Ordering::Relaxed);
        assert_eq!(all[0], 0);
        for (i, b) in all[1..].iter().enumerate() {
            assert_eq!(
                *b,
                if (i / 13) % 2 == 0 { 0x11 } else { 0x22 },
                "byte {}",
                i + 1
            );
        }
        assert_eq!(m.at::<u16>(4094).unwrap().read(), 0xbeef);
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot mmap a file")]
    #[should_panic(expected = "a device mapping viewed as RAM")]
    fn a_device_mapping_is_never_viewed_as_atomic_words() {
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let m = Mapping::map_file(
            std::os::fd::AsFd::as_fd(&zero),
            0,
            NonZeroUsize::new(4096).unwrap(),
            false,
        )
        .unwrap();
        let _ = m.words();
    }

    #[test]
    fn an_access_past_the_end_or_misaligned_is_refused_before_touching_memory() {
        let m = Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap();
        assert!(m.at::<u32>(4094).is_none());
        assert!(m.at::<u32>(4096).is_none());
        assert!(m.at::<u16>(1).is_none());
        assert!(m.at::<u64>(u64::MAX - 3).is_none());
        assert!(m.at::<u32>(4092).is_some());
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri cannot mmap a file")]
    fn a_shared_file_map_writes_what_read_sees_and_refuses_past_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counts");
        std::fs::write(&path, "irq 24:          0 end\n").unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let m = SharedFileMap::new(&file).unwrap();
        assert_eq!(m.len(), 23);
        assert!(m.write_at(8, b"        42"));
        // No syscall wrote it, yet a read of the file sees it.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "irq 24:         42 end\n"
        );
        let mut buf = [0u8; 3];
        assert!(m.read_at(19, &mut buf));
        assert_eq!(&buf, b"end");
        assert!(!m.write_at(21, b"xyz"));
        assert!(!m.write_at(usize::MAX, b"x"));
        assert!(!m.read_at(23, &mut buf));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 23);

        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&empty)
            .unwrap();
        assert_eq!(
            SharedFileMap::new(&f).unwrap_err().raw_os_error(),
            Some(nix::libc::EINVAL)
        );
        let ro = std::fs::File::open(&path).unwrap();
        assert_eq!(
            SharedFileMap::new(&ro).unwrap_err().raw_os_error(),
            Some(nix::libc::EACCES)
        );
    }
}
