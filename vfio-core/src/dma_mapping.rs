//! DMA mappings that unmap themselves and keep their memory alive.
//!
//! `VFIO_IOMMU_MAP_DMA` (or `IOMMU_IOAS_MAP`) lets devices reach memory until
//! `VFIO_IOMMU_UNMAP_DMA` (or the container's close) takes it away. A
//! [`DmaMapping`] is that interval as a value: it holds the container and
//! the memory for as long as it lives, so neither can be dropped while a
//! device may still reach the memory through it, and dropping it unmaps
//! exactly the range it mapped.
//!
//! It holds both through any [`Deref`]: plain references, for a mapping
//! that lives inside one function (what
//! [`DmaSpace::map_dma`](crate::DmaSpace::map_dma) returns: the borrow
//! checker refuses to drop the memory first), or `Arc`s, for a mapping a
//! driver stores in its own struct next to everything else ([`OwnedDmaMapping`]).
//!
//! ```
//! use std::sync::Arc;
//! use vfio_core::{DmaFlags, DmaMemory, OwnedDmaMapping, Result, VfioBackend};
//!
//! /// A ring a driver keeps mapped for as long as it lives.
//! struct Ring<B: VfioBackend> {
//!     mapping: OwnedDmaMapping<B>,
//! }
//!
//! fn ring<B: VfioBackend>(backend: &B, container: Arc<B::Container>) -> Result<Ring<B>> {
//!     let memory = Arc::new(backend.alloc_dma(4096)?);
//!     let mapping = OwnedDmaMapping::<B>::new(container, memory, 0, 4096, 0x10_0000, DmaFlags::READ)?;
//!     mapping.memory().write_at(0, &[0; 64])?;
//!     Ok(Ring { mapping })
//! }
//! ```
//!
//! Memory borrowed by a mapping cannot be dropped before it:
//!
//! ```compile_fail,E0505
//! use vfio_core::{DmaFlags, DmaSpace, Result, VfioBackend};
//!
//! fn freed_while_mapped<B: VfioBackend>(backend: &B, container: &B::Container) -> Result<()> {
//!     let memory = backend.alloc_dma(4096)?;
//!     let mapping = container.map_dma(&memory, 0, 4096, 0x10_0000, DmaFlags::READ)?;
//!     drop(memory); // the device could still reach it
//!     mapping.unmap()?;
//!     Ok(())
//! }
//! ```

use crate::backend::{DmaSpace, VfioBackend};
use crate::dma::DmaMemory;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::info::DmaFlags;
use crate::iova::{IovaAllocator, IovaLease};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::Arc;

/// A mapping of `size` bytes of DMA memory at an IOVA of a container,
/// unmapped when dropped.
///
/// `C` reaches the container and `M` the memory; both are held until the
/// mapping is unmapped, and each must reach the same object every time it
/// is dereferenced (as references, `Box`, `Rc` and `Arc` do). The memory is
/// dropped only after the unmap returns, so a device cannot reach memory
/// that was given back, whichever order the caller drops things in.
///
/// Dropping unmaps `iova..iova + size` (`VFIO_IOMMU_UNMAP_DMA`); a drop
/// cannot return the kernel's answer, so it ignores a failure. Call
/// [`unmap`](Self::unmap) to have it. A mapping from an [`IovaAllocator`]
/// gives its IOVA range back only once the unmap succeeded: a range whose
/// unmap failed may still be mapped, so the allocator never hands it out
/// again (the kernel removes the mapping when the container is closed).
///
/// The raw calls stay available as the escape hatch,
/// [`DmaSpace::map_dma_raw`] and [`DmaSpace::unmap_dma`], with nothing
/// tracking what they do: a raw unmap of a range a `DmaMapping` holds makes
/// that mapping's drop unmap whatever is mapped there by then.
#[must_use = "dropping the mapping unmaps it at once"]
pub struct DmaMapping<B, C, M>
where
    B: VfioBackend,
    C: Deref,
    C::Target: DmaSpace<B>,
    M: Deref<Target = B::DmaMemory>,
{
    container: C,
    memory: M,
    iova: u64,
    size: u64,
    offset: usize,
    flags: DmaFlags,
    /// The IOVA range, when an allocator chose it; dropped after the unmap.
    lease: Option<IovaLease>,
    /// False once [`unmap`](Self::unmap) has run.
    mapped: bool,
    backend: PhantomData<fn() -> B>,
}

/// A [`DmaMapping`] owning shares of its container and memory: `'static`,
/// so a driver can keep it in its own struct.
pub type OwnedDmaMapping<B> =
    DmaMapping<B, Arc<<B as VfioBackend>::Container>, Arc<<B as VfioBackend>::DmaMemory>>;

/// [`OwnedDmaMapping`] in an iommufd IOAS.
pub type OwnedIoasMapping<B> =
    DmaMapping<B, Arc<<B as VfioBackend>::Ioas>, Arc<<B as VfioBackend>::DmaMemory>>;

impl<B, C, M> DmaMapping<B, C, M>
where
    B: VfioBackend,
    C: Deref,
    C::Target: DmaSpace<B>,
    M: Deref<Target = B::DmaMemory>,
{
    /// Maps `size` bytes of `memory` from `offset` at `iova`
    /// ([`DmaSpace::map_dma_raw`]) and returns the mapping holding both.
    /// On failure nothing is mapped and `container` and `memory` are
    /// dropped.
    ///
    /// On a space that does not translate (no-IOMMU mode) there is nothing
    /// to map: the range is checked against `memory` (EFAULT past its end,
    /// as a map would be), `iova` is ignored, and the device reaches the
    /// memory at its physical addresses, which
    /// [`device_address`](Self::device_address) gives. Dropping it then
    /// unmaps nothing.
    pub fn new(
        container: C,
        memory: M,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<Self> {
        if !container.translates() {
            crate::access::check_range(Operation::MapDma, memory.len() as u64, offset as u64, size)
                .map_err(|_| {
                    Error::from_errno(Operation::MapDma, crate::Errno::EFAULT).with_detail(
                    format_args!(
                        "{size:#x} bytes from offset {offset:#x} reach past the {:#x}-byte buffer",
                        memory.len()
                    ),
                )
                })?;
            let start = memory.physical_address(offset)?;
            return Ok(Self::mapped(container, memory, offset, size, start, flags));
        }
        container.map_dma_raw(&memory, offset, size, iova, flags)?;
        Ok(Self::mapped(container, memory, offset, size, iova, flags))
    }

    /// A mapping of a range already mapped at `iova` (or, on a space that
    /// does not translate, starting at physical address `iova`).
    pub(crate) fn mapped(
        container: C,
        memory: M,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Self {
        Self {
            container,
            memory,
            iova,
            size,
            offset,
            flags,
            lease: None,
            mapped: true,
            backend: PhantomData,
        }
    }

    /// Maps `size` bytes of `memory` from `offset` at an IOVA `iovas`
    /// allocates ([`IovaAllocator::alloc`]: aligned to the largest IOMMU
    /// page size dividing `size`). The range goes back to `iovas` when the
    /// mapping is unmapped, or at once if the map fails.
    pub fn new_in(
        container: C,
        iovas: &IovaAllocator,
        memory: M,
        offset: usize,
        size: u64,
        flags: DmaFlags,
    ) -> Result<Self> {
        if !container.translates() {
            return Self::new(container, memory, offset, size, 0, flags);
        }
        let lease = iovas.alloc(size)?;
        let mut mapping = Self::new(container, memory, offset, size, lease.iova(), flags)?;
        mapping.lease = Some(lease);
        Ok(mapping)
    }

    /// The IOVA devices reach the start of the memory at (on a space that
    /// does not translate, the physical address of its first byte: use
    /// [`device_address`](Self::device_address) for the rest).
    pub fn iova(&self) -> u64 {
        self.iova
    }

    /// The address a device is given for byte `at` of the mapping: the
    /// IOVA `iova() + at`, or in no-IOMMU mode that byte's physical
    /// address, which is contiguous only within a page
    /// ([`DmaMemory::page_size`](crate::DmaMemory::page_size)): a driver
    /// that gives a device a range crossing a page boundary asks for each
    /// page's address, as a PRP or scatter-gather list does. `at` past the
    /// mapping is [`ErrorKind::OutOfRange`] with no errno.
    pub fn device_address(&self, at: u64) -> Result<u64> {
        if at >= self.size {
            return Err(
                Error::new(Operation::DmaAccess, ErrorKind::OutOfRange).with_detail(format_args!(
                    "byte {at:#x} of a {:#x}-byte mapping",
                    self.size
                )),
            );
        }
        if self.container.translates() {
            return Ok(self.iova + at);
        }
        let offset = usize::try_from(at)
            .ok()
            .and_then(|at| self.offset.checked_add(at))
            .ok_or_else(|| Error::new(Operation::DmaAccess, ErrorKind::OutOfRange))?;
        self.memory.physical_address(offset)
    }

    /// The mapping's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where in the memory the mapping starts.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The device's access to the memory.
    pub fn flags(&self) -> DmaFlags {
        self.flags
    }

    /// The mapped memory, for the CPU's side of the transfer.
    pub fn memory(&self) -> &B::DmaMemory {
        &self.memory
    }

    /// The container the memory is mapped in.
    pub fn container(&self) -> &C::Target {
        &self.container
    }

    /// Unmaps now and returns the kernel's answer: the bytes unmapped,
    /// [`size`](Self::size) unless the range was raw-unmapped meanwhile.
    /// The memory and the container are released either way; on failure
    /// the IOVA range stays allocated, as for a drop.
    pub fn unmap(mut self) -> Result<u64> {
        self.unmap_once()
    }

    fn unmap_once(&mut self) -> Result<u64> {
        self.mapped = false;
        if !self.container.translates() {
            return Ok(self.size);
        }
        let result = self.container.unmap_dma(self.iova, self.size);
        if result.is_err() {
            if let Some(lease) = self.lease.take() {
                lease.retain();
            }
        }
        result
    }
}

impl<B, C, M> Drop for DmaMapping<B, C, M>
where
    B: VfioBackend,
    C: Deref,
    C::Target: DmaSpace<B>,
    M: Deref<Target = B::DmaMemory>,
{
    fn drop(&mut self) {
        if self.mapped {
            // Nowhere to return a failure to: see the type's documentation.
            let _ = self.unmap_once();
        }
    }
}

impl<B, C, M> fmt::Debug for DmaMapping<B, C, M>
where
    B: VfioBackend,
    C: Deref,
    C::Target: DmaSpace<B>,
    M: Deref<Target = B::DmaMemory>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaMapping")
            .field("iova", &format_args!("{:#x}", self.iova))
            .field("size", &format_args!("{:#x}", self.size))
            .field("offset", &format_args!("{:#x}", self.offset))
            .field("flags", &self.flags)
            .field("allocated", &self.lease.is_some())
            .finish()
    }
}
