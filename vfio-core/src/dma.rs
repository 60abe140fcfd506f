//! Memory a device reaches by DMA, as the CPU sees it: atomic, typed,
//! bounds- and alignment-checked access, bulk copies, and the barriers a
//! ring-based driver places around its doorbell writes and completion
//! reads.

use crate::access::{check_range, check_register_access};
use crate::error::{Operation, Result};
use crate::words;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The huge page size [`HugePages`] asks for: 2 MiB, the x86-64 and
/// 4 KiB-granule arm64 PMD size.
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// What pages DMA memory is allocated with
/// ([`VfioBackend::alloc_dma_with`](crate::VfioBackend::alloc_dma_with)).
/// [`DmaMemory::page_size`] says what was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum HugePages {
    /// The system's base pages (4 KiB on x86-64).
    #[default]
    Never,
    /// [`HUGE_PAGE_SIZE`] pages from the host's reserved hugetlb pool if it
    /// has enough free, else base pages. The size is rounded up to a whole
    /// number of the pages given.
    Prefer,
    /// [`HUGE_PAGE_SIZE`] pages, or [`ErrorKind::NoSpace`](crate::ErrorKind::NoSpace)
    /// (ENOMEM) when the host's hugetlb pool cannot supply them.
    Require,
}

/// Memory a device may read and write by DMA once mapped into a container.
///
/// The device (and any other thread) may change it at any time, so the CPU
/// side never lends out a plain slice or reference to its bytes: everything
/// is an atomic access to the aligned 64-bit words of [`words`](Self::words),
/// which Rust's memory model allows to race with other atomic accesses of
/// the same size, and a device's DMA, outside that model, cannot make
/// undefined. Multi-byte values are little-endian, as a PCI device sees
/// memory.
///
/// # Ordering
///
/// The plain accessors ([`read_at`](Self::read_at), [`read_u32`](Self::read_u32),
/// [`write_obj`](Self::write_obj), ...) order nothing. A ring-based driver
/// states the order with the barriers, named after the Linux ones whose
/// guarantees they give (`Documentation/memory-barriers.txt`):
///
/// - fill a descriptor, then [`dma_wmb`](Self::dma_wmb), then set its
///   valid bit or phase tag (or use [`store_release_u32`](Self::store_release_u32),
///   which does both): the device never sees the tag before the descriptor;
/// - [`wmb`](Self::wmb), then write the doorbell register: the device never
///   sees the doorbell before the descriptors written to memory before it;
/// - read a completion's done bit or phase tag with
///   [`load_acquire_u32`](Self::load_acquire_u32) (or a plain read followed
///   by [`dma_rmb`](Self::dma_rmb)) before reading what the device wrote
///   with it;
/// - after reading a device register that says DMA has finished,
///   [`rmb`](Self::rmb) before reading the memory it wrote.
///
/// Each barrier is also a Rust fence (`Release` for the write barriers,
/// `Acquire` for the read barriers), so the same code orders accesses for
/// another thread of the driver, and for a simulated device's thread.
pub trait DmaMemory: Send + Sync + Debug {
    /// Length in bytes (a whole number of [`page_size`](Self::page_size) pages).
    fn len(&self) -> usize;

    /// True when the buffer has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The size of the pages backing the memory: the host's base page
    /// size, or [`HUGE_PAGE_SIZE`] when huge pages were asked for and given.
    fn page_size(&self) -> usize;

    /// The physical address of byte `offset`, which a device is given in
    /// no-IOMMU mode, where nothing translates its DMA. Contiguous only
    /// within one [`page_size`](Self::page_size) page. vfio-linux locks
    /// the memory at the first call (`mlock`: faulted in, never swapped
    /// out; its size counts against `RLIMIT_MEMLOCK`), which does not stop
    /// Linux from migrating base pages to other frames (compaction, NUMA
    /// balancing, memory hot-remove): nothing in no-IOMMU mode guarantees
    /// the address holds, and hugetlb pages ([`HugePages::Require`]), which
    /// compaction leaves in place, are the sturdier choice. It reads the
    /// address from `/proc/self/pagemap`, which shows
    /// page frame numbers only to a process with `CAP_SYS_ADMIN`
    /// ([`ErrorKind::PermissionDenied`](crate::ErrorKind::PermissionDenied)
    /// naming that privilege otherwise); the mock gives the simulated
    /// host's physical addresses. Past the end is
    /// [`ErrorKind::OutOfRange`](crate::ErrorKind::OutOfRange).
    fn physical_address(&self, offset: usize) -> Result<u64>;

    /// The memory as atomic 64-bit words, `len() / 8` of them: word `i`
    /// holds bytes `8 * i..8 * i + 8`, in memory order. Every CPU access of
    /// this trait goes through these words; a caller may use them directly
    /// too, but only as whole words, as everything else does.
    fn words(&self) -> &[AtomicU64];

    /// Copies `buf.len()` bytes at `offset` out of the buffer: one atomic
    /// load per word, so an 8-byte-aligned `u64` in the range is read
    /// untorn. Past the end is [`ErrorKind::OutOfRange`](crate::ErrorKind::OutOfRange)
    /// with no errno.
    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        let words = self.words();
        check_range(
            Operation::DmaAccess,
            bytes_of(words),
            offset as u64,
            buf.len() as u64,
        )?;
        words::read(words, offset, buf, Ordering::Relaxed);
        Ok(())
    }

    /// Copies `data` into the buffer at `offset`: whole words stored, the
    /// partial words at the ends compare-exchanged so their other bytes are
    /// left as they are. Past the end is [`ErrorKind::OutOfRange`](crate::ErrorKind::OutOfRange).
    fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        let words = self.words();
        check_range(
            Operation::DmaAccess,
            bytes_of(words),
            offset as u64,
            data.len() as u64,
        )?;
        words::write(words, offset, data, Ordering::Relaxed);
        Ok(())
    }

    /// Reads a byte.
    #[inline]
    fn read_u8(&self, offset: usize) -> Result<u8> {
        load::<1>(self.words(), offset).map(u8::from_le_bytes)
    }
    /// Reads a naturally aligned little-endian `u16`.
    #[inline]
    fn read_u16(&self, offset: usize) -> Result<u16> {
        load::<2>(self.words(), offset).map(u16::from_le_bytes)
    }
    /// Reads a naturally aligned little-endian `u32`.
    #[inline]
    fn read_u32(&self, offset: usize) -> Result<u32> {
        load::<4>(self.words(), offset).map(u32::from_le_bytes)
    }
    /// Reads a naturally aligned little-endian `u64`: one atomic load.
    #[inline]
    fn read_u64(&self, offset: usize) -> Result<u64> {
        load::<8>(self.words(), offset).map(u64::from_le_bytes)
    }
    /// Writes a byte.
    #[inline]
    fn write_u8(&self, offset: usize, value: u8) -> Result<()> {
        store(self.words(), offset, value.to_le_bytes())
    }
    /// Writes a naturally aligned little-endian `u16`.
    #[inline]
    fn write_u16(&self, offset: usize, value: u16) -> Result<()> {
        store(self.words(), offset, value.to_le_bytes())
    }
    /// Writes a naturally aligned little-endian `u32`.
    #[inline]
    fn write_u32(&self, offset: usize, value: u32) -> Result<()> {
        store(self.words(), offset, value.to_le_bytes())
    }
    /// Writes a naturally aligned little-endian `u64`: one atomic store.
    #[inline]
    fn write_u64(&self, offset: usize, value: u64) -> Result<()> {
        store(self.words(), offset, value.to_le_bytes())
    }

    /// Reads a naturally aligned `u32` (a done bit, a phase tag), then
    /// [`dma_rmb`](Self::dma_rmb): no later read of this memory returns
    /// data older than what the device (or thread) wrote before the value
    /// read. At least as strong as a Rust `Acquire` load.
    #[inline]
    fn load_acquire_u32(&self, offset: usize) -> Result<u32> {
        let value = self.read_u32(offset)?;
        self.dma_rmb();
        Ok(value)
    }
    /// [`load_acquire_u32`](Self::load_acquire_u32) for a `u64`.
    #[inline]
    fn load_acquire_u64(&self, offset: usize) -> Result<u64> {
        let value = self.read_u64(offset)?;
        self.dma_rmb();
        Ok(value)
    }
    /// [`dma_mb`](Self::dma_mb), then writes a naturally aligned `u32` (a
    /// valid bit, a phase tag): a device (or thread) that sees the value
    /// sees every earlier write to this memory, and no earlier read returns
    /// data written after it. At least as strong as a Rust `Release` store.
    /// A misaligned or out-of-range offset is refused before the barrier.
    #[inline]
    fn store_release_u32(&self, offset: usize, value: u32) -> Result<()> {
        check_access(self.words(), offset, 4)?;
        self.dma_mb();
        self.write_u32(offset, value)
    }
    /// [`store_release_u32`](Self::store_release_u32) for a `u64`.
    #[inline]
    fn store_release_u64(&self, offset: usize, value: u64) -> Result<()> {
        check_access(self.words(), offset, 8)?;
        self.dma_mb();
        self.write_u64(offset, value)
    }

    /// Copies a `T` (a descriptor, a completion entry) out of the buffer at
    /// `offset`, as [`read_at`](Self::read_at) copies bytes: any offset
    /// whose bytes lie inside the buffer, each aligned 8-byte word read
    /// once.
    fn read_obj<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T>
    where
        Self: Sized,
    {
        let mut value = T::new_zeroed();
        self.read_at(offset, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Copies `value` into the buffer at `offset`, as
    /// [`write_at`](Self::write_at) does.
    fn write_obj<T: IntoBytes + Immutable>(&self, offset: usize, value: &T) -> Result<()>
    where
        Self: Sized,
    {
        self.write_at(offset, value.as_bytes())
    }

    /// Linux's `dma_wmb()`: this thread's earlier stores to DMA memory are
    /// seen by devices (and, as a Rust `Release` fence, by other threads)
    /// before its later stores to DMA memory. Orders nothing against MMIO.
    fn dma_wmb(&self);

    /// Linux's `dma_rmb()`: this thread's earlier loads from DMA memory are
    /// done before its later loads from (and stores to) DMA memory; a Rust
    /// `Acquire` fence too. Orders nothing against MMIO.
    fn dma_rmb(&self);

    /// Linux's `dma_mb()`: this thread's earlier loads and stores of DMA
    /// memory before its later stores to it; a Rust `AcqRel` fence too.
    fn dma_mb(&self);

    /// Before a doorbell: this thread's earlier stores to DMA memory are
    /// seen by devices before its later stores to device registers (MMIO),
    /// the ordering Linux's `writel()` gives its store and `wmb()`
    /// guarantees; a Rust `Release` fence too.
    fn wmb(&self);

    /// After a device register says DMA is done: this thread's earlier
    /// loads from device registers are done before its later loads from
    /// DMA memory, the ordering Linux's `readl()` gives its load and
    /// `rmb()` guarantees; a Rust `Acquire` fence too.
    fn rmb(&self);
}

/// The `N` bytes (a power of two of at most 8) at `offset` of `words`,
/// checked and loaded in one access.
///
/// An offset aligned to `N` never straddles two words, so it is in bounds
/// exactly when its word exists: the hot path is one alignment test, one
/// index check and the load. Anything else gets the error
/// [`check_access`] gives, built out of line.
#[inline]
fn load<const N: usize>(words: &[AtomicU64], offset: usize) -> Result<[u8; N]> {
    match words.get(offset / words::WORD) {
        Some(w) if offset % N == 0 => {
            let shift = (offset % words::WORD) * 8;
            let value = u64::from_le_bytes(w.load(Ordering::Relaxed).to_ne_bytes()) >> shift;
            let mut out = [0; N];
            out.copy_from_slice(&value.to_le_bytes()[..N]);
            Ok(out)
        }
        _ => Err(refused(words, offset, N)),
    }
}

/// Stores `value` at `offset` of `words`, checked as [`load`] checks: one
/// store for a whole word, else one compare-exchange loop that leaves the
/// word's other bytes as they are.
#[inline]
fn store<const N: usize>(words: &[AtomicU64], offset: usize, value: [u8; N]) -> Result<()> {
    match words.get(offset / words::WORD) {
        Some(w) if offset % N == 0 => {
            if N == words::WORD {
                let mut bytes = [0; words::WORD];
                bytes.copy_from_slice(&value);
                w.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
            } else {
                words::store(words, offset, value, Ordering::Relaxed);
            }
            Ok(())
        }
        _ => Err(refused(words, offset, N)),
    }
}

/// The error for a typed access [`load`] or [`store`] refused.
#[cold]
#[inline(never)]
fn refused(words: &[AtomicU64], offset: usize, width: usize) -> crate::Error {
    match check_access(words, offset, width) {
        Err(e) => e,
        // Unreachable: an aligned access whose word exists is accepted.
        Ok(_) => crate::Error::new(Operation::DmaAccess, crate::ErrorKind::OutOfRange),
    }
}

/// The byte length `words` covers.
#[inline]
fn bytes_of(words: &[AtomicU64]) -> u64 {
    (words.len() as u64).saturating_mul(words::WORD as u64)
}

/// A `width`-byte typed access at `offset`: in bounds, then naturally
/// aligned, as a register access is; the errors carry no errno (no kernel
/// call is involved).
#[inline]
fn check_access(words: &[AtomicU64], offset: usize, width: usize) -> Result<usize> {
    check_register_access(
        Operation::DmaAccess,
        bytes_of(words),
        offset as u64,
        width as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use std::sync::Arc;
    use std::sync::atomic::fence;
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    /// DMA memory over plain atomic words, with the barriers as Rust fences
    /// (as the mock has them): the provided methods under test, and what
    /// Miri can run.
    #[derive(Debug)]
    struct Words(Box<[AtomicU64]>);

    impl Words {
        fn new(len: usize) -> Self {
            Self((0..len / 8).map(|_| AtomicU64::new(0)).collect())
        }
    }

    impl DmaMemory for Words {
        fn len(&self) -> usize {
            self.0.len() * 8
        }
        fn page_size(&self) -> usize {
            4096
        }
        fn physical_address(&self, offset: usize) -> Result<u64> {
            Ok(0x1_0000_0000 + offset as u64)
        }
        fn words(&self) -> &[AtomicU64] {
            &self.0
        }
        fn dma_wmb(&self) {
            fence(Ordering::Release);
        }
        fn dma_rmb(&self) {
            fence(Ordering::Acquire);
        }
        fn dma_mb(&self) {
            fence(Ordering::AcqRel);
        }
        fn wmb(&self) {
            fence(Ordering::Release);
        }
        fn rmb(&self) {
            fence(Ordering::Acquire);
        }
    }

    /// A descriptor as a ring-based device reads it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    #[repr(C)]
    struct Descriptor {
        address: u64,
        length: u32,
        flags: u16,
        id: u16,
    }

    #[test]
    fn typed_access_is_little_endian_and_touches_only_its_bytes() {
        let m = Words::new(64);
        m.write_u64(8, 0x0102_0304_0506_0708).unwrap();
        m.write_u16(10, 0xbeef).unwrap();
        m.write_u8(15, 0xaa).unwrap();
        m.write_u32(16, 0xdead_beef).unwrap();
        assert_eq!(m.read_u64(8).unwrap(), 0xaa02_0304_beef_0708);
        assert_eq!(m.read_u32(12).unwrap(), 0xaa02_0304);
        assert_eq!(m.read_u16(10).unwrap(), 0xbeef);
        assert_eq!(m.read_u8(15).unwrap(), 0xaa);
        let mut bytes = [0u8; 8];
        m.read_at(16, &mut bytes).unwrap();
        assert_eq!(bytes, [0xef, 0xbe, 0xad, 0xde, 0, 0, 0, 0]);
        m.store_release_u32(20, 7).unwrap();
        assert_eq!(m.load_acquire_u32(20).unwrap(), 7);
        m.store_release_u64(24, u64::MAX).unwrap();
        assert_eq!(m.load_acquire_u64(24).unwrap(), u64::MAX);
        assert_eq!(m.read_u32(16).unwrap(), 0xdead_beef);
    }

    #[test]
    fn misaligned_typed_access_is_misaligned_with_no_errno() {
        let m = Words::new(64);
        for e in [
            m.read_u16(1).unwrap_err(),
            m.read_u32(2).unwrap_err(),
            m.read_u64(4).unwrap_err(),
            m.write_u16(3, 0).unwrap_err(),
            m.write_u32(6, 0).unwrap_err(),
            m.write_u64(12, 0).unwrap_err(),
            m.load_acquire_u32(1).unwrap_err(),
            m.load_acquire_u64(2).unwrap_err(),
            m.store_release_u32(5, 0).unwrap_err(),
            m.store_release_u64(9, 0).unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::Misaligned, "{e}");
            assert_eq!(e.errno(), None);
            assert_eq!(e.operation(), Operation::DmaAccess);
        }
        assert_eq!(m.read_u64(0).unwrap(), 0, "nothing was written");
    }

    #[test]
    fn access_past_the_end_is_out_of_range_even_when_misaligned() {
        let m = Words::new(64);
        for e in [
            m.read_u8(64).unwrap_err(),
            m.read_u64(64).unwrap_err(),
            m.read_u32(62).unwrap_err(),
            m.write_u64(usize::MAX - 3, 0).unwrap_err(),
            m.store_release_u32(usize::MAX, 0).unwrap_err(),
            m.load_acquire_u64(usize::MAX - 7).unwrap_err(),
            m.read_at(60, &mut [0; 5]).unwrap_err(),
            m.write_at(usize::MAX, b"x").unwrap_err(),
            m.read_obj::<Descriptor>(56).unwrap_err(),
            m.write_obj(usize::MAX - 8, &0u64).unwrap_err(),
        ] {
            assert_eq!(e.kind(), ErrorKind::OutOfRange, "{e}");
            assert_eq!(e.errno(), None);
        }
        m.read_at(64, &mut []).unwrap();
    }

    #[test]
    fn objects_round_trip_at_any_offset() {
        let m = Words::new(128);
        let d = Descriptor {
            address: 0x1234_5678_9abc_def0,
            length: 4096,
            flags: 0x8001,
            id: 7,
        };
        for offset in [0, 8, 3, 111] {
            m.write_obj(offset, &d).unwrap();
            assert_eq!(m.read_obj::<Descriptor>(offset).unwrap(), d);
        }
        m.write_obj(0, &d).unwrap();
        assert_eq!(m.read_u64(0).unwrap(), d.address);
        assert_eq!(m.read_u32(8).unwrap(), 4096);
        assert_eq!(m.read_u16(12).unwrap(), 0x8001);
        assert_eq!(m.read_obj::<[u8; 2]>(14).unwrap(), 7u16.to_le_bytes());
    }

    #[test]
    fn the_trait_is_usable_as_an_object() {
        let m = Words::new(16);
        let dynamic: &dyn DmaMemory = &m;
        dynamic.write_u32(4, 9).unwrap();
        assert_eq!(dynamic.load_acquire_u32(4).unwrap(), 9);
        dynamic.wmb();
        assert_eq!(dynamic.len(), 16);
    }

    /// A producer fills descriptors and publishes each with a release store
    /// of its sequence number; a consumer polls with acquire loads and
    /// must see each descriptor whole. Miri checks it for data races.
    #[test]
    fn a_release_store_publishes_what_was_written_before_it() {
        const SLOTS: usize = 4;
        let rounds: u32 = if cfg!(miri) { 8 } else { 1000 };
        let m = Arc::new(Words::new(SLOTS * 32));
        let producer = {
            let m = m.clone();
            std::thread::spawn(move || {
                for seq in 1..=rounds {
                    let slot = (seq as usize % SLOTS) * 32;
                    // Wait for the consumer to free the slot (sequence 0).
                    while m.load_acquire_u32(slot + 16).unwrap() != 0 {
                        std::thread::yield_now();
                    }
                    let d = Descriptor {
                        address: u64::from(seq) << 12,
                        length: seq,
                        flags: seq as u16,
                        id: !(seq as u16),
                    };
                    m.write_obj(slot, &d).unwrap();
                    m.store_release_u32(slot + 16, seq).unwrap();
                }
            })
        };
        for seq in 1..=rounds {
            let slot = (seq as usize % SLOTS) * 32;
            while m.load_acquire_u32(slot + 16).unwrap() != seq {
                std::thread::yield_now();
            }
            let d: Descriptor = m.read_obj(slot).unwrap();
            assert_eq!((d.address, d.length), (u64::from(seq) << 12, seq));
            assert_eq!((d.flags, d.id), (seq as u16, !(seq as u16)));
            m.store_release_u32(slot + 16, 0).unwrap();
        }
        producer.join().unwrap();
    }
}
