//! The type1 IOMMU's DMA bookkeeping (`vfio_iommu_type1.c` in Linux 6.1) and
//! the translation devices' DMA goes through.

use crate::memory::{DmaBuffer, PAGE_SIZE};
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::sync::Arc;
use vfio_core::{DmaFlags, IovaRange};

/// IOMMU page sizes: 4 KiB, 2 MiB and 1 GiB, what intel-iommu reports with
/// second-level large pages (QEMU's VT-d advertises both).
/// Checked in the guest: `iommu_info_reports_the_vtd_geometry`.
pub(crate) const PGSIZE_BITMAP: u64 = 0x4020_1000;

/// `vfio_iommu_type1.dma_entry_limit`'s default.
pub(crate) const DMA_ENTRY_LIMIT: u32 = 65535;

/// Address width of QEMU 7.2's emulated VT-d (`aw-bits` default 39).
/// Checked in the guest (QEMU 7.2); QEMU 9.0 and later default to 48.
pub(crate) const IOMMU_ADDRESS_BITS: u32 = 39;

/// `VFIO_DMA_MAP_FLAG_VADDR`.
const MAP_FLAG_VADDR: u32 = 1 << 2;

/// The IOMMU's geometry (the default: the VT-d aperture less the
/// interrupt (MSI) window 0xfee00000..=0xfeefffff, which intel-iommu
/// reserves on x86), a setting of the host
/// ([`MockHostBuilder::iommu_address_bits`](crate::MockHostBuilder::iommu_address_bits)
/// and its neighbours): what type1 reports and enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IommuGeometry {
    /// The address width: the aperture is `0..=2^bits - 1`.
    pub address_bits: u32,
    /// The page-size bitmap (`iova_pgsizes`).
    pub page_sizes: u64,
    /// Reserved ranges, left out of the aperture.
    pub reserved: Vec<IovaRange>,
}

impl Default for IommuGeometry {
    fn default() -> Self {
        Self {
            address_bits: IOMMU_ADDRESS_BITS,
            page_sizes: PGSIZE_BITMAP,
            reserved: vec![IovaRange {
                start: 0xfee0_0000,
                end: 0xfeef_ffff,
            }],
        }
    }
}

impl IommuGeometry {
    /// The last IOVA of the aperture.
    pub(crate) fn last_iova(&self) -> u64 {
        if self.address_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << self.address_bits) - 1
        }
    }

    /// The smallest IOMMU page (`1 << __ffs(pgsize_bitmap)`).
    pub(crate) fn min_page(&self) -> u64 {
        self.page_sizes & self.page_sizes.wrapping_neg()
    }

    /// The aperture less the reserved ranges, sorted and disjoint (as
    /// `vfio_iommu_aper_resv_region_del` leaves the IOVA list).
    pub(crate) fn iova_ranges(&self) -> Vec<IovaRange> {
        let mut reserved = self.reserved.clone();
        reserved.sort_by_key(|r| r.start);
        let mut out = Vec::new();
        let mut start = 0u64;
        let last = self.last_iova();
        for r in reserved {
            if r.start > last {
                break;
            }
            if r.start > start {
                out.push(IovaRange {
                    start,
                    end: r.start - 1,
                });
            }
            match r.end.checked_add(1) {
                Some(next) => start = start.max(next),
                None => return out,
            }
        }
        if start <= last {
            out.push(IovaRange { start, end: last });
        }
        out
    }
}

/// One `VFIO_IOMMU_MAP_DMA`.
#[derive(Debug)]
struct Mapping {
    size: u64,
    buffer: Arc<DmaBuffer>,
    offset: usize,
    flags: DmaFlags,
}

/// A device-side access for [`DmaMap::access`].
#[derive(Debug)]
pub(crate) enum Access<'a> {
    /// The device reads memory into the buffer.
    Read(&'a mut [u8]),
    /// The device writes the bytes to memory.
    Write(&'a [u8]),
}

/// The mappings of one container.
#[derive(Debug, Default)]
pub(crate) struct DmaMap {
    /// Type1v2 semantics (unmaps may not split mappings).
    v2: bool,
    maps: BTreeMap<u64, Mapping>,
    /// The IOMMU's ranges and page sizes.
    geometry: IommuGeometry,
}

impl DmaMap {
    /// No mappings; `v2` for Type1v2 semantics.
    #[cfg(test)]
    pub(crate) fn new(v2: bool) -> Self {
        Self::with_geometry(v2, IommuGeometry::default())
    }

    /// No mappings, on an IOMMU of `geometry`.
    pub(crate) fn with_geometry(v2: bool, geometry: IommuGeometry) -> Self {
        Self {
            v2,
            maps: BTreeMap::new(),
            geometry,
        }
    }

    /// `VFIO_DMA_UNMAP_FLAG_ALL`: every mapping goes; the bytes unmapped.
    pub(crate) fn unmap_all(&mut self) -> u64 {
        let total = self
            .maps
            .values()
            .fold(0u64, |t, m| t.saturating_add(m.size));
        self.maps.clear();
        total
    }

    /// How many more mappings may be made (`dma_avail`).
    pub(crate) fn avail(&self) -> u32 {
        DMA_ENTRY_LIMIT.saturating_sub(u32::try_from(self.maps.len()).unwrap_or(u32::MAX))
    }

    /// The mapping overlapping `[iova, iova + size)` with the lowest IOVA.
    fn first_overlap(&self, iova: u64, size: u64) -> Option<(u64, &Mapping)> {
        let end = iova.saturating_add(size);
        if let Some((&start, m)) = self.maps.range(..=iova).next_back() {
            if start.saturating_add(m.size) > iova {
                return Some((start, m));
            }
        }
        self.maps.range(iova..end).next().map(|(&s, m)| (s, m))
    }

    /// The mapping containing `iova`.
    fn containing(&self, iova: u64) -> Option<(u64, &Mapping)> {
        self.maps
            .range(..=iova)
            .next_back()
            .filter(|(s, m)| s.saturating_add(m.size) > iova)
            .map(|(&s, m)| (s, m))
    }

    /// The mapping with the lowest IOVA overlapping `[iova, last]`, as
    /// `(start, size)`: an iommufd area lookup (`iopt_area_iter_first`).
    pub(crate) fn first_in(&self, iova: u64, last: u64) -> Option<(u64, u64)> {
        let size = last.checked_sub(iova)?.saturating_add(1);
        self.first_overlap(iova, size)
            .filter(|&(start, _)| start <= last)
            .map(|(start, m)| (start, m.size))
    }

    /// Every mapping as `(start, size, page offset of its first byte)`, in
    /// IOVA order.
    pub(crate) fn areas(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        // Buffers start on a page, so the offset's is the address's.
        self.maps
            .iter()
            .map(|(&start, m)| (start, m.size, (m.offset % PAGE_SIZE) as u64))
    }

    /// Adds a mapping the caller has checked (an iommufd area).
    pub(crate) fn insert(
        &mut self,
        iova: u64,
        size: u64,
        buffer: Arc<DmaBuffer>,
        offset: usize,
        flags: DmaFlags,
    ) {
        self.maps.insert(
            iova,
            Mapping {
                size,
                buffer,
                offset,
                flags,
            },
        );
    }

    /// Removes the mapping starting at `iova`.
    pub(crate) fn remove(&mut self, iova: u64) {
        self.maps.remove(&iova);
    }

    /// `vfio_dma_do_map`, in its order of checks.
    pub(crate) fn map(
        &mut self,
        iova: u64,
        size: u64,
        buffer: Arc<DmaBuffer>,
        offset: usize,
        flags: DmaFlags,
    ) -> Result<(), Errno> {
        let bits = flags.bits();
        // The ioctl wrapper: only READ, WRITE and VADDR are known.
        if bits & !(DmaFlags::READ.bits() | DmaFlags::WRITE.bits() | MAP_FLAG_VADDR) != 0 {
            return Err(Errno::EINVAL);
        }
        let prot = bits & (DmaFlags::READ.bits() | DmaFlags::WRITE.bits()) != 0;
        let set_vaddr = bits & MAP_FLAG_VADDR != 0;
        if prot == set_vaddr {
            return Err(Errno::EINVAL);
        }
        // The buffer is page-aligned, so the vaddr's alignment is the offset's.
        let vaddr_low = offset as u64 % PAGE_SIZE as u64;
        let min_page = self.geometry.min_page();
        if size == 0 || (size | iova | vaddr_low) & (min_page - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let Some(last) = iova.checked_add(size - 1) else {
            return Err(Errno::EINVAL);
        };
        let existing = self.first_overlap(iova, size);
        if set_vaddr {
            // Only a mapping whose vaddr was invalidated (UNMAP with the
            // VADDR flag, which this trait cannot ask for) can be updated.
            return Err(if existing.is_some() {
                Errno::EINVAL
            } else {
                Errno::ENOENT
            });
        }
        if existing.is_some() {
            return Err(Errno::EEXIST);
        }
        if self.avail() == 0 {
            return Err(Errno::ENOSPC);
        }
        if !self
            .geometry
            .iova_ranges()
            .iter()
            .any(|r| iova >= r.start && last <= r.end)
        {
            return Err(Errno::EINVAL);
        }
        self.insert(iova, size, buffer, offset, flags);
        Ok(())
    }

    /// `vfio_dma_do_unmap` (without the UNMAP_ALL and VADDR flags): returns
    /// the bytes unmapped.
    pub(crate) fn unmap(&mut self, iova: u64, size: u64) -> Result<u64, Errno> {
        let min_page = self.geometry.min_page();
        if iova & (min_page - 1) != 0 || size == 0 || size & (min_page - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let Some(last) = iova.checked_add(size - 1) else {
            return Err(Errno::EINVAL);
        };
        if self.v2 {
            // v2: the range must not bisect a mapping at either end.
            if self.containing(iova).is_some_and(|(s, _)| s != iova) {
                return Err(Errno::EINVAL);
            }
            if self.containing(last).is_some_and(|(s, m)| {
                s != last && s.saturating_add(m.size) != last.saturating_add(1)
            }) {
                return Err(Errno::EINVAL);
            }
        }
        let mut unmapped = 0u64;
        while let Some((start, m)) = self.first_overlap(iova, size) {
            if start > last {
                break;
            }
            // v1: a mapping starting before the range stops the unmap; one
            // starting inside it goes whole, even past the range's end.
            if !self.v2 && start < iova {
                break;
            }
            unmapped = unmapped.saturating_add(m.size);
            self.maps.remove(&start);
        }
        Ok(unmapped)
    }

    /// Performs a device's DMA access at `iova`, possibly across several
    /// mappings. As on hardware (and QEMU's VT-d), every byte that is
    /// mapped with the needed permission is transferred and every other
    /// byte is refused: the refused runs come back in the [`Outcome`].
    pub(crate) fn access(&self, iova: u64, access: Access<'_>) -> Outcome {
        let (len, need) = match &access {
            Access::Read(b) => (b.len(), DmaFlags::READ),
            Access::Write(d) => (d.len(), DmaFlags::WRITE),
        };
        let mut access = access;
        let mut out = Outcome::default();
        let mut at = 0usize;
        while at < len {
            let left = len - at;
            let Some(addr) = iova.checked_add(at as u64) else {
                // Past the top of the address space: the rest is refused.
                out.refuse(iova.wrapping_add(at as u64), left, false);
                break;
            };
            let Some((start, m)) = self.containing(addr) else {
                // A hole: refused up to the next mapping.
                let n = self.maps.range(addr..).next().map_or(left, |(&next, _)| {
                    usize::try_from(next - addr).unwrap_or(usize::MAX).min(left)
                });
                out.refuse(addr, n, false);
                at += n;
                continue;
            };
            let into = addr - start;
            let n = usize::try_from(m.size - into)
                .unwrap_or(usize::MAX)
                .min(left);
            if !m.flags.contains(need) {
                out.refuse(addr, n, true);
                at += n;
                continue;
            }
            let copied = usize::try_from(into)
                .ok()
                .and_then(|i| m.offset.checked_add(i))
                .is_some_and(|off| match &mut access {
                    Access::Read(buf) => buf
                        .get_mut(at..at + n)
                        .is_some_and(|dst| m.buffer.read(off, dst)),
                    Access::Write(data) => data
                        .get(at..at + n)
                        .is_some_and(|src| m.buffer.write(off, src)),
                });
            if copied {
                out.done += n;
            } else {
                out.refuse(addr, n, false);
            }
            at += n;
        }
        out
    }
}

/// What a device access did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Bytes transferred.
    pub done: usize,
    /// The refused runs, in address order.
    pub refused: Vec<Refused>,
}

/// A run of bytes the IOMMU refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    /// Its first IOVA.
    pub iova: u64,
    /// Its length in bytes.
    pub len: usize,
    /// True when a mapping covers it but lacks the permission.
    pub mapped: bool,
}

impl Outcome {
    /// Adds a refused run, merged with the previous one when they touch.
    pub(crate) fn refuse(&mut self, iova: u64, len: usize, mapped: bool) {
        if let Some(last) = self.refused.last_mut() {
            if last.mapped == mapped && last.iova.wrapping_add(last.len as u64) == iova {
                last.len += len;
                return;
            }
        }
        self.refused.push(Refused { iova, len, mapped });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MockDmaMemory;

    const RW: DmaFlags = DmaFlags(3);

    fn buf(pages: usize) -> Arc<DmaBuffer> {
        MockDmaMemory::alloc(pages * PAGE_SIZE, Arc::default())
            .unwrap()
            .buffer
    }

    #[test]
    fn map_checks_follow_type1() {
        let mut m = DmaMap::new(true);
        let b = buf(4);
        assert_eq!(m.map(0x1000, 0, b.clone(), 0, RW), Err(Errno::EINVAL));
        assert_eq!(
            m.map(0x1000, 0x1000, b.clone(), 0, DmaFlags(0)),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            m.map(0x1000, 0x1000, b.clone(), 0, DmaFlags(1 << 3)),
            Err(Errno::EINVAL)
        );
        assert_eq!(m.map(0x1800, 0x1000, b.clone(), 0, RW), Err(Errno::EINVAL));
        assert_eq!(
            m.map(0x1000, 0x1000, b.clone(), 0x10, RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            m.map(u64::MAX - 0xfff, 0x2000, b.clone(), 0, RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            m.map(0xfee0_0000, 0x1000, b.clone(), 0, RW),
            Err(Errno::EINVAL)
        );
        assert_eq!(m.map(1 << 39, 0x1000, b.clone(), 0, RW), Err(Errno::EINVAL));
        m.map(0x10_0000, 0x2000, b.clone(), 0, RW).unwrap();
        assert_eq!(
            m.map(0x10_1000, 0x1000, b.clone(), 0, RW),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            m.map(0x0f_f000, 0x2000, b.clone(), 0, RW),
            Err(Errno::EEXIST)
        );
        assert_eq!(m.avail(), DMA_ENTRY_LIMIT - 1);
    }

    #[test]
    fn v2_unmap_refuses_to_split_and_returns_sizes() {
        let mut m = DmaMap::new(true);
        let b = buf(4);
        m.map(0x10_0000, 0x2000, b.clone(), 0, RW).unwrap();
        m.map(0x20_0000, 0x1000, b.clone(), 0, RW).unwrap();
        assert_eq!(m.unmap(0x10_1000, 0x1000), Err(Errno::EINVAL));
        assert_eq!(m.unmap(0x10_0000, 0x1000), Err(Errno::EINVAL));
        assert_eq!(m.unmap(0x10_0800, 0x1000), Err(Errno::EINVAL));
        assert_eq!(m.unmap(0x10_0000, 0), Err(Errno::EINVAL));
        assert_eq!(m.unmap(0x30_0000, 0x1000), Ok(0));
        assert_eq!(m.unmap(0, 0x100_0000), Ok(0x3000));
        assert_eq!(m.avail(), DMA_ENTRY_LIMIT);
    }

    #[test]
    fn v1_unmap_takes_whole_mappings_that_start_inside() {
        let mut m = DmaMap::default();
        let b = buf(4);
        m.map(0x10_0000, 0x2000, b.clone(), 0, RW).unwrap();
        assert_eq!(m.unmap(0x10_1000, 0x1000), Ok(0));
        assert_eq!(m.unmap(0x10_0000, 0x1000), Ok(0x2000));
    }

    #[test]
    fn device_access_spans_mappings_and_faults_on_holes_and_permissions() {
        let mut m = DmaMap::new(true);
        let b = buf(2);
        m.map(0x1000, 0x1000, b.clone(), 0x1000, RW).unwrap();
        m.map(0x2000, 0x1000, b.clone(), 0, DmaFlags::READ).unwrap();
        assert_eq!(m.access(0x1ffe, Access::Write(&[1, 2])).done, 2);
        let mut out = [0u8; 4];
        assert_eq!(m.access(0x1ffe, Access::Read(&mut out)).done, 4);
        assert_eq!(out, [1, 2, 0, 0]);
        assert!(b.read(0x1ffe, &mut out[..2]));
        assert_eq!(out[..2], [1, 2]);
        let refused = |iova, len, mapped| Refused { iova, len, mapped };
        assert_eq!(
            m.access(0x1fff, Access::Write(&[7, 8])),
            Outcome {
                done: 1,
                refused: vec![refused(0x2000, 1, true)]
            }
        );
        assert!(b.read(0x1fff, &mut out[..1]));
        assert_eq!(out[0], 7, "the permitted byte was written");
        let mut two = [9u8; 2];
        assert_eq!(
            m.access(0x2fff, Access::Read(&mut two)),
            Outcome {
                done: 1,
                refused: vec![refused(0x3000, 1, false)]
            }
        );
        assert_eq!(two[1], 9, "a refused byte is left as it was");
    }

    #[test]
    fn an_access_over_a_hole_transfers_both_sides_of_it() {
        let mut m = DmaMap::new(true);
        let b = buf(3);
        m.map(0x1000, 0x1000, b.clone(), 0, RW).unwrap();
        m.map(0x3000, 0x1000, b.clone(), 0x2000, RW).unwrap();
        let data = vec![5u8; 0x3000];
        let o = m.access(0x1000, Access::Write(&data));
        assert_eq!(o.done, 0x2000);
        assert_eq!(
            o.refused,
            vec![Refused {
                iova: 0x2000,
                len: 0x1000,
                mapped: false
            }]
        );
        let mut back = [0u8; 1];
        assert!(b.read(0x2fff, &mut back));
        assert_eq!(back, [5]);
        let o = m.access(u64::MAX, Access::Write(&[1, 2]));
        assert_eq!((o.done, o.refused.len()), (0, 1));
        assert_eq!(o.refused[0].len, 2);
    }
}
