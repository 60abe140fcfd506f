//! iommufd: `/dev/iommu` and its I/O address spaces (IOASes).
//!
//! The errnos each call documents are those of Linux 6.12's
//! `drivers/iommu/iommufd` (`main.c`, `ioas.c`, `io_pagetable.c`,
//! `pages.c`), named by function. Every iommufd ioctl first checks its
//! argument's size (EINVAL below the fields it needs, E2BIG for non-zero
//! bytes it does not know: `iommufd_fops_ioctl`); the structs here are
//! exactly 6.12's, so neither happens.
//!
//! Seen on Linux 6.12 in the QEMU guest (emulated VT-d, the edu device):
//! a fresh IOAS spans `0..=u64::MAX` with alignment 1, and with the device
//! attached `0..=0xfedf_ffff` and `0xfef0_0000..=0x7f_ffff_ffff` (the MSI
//! window reserved) with alignment 4096; EBUSY for destroying an IOAS a
//! device is attached to, ENOENT for an id naming nothing; EEXIST for an
//! overlapping map; EINVAL for a map with no access flag, a size of 0, a
//! misaligned IOVA or one outside the ranges; ENOENT for an unmap that
//! cuts a mapping or holds none, EINVAL for an unmap of size 0, 0 bytes
//! from `unmap_all` on an empty IOAS; a kernel-chosen IOVA of 0x1000 on an
//! empty IOAS. The other errnos below are read from the source and marked
//! so.

use crate::LinuxBackend;
use crate::memory::LinuxDmaMemory;
use crate::mmap::Mapping;
use crate::sys;
use nix::errno::Errno;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use vfio_core::access::check_range;
use vfio_core::{
    DmaFlags, DmaMemory, DmaSpace, Error, ErrorKind, Ioas, IommuFd, IovaRange, Operation, Result,
};

/// How many times [`LinuxIoas::ranges`] asks again when the number of
/// ranges grows between its sizing call and its reading call (an attach
/// or detach in between narrows or widens them).
const RANGE_ATTEMPTS: usize = 4;

/// An open `/dev/iommu` (`VfioBackend::open_iommufd`).
///
/// The file is shared with every [`LinuxIoas`] allocated from it, so an
/// IOAS stays usable after this handle is dropped; the kernel destroys
/// whatever the iommufd still holds when the last of them goes.
#[derive(Debug)]
pub struct LinuxIommuFd {
    file: Arc<File>,
}

impl LinuxIommuFd {
    pub(crate) fn new(file: File) -> Self {
        Self {
            file: Arc::new(file),
        }
    }
}

impl AsFd for LinuxIommuFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl IommuFd<LinuxBackend> for LinuxIommuFd {
    /// `IOMMU_IOAS_ALLOC`. ENOMEM when the kernel cannot allocate the
    /// object or its id (`iommufd_ioas_alloc_ioctl`; from the source).
    fn alloc_ioas(&self) -> Result<LinuxIoas> {
        let id = sys::ioas_alloc(self.as_fd())
            .map_err(|e| Error::from_errno(Operation::AllocIoas, e))?;
        Ok(LinuxIoas {
            iommufd: self.file.clone(),
            id,
            kept: Mutex::new(BTreeMap::new()),
        })
    }

    /// `IOMMU_DESTROY` of object `id` (`iommufd_object_remove`): ENOENT
    /// for an id that names no object, EBUSY for one still in use (an IOAS
    /// a device is attached to holds a reference through the device's
    /// hardware page table).
    fn destroy(&self, id: u32) -> Result<()> {
        destroy(&self.file, id)
    }
}

fn destroy(iommufd: &File, id: u32) -> Result<()> {
    sys::destroy(iommufd.as_fd(), id)
        .map_err(|e| Error::from_errno(Operation::Destroy, e).with_target(format_args!("id {id}")))
}

/// An I/O address space of an iommufd (`IOMMU_IOAS_ALLOC`); dropping it
/// destroys it (`IOMMU_DESTROY`; the kernel's refusal, EBUSY while a
/// device is attached, is ignored, and the IOAS then lives until the
/// iommufd is closed).
///
/// # Memory an IOAS maps
///
/// Unlike a Type1 container, which pins the pages at `VFIO_IOMMU_MAP_DMA`,
/// iommufd pins them only once a device's page table needs them: at the
/// map if a device is attached, otherwise at the first attach, through the
/// process address they were mapped from (`iopt_alloc_pages` keeps the
/// address; `pfn_reader_user_pin` pins through it). So that the pages an
/// attach finds are the buffer's, the IOAS keeps every buffer it maps
/// mapped in the process until the range is unmapped, whatever happens to
/// the [`LinuxDmaMemory`] handle: memory dropped while mapped stays
/// reachable by the IOAS's devices, and unreachable by the process, until
/// [`unmap_dma`](DmaSpace::unmap_dma), [`unmap_all`](DmaSpace::unmap_all) or
/// the IOAS's destruction. If the destruction is refused, the buffers are
/// never unmapped from the process (a leak, rather than a device reaching
/// memory that was handed out again).
#[derive(Debug)]
pub struct LinuxIoas {
    iommufd: Arc<File>,
    id: u32,
    /// The buffers mapped through this IOAS, by IOVA: (length, mapping).
    /// Held across every map and unmap ioctl, so the table and the
    /// kernel's mappings change together.
    kept: Mutex<BTreeMap<u64, (u64, Arc<Mapping>)>>,
}

impl LinuxIoas {
    fn err(&self, op: Operation, errno: Errno) -> Error {
        Error::from_errno(op, errno).with_target(format_args!("ioas {}", self.id))
    }

    /// `IOMMU_IOAS_IOVA_RANGES`, sized by a first call with no room (the
    /// kernel answers EMSGSIZE with the count), then read.
    fn ranges(&self) -> Result<(Vec<sys::IommuIovaRange>, u64)> {
        let mut ranges = Vec::new();
        for _ in 0..RANGE_ATTEMPTS {
            let (total, alignment) =
                sys::ioas_iova_ranges(self.iommufd.as_fd(), self.id, &mut ranges)
                    .map_err(|e| self.err(Operation::IovaRanges, e))?;
            let total = total as usize;
            if total <= ranges.len() {
                ranges.truncate(total);
                return Ok((ranges, alignment));
            }
            ranges.resize(total, sys::IommuIovaRange::default());
        }
        Err(self
            .err(Operation::IovaRanges, Errno::EMSGSIZE)
            .with_detail(format_args!(
                "the number of ranges kept changing over {RANGE_ATTEMPTS} calls"
            )))
    }

    /// The `IOMMU_IOAS_MAP_*` access flags for `flags`.
    fn map_flags(flags: DmaFlags) -> u32 {
        let mut out = 0;
        if flags.contains(DmaFlags::READ) {
            out |= sys::IOMMU_IOAS_MAP_READABLE;
        }
        if flags.contains(DmaFlags::WRITE) {
            out |= sys::IOMMU_IOAS_MAP_WRITEABLE;
        }
        out
    }

    /// The one `IOMMU_IOAS_MAP` call: at `iova` with
    /// `IOMMU_IOAS_MAP_FIXED_IOVA` when it is `Some`, else where the kernel
    /// chooses. Returns the IOVA.
    // UNSAFETY: the one call of `IOMMU_IOAS_MAP`, whose precondition is met
    // here: the memory is a `LinuxDmaMemory`, kept mapped while mapped.
    #[expect(unsafe_code)]
    fn map(
        &self,
        memory: &LinuxDmaMemory,
        offset: usize,
        size: u64,
        iova: Option<u64>,
        flags: DmaFlags,
    ) -> Result<u64> {
        let target = || match iova {
            Some(iova) => format!("ioas {} iova {iova:#x}+{size:#x}", self.id),
            None => format!("ioas {} {size:#x} bytes", self.id),
        };
        // The kernel pins whatever the process has at those addresses, and
        // answers EFAULT where nothing is mapped (`pfn_reader_user_pin`); a
        // mapping never reaches past its buffer here, and the refusal
        // carries the kernel's errno.
        check_range(Operation::MapDma, memory.len() as u64, offset as u64, size).map_err(|e| {
            Error::from_errno(Operation::MapDma, Errno::EFAULT)
                .with_target(target())
                .with_detail(e.detail().unwrap_or("past the buffer"))
        })?;
        let vaddr = (memory.addr() + offset) as u64;
        let mut map_flags = Self::map_flags(flags);
        if iova.is_some() {
            map_flags |= sys::IOMMU_IOAS_MAP_FIXED_IOVA;
        }
        let mut kept = self.kept.lock();
        // SAFETY: `vaddr..vaddr + size` lies inside `memory` (checked just
        // above), an anonymous shared mmap owned by its `Mapping`.
        // `LinuxDmaMemory` reaches its bytes only as `&[AtomicU64]` (atomic
        // loads, stores and compare-exchanges), never through a reference to
        // plain data or a plain access. Its `Mapping` is shared (`Arc`), and
        // a reference to it is put in `kept` below, under the lock held
        // across this call, for as long as the kernel maps the range: the
        // addresses keep the buffer's pages until every mapping of them
        // is gone (unmapped, or the IOAS destroyed), however late a device
        // attaches and the kernel pins them (iommufd pins with
        // `pin_user_pages_remote` and FOLL_LONGTERM, `pfn_reader_user_pin`,
        // so pinned pages are neither swapped nor migrated). The memory is
        // munmapped only when the last reference goes, handing the pages
        // back to the kernel, never to a Rust allocator.
        let at = unsafe {
            sys::ioas_map(
                self.iommufd.as_fd(),
                self.id,
                vaddr,
                size,
                iova.unwrap_or(0),
                map_flags,
            )
        }
        .map_err(|e| Error::from_errno(Operation::MapDma, e).with_target(target()))?;
        kept.insert(at, (size, memory.mapping()));
        Ok(at)
    }
}

impl Drop for LinuxIoas {
    fn drop(&mut self) {
        let kept = std::mem::take(self.kept.get_mut());
        match destroy(&self.iommufd, self.id) {
            // Destroyed now (the kernel unmapped everything), or already,
            // through `IommuFd::destroy`.
            Ok(()) => {}
            Err(e) if e.errno() == Some(Errno::ENOENT) => {}
            // The IOAS lives on with its mappings (EBUSY: a device is
            // attached), which a device attaching later would pin through
            // their addresses: keep the buffers mapped for good.
            Err(_) => {
                for (_, (_, mapping)) in kept {
                    std::mem::forget(mapping);
                }
            }
        }
    }
}

impl DmaSpace<LinuxBackend> for LinuxIoas {
    fn translates(&self) -> bool {
        true
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: the holes between the IOAS's reserved
    /// ranges (`iommufd_ioas_iova_ranges`). A fresh IOAS spans the whole
    /// address space; each attached device narrows it to what its IOMMU
    /// can reach, and a detach can widen it again, so ask after every
    /// attach or detach.
    fn iova_ranges(&self) -> Result<Vec<IovaRange>> {
        Ok(self
            .ranges()?
            .0
            .into_iter()
            .map(|r| IovaRange {
                start: r.start,
                end: r.last,
            })
            .collect())
    }

    /// Every power of two from [`iova_alignment`](Ioas::iova_alignment)
    /// up: iommufd reports an alignment, not the IOMMU's page sizes. On a
    /// fresh IOAS (alignment 1) that is every bit.
    fn iova_page_sizes(&self) -> Result<u64> {
        let alignment = self.iova_alignment()?;
        Ok(!(alignment - 1))
    }

    /// `IOMMU_IOAS_MAP` with `IOMMU_IOAS_MAP_FIXED_IOVA`. Beyond the
    /// EFAULT for a range past `memory`, the kernel's answers:
    /// EINVAL for neither READ nor WRITE (`iommufd_ioas_map`), for a size of
    /// 0 (`iopt_alloc_pages`), for an IOVA or size not a multiple of
    /// [`iova_alignment`](Ioas::iova_alignment) or a range touching a
    /// reserved one, outside [`iova_ranges`](DmaSpace::iova_ranges)
    /// (`iopt_alloc_area_pages`, `iopt_check_iova`); EEXIST for a range
    /// overlapping a mapping (`iopt_check_iova`). Read from the source, not
    /// checked on a kernel: EOVERFLOW for an IOVA of `u64::MAX`
    /// (`iommufd_ioas_map`) or a range that wraps on an IOAS with nothing
    /// reserved there (`iopt_check_iova`; with a device attached the top of
    /// the address space is reserved and the answer is EINVAL, as seen on
    /// 6.12); with a device attached, pinning happens here: ENOMEM past
    /// `RLIMIT_MEMLOCK` without `CAP_IPC_LOCK` (`incr_user_locked_vm`),
    /// EFAULT for addresses it cannot pin.
    fn map_dma_raw(
        &self,
        memory: &LinuxDmaMemory,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<()> {
        self.map(memory, offset, size, Some(iova), flags).map(drop)
    }

    /// `IOMMU_IOAS_UNMAP` (`iommufd_ioas_unmap`, `iopt_unmap_iova_range`):
    /// the range must cover whole mappings. ENOENT when it holds none, or
    /// cuts one (mappings wholly inside the range before the one cut are
    /// unmapped nonetheless, from the source); EINVAL for a size of 0;
    /// EOVERFLOW for a range that wraps (from the source, not checked). IOVA 0 with size `u64::MAX` is
    /// [`unmap_all`](DmaSpace::unmap_all).
    fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        let mut kept = self.kept.lock();
        let unmapped = sys::ioas_unmap(self.iommufd.as_fd(), self.id, iova, size).map_err(|e| {
            Error::from_errno(Operation::UnmapDma, e)
                .with_target(format_args!("ioas {} iova {iova:#x}+{size:#x}", self.id))
        })?;
        // Success: every mapping starting in the range was inside it.
        let last = iova.saturating_add(size.saturating_sub(1));
        let gone: Vec<u64> = kept.range(iova..=last).map(|(&at, _)| at).collect();
        for at in gone {
            kept.remove(&at);
        }
        Ok(unmapped)
    }

    /// `IOMMU_IOAS_UNMAP` of IOVA 0, size `u64::MAX`: unmaps everything,
    /// and succeeds with 0 on an empty IOAS (`iopt_unmap_all`).
    fn unmap_all(&self) -> Result<u64> {
        let mut kept = self.kept.lock();
        let unmapped = sys::ioas_unmap(self.iommufd.as_fd(), self.id, 0, u64::MAX)
            .map_err(|e| self.err(Operation::UnmapDma, e))?;
        kept.clear();
        Ok(unmapped)
    }
}

impl Ioas<LinuxBackend> for LinuxIoas {
    fn id(&self) -> u32 {
        self.id
    }

    /// `out_iova_alignment` of `IOMMU_IOAS_IOVA_RANGES`
    /// (`iopt_calculate_iova_alignment`): the largest minimum page size of
    /// the attached devices' IOMMUs, 1 with none attached (the CPU page
    /// size if huge pages were turned off with `IOMMU_OPTION_HUGE_PAGES`).
    /// On Linux 6.12 under QEMU's VT-d: 1 on a fresh IOAS, 4096 with the
    /// edu device attached.
    fn iova_alignment(&self) -> Result<u64> {
        let (_, alignment) = self.ranges()?;
        if !alignment.is_power_of_two() {
            return Err(Error::new(Operation::IovaRanges, ErrorKind::Malformed)
                .with_target(format_args!("ioas {}", self.id))
                .with_detail(format_args!(
                    "IOVA alignment {alignment:#x} is not a power of two"
                )));
        }
        Ok(alignment)
    }

    /// `IOMMU_IOAS_MAP` without `IOMMU_IOAS_MAP_FIXED_IOVA`: the kernel
    /// picks a free IOVA in the allowed ranges, aligned to the buffer's
    /// own alignment up to a huge page (`iopt_alloc_iova`). Its answers
    /// are [`map_dma_raw`](DmaSpace::map_dma_raw)'s, and (read from the
    /// source, not checked on a kernel) ENOSPC when no hole is large
    /// enough, EOVERFLOW for a size of half the address space or more.
    fn map_dma_anywhere_raw(
        &self,
        memory: &LinuxDmaMemory,
        offset: usize,
        size: u64,
        flags: DmaFlags,
    ) -> Result<u64> {
        self.map(memory, offset, size, None, flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_flags_map_to_iommufds() {
        assert_eq!(
            LinuxIoas::map_flags(DmaFlags::READ),
            sys::IOMMU_IOAS_MAP_READABLE
        );
        assert_eq!(
            LinuxIoas::map_flags(DmaFlags::READ | DmaFlags::WRITE),
            sys::IOMMU_IOAS_MAP_READABLE | sys::IOMMU_IOAS_MAP_WRITEABLE
        );
        assert_eq!(
            LinuxIoas::map_flags(DmaFlags::WRITE),
            sys::IOMMU_IOAS_MAP_WRITEABLE
        );
    }
}
