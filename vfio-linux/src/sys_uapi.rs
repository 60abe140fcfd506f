//! The raw ioctls of `VFIO_DEVICE_FEATURE`, PCI hot reset and unmap-all,
//! behind safe functions.

// UNSAFETY: ioctl(2) on VFIO file descriptors with pointers to argument
// buffers this module builds.
#![expect(unsafe_code)]

use nix::request_code_none;
use std::os::fd::{AsRawFd, BorrowedFd};
use vfio_bindings::bindings::vfio::{VFIO_BASE, VFIO_TYPE, vfio_iommu_type1_dma_unmap};

mod raw {
    use super::*;

    nix::ioctl_readwrite_bad!(
        device_get_pci_hot_reset_info,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 12),
        u8
    );
    nix::ioctl_write_ptr_bad!(
        device_pci_hot_reset,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 13),
        u8
    );
    nix::ioctl_readwrite_bad!(
        device_feature,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 17),
        u8
    );
    nix::ioctl_readwrite_bad!(
        iommu_unmap_dma,
        request_code_none!(VFIO_TYPE, VFIO_BASE + 14),
        vfio_iommu_type1_dma_unmap
    );
}

/// `VFIO_DMA_UNMAP_FLAG_ALL`.
const DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;

/// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_ALL` (IOVA 0, size 0):
/// returns the number of bytes unmapped.
pub fn iommu_unmap_all(container: BorrowedFd<'_>) -> nix::Result<u64> {
    let mut unmap = vfio_iommu_type1_dma_unmap {
        argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
        flags: DMA_UNMAP_FLAG_ALL,
        iova: 0,
        size: 0,
        ..Default::default()
    };
    // SAFETY: `unmap` is a valid, writable vfio_iommu_type1_dma_unmap without a
    // bitmap; the kernel writes back only its size field.
    unsafe { raw::iommu_unmap_dma(container.as_raw_fd(), &mut unmap) }?;
    Ok(unmap.size)
}

/// `VFIO_DEVICE_FEATURE` with `flags` and `data` after the 8-byte header
/// (argsz, flags); the kernel's writes to the payload are copied back.
pub fn device_feature(device: BorrowedFd<'_>, flags: u32, data: &mut [u8]) -> nix::Result<()> {
    let argsz = u32::try_from(8 + data.len()).map_err(|_| nix::errno::Errno::E2BIG)?;
    let mut buf = Vec::with_capacity(8 + data.len());
    buf.extend_from_slice(&argsz.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(data);
    // SAFETY: `buf` is `argsz` bytes long, writable, and lives across the
    // call; the kernel reads and writes only within argsz.
    unsafe { raw::device_feature(device.as_raw_fd(), buf.as_mut_ptr()) }?;
    data.copy_from_slice(&buf[8..]);
    Ok(())
}

/// Size of `struct vfio_pci_hot_reset_info` before its devices.
const HOT_RESET_INFO_HEADER: usize = 12;
/// Size of one `struct vfio_pci_dependent_device`.
const DEPENDENT_DEVICE: usize = 8;

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO` with room for `room` devices:
/// `Ok((flags, count, device bytes))`, or `Err((errno, count))` where the
/// count is what the kernel wrote back with ENOSPC (0 otherwise).
pub fn device_get_pci_hot_reset_info(
    device: BorrowedFd<'_>,
    room: usize,
) -> Result<(u32, u32, Vec<u8>), (nix::errno::Errno, u32)> {
    let len = HOT_RESET_INFO_HEADER + room * DEPENDENT_DEVICE;
    let mut buf = vec![0u8; len];
    let argsz = u32::try_from(len).map_err(|_| (nix::errno::Errno::E2BIG, 0))?;
    buf[..4].copy_from_slice(&argsz.to_ne_bytes());
    // SAFETY: `buf` is `argsz` bytes long, writable, and lives across the
    // call; the kernel writes the header and at most `room` devices.
    let r = unsafe { raw::device_get_pci_hot_reset_info(device.as_raw_fd(), buf.as_mut_ptr()) };
    let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    match r {
        Ok(_) => {
            let count = word(8);
            let n = (count as usize).min(room) * DEPENDENT_DEVICE;
            Ok((
                word(4),
                count,
                buf[HOT_RESET_INFO_HEADER..HOT_RESET_INFO_HEADER + n].to_vec(),
            ))
        }
        Err(nix::errno::Errno::ENOSPC) => Err((nix::errno::Errno::ENOSPC, word(8))),
        Err(e) => Err((e, 0)),
    }
}

/// `VFIO_DEVICE_PCI_HOT_RESET` with the group fds `groups`.
pub fn device_pci_hot_reset(device: BorrowedFd<'_>, groups: &[BorrowedFd<'_>]) -> nix::Result<()> {
    let len = HOT_RESET_INFO_HEADER + groups.len() * 4;
    let argsz = u32::try_from(len).map_err(|_| nix::errno::Errno::E2BIG)?;
    let count = u32::try_from(groups.len()).map_err(|_| nix::errno::Errno::E2BIG)?;
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&argsz.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&count.to_ne_bytes());
    for g in groups {
        buf.extend_from_slice(&g.as_raw_fd().to_ne_bytes());
    }
    // SAFETY: `buf` is a `struct vfio_pci_hot_reset` of `argsz` bytes with
    // `count` fds, alive across the call; the kernel only reads it.
    unsafe { raw::device_pci_hot_reset(device.as_raw_fd(), buf.as_ptr()) }.map(drop)
}
