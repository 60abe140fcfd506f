//! The VFIO container: an IOMMU context devices' DMA is translated through.

use crate::LinuxBackend;
use crate::memory::LinuxDmaMemory;
use crate::sys;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use vfio_core::Errno;
use vfio_core::access::check_range;
use vfio_core::parse::vfio_caps;
use vfio_core::{
    Container, DmaFlags, DmaMemory, DmaSpace, Error, ErrorKind, Extension, IommuInfo, IommuType,
    IovaRange, Operation, Result,
};

/// An open `/dev/vfio/vfio`.
#[derive(Debug)]
pub struct LinuxContainer {
    file: File,
    /// `VFIO_SET_IOMMU` succeeded with the no-IOMMU driver: nothing translates.
    noiommu: AtomicBool,
}

impl LinuxContainer {
    pub(crate) fn new(file: File) -> Self {
        Self {
            file,
            noiommu: AtomicBool::new(false),
        }
    }
}

impl AsFd for LinuxContainer {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl Container<LinuxBackend> for LinuxContainer {
    fn api_version(&self) -> Result<i32> {
        sys::get_api_version(self.as_fd()).map_err(|e| Error::from_errno(Operation::ApiVersion, e))
    }

    fn check_extension(&self, extension: Extension) -> Result<u32> {
        sys::check_extension(self.as_fd(), extension.0)
            .map_err(|e| Error::from_errno(Operation::CheckExtension, e))
    }

    fn set_iommu(&self, iommu: IommuType) -> Result<()> {
        sys::set_iommu(self.as_fd(), iommu.raw()).map_err(|e| {
            Error::from_errno(Operation::SetIommu, e).with_target(format_args!("{iommu:?}"))
        })?;
        self.noiommu
            .store(iommu == IommuType::NoIommu, Ordering::Relaxed);
        Ok(())
    }

    fn iommu_info(&self) -> Result<IommuInfo> {
        let buf = sys::iommu_get_info(self.as_fd())
            .map_err(|e| Error::from_errno(Operation::IommuInfo, e))?;
        let header: sys::IommuInfoHeader = zerocopy::FromBytes::read_from_prefix(&buf)
            .map(|(h, _)| h)
            .map_err(|_| Error::new(Operation::IommuInfo, ErrorKind::Malformed))?;
        let caps = vfio_caps::iommu_caps(&buf, header.cap_offset)
            .map_err(|e| Error::new(Operation::IommuInfo, ErrorKind::Malformed).with_source(e))?;
        Ok(IommuInfo {
            iova_pgsizes: header.iova_pgsizes,
            iova_ranges: caps.iova_ranges,
            dma_avail: caps.dma_avail,
        })
    }
}

impl DmaSpace<LinuxBackend> for LinuxContainer {
    fn translates(&self) -> bool {
        !self.noiommu.load(Ordering::Relaxed)
    }

    fn iova_ranges(&self) -> Result<Vec<IovaRange>> {
        Ok(self.iommu_info()?.iova_ranges.unwrap_or_else(|| {
            vec![IovaRange {
                start: 0,
                end: u64::MAX,
            }]
        }))
    }

    fn iova_page_sizes(&self) -> Result<u64> {
        Ok(self.iommu_info()?.iova_pgsizes)
    }

    // UNSAFETY: the one call of `VFIO_IOMMU_MAP_DMA`, whose precondition is
    // met here: the memory is a `LinuxDmaMemory`. Every map goes through
    // here, the safe `DmaMapping` (`DmaSpace::map_dma`) included.
    #[expect(unsafe_code)]
    fn map_dma_raw(
        &self,
        memory: &LinuxDmaMemory,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<()> {
        // The kernel pins whatever the process has at those addresses, and
        // answers EFAULT where nothing is mapped; a mapping never reaches
        // past its buffer here, and the refusal carries the kernel's errno.
        check_range(Operation::MapDma, memory.len() as u64, offset as u64, size).map_err(|e| {
            Error::from_errno(Operation::MapDma, Errno::EFAULT)
                .with_detail(e.detail().unwrap_or("past the buffer"))
        })?;
        let vaddr = (memory.addr() + offset) as u64;
        // SAFETY: `vaddr..vaddr + size` lies inside `memory` (checked just
        // above), an anonymous shared mmap owned by its `Mapping`.
        // `LinuxDmaMemory` reaches its bytes only as `&[AtomicU64]` (atomic
        // loads, stores and compare-exchanges), never through a reference to
        // plain data or a plain access. Dropping it munmaps the range,
        // handing the pages back to the kernel, never to a Rust allocator.
        // Nothing here needs the memory to outlive the IOMMU mapping: type1
        // pins each page (`pin_user_pages_remote`, FOLL_LONGTERM), and a
        // pinned page is freed only when the last reference goes, at the
        // unpin of UNMAP_DMA or the container's close, so a munmap while
        // mapped (a raw mapping whose memory was dropped) leaves the device
        // on pages nothing else can be given, and the address range gets
        // other pages if mapped again. `DmaMapping` rules even that out for
        // the safe API: it holds the memory until its unmap has returned.
        unsafe { sys::iommu_map_dma(self.as_fd(), vaddr, iova, size, flags.bits()) }.map_err(|e| {
            Error::from_errno(Operation::MapDma, e)
                .with_target(format_args!("iova {iova:#x}+{size:#x}"))
        })
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        sys::iommu_unmap_dma(self.as_fd(), iova, size).map_err(|e| {
            Error::from_errno(Operation::UnmapDma, e)
                .with_target(format_args!("iova {iova:#x}+{size:#x}"))
        })
    }

    fn unmap_all(&self) -> Result<u64> {
        crate::sys_uapi::iommu_unmap_all(self.as_fd()).map_err(|e| {
            Error::from_errno(Operation::UnmapDma, e).with_detail("VFIO_DMA_UNMAP_FLAG_ALL")
        })
    }
}
