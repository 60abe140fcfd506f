//! Devices that finish work on their own time: deferred to the device's
//! thread, or scheduled on the host's virtual clock.

mod common;

use common::open;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use vfio_core::{
    Device, DmaFlags, DmaMemory, DmaSpace, Interrupt, IrqIndex, MappedRegion, VfioBackend,
};
use vfio_mock::{
    BarSpec, Delivery, DeviceContext, DeviceModel, DmaFault, Irq, MockHost, PciDeviceBuilder,
};

const SOON: Duration = Duration::from_secs(5);

/// A completion: the value, the virtual time, what the DMA and MSI-X gave.
type Completion = (u64, Duration, Result<Delivery, DmaFault>);
type Done = Arc<Mutex<Vec<Completion>>>;

/// How the doorbell's work is done.
#[derive(Debug, Clone, Copy)]
enum When {
    /// On the device's thread.
    Deferred,
    /// After this much virtual time.
    After(Duration),
}

/// A doorbell: writing v to 0x0 makes the device write v (8 bytes) to
/// IOVA 0x10_0000 + 8 * (v % 16) and raise MSI-X vector 0, on its own time.
/// Completions are also recorded in order, with the virtual time.
#[derive(Debug)]
struct Doorbell {
    when: Mutex<When>,
    done: Done,
}

impl Doorbell {
    fn complete(ctx: &DeviceContext<'_>, v: u64, done: &Mutex<Vec<Completion>>) {
        let r = ctx
            .dma_write(0x10_0000 + 8 * (v % 16), &v.to_le_bytes())
            .map(|()| ctx.raise(Irq::Msix(0)));
        done.lock().push((v, ctx.now(), r));
    }
}

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
        value: u64,
    ) -> bool {
        if bar != 0 || offset != 0 {
            return false;
        }
        let done = self.done.clone();
        match *self.when.lock() {
            When::Deferred => ctx.defer(move |ctx| Doorbell::complete(ctx, value, &done)),
            When::After(d) => ctx.schedule(d, move |ctx| Doorbell::complete(ctx, value, &done)),
        }
        true
    }

    fn reset(&self) {}
}

fn host(when: When, can_reset: bool) -> (MockHost, Done) {
    let done: Done = Arc::default();
    let device = PciDeviceBuilder::new(0x1af4, 0x10f0)
        .bar(0, BarSpec::memory64(0x4000))
        .msix(4, 0, 0x2000, 0, 0x3000)
        .can_reset(can_reset)
        .model(Doorbell {
            when: Mutex::new(when),
            done: done.clone(),
        });
    let host = MockHost::builder()
        .device(address(), 1, device)
        .build()
        .unwrap();
    (host, done)
}

fn address() -> vfio_core::PciAddress {
    vfio_core::PciAddress::new(0, 0, 4, 0).unwrap()
}

/// The device opened as a driver would: bus mastering on, a page of DMA
/// memory mapped at IOVA 0x10_0000 (until the container goes with `o`), MSI-X vector 0 bound
/// to `irq`, BAR0 mapped.
fn driven(
    b: &vfio_mock::MockBackend,
) -> (
    common::Opened,
    vfio_mock::MockDmaMemory,
    vfio_core::EventFdInterrupt,
    vfio_mock::MockRegion,
) {
    let o = open(b, address());
    o.device.set_bus_master(true).unwrap();
    let mem = b.alloc_dma(0x1000).unwrap();
    o.container
        .map_dma_raw(&mem, 0, 0x1000, 0x10_0000, DmaFlags::READ | DmaFlags::WRITE)
        .unwrap();
    let irq = b.new_interrupt().unwrap();
    o.device.enable_interrupts(IrqIndex::MSIX, &[&irq]).unwrap();
    let bar = o.device.map_region(0).unwrap();
    (o, mem, irq, bar)
}

#[test]
fn deferred_work_dmas_and_raises_msix_after_the_write_returns() {
    let (host, done) = host(When::Deferred, false);
    let b = host.backend();
    let (_o, mem, irq, bar) = driven(&b);
    for v in 1..=3u64 {
        bar.write_u64(0, v).unwrap();
        assert!(irq.wait(Some(SOON)).unwrap().is_some(), "completion {v}");
        let mut got = [0u8; 8];
        mem.read_at(8 * v as usize, &mut got).unwrap();
        assert_eq!(u64::from_le_bytes(got), v);
    }
    host.run_until_idle();
    let order: Vec<u64> = done.lock().iter().map(|d| d.0).collect();
    assert_eq!(order, [1, 2, 3], "one device's jobs run in order");
    assert_eq!(host.pending_work(), (0, 0));
    host.assert_faults_consumed();
}

#[test]
fn scheduled_work_runs_when_virtual_time_reaches_it_in_deadline_order() {
    let (host, done) = host(When::After(Duration::from_millis(10)), false);
    let b = host.backend();
    let (_o, _mem, irq, bar) = driven(&b);
    let start = host.clock().now();
    bar.write_u64(0, 1).unwrap();
    // A second, faster command overtakes the first.
    host.with_device(address(), |ctx| {
        let done = done.clone();
        ctx.schedule(Duration::from_millis(3), move |ctx| {
            done.lock().push((2, ctx.now(), Ok(Delivery::NotBound)));
        });
    });
    assert_eq!(host.pending_work(), (2, 0));
    assert_eq!(host.advance(Duration::from_millis(9)), 1);
    assert_eq!(
        irq.try_consume().unwrap(),
        None,
        "not yet: the device is slow"
    );
    assert_eq!(host.advance(Duration::from_millis(1)), 1);
    assert_eq!(irq.try_consume().unwrap(), Some(1));
    let d = done.lock().clone();
    assert_eq!(
        d.iter().map(|d| (d.0, d.1 - start)).collect::<Vec<_>>(),
        [
            (2, Duration::from_millis(3)),
            (1, Duration::from_millis(10))
        ]
    );
    assert_eq!(d[1].2, Ok(Delivery::Signalled));
    // run_until_idle moves the clock to each deadline.
    bar.write_u64(0, 4).unwrap();
    assert_eq!(host.run_until_idle(), 1);
    assert_eq!(host.clock().now() - start, Duration::from_millis(20));
    host.assert_faults_consumed();
}

#[test]
fn work_pending_at_a_reset_or_removal_never_runs_and_a_closed_device_cannot_dma() {
    // A device that can reset: the reset at the last close drops its timers.
    let (host, done) = host(When::After(Duration::from_millis(5)), true);
    let b = host.backend();
    {
        let o = open(&b, address());
        o.device.set_bus_master(true).unwrap();
        o.device.map_region(0).unwrap().write_u64(0, 1).unwrap();
        assert_eq!(host.pending_work(), (1, 0));
        o.device.reset().unwrap();
        assert_eq!(host.pending_work(), (0, 0), "a reset drops pending work");
        o.device.map_region(0).unwrap().write_u64(0, 2).unwrap();
    }
    assert_eq!(
        host.pending_work(),
        (0, 0),
        "so does the reset at the last close"
    );
    assert_eq!(host.run_until_idle(), 0);
    assert!(done.lock().is_empty());

    // A device that cannot reset keeps its work across the close, but
    // vfio-pci's close clears bus mastering: the DMA is refused.
    let (host, done) = host_without_reset();
    let b = host.backend();
    {
        let o = open(&b, address());
        o.device.set_bus_master(true).unwrap();
        o.device.map_region(0).unwrap().write_u64(0, 3).unwrap();
    }
    assert_eq!(host.run_until_idle(), 1);
    assert_eq!(done.lock()[0].2, Err(DmaFault::BusMasterDisabled));

    // Removal ends the device's epoch: what it had pending is dropped.
    let o = open(&b, address());
    o.device.map_region(0).unwrap().write_u64(0, 4).unwrap();
    let removal = host.remove_device(address()).unwrap();
    drop(o);
    assert!(removal.wait(SOON));
    assert_eq!(host.run_until_idle(), 0);
    assert_eq!(done.lock().len(), 1);
}

fn host_without_reset() -> (MockHost, Done) {
    host(When::After(Duration::from_millis(5)), false)
}

#[test]
fn dropping_the_host_with_deferred_work_queued_joins_the_device_thread() {
    let (host, done) = host(When::Deferred, false);
    let b = host.backend();
    let o = open(&b, address());
    // Work that blocks until released, then more queued behind it.
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock();
    let g = gate.clone();
    host.with_device(address(), |ctx| {
        ctx.defer(move |_| drop(g.lock()));
    });
    let bar = o.device.map_region(0).unwrap();
    for v in 0..8 {
        bar.write_u64(0, v).unwrap();
    }
    drop(bar);
    drop(o);
    drop(b);
    let (tx, rx) = std::sync::mpsc::channel();
    let dropper = std::thread::spawn(move || {
        drop(host);
        tx.send(()).unwrap();
    });
    drop(held);
    rx.recv_timeout(SOON).expect("the host drop finished");
    dropper.join().unwrap();
    // The job running when the host went finished; the rest never ran.
    assert!(done.lock().len() <= 8);
}

#[test]
fn a_panicking_job_is_reported_by_done_and_the_device_keeps_working() {
    let (host, done) = host(When::Deferred, false);
    host.with_device(address(), |ctx| ctx.defer(|_| panic!("model bug")));
    host.run_until_idle();
    let e = host.done().unwrap_err();
    assert!(e.to_string().contains("model bug"), "{e}");
    host.with_device(address(), |ctx| {
        let done = done.clone();
        ctx.defer(move |ctx| Doorbell::complete(ctx, 5, &done));
    });
    host.run_until_idle();
    assert_eq!(done.lock().len(), 1);
}

/// A model that answers its vendor capability's bytes and counts every
/// BAR access it sees.
#[derive(Debug, Default)]
struct Vendor {
    reg: Mutex<u32>,
    bar_accesses: Mutex<Vec<u64>>,
    config_accesses: Mutex<Vec<(u16, u8)>>,
}

impl DeviceModel for Vendor {
    fn read(&self, _ctx: &DeviceContext<'_>, _bar: u32, offset: u64, _width: u8) -> Option<u64> {
        self.bar_accesses.lock().push(offset);
        None
    }

    fn write(
        &self,
        _ctx: &DeviceContext<'_>,
        _bar: u32,
        offset: u64,
        _width: u8,
        _value: u64,
    ) -> bool {
        self.bar_accesses.lock().push(offset);
        false
    }

    fn reset(&self) {}

    fn config_read(&self, _ctx: &DeviceContext<'_>, offset: u16, width: u8) -> Option<u32> {
        self.config_accesses.lock().push((offset, width));
        Some(*self.reg.lock())
    }

    fn config_write(&self, _ctx: &DeviceContext<'_>, offset: u16, width: u8, value: u32) -> bool {
        self.config_accesses.lock().push((offset, width));
        *self.reg.lock() = value;
        true
    }
}

#[test]
fn a_model_answers_its_vendor_capability_and_never_sees_the_msix_table() {
    let model = Arc::new(Vendor::default());
    #[derive(Debug)]
    struct Shared(Arc<Vendor>);
    impl DeviceModel for Shared {
        fn read(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
            self.0.read(ctx, bar, offset, width)
        }
        fn write(
            &self,
            ctx: &DeviceContext<'_>,
            bar: u32,
            offset: u64,
            width: u8,
            value: u64,
        ) -> bool {
            self.0.write(ctx, bar, offset, width, value)
        }
        fn reset(&self) {}
        fn config_read(&self, ctx: &DeviceContext<'_>, offset: u16, width: u8) -> Option<u32> {
            self.0.config_read(ctx, offset, width)
        }
        fn config_write(
            &self,
            ctx: &DeviceContext<'_>,
            offset: u16,
            width: u8,
            value: u32,
        ) -> bool {
            self.0.config_write(ctx, offset, width, value)
        }
    }
    let device = PciDeviceBuilder::new(0x1af4, 0x10f0)
        .bar(0, BarSpec::memory64(0x4000))
        .msix(4, 0, 0x2000, 0, 0x3000)
        .vendor_capability(8)
        .at(0x60)
        .model(Shared(model.clone()));
    let host = MockHost::builder()
        .device(address(), 1, device)
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, address());
    // The header is the mock's: ID 0x09, the next pointer, the length.
    let header = o.device.read_config::<3>(0x60).unwrap();
    assert_eq!((header[0], header[2]), (0x09, 8));
    assert!(model.config_accesses.lock().is_empty());
    // A 5-byte write over 0x63..0x68 reaches the model in aligned pieces.
    o.device
        .write_config(0x63, &[1, 0xaa, 0xbb, 0xcc, 0xdd])
        .unwrap();
    assert_eq!(*model.config_accesses.lock(), [(0x63, 1), (0x64, 4)]);
    assert_eq!(*model.reg.lock(), 0xddcc_bbaa);
    assert_eq!(
        o.device.read_config::<4>(0x64).unwrap(),
        0xddcc_bbaau32.to_le_bytes()
    );
    // MSI-X table and PBA accesses through the mapping stay the mock's.
    let bar = o.device.map_region(0).unwrap();
    bar.write_u32(0x2000, 0xfee0_0000).unwrap();
    assert_eq!(bar.read_u32(0x2000).unwrap(), 0xfee0_0000);
    bar.read_u64(0x3000).unwrap();
    bar.read_u32(0x10).unwrap();
    assert_eq!(*model.bar_accesses.lock(), [0x10]);
}
