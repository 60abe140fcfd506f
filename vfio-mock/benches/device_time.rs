//! Goal: a device that finishes a command on its own thread costs about
//! what two threads handing an eventfd back and forth cost: at most 2x.
//!
//! `deferred_completion` times one command: the driver writes a doorbell
//! register, the model defers the completion to the device's thread
//! ([`DeviceContext::defer`]), which raises MSI-X vector 0, and the
//! driver blocks on the vector's eventfd until it fires.
//!
//! `eventfd_ping_pong` is the floor: the timing thread signals one
//! eventfd, a second thread waiting on it signals another, and the timing
//! thread blocks on that one: the same two cross-thread wake-ups.
//!
//! Each timed iteration of one is preceded by an untimed one of the other,
//! so both see the same load on a shared machine.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vfio_core::{
    Device, EventFdInterrupt, Interrupt, IrqIndex, MappedRegion, PciAddress, VfioBackend,
};
use vfio_mock::{BarSpec, DeviceContext, DeviceModel, Irq, MockHost, PciDeviceBuilder};

/// Writing 0x0 of BAR0 completes a command on the device's thread.
#[derive(Debug)]
struct Doorbell;

impl DeviceModel for Doorbell {
    fn read(&self, _ctx: &DeviceContext<'_>, _bar: u32, _offset: u64, _width: u8) -> Option<u64> {
        None
    }

    fn write(
        &self,
        ctx: &DeviceContext<'_>,
        bar: u32,
        offset: u64,
        _width: u8,
        _value: u64,
    ) -> bool {
        if bar != 0 || offset != 0 {
            return false;
        }
        ctx.defer(|ctx| {
            ctx.raise(Irq::Msix(0));
        });
        true
    }

    fn reset(&self) {}
}

fn completion(c: &mut Criterion) {
    let address = PciAddress::new(0, 0, 4, 0).expect("an address");
    let device = PciDeviceBuilder::new(0x1af4, 0x10f0)
        .bar(0, BarSpec::memory64(0x4000))
        .msix(1, 0, 0x2000, 0, 0x3000)
        .model(Doorbell);
    let host = MockHost::builder()
        .device(address, 1, device)
        .build()
        .expect("the host");
    let backend = host.backend();
    let dev = common::open(&backend, address);
    dev.device.set_bus_master(true).expect("bus master");
    let irq = backend.new_interrupt().expect("an interrupt");
    dev.device
        .enable_interrupts(IrqIndex::MSIX, &[&irq])
        .expect("bind MSI-X vector 0");
    let bar = dev.device.map_region(0).expect("BAR0");
    bar.write_u32(0, 1).expect("doorbell");
    assert_eq!(irq.wait(None).ok(), Some(Some(1)));

    // The floor: two threads and two eventfds.
    let ping = Arc::new(EventFdInterrupt::new().expect("an eventfd"));
    let pong = Arc::new(EventFdInterrupt::new().expect("an eventfd"));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let (ping, pong, stop) = (ping.clone(), pong.clone(), stop.clone());
        std::thread::spawn(move || {
            while ping.wait(None).is_ok() && !stop.load(Ordering::Acquire) {
                if pong.signal().is_err() {
                    return;
                }
            }
        })
    };

    let deferred = || {
        bar.write_u32(0, 1).expect("doorbell");
        irq.wait(None).expect("the completion")
    };
    let ping_pong = || {
        ping.signal().expect("ping");
        pong.wait(None).expect("pong")
    };
    // Each iteration also runs the other path, untimed, so that both are
    // measured under the same load (the machine is shared).
    let mut g = c.benchmark_group("device_time");
    g.bench_function("deferred_completion", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                black_box(ping_pong());
                let start = Instant::now();
                black_box(deferred());
                timed += start.elapsed();
            }
            timed
        });
    });
    g.bench_function("eventfd_ping_pong", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                black_box(deferred());
                let start = Instant::now();
                black_box(ping_pong());
                timed += start.elapsed();
            }
            timed
        });
    });
    g.finish();
    stop.store(true, Ordering::Release);
    ping.signal().expect("the last ping");
    echo.join().expect("the echo thread");
    host.run_until_idle();
    host.assert_faults_consumed();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = completion
}
criterion_main!(benches);
