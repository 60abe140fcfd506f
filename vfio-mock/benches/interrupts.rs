//! Goals: interrupt delivery in the mock is one eventfd write, within a
//! small factor of a raw eventfd ping-pong; programming N MSI-X vectors is
//! one ioctl, whatever N.
//!
//! `irq_delivery` times one interrupt from the source to the driver having
//! consumed it:
//!
//! - `raw_eventfd`: `EventFdInterrupt::signal` then `try_consume`, the floor;
//! - `mock_raise_msix`: the NVMe device raises its bound MSI-X vector 0
//!   (`MockHost::with_device` and `DeviceContext::raise`, what a model does),
//!   then the driver's `try_consume`;
//! - `mock_trigger_loopback`: `Device::trigger_interrupts` on that vector
//!   (the `DATA_NONE` loopback through `SET_IRQS`), then `try_consume`.
//!
//! `msix_bind/vectors/N` times `Device::enable_interrupts` of N vectors on the
//! NVMe device (65 MSI-X vectors; for N = 2048, an NVMe with 2048 on a
//! 16-CPU host, which has the CPU vectors for them) starting from MSI-X
//! disabled, as a driver programs them at start-up: one `set_irqs` call
//! whatever N, so the time grows with N only by the per-vector work inside
//! that call.

mod common;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};
use vfio_core::{Device, EventFdInterrupt, Interrupt, IrqIndex, VfioBackend};
use vfio_mock::profiles::{self, nvme};
use vfio_mock::{Delivery, Irq};

fn delivery(c: &mut Criterion) {
    let host = profiles::qemu_guest().build().expect("the QEMU guest host");
    let backend = host.backend();
    let address = profiles::nvme_address();
    let nvme = common::open(&backend, address);
    // An MSI-X message is a memory write: the device needs bus mastering.
    nvme.device.set_bus_master(true).expect("bus master");
    let irq = backend.new_interrupt().expect("an interrupt");
    nvme.device
        .enable_interrupts(IrqIndex::MSIX, &[&irq])
        .expect("bind MSI-X vector 0");
    let raw = EventFdInterrupt::new().expect("an eventfd");

    // Each path delivers exactly one interrupt, and nothing is left over.
    let raise = || host.with_device(address, |ctx| ctx.raise(Irq::Msix(0)));
    assert_eq!(raise(), Some(Delivery::Signalled));
    assert_eq!(irq.try_consume().ok(), Some(Some(1)));
    nvme.device
        .trigger_interrupts(IrqIndex::MSIX, 0, 1)
        .expect("loopback trigger");
    assert_eq!(irq.try_consume().ok(), Some(Some(1)));

    let mut g = c.benchmark_group("irq_delivery");
    g.bench_function("raw_eventfd", |b| {
        b.iter(|| {
            let signalled = raw.signal();
            (signalled, raw.try_consume())
        });
    });
    g.bench_function("mock_raise_msix", |b| {
        b.iter(|| (raise(), irq.try_consume()));
    });
    g.bench_function("mock_trigger_loopback", |b| {
        b.iter(|| {
            let triggered = nvme.device.trigger_interrupts(IrqIndex::MSIX, 0, 1);
            (triggered, irq.try_consume())
        });
    });
    g.finish();

    assert_eq!(irq.try_consume().ok(), Some(None));
    host.assert_faults_consumed();
}

/// Times binding each of `counts` vectors of `address` (from MSI-X
/// disabled) on `host`, as `msix_bind/vectors/N`.
fn bench_binds(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    host: &vfio_mock::MockHost,
    address: vfio_core::PciAddress,
    counts: &[usize],
) {
    let backend = host.backend();
    let device = common::open(&backend, address);
    let most = counts.iter().copied().max().unwrap_or(1);
    let irqs: Vec<_> = (0..most)
        .map(|_| backend.new_interrupt().expect("an interrupt"))
        .collect();
    let refs: Vec<&EventFdInterrupt> = irqs.iter().collect();
    // MSI-X stays enabled between benchmarks, so every disable below succeeds.
    device
        .device
        .enable_interrupts(IrqIndex::MSIX, &refs[..1])
        .expect("bind one vector");
    for &n in counts {
        let vectors = refs.get(..n).expect("no more vectors than the device has");
        device
            .device
            .disable_interrupts(IrqIndex::MSIX)
            .expect("disable MSI-X");
        device
            .device
            .enable_interrupts(IrqIndex::MSIX, vectors)
            .expect("bind");
        g.bench_with_input(BenchmarkId::new("vectors", n), vectors, |b, vectors| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    // Untimed: back to MSI-X disabled, so every bind enables
                    // the index and allocates its vectors, as at start-up.
                    device
                        .device
                        .disable_interrupts(IrqIndex::MSIX)
                        .expect("disable MSI-X");
                    let start = Instant::now();
                    let bound = device.device.enable_interrupts(IrqIndex::MSIX, vectors);
                    timed += start.elapsed();
                    black_box(bound).expect("bind");
                }
                timed
            });
        });
    }
}

fn bind(c: &mut Criterion) {
    let mut g = c.benchmark_group("msix_bind");
    let guest = profiles::qemu_guest().build().expect("the QEMU guest host");
    bench_binds(
        &mut g,
        &guest,
        profiles::nvme_address(),
        &[1, 16, usize::from(nvme::MSIX_VECTORS)],
    );
    guest.assert_faults_consumed();
    // 2048 vectors need more CPU vectors than the guest's 2 CPUs have.
    let address = profiles::big_nvme_address();
    let big = vfio_mock::MockHost::builder()
        .cpus(16)
        .device(address, 1, nvme::nvme_with_vectors(2048))
        .build()
        .expect("a 16-CPU host");
    bench_binds(&mut g, &big, address, &[2048]);
    big.assert_faults_consumed();
    g.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = delivery, bind
}
criterion_main!(benches);
