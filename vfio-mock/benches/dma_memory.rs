//! Goals, on both backends (`linux_dma`: vfio-linux's mmap'd memory;
//! `mock_dma`: the mock's lock-free words, laid out the same way): a typed
//! 8-byte access through the `DmaMemory` trait costs at most 1.2x a raw
//! atomic access to the same word, and a 64 KiB copy into or out of DMA
//! memory at most 1.5x `copy_from_slice` between ordinary buffers.
//!
//! The trait side is a function generic over `M: DmaMemory`, as a driver
//! calls it, with the offset through `black_box` so the bounds and
//! alignment checks cannot be folded away. The raw baseline is a
//! `Relaxed` load or store of an `&AtomicU64` taken from
//! [`DmaMemory::words`] once, outside the loop: no check at all. The copy
//! baseline is `copy_from_slice` between two heap buffers of 64 KiB.
//! `cargo xtask bench` reports the ratios.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::atomic::Ordering;
use std::time::Duration;
use vfio_core::{DmaMemory, VfioBackend};
use vfio_mock::MockHost;

/// A 64 KiB copy, as a ring's data buffers are moved.
const BULK: usize = 64 << 10;
/// An 8-byte-aligned word in the middle of the first page.
const OFFSET: usize = 0x28;

/// A typed read through the trait, checked at once as a driver's `?` does.
#[inline]
fn read_u64<M: DmaMemory>(mem: &M, offset: usize) -> u64 {
    match mem.read_u64(offset) {
        Ok(value) => value,
        Err(e) => panic!("DMA read at {offset:#x}: {e}"),
    }
}

/// A typed write through the trait, checked likewise.
#[inline]
fn write_u64<M: DmaMemory>(mem: &M, offset: usize, value: u64) {
    if let Err(e) = mem.write_u64(offset, value) {
        panic!("DMA write at {offset:#x}: {e}");
    }
}

/// The benchmarks of `group` on `backend`'s DMA memory.
fn dma_memory<B: VfioBackend>(c: &mut Criterion, group: &str, backend: &B) {
    let mem = backend.alloc_dma(2 * BULK).expect("DMA memory");
    let raw = &mem.words()[OFFSET / 8];
    write_u64(&mem, OFFSET, 0x0123_4567_89ab_cdef);
    assert_eq!(raw.load(Ordering::Relaxed), 0x0123_4567_89ab_cdef);

    let mut g = c.benchmark_group(group);
    g.bench_function("trait_read_u64", |b| {
        b.iter(|| read_u64(&mem, black_box(OFFSET)));
    });
    g.bench_function("raw_load_u64", |b| {
        b.iter(|| black_box(raw).load(Ordering::Relaxed));
    });
    g.bench_function("trait_write_u64", |b| {
        b.iter(|| write_u64(&mem, black_box(OFFSET), black_box(0x5a5a)));
    });
    g.bench_function("raw_store_u64", |b| {
        b.iter(|| black_box(raw).store(black_box(0x5a5a), Ordering::Relaxed));
    });
    g.bench_function("load_acquire_u64", |b| {
        b.iter(|| mem.load_acquire_u64(black_box(OFFSET)).ok());
    });
    g.bench_function("store_release_u64", |b| {
        b.iter(|| mem.store_release_u64(black_box(OFFSET), black_box(1)).ok());
    });

    let src: Vec<u8> = (0..BULK).map(|i| i as u8).collect();
    let mut out = vec![0u8; BULK];
    let mut plain = vec![0u8; BULK];
    g.bench_function("write_at_64k", |b| {
        b.iter(|| mem.write_at(black_box(0), black_box(&src)).ok());
    });
    g.bench_function("read_at_64k", |b| {
        b.iter(|| mem.read_at(black_box(0), black_box(&mut out)).ok());
    });
    g.bench_function("copy_from_slice_64k", |b| {
        b.iter(|| black_box(&mut plain[..]).copy_from_slice(black_box(&src)));
    });
    g.finish();
    // Once more outside the timing, so that a run filtering the copies
    // out still checks what they move.
    mem.write_at(0, &src).expect("write_at");
    mem.read_at(0, &mut out).expect("read_at");
    assert_eq!(out, src);
}

fn both_backends(c: &mut Criterion) {
    dma_memory(c, "linux_dma", &vfio_linux::LinuxBackend::new());
    let host = MockHost::builder().build().expect("a mock host");
    dma_memory(c, "mock_dma", &host.backend());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    targets = both_backends
}
criterion_main!(benches);
