//! Partial, read-only and sparse region mappings, `VFIO_DEVICE_FEATURE` and
//! PCI hot reset for [`LinuxDevice`](crate::LinuxDevice).

use crate::decode::MemoryDecode;
use crate::memory::LinuxRegion;
use crate::mmap::Mapping;
use crate::sys_uapi;
use nix::errno::Errno;
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use vfio_core::uapi::{DependentDevice, HotResetInfo, RegionAccess, check_region_range};
use vfio_core::{Error, ErrorKind, Operation, PciAddress, RegionFlags, RegionInfo, Result};

/// Maps `len` bytes of `region` from `offset` of the device file `fd`.
pub(crate) fn map_file_range(
    fd: BorrowedFd<'_>,
    region: &RegionInfo,
    offset: u64,
    len: u64,
    writable: bool,
) -> Result<Mapping> {
    let len = usize::try_from(len)
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| Error::from_errno(Operation::MapRegion, Errno::EINVAL))?;
    let at = region
        .offset
        .checked_add(offset)
        .ok_or_else(|| Error::from_errno(Operation::MapRegion, Errno::EINVAL))?;
    Mapping::map_file(fd, at, len, writable).map_err(|e| {
        Error::from_errno(Operation::MapRegion, e).with_detail(format_args!(
            "{len:#x} bytes at {offset:#x} of region {}",
            region.index
        ))
    })
}

/// `Device::map_region_range` for a device file.
pub(crate) fn map_region_range(
    fd: BorrowedFd<'_>,
    region: &RegionInfo,
    offset: u64,
    len: u64,
    access: RegionAccess,
    decode: MemoryDecode,
) -> Result<LinuxRegion> {
    // Only a range past the region is refused here: the device file holds
    // the next region there. Everything else is the kernel's to answer.
    let page = vfio_core::uapi::MMAP_PAGE_SIZE;
    let phys_len = region.size.div_ceil(page) * page;
    if offset
        .checked_add(len.div_ceil(page).saturating_mul(page))
        .is_none_or(|end| end > phys_len)
    {
        return check_region_range(region, offset, len)
            .and_then(|()| Err(Error::from_errno(Operation::MapRegion, Errno::EINVAL)));
    }
    let writable = access == RegionAccess::ReadWrite && region.flags.contains(RegionFlags::WRITE);
    let map = map_file_range(fd, region, offset, len, writable)?;
    Ok(LinuxRegion::new(map, writable).gated_by(decode))
}

/// `Device::map_region` of a region with sparse-mmap `areas`: each area
/// mapped on its own, one region spanning them all.
pub(crate) fn map_sparse(
    fd: BorrowedFd<'_>,
    region: &RegionInfo,
    areas: &[vfio_core::SparseArea],
    decode: MemoryDecode,
) -> Result<LinuxRegion> {
    let writable = region.flags.contains(RegionFlags::WRITE);
    let mut maps = Vec::with_capacity(areas.len());
    for area in areas.iter().filter(|a| a.size != 0) {
        check_region_range(region, area.offset, area.size)?;
        maps.push((
            area.offset,
            map_file_range(fd, region, area.offset, area.size, writable)?,
        ));
    }
    if maps.is_empty() {
        return Err(
            Error::new(Operation::MapRegion, ErrorKind::InvalidArgument).with_detail(format_args!(
                "region {} has a sparse-mmap capability with no area to map",
                region.index
            )),
        );
    }
    let (base, first) = maps.remove(0);
    Ok(LinuxRegion::sparse(first, base, maps, region.size, writable).gated_by(decode))
}

/// `Device::hot_reset_info`: asks with room for one device, then again
/// with room for the count an ENOSPC reports.
pub(crate) fn hot_reset_info(fd: BorrowedFd<'_>) -> Result<HotResetInfo> {
    let mut room = 1usize;
    for _ in 0..4 {
        match sys_uapi::device_get_pci_hot_reset_info(fd, room) {
            Ok((flags, count, bytes)) => {
                let devices = bytes
                    .chunks_exact(8)
                    .take(count as usize)
                    .map(parse_dependent)
                    .collect::<Result<_>>()?;
                return Ok(HotResetInfo { flags, devices });
            }
            Err((Errno::ENOSPC, count)) if count as usize > room => room = count as usize,
            Err((e, _)) => return Err(Error::from_errno(Operation::HotResetInfo, e)),
        }
    }
    Err(Error::new(Operation::HotResetInfo, ErrorKind::Malformed)
        .with_detail("the device count kept growing"))
}

/// One `struct vfio_pci_dependent_device`.
fn parse_dependent(b: &[u8]) -> Result<DependentDevice> {
    let group_id = u32::from_ne_bytes(b[..4].try_into().expect("4 bytes"));
    let segment = u16::from_ne_bytes(b[4..6].try_into().expect("2 bytes"));
    let (bus, devfn) = (b[6], b[7]);
    // devfn >> 3 is below 32 and devfn & 7 below 8: always an address.
    let address = PciAddress::new(u32::from(segment), bus, devfn >> 3, devfn & 7)
        .ok_or_else(|| Error::new(Operation::HotResetInfo, ErrorKind::Malformed))?;
    Ok(DependentDevice { address, group_id })
}
