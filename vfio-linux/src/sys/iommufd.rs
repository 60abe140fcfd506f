//! The iommufd ioctls (`include/uapi/linux/iommufd.h`) and the VFIO device
//! ioctls of the cdev interface (`VFIO_DEVICE_BIND_IOMMUFD`,
//! `VFIO_DEVICE_{ATTACH,DETACH}_IOMMUFD_PT`), behind safe functions.
//!
//! Every iommufd argument begins with its own size (`size`, or `argsz` for
//! the VFIO ones): the kernel copies that many bytes, requires any part it
//! does not know to be zero (E2BIG otherwise) and refuses a size below the
//! fields it needs (EINVAL). The structs here are the Linux 6.12 layouts,
//! written from the header and checked field by field below.
//!
//! vfio-bindings 0.7 has the three VFIO structs, but in a later layout
//! (`token_uuid_ptr`, `pasid`); a 6.12 kernel accepts those larger sizes
//! only because the extra fields are zero, so the 6.12 layouts are written
//! here too, and their common fields checked against vfio-bindings'.

// UNSAFETY: ioctl(2) on iommufd and VFIO device file descriptors with
// pointers to argument structs (and, for IOMMU_IOAS_MAP, to user memory).
#![expect(unsafe_code)]

use nix::request_code_none;
use std::os::fd::{AsRawFd, BorrowedFd};
use vfio_bindings::bindings::vfio::{
    VFIO_BASE, VFIO_TYPE, vfio_device_attach_iommufd_pt, vfio_device_bind_iommufd,
    vfio_device_detach_iommufd_pt,
};

/// `IOMMUFD_TYPE`, the ioctl type of `/dev/iommu`.
const IOMMUFD_TYPE: u8 = b';';
/// `IOMMUFD_CMD_BASE`; each command's number is its offset from here.
const IOMMUFD_CMD_BASE: u8 = 0x80;

/// `IOMMU_IOAS_MAP_FIXED_IOVA`: map at the given IOVA rather than one the
/// kernel picks.
pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
/// `IOMMU_IOAS_MAP_WRITEABLE`: devices may write the mapping.
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
/// `IOMMU_IOAS_MAP_READABLE`: devices may read the mapping.
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// `struct iommu_destroy`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuDestroy {
    pub size: u32,
    pub id: u32,
}

/// `struct iommu_ioas_alloc`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasAlloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

/// `struct iommu_iova_range`: `start..=last`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IommuIovaRange {
    pub start: u64,
    pub last: u64,
}

/// `struct iommu_ioas_iova_ranges`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasIovaRanges {
    pub size: u32,
    pub ioas_id: u32,
    pub num_iovas: u32,
    pub reserved: u32,
    /// A user pointer to `num_iovas` `struct iommu_iova_range`.
    pub allowed_iovas: u64,
    pub out_iova_alignment: u64,
}

/// `struct iommu_ioas_map`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasMap {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_ioas_unmap`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct IommuIoasUnmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

/// `struct vfio_device_bind_iommufd` as of Linux 6.12.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioDeviceBindIommufd {
    pub argsz: u32,
    pub flags: u32,
    pub iommufd: i32,
    pub out_devid: u32,
}

/// `struct vfio_device_attach_iommufd_pt` as of Linux 6.12.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioDeviceAttachIommufdPt {
    pub argsz: u32,
    pub flags: u32,
    pub pt_id: u32,
}

/// `struct vfio_device_detach_iommufd_pt` as of Linux 6.12.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct VfioDeviceDetachIommufdPt {
    pub argsz: u32,
    pub flags: u32,
}

/// Size and field offsets, as the 6.12 header lays them out (every
/// `__aligned_u64` at an 8-byte boundary, no padding anywhere).
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<IommuDestroy>() == 8);
    assert!(offset_of!(IommuDestroy, id) == 4);

    assert!(size_of::<IommuIoasAlloc>() == 12);
    assert!(offset_of!(IommuIoasAlloc, flags) == 4);
    assert!(offset_of!(IommuIoasAlloc, out_ioas_id) == 8);

    assert!(size_of::<IommuIovaRange>() == 16);
    assert!(align_of::<IommuIovaRange>() == 8);
    assert!(offset_of!(IommuIovaRange, last) == 8);

    assert!(size_of::<IommuIoasIovaRanges>() == 32);
    assert!(offset_of!(IommuIoasIovaRanges, ioas_id) == 4);
    assert!(offset_of!(IommuIoasIovaRanges, num_iovas) == 8);
    assert!(offset_of!(IommuIoasIovaRanges, reserved) == 12);
    assert!(offset_of!(IommuIoasIovaRanges, allowed_iovas) == 16);
    assert!(offset_of!(IommuIoasIovaRanges, out_iova_alignment) == 24);

    assert!(size_of::<IommuIoasMap>() == 40);
    assert!(offset_of!(IommuIoasMap, flags) == 4);
    assert!(offset_of!(IommuIoasMap, ioas_id) == 8);
    assert!(offset_of!(IommuIoasMap, reserved) == 12);
    assert!(offset_of!(IommuIoasMap, user_va) == 16);
    assert!(offset_of!(IommuIoasMap, length) == 24);
    assert!(offset_of!(IommuIoasMap, iova) == 32);

    assert!(size_of::<IommuIoasUnmap>() == 24);
    assert!(offset_of!(IommuIoasUnmap, ioas_id) == 4);
    assert!(offset_of!(IommuIoasUnmap, iova) == 8);
    assert!(offset_of!(IommuIoasUnmap, length) == 16);

    assert!(size_of::<VfioDeviceBindIommufd>() == 16);
    assert!(
        offset_of!(VfioDeviceBindIommufd, flags) == offset_of!(vfio_device_bind_iommufd, flags)
    );
    assert!(
        offset_of!(VfioDeviceBindIommufd, iommufd) == offset_of!(vfio_device_bind_iommufd, iommufd)
    );
    assert!(
        offset_of!(VfioDeviceBindIommufd, out_devid)
            == offset_of!(vfio_device_bind_iommufd, out_devid)
    );

    assert!(size_of::<VfioDeviceAttachIommufdPt>() == 12);
    assert!(
        offset_of!(VfioDeviceAttachIommufdPt, flags)
            == offset_of!(vfio_device_attach_iommufd_pt, flags)
    );
    assert!(
        offset_of!(VfioDeviceAttachIommufdPt, pt_id)
            == offset_of!(vfio_device_attach_iommufd_pt, pt_id)
    );

    assert!(size_of::<VfioDeviceDetachIommufdPt>() == 8);
    assert!(
        offset_of!(VfioDeviceDetachIommufdPt, flags)
            == offset_of!(vfio_device_detach_iommufd_pt, flags)
    );
};

mod raw {
    use super::*;

    nix::ioctl_write_ptr_bad!(
        destroy,
        request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_BASE),
        IommuDestroy
    );
    nix::ioctl_readwrite_bad!(
        ioas_alloc,
        request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 1),
        IommuIoasAlloc
    );
    nix::ioctl_readwrite_bad!(
        ioas_iova_ranges,
        request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 4),
        IommuIoasIovaRanges
    );
    nix::ioctl_readwrite_bad!(
        ioas_map,
        request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 5),
        IommuIoasMap
    );
    nix::ioctl_readwrite_bad!(
        ioas_unmap,
        request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 6),
        IommuIoasUnmap
    );
    nix::ioctl_readwrite_bad!(
        device_bind_iommufd,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 18),
        VfioDeviceBindIommufd
    );
    nix::ioctl_readwrite_bad!(
        device_attach_iommufd_pt,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 19),
        VfioDeviceAttachIommufdPt
    );
    nix::ioctl_write_ptr_bad!(
        device_detach_iommufd_pt,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 20),
        VfioDeviceDetachIommufdPt
    );
}

/// The `size` field of an iommufd argument of type `T`.
const fn size32<T>() -> u32 {
    size_of::<T>() as u32
}

/// `IOMMU_DESTROY` of object `id`.
pub fn destroy(iommufd: BorrowedFd<'_>, id: u32) -> nix::Result<()> {
    let cmd = IommuDestroy {
        size: size32::<IommuDestroy>(),
        id,
    };
    // SAFETY: `cmd` is a valid iommu_destroy whose size field says its size;
    // the kernel only reads it.
    unsafe { raw::destroy(iommufd.as_raw_fd(), &cmd) }.map(drop)
}

/// `IOMMU_IOAS_ALLOC`: the new IOAS's id.
pub fn ioas_alloc(iommufd: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut cmd = IommuIoasAlloc {
        size: size32::<IommuIoasAlloc>(),
        ..Default::default()
    };
    // SAFETY: `cmd` is a valid, writable iommu_ioas_alloc whose size field
    // says its size; the kernel writes back at most that many bytes.
    unsafe { raw::ioas_alloc(iommufd.as_raw_fd(), &mut cmd) }?;
    Ok(cmd.out_ioas_id)
}

/// One `IOMMU_IOAS_IOVA_RANGES` call with room for `ranges.len()` ranges.
/// Returns the kernel's `num_iovas` (the total, which may exceed the room:
/// the call then fails with EMSGSIZE, which is returned as `Ok` with the
/// ranges that fit) and `out_iova_alignment`.
pub fn ioas_iova_ranges(
    iommufd: BorrowedFd<'_>,
    ioas_id: u32,
    ranges: &mut [IommuIovaRange],
) -> nix::Result<(u32, u64)> {
    let room = u32::try_from(ranges.len()).map_err(|_| nix::errno::Errno::EINVAL)?;
    let mut cmd = IommuIoasIovaRanges {
        size: size32::<IommuIoasIovaRanges>(),
        ioas_id,
        num_iovas: room,
        reserved: 0,
        allowed_iovas: ranges.as_mut_ptr() as u64,
        out_iova_alignment: 0,
    };
    // SAFETY: `cmd` is a valid, writable iommu_ioas_iova_ranges whose size
    // field says its size; `allowed_iovas` points to `room` writable
    // iommu_iova_range structs (the slice, borrowed mutably for the call),
    // and the kernel writes at most `num_iovas` of them there.
    match unsafe { raw::ioas_iova_ranges(iommufd.as_raw_fd(), &mut cmd) } {
        Ok(_) | Err(nix::errno::Errno::EMSGSIZE) => Ok((cmd.num_iovas, cmd.out_iova_alignment)),
        Err(e) => Err(e),
    }
}

/// `IOMMU_IOAS_MAP`: lets the devices attached to IOAS `ioas_id` reach
/// `length` bytes of this process's memory at `user_va`, at `iova` if
/// `flags` has [`IOMMU_IOAS_MAP_FIXED_IOVA`], else at an IOVA the kernel
/// picks. Returns the IOVA.
///
/// # Safety
///
/// From the call on, devices attached to the IOAS (now or later) read the
/// pages behind `user_va..user_va + length`, and write them if `flags` has
/// [`IOMMU_IOAS_MAP_WRITEABLE`], at any moment, without the CPU taking
/// part, until the range is unmapped or the IOAS destroyed. iommufd pins
/// the pages when a hardware page table (a device's attachment) needs
/// them: at the map if one is attached, else at the first attach, reading
/// whatever the process has at those addresses *then* (`iopt_alloc_pages`
/// records only the address; `pfn_reader_user_pin` pins through it). The
/// caller must make sure that, for as long as the mapping exists:
///
/// - no Rust reference to plain data covers those pages and no plain
///   (non-atomic, non-volatile) access touches them (see
///   [`iommu_map_dma`](super::iommu_map_dma) for why: a device access under
///   a reference is a data race the compiler may miscompile);
/// - the addresses keep the same memory until the range is unmapped or the
///   IOAS destroyed: unlike Type1, which pins at the map, an attach after
///   a `munmap` would pin whatever was mapped at those addresses since,
///   for instance memory of the Rust allocator.
pub unsafe fn ioas_map(
    iommufd: BorrowedFd<'_>,
    ioas_id: u32,
    user_va: u64,
    length: u64,
    iova: u64,
    flags: u32,
) -> nix::Result<u64> {
    let mut cmd = IommuIoasMap {
        size: size32::<IommuIoasMap>(),
        flags,
        ioas_id,
        reserved: 0,
        user_va,
        length,
        iova,
    };
    // SAFETY: `cmd` is a valid, writable iommu_ioas_map whose size field
    // says its size; the kernel writes back only within it. What the
    // kernel then does with the pages it names is this function's own
    // contract, upheld by its caller.
    unsafe { raw::ioas_map(iommufd.as_raw_fd(), &mut cmd) }?;
    Ok(cmd.iova)
}

/// `IOMMU_IOAS_UNMAP`: returns the number of bytes unmapped.
pub fn ioas_unmap(
    iommufd: BorrowedFd<'_>,
    ioas_id: u32,
    iova: u64,
    length: u64,
) -> nix::Result<u64> {
    let mut cmd = IommuIoasUnmap {
        size: size32::<IommuIoasUnmap>(),
        ioas_id,
        iova,
        length,
    };
    // SAFETY: `cmd` is a valid, writable iommu_ioas_unmap whose size field
    // says its size; the kernel writes back only its length.
    unsafe { raw::ioas_unmap(iommufd.as_raw_fd(), &mut cmd) }?;
    Ok(cmd.length)
}

/// `VFIO_DEVICE_BIND_IOMMUFD`: the device's object id in the iommufd.
pub fn device_bind_iommufd(device: BorrowedFd<'_>, iommufd: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut cmd = VfioDeviceBindIommufd {
        argsz: size32::<VfioDeviceBindIommufd>(),
        flags: 0,
        iommufd: iommufd.as_raw_fd(),
        out_devid: 0,
    };
    // SAFETY: `cmd` is a valid, writable vfio_device_bind_iommufd whose
    // argsz says its size; the kernel writes back only `out_devid`. The
    // iommufd is borrowed, so open for the call; the kernel takes its own
    // reference to it.
    unsafe { raw::device_bind_iommufd(device.as_raw_fd(), &mut cmd) }?;
    Ok(cmd.out_devid)
}

/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`: the page table id the kernel reports back.
pub fn device_attach_iommufd_pt(device: BorrowedFd<'_>, pt_id: u32) -> nix::Result<u32> {
    let mut cmd = VfioDeviceAttachIommufdPt {
        argsz: size32::<VfioDeviceAttachIommufdPt>(),
        flags: 0,
        pt_id,
    };
    // SAFETY: `cmd` is a valid, writable vfio_device_attach_iommufd_pt whose
    // argsz says its size; the kernel writes back only `pt_id`.
    unsafe { raw::device_attach_iommufd_pt(device.as_raw_fd(), &mut cmd) }?;
    Ok(cmd.pt_id)
}

/// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
pub fn device_detach_iommufd_pt(device: BorrowedFd<'_>) -> nix::Result<()> {
    let cmd = VfioDeviceDetachIommufdPt {
        argsz: size32::<VfioDeviceDetachIommufdPt>(),
        flags: 0,
    };
    // SAFETY: `cmd` is a valid vfio_device_detach_iommufd_pt whose argsz
    // says its size; the kernel only reads it.
    unsafe { raw::device_detach_iommufd_pt(device.as_raw_fd(), &cmd) }.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request codes are `_IO(type, nr)`: no size or direction bits,
    /// as the headers define them.
    #[test]
    fn request_codes_are_the_headers() {
        let io = |ty: u8, nr: u8| (u32::from(ty) << 8) | u32::from(nr);
        assert_eq!(
            request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_BASE) as u32,
            0x3b80
        );
        assert_eq!(
            request_code_none!(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 6) as u32,
            io(b';', 0x86)
        );
        assert_eq!(request_code_none!(VFIO_TYPE, VFIO_BASE + 18) as u32, 0x3b76);
        assert_eq!(
            request_code_none!(VFIO_TYPE, VFIO_BASE + 20) as u32,
            io(b';', 100 + 20)
        );
    }

    #[test]
    fn struct_sizes_are_the_6_12_headers() {
        assert_eq!(size_of::<IommuDestroy>(), 8);
        assert_eq!(size_of::<IommuIoasAlloc>(), 12);
        assert_eq!(size_of::<IommuIovaRange>(), 16);
        assert_eq!(size_of::<IommuIoasIovaRanges>(), 32);
        assert_eq!(size_of::<IommuIoasMap>(), 40);
        assert_eq!(size_of::<IommuIoasUnmap>(), 24);
        assert_eq!(size_of::<VfioDeviceBindIommufd>(), 16);
        assert_eq!(size_of::<VfioDeviceAttachIommufdPt>(), 12);
        assert_eq!(size_of::<VfioDeviceDetachIommufdPt>(), 8);
        // vfio-bindings' later layouts only add fields at the end.
        assert!(size_of::<vfio_device_bind_iommufd>() > size_of::<VfioDeviceBindIommufd>());
        assert!(
            size_of::<vfio_device_attach_iommufd_pt>() > size_of::<VfioDeviceAttachIommufdPt>()
        );
    }

    #[test]
    fn map_flags_are_the_headers() {
        assert_eq!(
            (
                IOMMU_IOAS_MAP_FIXED_IOVA,
                IOMMU_IOAS_MAP_WRITEABLE,
                IOMMU_IOAS_MAP_READABLE
            ),
            (1, 2, 4)
        );
    }
}
