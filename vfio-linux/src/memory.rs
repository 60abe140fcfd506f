//! Mapped device regions and DMA buffers, as the vfio-core traits see them.

use crate::decode::MemoryDecode;
use crate::mmap::{Mapping, Primitive};
use std::num::NonZeroUsize;
use vfio_core::access::{check_range, check_register_access};
use vfio_core::{DmaMemory, Error, ErrorKind, MappedRegion, Operation, Result};

/// A device region mapped with mmap: register access is one bounds check and
/// one volatile load or store (for [`anonymous`](Self::anonymous) regions,
/// an atomic one).
#[derive(Debug)]
pub struct LinuxRegion {
    map: Mapping,
    writable: bool,
    /// Memory decode of the device the BAR was mapped from (none for an
    /// anonymous region): access is refused with EIO while it is off.
    decode: Option<MemoryDecode>,
}

impl LinuxRegion {
    /// A region over `map`, writable if both the region allows it and the
    /// range was mapped writable.
    pub(crate) fn new(map: Mapping, writable: bool) -> Self {
        let writable = writable && map.writable();
        Self {
            map,
            writable,
            decode: None,
        }
    }

    /// The region refuses access while `decode` is off (see `decode.rs`).
    pub(crate) fn gated_by(mut self, decode: MemoryDecode) -> Self {
        self.decode = Some(decode);
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

    #[inline]
    fn read<T: Primitive>(&self, offset: u64) -> Result<T> {
        let at = check_register_access(
            Operation::RegisterRead,
            self.map.len() as u64,
            offset,
            size_of::<T>() as u64,
        )?;
        if let Some(decode) = &self.decode {
            decode.check(Operation::RegisterRead)?;
        }
        Ok(self.map.read(at))
    }

    #[inline]
    fn write<T: Primitive>(&self, offset: u64, value: T) -> Result<()> {
        let at = check_register_access(
            Operation::RegisterWrite,
            self.map.len() as u64,
            offset,
            size_of::<T>() as u64,
        )?;
        if !self.writable {
            return Err(
                Error::new(Operation::RegisterWrite, ErrorKind::PermissionDenied)
                    .with_detail("the region was mapped read-only"),
            );
        }
        if let Some(decode) = &self.decode {
            decode.check(Operation::RegisterWrite)?;
        }
        self.map.write(at, value);
        Ok(())
    }
}

impl MappedRegion for LinuxRegion {
    fn len(&self) -> u64 {
        self.map.len() as u64
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

/// Anonymous shared memory for DMA, page-granular.
///
/// [`read_at`](DmaMemory::read_at) and [`write_at`](DmaMemory::write_at)
/// may run on any number of threads at once, and while devices access the
/// memory: they copy with atomic `Relaxed` accesses to aligned 64-bit words
/// (whole words in the middle of a range, compare-exchanges for the partial
/// words at its ends), so the copies never race. They order nothing: fence
/// as Linux's `dma_wmb()`/`dma_rmb()` do where the device must see (or has
/// written) the data before a doorbell or after a completion.
#[derive(Debug)]
pub struct LinuxDmaMemory {
    map: Mapping,
}

impl LinuxDmaMemory {
    pub(crate) fn alloc(size: usize) -> Result<Self> {
        let page = page_size();
        let len = size
            .checked_next_multiple_of(page)
            .and_then(NonZeroUsize::new)
            .ok_or_else(|| {
                Error::new(Operation::AllocDma, ErrorKind::InvalidArgument)
                    .with_detail(format_args!("cannot allocate {size} bytes of DMA memory"))
            })?;
        let map = Mapping::anonymous(len).map_err(|e| Error::from_errno(Operation::AllocDma, e))?;
        Ok(Self { map })
    }

    /// The process address of the buffer, as handed to `VFIO_IOMMU_MAP_DMA`.
    pub(crate) fn addr(&self) -> usize {
        self.map.addr()
    }
}

impl DmaMemory for LinuxDmaMemory {
    fn len(&self) -> usize {
        self.map.len()
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        check_range(
            Operation::DmaAccess,
            self.map.len() as u64,
            offset as u64,
            buf.len() as u64,
        )?;
        self.map.copy_out(offset, buf);
        Ok(())
    }

    fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        check_range(
            Operation::DmaAccess,
            self.map.len() as u64,
            offset as u64,
            data.len() as u64,
        )?;
        self.map.copy_in(offset, data);
        Ok(())
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

    #[test]
    fn dma_memory_rounds_up_to_a_page_and_checks_bounds() {
        let m = LinuxDmaMemory::alloc(100).unwrap();
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
    #[cfg_attr(miri, ignore = "Miri does not support MAP_SHARED mmap")]
    fn dma_memory_is_shared_by_two_threads_without_losing_bytes() {
        let m = std::sync::Arc::new(LinuxDmaMemory::alloc(4096).unwrap());
        let threads: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|lane| {
                let m = m.clone();
                std::thread::spawn(move || {
                    let mut back = [0u8; 12];
                    for round in 0..500u32 {
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
            assert_eq!(rec[..4], 499u32.to_le_bytes());
            assert_eq!(rec[4..8], (record as u32).to_le_bytes());
        }
    }

    #[test]
    fn zero_sized_dma_memory_is_invalid() {
        assert_eq!(
            LinuxDmaMemory::alloc(0).unwrap_err().kind(),
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
}
