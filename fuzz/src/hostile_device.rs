//! `hostile_device`: the `edu` driver against a device that lies.
//!
//! The device is QEMU's `edu` as vfio-mock simulates it, wrapped in a
//! [`DeviceModel`] that follows a script from the fuzzer: at each BAR access
//! it answers honestly, returns a fuzzer-chosen value instead of the
//! register, reads all ones (a device gone from the bus) or ignores a
//! write, may raise a spurious MSI, and may DMA on its own to an IOVA of
//! its choosing. Then the driver runs:
//! [`Edu::new`], [`Edu::factorial`], [`Edu::dma_round_trip`].
//!
//! Checked: the driver never panics and never hangs (libFuzzer's `-timeout`
//! catches a hang), every call returns `Ok` or a typed [`EduError`], and the
//! simulated host's bookkeeping stays consistent ([`MockHost::done`]), a
//! rogue DMA gets through the IOMMU only inside what the driver mapped. When
//! the script told no lie, the driver must also get the right answers:
//! `n!` and the data back from the round trip.
//!
//! The driver waits up to 10 s for each completion interrupt, so the model
//! always raises MSI 0 after a write that starts work (the factorial or a
//! DMA command), even a write it ignored: a lying device may answer
//! nonsense, but it answers at once, and no input waits for the timeout.

use crate::mock::OneDevice;
use arbitrary::{Arbitrary, Unstructured};
use edu::{DMA_IOVA, DMA_MAX_TRANSFER, Edu, EduError, regs};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;
use vfio_mock::profiles::{self, EduModel};
use vfio_mock::{DeviceContext, DeviceModel, Irq, MockBackend, MockHost};

/// What the device does at one BAR access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum Twist {
    /// Behave like `edu`.
    Honest,
    /// A read returns this value (cut to the access width); a write goes through.
    Value(u64),
    /// A read returns all ones, as from a device that fell off the bus; a
    /// write is ignored.
    Gone,
    /// Behave like `edu`, and raise MSI 0 as well.
    Spurious,
    /// Behave like `edu`, and first DMA on its own: `len % 64 + 1` bytes at
    /// an IOVA near the driver's DMA window or anywhere, reading host
    /// memory or scribbling over it.
    Dma {
        /// Where.
        at: DmaTarget,
        /// How much.
        len: u8,
        /// Write (scribble) rather than read.
        write: bool,
    },
}

/// Where a rogue DMA goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum DmaTarget {
    /// `DMA_IOVA - 0x100 + n`: below, inside and past the driver's mapping.
    Window(u16),
    /// Any IOVA.
    Any(u64),
}

/// What the driver maps for DMA: two pages at [`DMA_IOVA`].
const WINDOW: std::ops::Range<u64> = DMA_IOVA..DMA_IOVA + 2 * 4096;

#[derive(Debug, Default)]
struct Script {
    twists: VecDeque<Twist>,
    lied: bool,
}

/// The model the device runs: `edu`, twisted by the script.
#[derive(Debug, Clone)]
pub struct HostileModel {
    edu: EduModel,
    script: Arc<Mutex<Script>>,
}

impl HostileModel {
    fn next(&self) -> Twist {
        let mut s = self.script.lock();
        let twist = s.twists.pop_front().unwrap_or(Twist::Honest);
        s.lied |= twist != Twist::Honest;
        twist
    }

    /// A DMA of the device's own: the IOMMU must refuse it unless it lies
    /// entirely inside what the driver mapped.
    fn rogue_dma(ctx: &DeviceContext<'_>, at: DmaTarget, len: u8, write: bool) {
        let iova = match at {
            DmaTarget::Window(n) => WINDOW.start - 0x100 + u64::from(n),
            DmaTarget::Any(iova) => iova,
        };
        let mut buf = vec![0xa5u8; usize::from(len % 64) + 1];
        let result = if write {
            ctx.dma_write(iova, &buf)
        } else {
            ctx.dma_read(iova, &mut buf)
        };
        let inside = iova >= WINDOW.start
            && iova
                .checked_add(buf.len() as u64)
                .is_some_and(|end| end <= WINDOW.end);
        assert!(
            result.is_err() || inside,
            "a {}-byte DMA at {iova:#x} got through the IOMMU outside the driver's mapping",
            buf.len()
        );
    }

    fn raise(ctx: &DeviceContext<'_>) {
        if ctx.msi_enabled() {
            let _ = ctx.raise(Irq::Msi(0));
        }
    }
}

fn cut(value: u64, width: u8) -> u64 {
    match width {
        1 => value & 0xff,
        2 => value & 0xffff,
        4 => value & 0xffff_ffff,
        _ => value,
    }
}

impl DeviceModel for HostileModel {
    fn read(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
        match self.next() {
            Twist::Honest => self.edu.read(ctx, bar, offset, width),
            Twist::Value(v) => Some(cut(v, width)),
            Twist::Gone => Some(cut(u64::MAX, width)),
            Twist::Spurious => {
                Self::raise(ctx);
                self.edu.read(ctx, bar, offset, width)
            }
            Twist::Dma { at, len, write } => {
                Self::rogue_dma(ctx, at, len, write);
                self.edu.read(ctx, bar, offset, width)
            }
        }
    }

    fn write(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8, value: u64) -> bool {
        let handled = match self.next() {
            Twist::Gone => true,
            Twist::Spurious => {
                Self::raise(ctx);
                self.edu.write(ctx, bar, offset, width, value)
            }
            Twist::Dma { at, len, write } => {
                Self::rogue_dma(ctx, at, len, write);
                self.edu.write(ctx, bar, offset, width, value)
            }
            Twist::Honest | Twist::Value(_) => self.edu.write(ctx, bar, offset, width, value),
        };
        if bar == 0 && (offset == regs::FACTORIAL || offset == regs::DMA_CMD) {
            Self::raise(ctx);
        }
        handled
    }

    fn reset(&self) {
        self.edu.reset();
    }
}

/// The input, besides the script.
#[derive(Debug, Arbitrary)]
struct Run {
    factorial: u8,
    dma_len: u16,
    dma_seed: u8,
    twists: Vec<Twist>,
}

struct Fixture {
    host: OneDevice,
    model: HostileModel,
}

thread_local! {
    static FIXTURE: Fixture = {
        let model = HostileModel {
            edu: EduModel::new(),
            script: Arc::default(),
        };
        let host = OneDevice::new(profiles::edu().model(model.clone()));
        Fixture { host, model }
    };
}

/// The target.
pub fn hostile_device(data: &[u8]) {
    let Ok(run) = Run::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    FIXTURE.with(|f| drive(f, &run));
}

fn drive(f: &Fixture, run: &Run) {
    // Power-on state and this input's script.
    f.model.reset();
    *f.model.script.lock() = Script {
        twists: run.twists.iter().copied().collect(),
        lied: false,
    };
    let n = u32::from(run.factorial % 16);
    let len = usize::from(run.dma_len) % (DMA_MAX_TRANSFER + 64);
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ run.dma_seed)
        .collect();

    let backend: &MockBackend = &f.host.backend;
    let result = Edu::new(backend, f.host.open()).map(|mut edu| {
        let fact = edu.factorial(n);
        let echoed = edu.dma_round_trip(backend, &f.host.container, &data);
        (fact, echoed)
    });

    // The device was released when `edu` dropped; the host must have kept
    // its books straight whatever the device did.
    check_host(&f.host.host);

    if f.model.script.lock().lied {
        // Anything typed goes; reaching here means no panic and no hang.
        let _ = result;
        return;
    }
    let (fact, echoed) = result.unwrap_or_else(|e| panic!("an honest edu failed to start: {e}"));
    let want = (1..=n).fold(1u32, |acc, k| acc.wrapping_mul(k));
    assert_eq!(
        fact.unwrap_or_else(|e| panic!("honest factorial: {e}")),
        want
    );
    match echoed {
        Ok(back) => assert_eq!(back, data, "an honest DMA round trip changed the data"),
        Err(EduError::TooLong(l)) => assert!(l > DMA_MAX_TRANSFER && l == data.len()),
        Err(e) => panic!("honest DMA round trip of {} bytes: {e}", data.len()),
    }
}

fn check_host(host: &MockHost) {
    if let Err(e) = host.done() {
        panic!("the mock's bookkeeping after the run: {e}");
    }
}
