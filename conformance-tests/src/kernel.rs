//! Cases only the real kernel runs: calls the library refuses before they
//! reach vfio-pci, sent to the kernel anyway through the device file, to show
//! that the library's refusal carries the kernel's own errno.

use crate::{Case, Env, expect_error};
use anyhow::{Context, Result};
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use vfio_core::{Device, Errno, ErrorKind, region};
use vfio_linux::LinuxBackend;

/// A case only the kernel runs.
pub type KernelOnly = crate::OnlyCase<LinuxBackend>;

const RAW: &str = "a raw pread/pwrite on the device file; the mock's device has no file to read";

/// Every kernel-only case.
pub fn only_cases() -> Vec<KernelOnly> {
    vec![KernelOnly {
        case: Case::new(
            stringify!(region_io_the_library_refuses_gets_the_kernels_errno),
            region_io_the_library_refuses_gets_the_kernels_errno,
        ),
        why: RAW,
    }]
}

/// The errno of `result`, or an error naming `what` if it succeeded.
fn errno_of(what: &str, result: std::io::Result<usize>) -> Result<Errno> {
    match result {
        Ok(n) => anyhow::bail!("{what}: the kernel transferred {n} bytes"),
        Err(e) => e
            .raw_os_error()
            .map(Errno::from_raw)
            .with_context(|| format!("{what}: {e} has no errno")),
    }
}

/// Reads and writes the library refuses (at or past the end of a BAR, of
/// config space, in absent regions and past the region table) are sent to
/// vfio-pci directly at the file offset `index << 40` (the layout
/// `region_table_is_consistent` pins); the library's refusal has the kind and
/// errno the kernel answered: EINVAL, except EFAULT in config space.
pub fn region_io_the_library_refuses_gets_the_kernels_errno(env: &Env<LinuxBackend>) -> Result<()> {
    let o = env.open_edu()?;
    let file = File::from(o.device.as_fd().try_clone_to_owned()?);
    let bar0 = o.device.region_info(region::BAR0)?.size;
    let config = o.device.region_info(region::CONFIG)?.size;
    let at = [
        (region::BAR0, bar0),
        (region::BAR0, bar0 + 0x1000),
        (1, 0),
        (region::ROM, 0),
        (region::CONFIG, config),
        (region::CONFIG, config + 0x100),
        (region::VGA, 0),
        (9, 0),
    ];
    let mut buf = [0u8; 4];
    for (index, offset) in at {
        let file_offset = (u64::from(index) << 40) + offset;
        let what = format!("region {index} at {offset:#x}");
        let read = errno_of(&what, file.read_at(&mut buf, file_offset))?;
        expect_error(
            format_args!("read of {what} (the kernel: {read:?})"),
            o.device.read_region(index, offset, &mut buf),
            ErrorKind::from_errno(read),
            Some(read),
        )?;
        let write = errno_of(&what, file.write_at(&buf, file_offset))?;
        expect_error(
            format_args!("write of {what} (the kernel: {write:?})"),
            o.device.write_region(index, offset, &buf),
            ErrorKind::from_errno(write),
            Some(write),
        )?;
    }
    Ok(())
}

/// Every case this backend runs: the shared suite, then the kernel-only cases.
pub fn suite() -> Vec<crate::Case<LinuxBackend>> {
    crate::suite_with(only_cases())
}

/// Each of the kernel-only cases' name and why only this backend runs it.
pub fn only_reasons() -> Vec<(String, String)> {
    crate::only_reasons_of(only_cases())
}

/// The running kernel's release (`uname -r`), from procfs.
pub fn release() -> Result<String> {
    let path = "/proc/sys/kernel/osrelease";
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {path}"))?
        .trim()
        .to_owned())
}
