//! Goal: a register access through the `MappedRegion` trait on vfio-linux
//! costs the same as a raw volatile access (static dispatch, one branch for
//! every check).
//!
//! `linux_register/trait_*` measure the path a mapped BAR takes: a page of a
//! memfd, a shared file mapping made the way `map_region` maps a BAR
//! ([`LinuxRegion::map_file`]), so every access is one volatile load or
//! store behind the bounds, alignment and memory-decode tests, reached
//! through a function generic over `R: MappedRegion`. The baseline
//! (`raw_*`) is a bare `read_volatile` / `write_volatile` of a `u32` on a
//! page of another memfd mapped the same way, with no check at all. The
//! offset goes through `black_box` so the checks cannot be folded away.
//! `cargo xtask bench` reports the trait/raw ratios.
//!
//! `linux_register/anon_*` measure [`LinuxRegion::anonymous`], RAM that any
//! thread may access at once: each access is an atomic one on the aligned
//! 64-bit word holding the register, so a read is one load but a
//! `write_u32` is a compare-exchange on the word.

// UNSAFETY: the baseline is exactly the raw mmap and volatile access the
// trait is measured against, and the trait side maps its memfd with
// `LinuxRegion::map_file`, whose precondition is met below.
#![expect(unsafe_code)]

use criterion::{Criterion, criterion_group, criterion_main};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;
use vfio_core::MappedRegion;
use vfio_linux::LinuxRegion;

/// One page, as the smallest mmappable BAR.
const PAGE: usize = 4096;
/// A register in the middle of the page (aligned, in bounds).
const OFFSET: usize = 0x28;

/// A page of a fresh memfd, the way a BAR's bytes come from a file.
fn memfd_page(name: &str) -> OwnedFd {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC).expect("memfd_create");
    nix::unistd::ftruncate(&fd, PAGE as i64).expect("size the memfd");
    fd
}

/// A memfd page mapped shared with unchecked volatile access: what a
/// driver poking a mapped BAR through a raw pointer does.
struct RawPage {
    ptr: NonNull<u8>,
    _fd: OwnedFd,
}

impl RawPage {
    fn new() -> Self {
        let fd = memfd_page("raw-bar");
        let len = NonZeroUsize::new(PAGE).expect("a page is not empty");
        // SAFETY: no address hint, so the kernel picks a fresh range and no
        // existing mapping is replaced; the range is owned by the RawPage.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd.as_fd(),
                0,
            )
        }
        .expect("mmap of one memfd page");
        Self {
            ptr: ptr.cast(),
            _fd: fd,
        }
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
/// through memory, which a driver's `?` never does.) Inlined into the
/// timing loop, as the raw side's access is and as a driver's accessor is
/// into its own code.
#[inline(always)]
fn read_reg<R: MappedRegion>(region: &R, offset: u64) -> u32 {
    match region.read_u32(offset) {
        Ok(value) => value,
        Err(e) => failed(&e),
    }
}

/// A refused access ends the run. Out of line and given only the error
/// (which names the offset), so the timing loop keeps nothing for it.
#[cold]
#[inline(never)]
fn failed(e: &vfio_core::Error) -> ! {
    panic!("register access: {e}")
}

/// A register write through the trait, checked likewise.
#[inline(always)]
fn write_reg<R: MappedRegion>(region: &R, offset: u64, value: u32) {
    if let Err(e) = region.write_u32(offset, value) {
        failed(&e);
    }
}

fn register_access(c: &mut Criterion) {
    let bar_fd = memfd_page("trait-bar");
    // SAFETY: the memfd is this function's alone: nothing else maps it or
    // holds a reference to its pages, and criterion runs each benchmark on
    // this one thread, so no two accesses through the region overlap.
    let region =
        unsafe { LinuxRegion::map_file(bar_fd.as_fd(), 0, PAGE, true) }.expect("a memfd region");
    let anon = LinuxRegion::anonymous(PAGE).expect("an anonymous region");
    let raw = RawPage::new();
    for r in [&region, &anon] {
        write_reg(r, OFFSET as u64, 0x0100_00ed);
        assert_eq!(read_reg(r, OFFSET as u64), 0x0100_00ed);
    }

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
    g.bench_function("anon_read_u32", |b| {
        b.iter(|| read_reg(&anon, black_box(OFFSET as u64)));
    });
    g.bench_function("anon_write_u32", |b| {
        b.iter(|| write_reg(&anon, black_box(OFFSET as u64), black_box(0x5a5a_5a5a)));
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
