//! iommufd: `/dev/iommu` and its I/O address spaces.
//!
//! PLACEHOLDER on the integration branch: every call is refused as
//! unsupported until the kernel's behaviour is modelled.

use crate::host::MockBackend;
use crate::memory::MockDmaMemory;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use vfio_core::{
    DmaFlags, DmaSpace, Error, ErrorKind, Ioas, IommuFd, IovaRange, Operation, Result,
};

pub(crate) fn unsupported(op: Operation) -> Error {
    Error::new(op, ErrorKind::Unsupported).with_detail("not implemented yet")
}

/// An open `/dev/iommu`.
#[derive(Debug)]
pub struct MockIommuFd {
    file: File,
}

impl AsFd for MockIommuFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl IommuFd<MockBackend> for MockIommuFd {
    fn alloc_ioas(&self) -> Result<MockIoas> {
        Err(unsupported(Operation::AllocIoas))
    }

    fn destroy(&self, _id: u32) -> Result<()> {
        Err(unsupported(Operation::Destroy))
    }
}

/// An I/O address space of an iommufd.
#[derive(Debug)]
pub struct MockIoas {
    id: u32,
}

impl DmaSpace<MockBackend> for MockIoas {
    fn translates(&self) -> bool {
        true
    }
    fn iova_ranges(&self) -> Result<Vec<IovaRange>> {
        Err(unsupported(Operation::IovaRanges))
    }
    fn iova_page_sizes(&self) -> Result<u64> {
        Err(unsupported(Operation::IovaRanges))
    }
    fn map_dma_raw(
        &self,
        _memory: &MockDmaMemory,
        _offset: usize,
        _size: u64,
        _iova: u64,
        _flags: DmaFlags,
    ) -> Result<()> {
        Err(unsupported(Operation::MapDma))
    }
    fn unmap_dma(&self, _iova: u64, _size: u64) -> Result<u64> {
        Err(unsupported(Operation::UnmapDma))
    }
    fn unmap_all(&self) -> Result<u64> {
        Err(unsupported(Operation::UnmapDma))
    }
}

impl Ioas<MockBackend> for MockIoas {
    fn id(&self) -> u32 {
        self.id
    }
    fn iova_alignment(&self) -> Result<u64> {
        Err(unsupported(Operation::IovaRanges))
    }
    fn map_dma_anywhere_raw(
        &self,
        _memory: &MockDmaMemory,
        _offset: usize,
        _size: u64,
        _flags: DmaFlags,
    ) -> Result<u64> {
        Err(unsupported(Operation::MapDma))
    }
}
