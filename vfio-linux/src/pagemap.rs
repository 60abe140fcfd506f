//! Physical addresses from `/proc/self/pagemap`, for no-IOMMU mode.
//!
//! The file holds one little 64-bit entry per virtual page of the process
//! (`fs/proc/task_mmu.c`, `pagemap_read`; the page is the base page, even
//! inside a hugetlb mapping): bit 63 says the page is present in RAM, bit
//! 62 that it is swapped out, and bits 0..=54 are the page frame number of
//! a present page. Since Linux 4.2 the frame number reads as 0 unless the
//! file was opened with `CAP_SYS_ADMIN` (`pm.show_pfn`). Reading it is a
//! plain file read: nothing here needs unsafe code.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use vfio_core::{Error, ErrorKind, Operation, Result};

/// Bit 63: the page is present in RAM.
const PRESENT: u64 = 1 << 63;
/// Bit 62: the page is swapped out.
const SWAPPED: u64 = 1 << 62;
/// Bits 0..=54: the page frame number of a present page.
const PFN_MASK: u64 = (1 << 55) - 1;

/// The physical address of `vaddr` in the process whose pagemap is
/// `path`, with base pages of `page_size` bytes: the frame number of the
/// page holding it, times the page size, plus its offset in the page.
///
/// A page that is not present (never touched, or swapped out) is
/// [`ErrorKind::NotFound`]; a present page whose frame number reads 0 is
/// [`ErrorKind::PermissionDenied`]: the kernel hid it from a reader without
/// `CAP_SYS_ADMIN`. Failing to open or read the file is the I/O error.
pub(crate) fn physical_address(path: &Path, vaddr: usize, page_size: usize) -> Result<u64> {
    let op = Operation::PhysicalAddress;
    let target = || format_args!("{} at {vaddr:#x}", path.display()).to_string();
    let file = File::open(path).map_err(|e| Error::from_io(op, e).with_target(target()))?;
    let index = (vaddr / page_size) as u64;
    let mut entry = [0u8; 8];
    file.read_exact_at(&mut entry, index * 8)
        .map_err(|e| Error::from_io(op, e).with_target(target()))?;
    let entry = u64::from_ne_bytes(entry);
    if entry & PRESENT == 0 {
        let why = if entry & SWAPPED != 0 {
            "the page is swapped out"
        } else {
            "the page is not present in RAM"
        };
        return Err(Error::new(op, ErrorKind::NotFound)
            .with_target(target())
            .with_detail(why));
    }
    let pfn = entry & PFN_MASK;
    if pfn == 0 {
        return Err(Error::new(op, ErrorKind::PermissionDenied)
            .with_target(target())
            .with_detail(
                "the kernel shows page frame numbers in /proc/self/pagemap only to a \
                 process with CAP_SYS_ADMIN (Linux 4.2 and later); without it they read as 0",
            ));
    }
    pfn.checked_mul(page_size as u64)
        .map(|base| base + (vaddr % page_size) as u64)
        .ok_or_else(|| {
            Error::new(op, ErrorKind::Malformed)
                .with_target(target())
                .with_detail(format_args!(
                    "page frame {pfn:#x} is past the address space"
                ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A fake pagemap whose entry `i` is `entries[i]`.
    fn pagemap(entries: &[u64]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for e in entries {
            f.write_all(&e.to_ne_bytes()).unwrap();
        }
        f
    }

    #[test]
    fn a_present_page_gives_its_frame_times_the_page_size_plus_the_offset() {
        let f = pagemap(&[0, PRESENT | 0x1234, PRESENT | (1 << 56) | (1 << 40)]);
        assert_eq!(
            physical_address(f.path(), 4096 + 0x10, 4096).unwrap(),
            0x1234 * 4096 + 0x10
        );
        // Flag bits above the frame number are not part of it.
        assert_eq!(
            physical_address(f.path(), 2 * 4096, 4096).unwrap(),
            (1 << 40) * 4096
        );
        // A frame number no 64-bit address can hold is malformed.
        let f = pagemap(&[PRESENT | PFN_MASK]);
        let e = physical_address(f.path(), 0, 4096).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
    }

    #[test]
    fn a_zero_frame_on_a_present_page_names_cap_sys_admin() {
        let f = pagemap(&[PRESENT]);
        let e = physical_address(f.path(), 8, 4096).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::PermissionDenied, None));
        assert!(e.detail().unwrap().contains("CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn absent_and_swapped_pages_are_not_found() {
        let f = pagemap(&[0, SWAPPED | 0x77]);
        let e = physical_address(f.path(), 0, 4096).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let e = physical_address(f.path(), 4096, 4096).unwrap_err();
        assert!(e.detail().unwrap().contains("swapped"), "{e}");
        // Past the file's end: the read fails (EOF), an I/O error.
        let e = physical_address(f.path(), 100 * 4096, 4096).unwrap_err();
        assert_eq!(e.operation(), Operation::PhysicalAddress);
    }
}
