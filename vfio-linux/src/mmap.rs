//! Memory mappings: device regions and anonymous DMA buffers.
//!
//! A [`Mapping`] owns an mmap'd range and offers only volatile, fixed-width,
//! bounds-checked access to it. No Rust reference into the mapped memory is
//! ever created: the device may change it at any time, and for MMIO a plain
//! load or store could be split, merged or elided.

// UNSAFETY: mmap/munmap and volatile access through raw pointers into them.
#![expect(unsafe_code)]

use nix::sys::mman::{MapFlags, ProtFlags, mmap, mmap_anonymous, munmap};
use std::num::NonZeroUsize;
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

/// An owned mmap'd range, unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// Mapped with `PROT_WRITE`: a store anywhere else would fault.
    writable: bool,
}

// SAFETY: a Mapping is a plain address range in this process; all access goes
// through volatile reads and writes, which are fine from any thread (the
// device-side semantics of concurrent register access are the driver's).
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only permits volatile access.
unsafe impl Sync for Mapping {}

/// A value that can be read or written in one volatile access.
pub trait Primitive: Copy {}
impl Primitive for u8 {}
impl Primitive for u16 {}
impl Primitive for u32 {}
impl Primitive for u64 {}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset`, shared, readable and optionally writable.
    pub fn map_file(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: NonZeroUsize,
        write: bool,
    ) -> nix::Result<Self> {
        let mut prot = ProtFlags::PROT_READ;
        if write {
            prot |= ProtFlags::PROT_WRITE;
        }
        let offset = i64::try_from(offset).map_err(|_| nix::errno::Errno::EOVERFLOW)?;
        // SAFETY: no address hint is given, so the kernel picks a fresh range and
        // no existing mapping is replaced. The result is owned by the Mapping.
        let ptr = unsafe { mmap(None, len, prot, MapFlags::MAP_SHARED, fd, offset) }?;
        Ok(Self {
            ptr: ptr.cast(),
            len: len.get(),
            writable: write,
        })
    }

    /// Maps `len` bytes of zeroed anonymous shared memory, readable and writable.
    pub fn anonymous(len: NonZeroUsize) -> nix::Result<Self> {
        // SAFETY: as in `map_file`: a fresh range chosen by the kernel, owned by the Mapping.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        Ok(Self {
            ptr: ptr.cast(),
            len: len.get(),
            writable: true,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the range was mapped writable.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The start address, for handing to the kernel (e.g. `VFIO_IOMMU_MAP_DMA`).
    pub fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Volatile read of a `T` at `offset`.
    ///
    /// # Panics
    ///
    /// Unless `offset + size_of::<T>() <= len` and `offset` is aligned to
    /// `T`: callers check both first and turn a bad offset into an error.
    #[inline]
    pub fn read<T: Primitive>(&self, offset: usize) -> T {
        assert!(self.fits::<T>(offset), "unchecked mapping access");
        // SAFETY: `fits` shows the access lies inside the mapping and is aligned
        // (the mapping is page-aligned); the mapping lives as long as `self`.
        unsafe { self.ptr.as_ptr().add(offset).cast::<T>().read_volatile() }
    }

    /// Volatile write of a `T` at `offset`.
    ///
    /// # Panics
    ///
    /// As [`read`](Self::read), and also if the range was mapped read-only
    /// (callers refuse such writes with an error first).
    #[inline]
    pub fn write<T: Primitive>(&self, offset: usize, value: T) {
        assert!(self.fits::<T>(offset), "unchecked mapping access");
        assert!(self.writable, "write to a read-only mapping");
        // SAFETY: as in `read`, and the range is mapped writable (checked
        // just above), so the store cannot fault.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<T>()
                .write_volatile(value)
        }
    }

    /// Copies out `buf.len()` bytes at `offset` with volatile byte reads.
    pub fn copy_out(&self, offset: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.read::<u8>(offset + i);
        }
    }

    /// Copies `data` in at `offset` with volatile byte writes.
    pub fn copy_in(&self, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.write::<u8>(offset + i, *b);
        }
    }

    #[inline]
    fn fits<T>(&self, offset: usize) -> bool {
        let size = size_of::<T>();
        offset.checked_add(size).is_some_and(|end| end <= self.len) && offset & (size - 1) == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and nothing else
        // unmaps them; no reference into the range can outlive `self`.
        // A failure here cannot be reported from drop and leaves only a leak.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_mapping_is_zeroed_and_round_trips_every_width() {
        let m = Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap();
        assert_eq!(m.read::<u64>(4088), 0);
        m.write::<u8>(1, 0xab);
        m.write::<u16>(2, 0xbeef);
        m.write::<u32>(4, 0x1234_5678);
        m.write::<u64>(8, 0x0102_0304_0506_0708);
        assert_eq!(m.read::<u8>(1), 0xab);
        assert_eq!(m.read::<u16>(2), 0xbeef);
        assert_eq!(m.read::<u32>(4), 0x1234_5678);
        assert_eq!(m.read::<u64>(8), 0x0102_0304_0506_0708);
        let mut buf = [0u8; 4];
        m.copy_out(4, &mut buf);
        assert_eq!(buf, 0x1234_5678u32.to_le_bytes());
    }

    #[test]
    #[should_panic(expected = "write to a read-only mapping")]
    fn a_write_to_a_read_only_mapping_panics_instead_of_faulting() {
        let zero = std::fs::File::open("/dev/zero").unwrap();
        let m = Mapping::map_file(
            std::os::fd::AsFd::as_fd(&zero),
            0,
            NonZeroUsize::new(4096).unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(m.read::<u64>(0), 0);
        m.write::<u32>(0, 1);
    }

    #[test]
    #[should_panic(expected = "unchecked mapping access")]
    fn an_unchecked_access_past_the_end_panics_instead_of_touching_memory() {
        let m = Mapping::anonymous(NonZeroUsize::new(4096).unwrap()).unwrap();
        m.read::<u32>(4094);
    }
}
