//! Every raw VFIO ioctl, behind safe functions.
//!
//! Fixed-size arguments use the `vfio-bindings` structs; variable-length ones
//! (`vfio_irq_set` with N eventfds, info structs followed by a capability
//! chain) are built and read as byte buffers through zerocopy mirrors of the
//! uAPI headers, so no payload has a fixed cap. The iommufd ioctls and the
//! device cdev's are in the `iommufd` submodule, re-exported here.

// UNSAFETY: ioctl(2) on VFIO file descriptors with pointers to argument
// buffers, and adopting the file descriptor VFIO_GROUP_GET_DEVICE_FD returns.
#![expect(unsafe_code)]

use nix::errno::Errno;
use nix::request_code_none;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use vfio_bindings::bindings::vfio::{
    VFIO_BASE, VFIO_TYPE, vfio_device_info, vfio_group_status, vfio_iommu_type1_dma_map,
    vfio_iommu_type1_dma_unmap, vfio_iommu_type1_info, vfio_irq_info, vfio_irq_set,
    vfio_region_info,
};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod iommufd;
pub use iommufd::*;

/// Downstream kernels put their private VFIO ioctls from here on.
const VFIO_PRIVATE_BASE: u32 = 200;

mod raw {
    use super::*;
    use std::os::raw::{c_char, c_int};

    nix::ioctl_none_bad!(get_api_version, request_code_none!(VFIO_TYPE, VFIO_BASE));
    nix::ioctl_write_int_bad!(
        check_extension,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 1)
    );
    nix::ioctl_write_int_bad!(set_iommu, request_code_none!(VFIO_TYPE, VFIO_BASE + 2));
    nix::ioctl_read_bad!(
        group_get_status,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 3),
        vfio_group_status
    );
    nix::ioctl_write_ptr_bad!(
        group_set_container,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 4),
        c_int
    );
    nix::ioctl_none_bad!(
        group_unset_container,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 5)
    );
    nix::ioctl_write_ptr_bad!(
        group_get_device_fd,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 6),
        c_char
    );
    nix::ioctl_read_bad!(
        device_get_info,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 7),
        vfio_device_info
    );
    nix::ioctl_readwrite_bad!(
        device_get_region_info,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 8),
        u8
    );
    nix::ioctl_readwrite_bad!(
        device_get_irq_info,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 9),
        vfio_irq_info
    );
    nix::ioctl_write_ptr_bad!(
        device_set_irqs,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 10),
        u8
    );
    nix::ioctl_none_bad!(device_reset, request_code_none!(VFIO_TYPE, VFIO_BASE + 11));
    nix::ioctl_readwrite_bad!(
        iommu_get_info,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 12),
        u8
    );
    nix::ioctl_write_ptr_bad!(
        iommu_map_dma,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 13),
        vfio_iommu_type1_dma_map
    );
    nix::ioctl_readwrite_bad!(
        iommu_unmap_dma,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 14),
        vfio_iommu_type1_dma_unmap
    );
    nix::ioctl_write_ptr_bad!(
        group_set_keep_alive,
        request_code_none!(VFIO_TYPE, VFIO_PRIVATE_BASE),
        c_char
    );
}

/// The fixed part of `struct vfio_irq_set`; eventfds or bools follow it.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IrqSetHeader {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
}

/// The fixed part of `struct vfio_region_info`; a capability chain may follow.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RegionInfoHeader {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

/// The fixed part of `struct vfio_iommu_type1_info`; a capability chain may follow.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IommuInfoHeader {
    pub argsz: u32,
    pub flags: u32,
    pub iova_pgsizes: u64,
    pub cap_offset: u32,
    pub pad: u32,
}

// The mirrors must match the uAPI layouts exactly.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<IrqSetHeader>() == size_of::<vfio_irq_set>());
    assert!(offset_of!(IrqSetHeader, count) == offset_of!(vfio_irq_set, count));
    assert!(size_of::<RegionInfoHeader>() == size_of::<vfio_region_info>());
    assert!(offset_of!(RegionInfoHeader, cap_offset) == offset_of!(vfio_region_info, cap_offset));
    assert!(offset_of!(RegionInfoHeader, offset) == offset_of!(vfio_region_info, offset));
    assert!(size_of::<IommuInfoHeader>() == size_of::<vfio_iommu_type1_info>());
    assert!(
        offset_of!(IommuInfoHeader, cap_offset) == offset_of!(vfio_iommu_type1_info, cap_offset)
    );
};

/// The return value of an ioctl that answers with an int.
fn int_result(r: nix::Result<i32>) -> nix::Result<u32> {
    r.map(|v| v as u32)
}

pub fn get_api_version(container: BorrowedFd<'_>) -> nix::Result<i32> {
    // SAFETY: VFIO_GET_API_VERSION takes no argument; the fd is borrowed, so open.
    unsafe { raw::get_api_version(container.as_raw_fd()) }
}

pub fn check_extension(container: BorrowedFd<'_>, extension: u32) -> nix::Result<u32> {
    // SAFETY: VFIO_CHECK_EXTENSION takes its argument by value; no memory is shared.
    int_result(unsafe { raw::check_extension(container.as_raw_fd(), extension as i32) })
}

pub fn set_iommu(container: BorrowedFd<'_>, iommu: u32) -> nix::Result<()> {
    // SAFETY: VFIO_SET_IOMMU takes its argument by value; no memory is shared.
    unsafe { raw::set_iommu(container.as_raw_fd(), iommu as i32) }.map(drop)
}

pub fn group_get_status(group: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut status = vfio_group_status {
        argsz: size_of::<vfio_group_status>() as u32,
        flags: 0,
    };
    // SAFETY: `status` is a valid, writable vfio_group_status whose argsz says
    // its size; the kernel writes only within it.
    unsafe { raw::group_get_status(group.as_raw_fd(), &mut status) }?;
    Ok(status.flags)
}

pub fn group_set_container(group: BorrowedFd<'_>, container: BorrowedFd<'_>) -> nix::Result<()> {
    let fd = container.as_raw_fd();
    // SAFETY: the kernel reads one int (the container fd, open for the call's
    // duration because it is borrowed) from a valid pointer.
    unsafe { raw::group_set_container(group.as_raw_fd(), &fd) }.map(drop)
}

pub fn group_unset_container(group: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: VFIO_GROUP_UNSET_CONTAINER takes no argument.
    unsafe { raw::group_unset_container(group.as_raw_fd()) }.map(drop)
}

pub fn group_get_device_fd(group: BorrowedFd<'_>, name: &CStr) -> nix::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated and outlives the call; the kernel only reads it.
    let fd = unsafe { raw::group_get_device_fd(group.as_raw_fd(), name.as_ptr()) }?;
    // SAFETY: on success the ioctl returns a new file descriptor that nothing
    // else owns; adopting it here makes it closed exactly once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn group_set_keep_alive(group: BorrowedFd<'_>, name: &CStr) -> nix::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call; a kernel without
    // this private ioctl rejects the request code without touching memory.
    unsafe { raw::group_set_keep_alive(group.as_raw_fd(), name.as_ptr()) }.map(drop)
}

pub fn device_get_info(device: BorrowedFd<'_>) -> nix::Result<vfio_device_info> {
    let mut info = vfio_device_info {
        argsz: size_of::<vfio_device_info>() as u32,
        ..Default::default()
    };
    // SAFETY: `info` is a valid, writable vfio_device_info whose argsz says its
    // size; the kernel writes only within argsz.
    unsafe { raw::device_get_info(device.as_raw_fd(), &mut info) }?;
    Ok(info)
}

/// The largest `argsz` an info ioctl may ask for before it is refused with
/// E2BIG. Real capability chains are a few hundred bytes (a sparse-mmap
/// area or an IOVA range is 16 bytes); the kernel's answer is a `u32`, and a
/// buggy or hostile one must not make us allocate up to 4 GiB.
pub const MAX_INFO_ARGSZ: usize = 1 << 20;

/// Calls an info ioctl whose struct may be followed by a capability chain:
/// first with just the header, then, if the kernel asks for more room
/// (a larger argsz on return, at most [`MAX_INFO_ARGSZ`]), with a buffer of
/// that size. Returns the whole buffer as the kernel filled it. `call` is
/// handed a buffer whose length is at least the argsz written at its start.
fn info_with_caps<H: IntoBytes + FromBytes + Immutable + KnownLayout + Copy>(
    mut header: H,
    argsz_of: impl Fn(&H) -> u32,
    set_argsz: impl Fn(&mut H, u32),
    call: impl Fn(&mut [u8]) -> nix::Result<i32>,
) -> nix::Result<Vec<u8>> {
    let base = size_of::<H>();
    let mut buf = header.as_bytes().to_vec();
    call(&mut buf)?;
    header = H::read_from_bytes(&buf[..base]).map_err(|_| Errno::EIO)?;
    let wanted = argsz_of(&header) as usize;
    if wanted <= base {
        return Ok(buf);
    }
    if wanted > MAX_INFO_ARGSZ {
        return Err(Errno::E2BIG);
    }
    buf.resize(wanted, 0);
    set_argsz(&mut header, wanted as u32);
    buf[..base].copy_from_slice(header.as_bytes());
    call(&mut buf)?;
    Ok(buf)
}

pub fn device_get_region_info(device: BorrowedFd<'_>, index: u32) -> nix::Result<Vec<u8>> {
    let header = RegionInfoHeader {
        argsz: size_of::<RegionInfoHeader>() as u32,
        flags: 0,
        index,
        cap_offset: 0,
        size: 0,
        offset: 0,
    };
    info_with_caps(
        header,
        |h| h.argsz,
        |h, n| h.argsz = n,
        // SAFETY: `info_with_caps` passes a buffer at least as long as the argsz
        // written at its start; the kernel writes only within argsz.
        |buf| unsafe { raw::device_get_region_info(device.as_raw_fd(), buf.as_mut_ptr()) },
    )
}

pub fn iommu_get_info(container: BorrowedFd<'_>) -> nix::Result<Vec<u8>> {
    let header = IommuInfoHeader {
        argsz: size_of::<IommuInfoHeader>() as u32,
        flags: 0,
        iova_pgsizes: 0,
        cap_offset: 0,
        pad: 0,
    };
    info_with_caps(
        header,
        |h| h.argsz,
        |h, n| h.argsz = n,
        // SAFETY: `info_with_caps` passes a buffer at least as long as the argsz
        // written at its start; the kernel writes only within argsz.
        |buf| unsafe { raw::iommu_get_info(container.as_raw_fd(), buf.as_mut_ptr()) },
    )
}

pub fn device_get_irq_info(device: BorrowedFd<'_>, index: u32) -> nix::Result<vfio_irq_info> {
    let mut info = vfio_irq_info {
        argsz: size_of::<vfio_irq_info>() as u32,
        index,
        ..Default::default()
    };
    // SAFETY: `info` is a valid, writable vfio_irq_info whose argsz says its size.
    unsafe { raw::device_get_irq_info(device.as_raw_fd(), &mut info) }?;
    Ok(info)
}

/// `VFIO_DEVICE_SET_IRQS` with `payload` (bools or eventfds) after the header.
/// `argsz` and `count` are filled in here; `count` is the caller's.
pub fn device_set_irqs(
    device: BorrowedFd<'_>,
    mut header: IrqSetHeader,
    payload: &[u8],
) -> nix::Result<()> {
    let len = size_of::<IrqSetHeader>()
        .checked_add(payload.len())
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(Errno::E2BIG)?;
    header.argsz = len;
    let mut buf = Vec::with_capacity(len as usize);
    buf.extend_from_slice(header.as_bytes());
    buf.extend_from_slice(payload);
    // SAFETY: `buf` holds a vfio_irq_set header whose argsz is the buffer's
    // length, followed by its payload; the kernel only reads it.
    unsafe { raw::device_set_irqs(device.as_raw_fd(), buf.as_ptr()) }.map(drop)
}

pub fn device_reset(device: BorrowedFd<'_>) -> nix::Result<()> {
    // SAFETY: VFIO_DEVICE_RESET takes no argument.
    unsafe { raw::device_reset(device.as_raw_fd()) }.map(drop)
}

/// `VFIO_IOMMU_MAP_DMA`: lets the container's devices reach `size` bytes
/// of this process's memory at `vaddr` through IOVA `iova`.
///
/// # Safety
///
/// The kernel pins the pages behind `vaddr..vaddr + size` as they are at the
/// time of the call (they cannot be swapped out, migrated or freed until
/// the IOVA range is unmapped or the container is closed) and programs the
/// IOMMU so that every device in the container can read them, and write
/// them if `flags` has `VFIO_DMA_MAP_FLAG_WRITE`, at any moment, without the
/// CPU taking part. The caller must make sure that, for as long as the
/// mapping exists:
///
/// - no Rust reference to plain data (`&[u8]`, `&mut [u8]`, `&T` or
///   `&mut T` for a `T` without interior mutability) covers those pages,
///   and no plain (non-atomic, non-volatile) load or store touches them: a
///   reference promises the compiler that nothing else writes the memory
///   (`&T`) or reads it (`&mut T`) while it lives, and a device writing
///   under a `&[u8]`, or reading while a `&mut [u8]` is written, breaks
///   that promise: undefined behaviour, which the optimizer may turn into
///   stale, merged or elided accesses. DMA-able memory may be reached only
///   through atomics (`&[AtomicU64]`: shared references to atomics promise
///   nothing about other writers) or raw pointers with volatile access;
/// - the pages are never reused for other Rust data: memory from the Rust
///   allocator (a `Vec`, a `Box`) goes back to it when dropped, and the
///   device would then scribble on whatever the allocator hands out next.
///   Memory from `mmap` that is later `munmap`ed is fine: the kernel keeps
///   the pinned pages for the device, and a new mapping at the same address
///   gets other pages.
pub unsafe fn iommu_map_dma(
    container: BorrowedFd<'_>,
    vaddr: u64,
    iova: u64,
    size: u64,
    flags: u32,
) -> nix::Result<()> {
    let map = vfio_iommu_type1_dma_map {
        argsz: size_of::<vfio_iommu_type1_dma_map>() as u32,
        flags,
        vaddr,
        iova,
        size,
    };
    // SAFETY: `map` is a valid vfio_iommu_type1_dma_map that outlives the
    // call; the kernel only reads it. What the kernel then does with the
    // pages it names is this function's own contract, upheld by its caller.
    unsafe { raw::iommu_map_dma(container.as_raw_fd(), &map) }.map(drop)
}

/// `VFIO_IOMMU_UNMAP_DMA`: returns the number of bytes unmapped.
pub fn iommu_unmap_dma(container: BorrowedFd<'_>, iova: u64, size: u64) -> nix::Result<u64> {
    let mut unmap = vfio_iommu_type1_dma_unmap {
        argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
        iova,
        size,
        ..Default::default()
    };
    // SAFETY: `unmap` is a valid, writable vfio_iommu_type1_dma_unmap without a
    // bitmap; the kernel writes back only its size field.
    unsafe { raw::iommu_unmap_dma(container.as_raw_fd(), &mut unmap) }?;
    Ok(unmap.size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn header() -> RegionInfoHeader {
        RegionInfoHeader {
            argsz: size_of::<RegionInfoHeader>() as u32,
            flags: 0,
            index: 0,
            cap_offset: 0,
            size: 0,
            offset: 0,
        }
    }

    /// Runs `info_with_caps` against a fake kernel that answers every call
    /// with `answer_argsz`, recording the buffer length of each call.
    fn ask(answer_argsz: u32) -> (nix::Result<Vec<u8>>, Vec<usize>) {
        let calls = RefCell::new(Vec::new());
        let result = info_with_caps(
            header(),
            |h| h.argsz,
            |h, n| h.argsz = n,
            |buf: &mut [u8]| {
                calls.borrow_mut().push(buf.len());
                let asked = u32::from_ne_bytes(buf[..4].try_into().unwrap());
                assert!(asked as usize <= buf.len(), "argsz past the buffer");
                buf[..4].copy_from_slice(&answer_argsz.to_ne_bytes());
                Ok(0)
            },
        );
        (result, calls.into_inner())
    }

    #[test]
    fn a_huge_argsz_from_the_kernel_is_refused_without_allocating() {
        for argsz in [MAX_INFO_ARGSZ as u32 + 1, u32::MAX] {
            let (result, calls) = ask(argsz);
            assert_eq!(result.unwrap_err(), Errno::E2BIG);
            assert_eq!(calls, [size_of::<RegionInfoHeader>()]);
        }
    }

    #[test]
    fn a_larger_argsz_gets_one_more_call_with_that_much_room() {
        let (result, calls) = ask(0x80);
        assert_eq!(result.unwrap().len(), 0x80);
        assert_eq!(calls, [size_of::<RegionInfoHeader>(), 0x80]);
        let (result, calls) = ask(MAX_INFO_ARGSZ as u32);
        assert_eq!(result.unwrap().len(), MAX_INFO_ARGSZ);
        assert_eq!(calls.len(), 2);
        // No chain (or a shrinking answer): one call, the header alone.
        let (result, calls) = ask(8);
        assert_eq!(result.unwrap().len(), size_of::<RegionInfoHeader>());
        assert_eq!(calls.len(), 1);
    }
}
