//! DMA memory the driver hands to the controller: data buffers, queues and
//! PRP list pages, each mapped at an IOVA the driver's [`IovaAllocator`]
//! chose, with an unmapped guard page after it.

use crate::error::{NvmeError, Result};
use std::sync::Arc;
use vfio_core::{DmaFlags, DmaMapping, DmaMemory, IovaAllocator, OwnedDmaMapping, VfioBackend};

/// The memory page size the driver configures (CC.MPS = 0).
pub const PAGE_SIZE: usize = 4096;

/// DMA memory mapped for the controller: allocated from the backend,
/// mapped read-write at an IOVA from the driver's allocator, unmapped (and
/// the IOVA range freed) when dropped.
///
/// Data buffers come from [`Nvme::alloc_buffer`](crate::Nvme::alloc_buffer);
/// the CPU side is [`memory`](Self::memory), atomic like all DMA memory.
#[derive(Debug)]
pub struct DmaBuffer<B: VfioBackend> {
    mapping: OwnedDmaMapping<B>,
    len: usize,
}

impl<B: VfioBackend> DmaBuffer<B> {
    /// Allocates `len` bytes (rounded up to whole pages) and maps them at an
    /// IOVA from `iovas`.
    pub(crate) fn new(
        backend: &B,
        container: &Arc<B::Container>,
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
            container.clone(),
            iovas,
            memory,
            0,
            size as u64,
            DmaFlags::READ | DmaFlags::WRITE,
        )?;
        Ok(Self { mapping, len })
    }

    /// The bytes asked for.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a buffer of no bytes (never: allocation refuses them).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The IOVA the controller reaches the first byte at (page-aligned).
    pub fn iova(&self) -> u64 {
        self.mapping.iova()
    }

    /// The memory, for the CPU's side of a transfer.
    pub fn memory(&self) -> &B::DmaMemory {
        self.mapping.memory()
    }

    /// The IOVA of byte `offset` (no bounds check: the caller's).
    pub(crate) fn iova_at(&self, offset: usize) -> u64 {
        self.iova() + offset as u64
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
