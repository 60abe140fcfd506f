//! DMA-able memory: a page-granular buffer the CPU copies in and out of and
//! devices reach through the mock IOMMU.

use crate::fault::Faults;
use nix::errno::Errno;
use parking_lot::Mutex;
use std::sync::Arc;
use vfio_core::access::check_range;
use vfio_core::{DmaMemory, Error, ErrorKind, Operation, Result};

/// The page size of the simulated host.
pub(crate) const PAGE_SIZE: usize = 4096;

/// The bytes behind a [`MockDmaMemory`]; a DMA mapping keeps them alive
/// (the kernel pins the pages) even after the memory handle is dropped.
#[derive(Debug)]
pub(crate) struct DmaBuffer {
    bytes: Mutex<Box<[u8]>>,
}

impl DmaBuffer {
    pub(crate) fn len(&self) -> usize {
        self.bytes.lock().len()
    }

    /// Copies out `buf.len()` bytes at `offset`; false if out of range.
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        let bytes = self.bytes.lock();
        match offset
            .checked_add(buf.len())
            .and_then(|end| bytes.get(offset..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }

    /// Copies `data` in at `offset`; false if out of range.
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> bool {
        let mut bytes = self.bytes.lock();
        match offset
            .checked_add(data.len())
            .and_then(|end| bytes.get_mut(offset..end))
        {
            Some(dst) => {
                dst.copy_from_slice(data);
                true
            }
            None => false,
        }
    }
}

/// Zeroed memory for DMA, from [`VfioBackend::alloc_dma`](vfio_core::VfioBackend::alloc_dma).
#[derive(Debug)]
pub struct MockDmaMemory {
    pub(crate) buffer: Arc<DmaBuffer>,
    faults: Arc<Faults>,
}

impl MockDmaMemory {
    /// `size` bytes rounded up to a page; zero is invalid, as on vfio-linux.
    /// A size the process cannot allocate is ENOMEM (as a failed mmap is on
    /// vfio-linux), never an abort.
    pub(crate) fn alloc(size: usize, faults: Arc<Faults>) -> Result<Self> {
        if let Some(errno) = faults.take(Operation::AllocDma) {
            return Err(Error::from_errno(Operation::AllocDma, errno));
        }
        let len = size
            .checked_next_multiple_of(PAGE_SIZE)
            .filter(|&l| l != 0)
            .ok_or_else(|| {
                Error::new(Operation::AllocDma, ErrorKind::InvalidArgument)
                    .with_detail(format_args!("cannot allocate {size} bytes of DMA memory"))
            })?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).map_err(|_| {
            Error::from_errno(Operation::AllocDma, Errno::ENOMEM)
                .with_detail(format_args!("cannot allocate {len} bytes of DMA memory"))
        })?;
        bytes.resize(len, 0);
        Ok(Self {
            buffer: Arc::new(DmaBuffer {
                bytes: Mutex::new(bytes.into_boxed_slice()),
            }),
            faults,
        })
    }

    fn check(&self, offset: usize, len: usize) -> Result<()> {
        if let Some(errno) = self.faults.take(Operation::DmaAccess) {
            return Err(Error::from_errno(Operation::DmaAccess, errno));
        }
        check_range(
            Operation::DmaAccess,
            self.len() as u64,
            offset as u64,
            len as u64,
        )
    }
}

impl DmaMemory for MockDmaMemory {
    fn len(&self) -> usize {
        self.buffer.len()
    }

    fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len())?;
        if !self.buffer.read(offset, buf) {
            return Err(Error::new(Operation::DmaAccess, ErrorKind::OutOfRange));
        }
        Ok(())
    }

    fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        if !self.buffer.write(offset, data) {
            return Err(Error::new(Operation::DmaAccess, ErrorKind::OutOfRange));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    /// through `&self`: the lock serializes the copies, so no byte is lost
    /// or torn (and Miri finds no race).
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
