//! Goals: 4 KiB random reads through the NVMe driver on vfio-mock's
//! controller, against a baseline that does the same 4 KiB copies with no
//! device in between (the limit of what the mock could do):
//!
//! - polled, queue depth 32: at least 25% of the baseline's rate;
//! - interrupt-driven, queue depth 32: at least 10%;
//! - interrupt-driven, queue depth 1: a read's latency at most 3x a raw
//!   eventfd ping-pong between two threads plus the copy (the ping-pong is
//!   vfio-mock's `device_time/eventfd_ping_pong`, from the same
//!   `cargo xtask bench` run).
//!
//! The drive is the QEMU guest's (64 MiB of 512-byte blocks, at
//! 0000:00:03.0 of `profiles::qemu_guest()`), with its first 16 MiB
//! written, and the reads go to pseudo-random 4 KiB-aligned blocks of
//! those. One I/O queue pair; each read lands in its own 4 KiB slot of one
//! DMA buffer. At depth 32 each timed step finishes the oldest read and
//! submits the next into its slot, so 32 stay in flight.
//!
//! `baseline_copy_4k` copies 4 KiB from a random page of a 16 MiB buffer
//! into the mock's DMA memory (what the device does for a read, and
//! nothing else). `cargo xtask bench` reports the ratios.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfio_core::{Container, DmaMemory, Group, IommuType, VfioBackend};
use vfio_mock::{MockBackend, MockHost, profiles};

/// The bytes of one read.
const READ: usize = 4096;
/// The written part of the drive the reads go to.
const SPAN: usize = 16 << 20;
/// Reads in flight at depth 32.
const DEPTH: usize = 32;

/// A pseudo-random page index below `SPAN / READ` (xorshift64).
struct Pages(u64);

impl Pages {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % (SPAN / READ) as u64
    }
}

/// The driver on the guest's NVMe, with `SPAN` bytes written.
fn driver(host: &MockHost) -> nvme::Nvme<MockBackend> {
    let backend = host.backend();
    let address = profiles::nvme_address();
    let group = backend
        .open_group(backend.host_paths().iommu_group(&address).expect("group"))
        .expect("open the group");
    let container = Arc::new(backend.open_container().expect("a container"));
    group.set_container(&container).expect("attach");
    container.set_iommu(IommuType::Type1v2).expect("Type1v2");
    let device = group.open_device(&address.to_string()).expect("the device");
    let options = nvme::Options {
        io_queues: 1,
        ..nvme::Options::default()
    };
    let nvme = nvme::Nvme::new(&backend, device, container, options).expect("bring-up");
    let chunk: Vec<u8> = (0..128 << 10).map(|i| (i % 251) as u8).collect();
    let blocks = (chunk.len() / 512) as u64;
    for (i, _) in (0..SPAN).step_by(chunk.len()).enumerate() {
        nvme.write(1, i as u64 * blocks, &chunk)
            .expect("fill the drive");
    }
    // The group stays open with the device; dropping the handle here is fine.
    drop(group);
    nvme
}

fn random_read(c: &mut Criterion) {
    let host = profiles::qemu_guest().build().expect("the QEMU guest host");
    let backend = host.backend();
    let mut nvme = driver(&host);
    let buffers = nvme
        .alloc_buffer(&backend, DEPTH * READ)
        .expect("read buffers");
    let mut pages = Pages(0x9e37_79b9_7f4a_7c15);
    let blocks_per_read = (READ / 512) as u64;

    // The limit: the device's copy alone.
    let storage: Vec<u8> = (0..SPAN).map(|i| (i % 253) as u8).collect();
    let mem = backend.alloc_dma(READ).expect("DMA memory");

    let mut g = c.benchmark_group("nvme_random_read");
    g.bench_function("baseline_copy_4k", |b| {
        b.iter(|| {
            let at = pages.next() as usize * READ;
            mem.write_at(0, black_box(&storage[at..at + READ]))
                .expect("copy");
        });
    });
    for (mode, name) in [
        (nvme::CompletionMode::Polled, "polled"),
        (nvme::CompletionMode::Interrupt, "interrupt"),
    ] {
        nvme.set_completion_mode(mode);
        g.bench_function(format!("{name}_qd1"), |b| {
            b.iter(|| {
                let t = nvme
                    .submit_read_dma(1, pages.next() * blocks_per_read, &buffers, 0, READ)
                    .expect("submit");
                nvme.finish(&t).expect("read")
            });
        });
        g.bench_function(format!("{name}_qd32"), |b| {
            b.iter_custom(|iters| {
                let submit = |slot: usize, pages: &mut Pages| {
                    nvme.submit_read_dma(
                        1,
                        pages.next() * blocks_per_read,
                        &buffers,
                        slot * READ,
                        READ,
                    )
                    .expect("submit")
                };
                let mut flight: Vec<_> = (0..DEPTH).map(|s| submit(s, &mut pages)).collect();
                let start = Instant::now();
                for i in 0..iters as usize {
                    let slot = i % DEPTH;
                    nvme.finish(&flight[slot]).expect("read");
                    flight[slot] = submit(slot, &mut pages);
                }
                let took = start.elapsed();
                for t in &flight {
                    nvme.finish(t).expect("drain");
                }
                took
            });
        });
    }
    g.finish();
    drop(buffers);
    drop(nvme);
    host.run_until_idle();
    host.assert_faults_consumed();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = random_read
}
criterion_main!(benches);
