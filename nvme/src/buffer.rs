//! DMA memory the driver hands to the controller: data buffers, queues and
//! PRP list pages, each mapped at an IOVA the driver's [`IovaAllocator`]
//! chose, with an unmapped guard page after it; in no-IOMMU mode, given to
//! the controller at the physical address of each page.

use crate::error::{NvmeError, Result};
use std::sync::Arc;
use vfio_core::{DmaFlags, DmaMapping, DmaMemory, DmaSpace, IovaAllocator, VfioBackend};

/// The IOMMU context the driver maps its memory in: a container, an IOAS,
/// or [`vfio_core::open::DmaContext`], shared by every buffer.
pub type Dma<B> = Arc<dyn DmaSpace<B>>;

/// The memory page size the driver configures (CC.MPS = 0).
pub const PAGE_SIZE: usize = 4096;

/// DMA memory mapped for the controller: allocated from the backend,
/// mapped read-write at an IOVA from the driver's allocator, unmapped (and
/// the IOVA range freed) when dropped. The device address of each page is
/// looked up once, when the buffer is made: the IOVA, or in no-IOMMU mode
/// the page's physical address, so pages need not be contiguous.
///
/// Data buffers come from [`Nvme::alloc_buffer`](crate::Nvme::alloc_buffer);
/// the CPU side is [`memory`](Self::memory), atomic like all DMA memory.
#[derive(Debug)]
pub struct DmaBuffer<B: VfioBackend> {
    mapping: DmaMapping<B, Dma<B>, Arc<B::DmaMemory>>,
    len: usize,
    /// The device address of each page.
    pages: Vec<u64>,
}

impl<B: VfioBackend> DmaBuffer<B> {
    /// Allocates `len` bytes (rounded up to whole pages) and maps them at an
    /// IOVA from `iovas`.
    pub(crate) fn new(
        backend: &B,
        dma: &Dma<B>,
        iovas: &IovaAllocator,
        len: usize,
    ) -> Result<Self> {
        if len == 0 {
            return Err(NvmeError::InvalidRequest("a DMA buffer of 0 bytes".into()));
        }
        let size = len
            .checked_next_multiple_of(PAGE_SIZE)
            .ok_or_else(|| NvmeError::InvalidRequest(format!("a DMA buffer of {len} bytes")))?;
        let memory = Arc::new(backend.alloc_dma(size)?);
        let mapping = DmaMapping::new_in(
            dma.clone(),
            iovas,
            memory,
            0,
            size as u64,
            DmaFlags::READ | DmaFlags::WRITE,
        )?;
        let pages = (0..size / PAGE_SIZE)
            .map(|page| mapping.device_address((page * PAGE_SIZE) as u64))
            .collect::<vfio_core::Result<Vec<u64>>>()?;
        Ok(Self {
            mapping,
            len,
            pages,
        })
    }

    /// The bytes asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a buffer of no bytes (never: allocation refuses them).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address the controller reaches the first byte at (page-aligned):
    /// its IOVA, or in no-IOMMU mode its physical address.
    pub fn iova(&self) -> u64 {
        self.pages[0]
    }

    /// The memory, for the CPU's side of a transfer.
    pub fn memory(&self) -> &B::DmaMemory {
        self.mapping.memory()
    }

    /// The device address of byte `offset` (no bounds check: the caller's).
    pub(crate) fn device_address(&self, offset: usize) -> u64 {
        self.pages[offset / PAGE_SIZE] + (offset % PAGE_SIZE) as u64
    }

    /// The device address of `len` bytes from `offset` that the device must
    /// see contiguous (a queue), or `Unsupported` when their pages are not
    /// (no-IOMMU mode with base pages).
    pub(crate) fn contiguous(&self, offset: usize, len: usize) -> Result<u64> {
        let start = self.device_address(offset);
        let last_page = (offset + len - 1) / PAGE_SIZE;
        let first_page = offset / PAGE_SIZE;
        let contiguous = (first_page..=last_page).all(|p| {
            self.pages[p] == self.pages[first_page] + ((p - first_page) * PAGE_SIZE) as u64
        });
        if contiguous {
            Ok(start)
        } else {
            Err(NvmeError::Unsupported(
                "a queue larger than a page in memory that is not physically contiguous \
                 (no-IOMMU mode: use huge pages, or queues of at most 64 entries)",
            ))
        }
    }

    /// Fills the buffer with zeroes.
    pub fn zero(&self) -> Result<()> {
        let zeroes = vec![0u8; self.mapping.size() as usize];
        self.memory().write_at(0, &zeroes)?;
        Ok(())
    }

    /// Unmaps now, returning the kernel's answer.
    pub fn unmap(self) -> Result<()> {
        self.mapping.unmap()?;
        Ok(())
    }
}
