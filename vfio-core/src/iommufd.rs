//! iommufd: `/dev/iommu` and its I/O address spaces, the IOMMU context of
//! devices opened through their VFIO cdev (Linux 6.6 and later).
//!
//! The path a driver takes: open the device's cdev
//! ([`VfioBackend::open_device_cdev`]), open `/dev/iommu`
//! ([`VfioBackend::open_iommufd`]), bind the device to it
//! ([`Device::bind_iommufd`](crate::Device::bind_iommufd)), allocate an IOAS
//! ([`IommuFd::alloc_ioas`]), attach the device to it
//! ([`Device::attach_ioas`](crate::Device::attach_ioas)), and map DMA
//! memory through the IOAS as through a container: both are a
//! [`DmaSpace`].
//!
//! ```
//! use std::os::fd::AsFd;
//! use vfio_core::{Device, DmaFlags, DmaSpace, IommuFd, PciAddress, Result, VfioBackend};
//!
//! /// Opens `address` through its cdev and maps a page at IOVA 1 MiB.
//! fn open<B: VfioBackend>(backend: &B, address: &PciAddress) -> Result<()> {
//!     let device = backend.open_device_cdev(address)?;
//!     let iommufd = backend.open_iommufd()?;
//!     device.bind_iommufd(iommufd.as_fd())?;
//!     let ioas = iommufd.alloc_ioas()?;
//!     device.attach_ioas(&ioas)?;
//!     let memory = backend.alloc_dma(4096)?;
//!     let mapping = ioas.map_dma(&memory, 0, 4096, 0x10_0000, DmaFlags::READ | DmaFlags::WRITE)?;
//!     println!("device reaches the page at {:#x}", mapping.iova());
//!     Ok(())
//! }
//! ```

use crate::backend::{DmaSpace, VfioBackend};
use crate::dma_mapping::DmaMapping;
use crate::error::Result;
use crate::info::DmaFlags;
use std::fmt::Debug;
use std::ops::Deref;
use std::os::fd::AsFd;

/// An open `/dev/iommu`: the context that owns IOASes and the devices
/// bound to it. Closing it (dropping it, and every [`Ioas`] made from it)
/// destroys every object it holds, as the kernel does at the file's release.
pub trait IommuFd<B: VfioBackend>: AsFd + Send + Sync + Debug {
    /// `IOMMU_IOAS_ALLOC`: a new, empty I/O address space. Dropping the
    /// returned [`Ioas`] destroys it (`IOMMU_DESTROY`), which the kernel
    /// refuses while a device is attached to it; it is then destroyed with
    /// the iommufd.
    fn alloc_ioas(&self) -> Result<B::Ioas>;

    /// `IOMMU_DESTROY` of object `id`: the raw escape hatch under
    /// [`Ioas`]'s drop. ENOENT for an id that names nothing, EBUSY for an
    /// object in use (an IOAS a device is attached to).
    fn destroy(&self, id: u32) -> Result<()>;
}

/// An I/O address space of an iommufd (`IOMMU_IOAS_ALLOC`): the same role
/// as a Type1 container, for devices attached to it.
pub trait Ioas<B: VfioBackend>: DmaSpace<B> {
    /// The IOAS's object id in its iommufd, the `pt_id` devices attach to.
    fn id(&self) -> u32;

    /// The alignment every IOVA and length must have
    /// (`IOMMU_IOAS_IOVA_RANGES`' `out_iova_alignment`): the largest
    /// minimum page size of the IOMMUs of the attached devices, or 1 with
    /// none attached (`iopt_calculate_iova_alignment`; seen on Linux 6.12:
    /// 1 on a fresh IOAS, 4096 with a VT-d device attached). Mappings made
    /// before an attach should still be page-aligned, or the IOMMU cannot
    /// take them.
    fn iova_alignment(&self) -> Result<u64>;

    /// `IOMMU_IOAS_MAP` without `IOMMU_IOAS_MAP_FIXED_IOVA`: the kernel
    /// picks a free IOVA, which is returned. The raw call, tracked by
    /// nothing: [`map_dma_anywhere`](Ioas::map_dma_anywhere) returns a
    /// mapping that unmaps itself.
    fn map_dma_anywhere_raw(
        &self,
        memory: &B::DmaMemory,
        offset: usize,
        size: u64,
        flags: DmaFlags,
    ) -> Result<u64>;

    /// [`map_dma_anywhere_raw`](Ioas::map_dma_anywhere_raw) as a
    /// [`DmaMapping`] that unmaps itself when dropped.
    fn map_dma_anywhere<M>(
        &self,
        memory: M,
        offset: usize,
        size: u64,
        flags: DmaFlags,
    ) -> Result<DmaMapping<B, &Self, M>>
    where
        Self: Sized,
        M: Deref<Target = B::DmaMemory>,
    {
        let iova = self.map_dma_anywhere_raw(&memory, offset, size, flags)?;
        Ok(DmaMapping::mapped(self, memory, offset, size, iova, flags))
    }
}
