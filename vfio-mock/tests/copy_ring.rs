//! The example of `docs/simulating-a-device.md`: a DMA copy engine with a
//! descriptor ring, its model, a driver for it, and tests of the hazards a
//! ring driver must survive. The guide's code blocks are checked to be
//! copied from this file (`the_guide_shows_this_file`).

// --- device ---
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use vfio_mock::{DeviceContext, DeviceModel, Irq};

/// Register offsets in BAR0.
pub mod regs {
    /// IOVA of the descriptor ring (64-bit).
    pub const RING: u64 = 0x00;
    /// Number of descriptors in the ring.
    pub const ENTRIES: u64 = 0x08;
    /// Doorbell: the driver writes its tail (the next slot it will fill).
    pub const TAIL: u64 = 0x0c;
    /// The device's head: the next slot it will process (read-only).
    pub const HEAD: u64 = 0x10;
}

/// One descriptor: 32 bytes, little-endian, in DMA memory.
pub const DESCRIPTOR: usize = 32;
/// Flag the device sets when a descriptor is done.
pub const DONE: u32 = 1;
/// Flag the device sets with `DONE` when the copy faulted.
pub const FAULTED: u32 = 2;

/// How the simulated engine takes its time.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Virtual time from the doorbell to the copy.
    pub latency: Duration,
    /// Raise the interrupt this long *before* writing the done flag (0:
    /// the flag first, as a well-behaved device does).
    pub irq_early_by: Duration,
}

#[derive(Debug, Default)]
struct Engine {
    ring: u64,
    entries: u32,
    head: u32,
    tail: u32,
}

/// The copy engine's model: registers on BAR0, work on the virtual clock.
#[derive(Debug)]
pub struct CopyEngine {
    engine: Arc<Mutex<Engine>>,
    timing: Timing,
}

impl CopyEngine {
    /// An idle engine with `timing`.
    pub fn new(timing: Timing) -> Self {
        Self {
            engine: Arc::default(),
            timing,
        }
    }
}

/// Processes every descriptor from head to tail: copy, then flag and
/// interrupt in the order `timing` asks for.
fn run(ctx: &DeviceContext<'_>, engine: &Arc<Mutex<Engine>>, timing: Timing) {
    loop {
        let at = {
            let mut e = engine.lock();
            if e.head == e.tail || e.entries == 0 {
                return;
            }
            let slot = e.head;
            e.head = (e.head + 1) % e.entries;
            e.ring + u64::from(slot) * DESCRIPTOR as u64
        };
        let mut d = [0u8; DESCRIPTOR];
        if ctx.dma_read(at, &mut d).is_err() {
            continue; // The ring itself is unreachable: nothing to report to.
        }
        let field = |at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap_or_default());
        let (src, dst) = (field(0), field(8));
        let len = u32::from_le_bytes(d[16..20].try_into().unwrap_or_default()) as usize;
        let mut data = vec![0u8; len.min(1 << 20)];
        let copied = ctx
            .dma_read(src, &mut data)
            .and_then(|()| ctx.dma_write(dst, &data));
        let flags = if copied.is_ok() { DONE } else { DONE | FAULTED };
        let flag_at = at + 20;
        if timing.irq_early_by.is_zero() {
            let _ = ctx.dma_write(flag_at, &flags.to_le_bytes());
            ctx.raise(Irq::Msix(0));
        } else {
            ctx.raise(Irq::Msix(0));
            ctx.schedule(timing.irq_early_by, move |ctx| {
                let _ = ctx.dma_write(flag_at, &flags.to_le_bytes());
            });
        }
    }
}

impl DeviceModel for CopyEngine {
    fn read(&self, _: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
        let e = self.engine.lock();
        match (bar, offset, width) {
            (0, regs::RING, 8) => Some(e.ring),
            (0, regs::ENTRIES, 4) => Some(u64::from(e.entries)),
            (0, regs::TAIL, 4) => Some(u64::from(e.tail)),
            (0, regs::HEAD, 4) => Some(u64::from(e.head)),
            _ => None,
        }
    }

    fn write(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8, value: u64) -> bool {
        let mut e = self.engine.lock();
        match (bar, offset, width) {
            (0, regs::RING, 8) => e.ring = value,
            (0, regs::ENTRIES, 4) => e.entries = value as u32,
            (0, regs::TAIL, 4) => {
                e.tail = value as u32 % e.entries.max(1);
                let (engine, timing) = (self.engine.clone(), self.timing);
                ctx.schedule(self.timing.latency, move |ctx| run(ctx, &engine, timing));
            }
            _ => return false,
        }
        true
    }

    fn reset(&self) {
        *self.engine.lock() = Engine::default();
    }
}

/// The engine as a PCI function: one 4 KiB BAR, one MSI-X vector (its
/// table and PBA in BAR0's second half, the mock's, not the model's).
pub fn copy_engine(timing: Timing) -> vfio_mock::PciDeviceBuilder {
    vfio_mock::PciDeviceBuilder::new(0x1af4, 0x10ff)
        .class(0x08_80_00)
        .bar(0, vfio_mock::BarSpec::memory32(8192))
        .msix(1, 0, 0x1000, 0, 0x1800)
        .model(CopyEngine::new(timing))
}
// --- end device ---

// --- driver ---
use vfio_core::{
    Container, Device, DmaFlags, DmaMemory, Interrupt, IovaAllocator, IovaOptions, IrqIndex,
    MappedRegion, OwnedDmaMapping, VfioBackend, region,
};

/// A driver for the copy engine, generic over the backend.
#[derive(Debug)]
pub struct CopyDriver<B: VfioBackend> {
    device: B::Device,
    bar: B::Region,
    irq: B::Interrupt,
    ring: OwnedDmaMapping<B>,
    entries: u32,
    tail: u32,
}

/// How a copy ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Copied {
    /// The device copied the bytes.
    Done,
    /// The device could not reach the source or the destination.
    Faulted,
}

impl<B: VfioBackend> CopyDriver<B> {
    /// Sets up a ring of `entries` descriptors in DMA memory mapped at an
    /// IOVA `iovas` picks, and MSI-X vector 0.
    pub fn new(
        backend: &B,
        device: B::Device,
        container: Arc<B::Container>,
        iovas: &IovaAllocator,
        entries: u32,
    ) -> vfio_core::Result<Self> {
        let size = entries as usize * DESCRIPTOR;
        let memory = Arc::new(backend.alloc_dma(size)?);
        let len = memory.len() as u64;
        let ring = OwnedDmaMapping::<B>::new_in(
            container,
            iovas,
            memory,
            0,
            len,
            DmaFlags::READ | DmaFlags::WRITE,
        )?;
        let bar = device.map_region(region::BAR0)?;
        bar.write_u64(regs::RING, ring.iova())?;
        bar.write_u32(regs::ENTRIES, entries)?;
        let irq = backend.new_interrupt()?;
        device.enable_interrupts(IrqIndex::MSIX, &[&irq])?;
        // The device's DMA and its MSI-X messages need bus mastering.
        device.set_bus_master(true)?;
        Ok(Self {
            device,
            bar,
            irq,
            ring,
            entries,
            tail: 0,
        })
    }

    /// Queues a copy of `len` bytes from `src` to `dst` (IOVAs) and rings
    /// the doorbell. Returns the slot to poll.
    pub fn submit(&mut self, src: u64, dst: u64, len: u32) -> vfio_core::Result<u32> {
        let slot = self.tail;
        let mut d = [0u8; DESCRIPTOR];
        d[0..8].copy_from_slice(&src.to_le_bytes());
        d[8..16].copy_from_slice(&dst.to_le_bytes());
        d[16..20].copy_from_slice(&len.to_le_bytes());
        self.ring
            .memory()
            .write_at(slot as usize * DESCRIPTOR, &d)?;
        self.tail = (self.tail + 1) % self.entries;
        // The descriptor must be in memory before the device can see the
        // doorbell: wmb() orders DMA-memory stores before the MMIO store.
        self.ring.memory().wmb();
        self.bar.write_u32(regs::TAIL, self.tail)?;
        Ok(slot)
    }

    /// What the device says of `slot`, from its done flag (not from the
    /// interrupt, which may come first): `None` while it is not done.
    pub fn poll(&self, slot: u32) -> vfio_core::Result<Option<Copied>> {
        // An acquire load: what the device wrote before the flag is visible
        // after it (the load, then dma_rmb()).
        let flags = self
            .ring
            .memory()
            .load_acquire_u32(slot as usize * DESCRIPTOR + 20)?;
        Ok(match (flags & DONE != 0, flags & FAULTED != 0) {
            (false, _) => None,
            (true, false) => Some(Copied::Done),
            (true, true) => Some(Copied::Faulted),
        })
    }

    /// Consumes the interrupt if it fired: true if it did.
    pub fn interrupted(&self) -> vfio_core::Result<bool> {
        Ok(self.irq.try_consume()?.is_some())
    }

    /// The device handle.
    pub fn device(&self) -> &B::Device {
        &self.device
    }
}
// --- end driver ---

// --- tests ---
use vfio_core::Group;
use vfio_mock::{MockBackend, MockHost};

fn address() -> vfio_core::PciAddress {
    vfio_core::PciAddress::new(0, 0, 6, 0).expect("a valid address")
}

/// A host with the engine, its driver set up, and one mapped data buffer of
/// two pages (source first, destination second) with the allocator to map more.
fn setup(
    timing: Timing,
) -> (
    MockHost,
    CopyDriver<MockBackend>,
    OwnedDmaMapping<MockBackend>,
    IovaAllocator,
) {
    let host = MockHost::builder()
        .device(address(), 7, copy_engine(timing))
        .build()
        .expect("the host");
    let b = host.backend();
    let group = b.open_group(7).expect("the group");
    let container = Arc::new(b.open_container().expect("a container"));
    group.set_container(&container).expect("attach");
    container
        .set_iommu(vfio_core::IommuType::Type1v2)
        .expect("type1v2");
    let device = group
        .open_device(&address().to_string())
        .expect("the device");
    let iovas = IovaAllocator::new(
        &container.iommu_info().expect("info"),
        IovaOptions::default(),
    )
    .expect("an allocator");
    let driver = CopyDriver::new(&b, device, container.clone(), &iovas, 16).expect("the driver");
    let data = Arc::new(b.alloc_dma(0x2000).expect("memory"));
    let buffers = OwnedDmaMapping::<MockBackend>::new_in(
        container,
        &iovas,
        data,
        0,
        0x2000,
        DmaFlags::READ | DmaFlags::WRITE,
    )
    .expect("the buffers");
    (host, driver, buffers, iovas)
}

const SLOW: Timing = Timing {
    latency: Duration::from_micros(50),
    irq_early_by: Duration::ZERO,
};

#[test]
fn a_completion_arrives_late() {
    let (host, mut driver, buf, _iovas) = setup(SLOW);
    buf.memory().write_at(0, b"ring of copies").unwrap();
    let slot = driver.submit(buf.iova(), buf.iova() + 0x1000, 14).unwrap();
    // The doorbell returned, the device has not run yet.
    assert_eq!(driver.poll(slot).unwrap(), None);
    assert!(!driver.interrupted().unwrap());
    host.advance(Duration::from_micros(49));
    assert_eq!(driver.poll(slot).unwrap(), None);
    host.advance(Duration::from_micros(1));
    assert!(driver.interrupted().unwrap());
    assert_eq!(driver.poll(slot).unwrap(), Some(Copied::Done));
    let mut back = [0u8; 14];
    buf.memory().read_at(0x1000, &mut back).unwrap();
    assert_eq!(&back, b"ring of copies");
}

#[test]
fn an_interrupt_can_arrive_before_the_done_flag() {
    let early = Timing {
        irq_early_by: Duration::from_micros(10),
        ..SLOW
    };
    let (host, mut driver, buf, _iovas) = setup(early);
    let slot = driver.submit(buf.iova(), buf.iova() + 0x1000, 64).unwrap();
    host.advance(SLOW.latency);
    // The interrupt is here, the flag is not: a driver that trusted the
    // interrupt alone would read a descriptor the device has not finished.
    assert!(driver.interrupted().unwrap());
    assert_eq!(driver.poll(slot).unwrap(), None);
    host.advance(Duration::from_micros(10));
    assert_eq!(driver.poll(slot).unwrap(), Some(Copied::Done));
}

#[test]
fn a_descriptor_pointing_at_an_unmapped_iova_faults_and_is_logged() {
    let (host, mut driver, buf, _iovas) = setup(SLOW);
    let nowhere = 0x7000_0000;
    let slot = driver.submit(nowhere, buf.iova(), 16).unwrap();
    host.run_until_idle();
    assert_eq!(driver.poll(slot).unwrap(), Some(Copied::Faulted));
    let faults = host.iommu_faults();
    assert_eq!(faults.len(), 1, "{faults:?}");
    assert_eq!((faults[0].requester, faults[0].page), (address(), nowhere));
}

#[test]
fn a_buffer_unmapped_while_in_flight_faults_instead_of_reaching_freed_memory() {
    let (host, mut driver, buf, _iovas) = setup(SLOW);
    let (src, dst) = (buf.iova(), buf.iova() + 0x1000);
    let slot = driver.submit(src, dst, 32).unwrap();
    // The driver gives the buffers up before the device has run.
    assert_eq!(buf.unmap().unwrap(), 0x2000);
    host.run_until_idle();
    assert_eq!(driver.poll(slot).unwrap(), Some(Copied::Faulted));
    assert_eq!(host.iommu_faults()[0].page, src);
    assert!(driver.device().info().is_ok());
}
/// The engine on a Linux 6.12 host, opened through its cdev: the same
/// mapping calls, through the IOAS `open_device` attached it to.
#[test]
fn the_engine_through_its_cdev_on_6_12() {
    use vfio_core::open::{Mode, open_device};
    use vfio_core::{DmaSpace, Ioas};
    let host = MockHost::builder()
        .kernel(vfio_mock::KernelVersion::V6_12)
        .device(address(), 7, copy_engine(SLOW))
        .build()
        .expect("the host");
    let b = host.backend();
    let opened = open_device(&b, &address(), Mode::Iommufd).expect("the cdev");
    // The context's objects: the device is 1, its IOAS 2.
    assert_eq!(opened.dma.ioas().expect("an IOAS").id(), 2);
    opened.device.set_bus_master(true).expect("bus mastering");
    let memory = b.alloc_dma(0x1000).expect("memory");
    let iovas = opened
        .dma
        .iova_allocator(IovaOptions::default())
        .expect("an allocator");
    let page = opened
        .dma
        .map_dma_in(&iovas, &memory, 0, 0x1000, DmaFlags::READ | DmaFlags::WRITE)
        .expect("mapped");
    let at = page.device_address(0).expect("its IOVA");
    host.with_device(address(), |ctx| ctx.dma_write(at, b"via the IOAS"))
        .expect("the device")
        .expect("the DMA");
    let mut back = [0u8; 12];
    memory.read_at(0, &mut back).expect("read");
    assert_eq!(&back, b"via the IOAS");
}

/// The engine in no-IOMMU mode: the mapping maps nothing and gives the
/// device physical addresses, page by page.
#[test]
fn the_engine_without_an_iommu_gets_physical_addresses() {
    use vfio_core::DmaSpace;
    use vfio_core::open::{Mode, open_device};
    let host = MockHost::builder()
        .noiommu_mode(vfio_mock::NoIommuMode::Enabled)
        .noiommu_device(address(), 7, copy_engine(SLOW))
        .build()
        .expect("the host");
    let b = host.backend();
    let opened = open_device(&b, &address(), Mode::NoIommu).expect("the device");
    opened.device.set_bus_master(true).expect("bus mastering");
    let memory = b.alloc_dma(0x2000).expect("two pages");
    let both = opened
        .dma
        .map_dma(&memory, 0, 0x2000, 0, DmaFlags::READ | DmaFlags::WRITE)
        .expect("nothing to map");
    let first = both.device_address(0).expect("page 0");
    let second = both.device_address(0x1000).expect("page 1");
    // As on a real machine, the second page does not follow the first.
    assert_ne!(second, first + 0x1000);
    let across = host
        .with_device(address(), |ctx| ctx.dma_write(first + 0xffe, b"abcd"))
        .expect("the device");
    assert!(matches!(across, Err(vfio_mock::DmaFault::NoMemory { .. })));
}
// --- end tests ---

/// Every `rust` block of the guide is a part of this file, so the guide's
/// code is the code these tests compile and run.
#[test]
fn the_guide_shows_this_file() {
    let guide = include_str!("../../docs/simulating-a-device.md");
    let this = include_str!("copy_ring.rs");
    let mut blocks = 0;
    for block in guide.split("```rust\n").skip(1) {
        let code = block.split("```").next().unwrap_or_default();
        assert!(
            this.contains(code),
            "the guide shows code this file lacks:\n{code}"
        );
        blocks += 1;
    }
    assert!(blocks >= 3, "{blocks} code blocks");
}
