//! Goal: a register access through the `MappedRegion` trait on vfio-linux
//! costs the same as a raw volatile access (static dispatch, one bounds
//! check).
//!
//! Both sides use a page of anonymous shared memory from mmap, as a BAR
//! mapping is: the trait side through [`LinuxRegion::anonymous`] and a
//! function generic over `R: MappedRegion`, the baseline through a bare
//! `read_volatile` / `write_volatile` of a `u32` with no check at all. The
//! offset goes through `black_box` so the bounds check cannot be folded away.
//! `cargo xtask bench` reports the trait/raw ratio.
//!
//! An anonymous region is RAM that any thread may access at once, so its
//! accesses are atomic, on the aligned 64-bit word holding the register: a
//! read is one load, as on a BAR, but a `write_u32` is a compare-exchange
//! loop, where a mapped BAR's is one volatile store. The write ratio is
//! therefore an upper bound on a BAR's.

// UNSAFETY: the baseline is exactly the raw mmap and volatile access the
// trait is measured against; nothing else in this file is unsafe.
#![expect(unsafe_code)]

use criterion::{Criterion, criterion_group, criterion_main};
use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, munmap};
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::time::Duration;
use vfio_core::MappedRegion;
use vfio_linux::LinuxRegion;

/// One page, as the smallest mmappable BAR.
const PAGE: usize = 4096;
/// A register in the middle of the page (aligned, in bounds).
const OFFSET: usize = 0x28;

/// A page of anonymous shared memory with unchecked volatile access: what
/// a driver poking a mapped BAR through a raw pointer does.
struct RawPage {
    ptr: NonNull<u8>,
}

impl RawPage {
    fn new() -> Self {
        let len = NonZeroUsize::new(PAGE).expect("a page is not empty");
        // SAFETY: no address hint, so the kernel picks a fresh range and no
        // existing mapping is replaced; the range is owned by the RawPage.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .expect("mmap of one anonymous page");
        Self { ptr: ptr.cast() }
    }

    /// # Safety
    /// `offset` must be 4-byte aligned and at most `PAGE - 4`.
    #[inline]
    unsafe fn read_u32(&self, offset: usize) -> u32 {
        // SAFETY: the caller keeps the access inside the page and aligned;
        // the page lives as long as `self`.
        unsafe { self.ptr.as_ptr().add(offset).cast::<u32>().read_volatile() }
    }

    /// # Safety
    /// As for [`read_u32`](Self::read_u32).
    #[inline]
    unsafe fn write_u32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read_u32`; the page is mapped writable.
        unsafe {
            self.ptr
                .as_ptr()
                .add(offset)
                .cast::<u32>()
                .write_volatile(value);
        }
    }
}

impl Drop for RawPage {
    fn drop(&mut self) {
        // SAFETY: `ptr` and PAGE are what mmap returned; no pointer into the
        // page outlives `self`. A failure would only leak the page.
        let _ = unsafe { munmap(self.ptr.cast(), PAGE) };
    }
}

/// A register read through the trait, with static dispatch, as a driver
/// does it: the result is checked at once. (Handing the `Result` itself to
/// criterion would also time copying a value as large as `vfio_core::Error`
/// through memory, which a driver's `?` never does.)
#[inline]
fn read_reg<R: MappedRegion>(region: &R, offset: u64) -> u32 {
    match region.read_u32(offset) {
        Ok(value) => value,
        Err(e) => panic!("register read at {offset:#x}: {e}"),
    }
}

/// A register write through the trait, checked likewise.
#[inline]
fn write_reg<R: MappedRegion>(region: &R, offset: u64, value: u32) {
    if let Err(e) = region.write_u32(offset, value) {
        panic!("register write at {offset:#x}: {e}");
    }
}

fn register_access(c: &mut Criterion) {
    let region = LinuxRegion::anonymous(PAGE).expect("an anonymous region");
    let raw = RawPage::new();
    write_reg(&region, OFFSET as u64, 0x0100_00ed);
    assert_eq!(read_reg(&region, OFFSET as u64), 0x0100_00ed);

    let mut g = c.benchmark_group("linux_register");
    g.bench_function("trait_read_u32", |b| {
        b.iter(|| read_reg(&region, black_box(OFFSET as u64)));
    });
    g.bench_function("raw_read_u32", |b| {
        // SAFETY: black_box returns OFFSET, which is aligned and in the page.
        b.iter(|| unsafe { raw.read_u32(black_box(OFFSET)) });
    });
    g.bench_function("trait_write_u32", |b| {
        b.iter(|| write_reg(&region, black_box(OFFSET as u64), black_box(0x5a5a_5a5a)));
    });
    g.bench_function("raw_write_u32", |b| {
        // SAFETY: as for the read.
        b.iter(|| unsafe { raw.write_u32(black_box(OFFSET), black_box(0x5a5a_5a5a)) });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    targets = register_access
}
criterion_main!(benches);
