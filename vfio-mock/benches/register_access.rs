//! Goal: a mock register access on a plain BAR costs at most 5x a raw
//! volatile access; with a model hook, tens of ns.
//!
//! All accesses go through a BAR mapped with `Device::map_region` and the
//! `MappedRegion` trait, on devices opened the way a driver opens them:
//!
//! - `plain_*`: the NVMe profile's BAR0 at 0x200c, the vector-control word
//!   of MSI-X table entry 0. The MSI-X table is never the model's, so this
//!   is plain BAR memory, on the mapped region's lock-free fast path (every
//!   check kept: bounds, alignment, planned faults, removal, decode).
//!   (The controller registers, ASQ at 0x28 included, are all the model's.)
//! - `no_model_read_u32`: a BAR of a device with no model at all: the same
//!   fast path, every offset plain.
//! - `hooked_*`: the edu profile's liveness register (0x04), which
//!   `EduModel` serves under its state lock.
//! - `nvme_asq_read_u32`: the NVMe admin submission queue base, served by
//!   `NvmeModel` under its register-block lock.
//!
//! `cargo xtask bench` reports ns per access and the hooked/plain and
//! plain/raw-volatile ratios (the raw baseline is vfio-linux's bench).

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vfio_core::{Device, MappedRegion, PciAddress};
use vfio_mock::profiles::{self, nvme};
use vfio_mock::{BarSpec, MockHost, PciDeviceBuilder};

/// MSI-X table entry 0's vector-control word in the NVMe profile's BAR0.
const NVME_PLAIN: u64 = nvme::MSIX_TABLE_OFFSET as u64 + 0xc;
/// edu's liveness register: reads the inverse of the last value written.
const EDU_LIVENESS: u64 = 0x04;

/// A register read through the trait, with static dispatch, as a driver
/// does it: the result is checked at once. (Handing the `Result` itself to
/// criterion would also time copying a value as large as `vfio_core::Error`
/// through memory, which a driver's `?` never does.) Inlined into the
/// timing loop, as vfio-linux's bench does on both of its sides.
#[inline(always)]
fn read_reg<R: MappedRegion>(region: &R, offset: u64) -> u32 {
    match region.read_u32(offset) {
        Ok(value) => value,
        Err(e) => failed(&e),
    }
}

/// A register write through the trait, checked likewise.
#[inline(always)]
fn write_reg<R: MappedRegion>(region: &R, offset: u64, value: u32) {
    if let Err(e) = region.write_u32(offset, value) {
        failed(&e);
    }
}

/// A refused access ends the run. Out of line and given only the error
/// (which names the offset), so the timing loop keeps nothing for it.
#[cold]
#[inline(never)]
fn failed(e: &vfio_core::Error) -> ! {
    panic!("register access: {e}")
}

fn register_access(c: &mut Criterion) {
    let host = profiles::qemu_guest().build().expect("the QEMU guest host");
    let backend = host.backend();
    let nvme = common::open(&backend, profiles::nvme_address());
    let edu = common::open(&backend, profiles::edu_address());
    let nvme_bar0 = nvme.device.map_region(0).expect("map NVMe BAR0");
    let edu_bar0 = edu.device.map_region(0).expect("map edu BAR0");

    // A device with no model: every access is plain BAR memory.
    let bare_address = PciAddress::new(0, 0, 4, 0).expect("slot 4 is a valid address");
    let bare_host = MockHost::builder()
        .device(
            bare_address,
            1,
            PciDeviceBuilder::new(0x1b36, 0x0001).bar(0, BarSpec::memory32(4096)),
        )
        .build()
        .expect("a host with a model-less device");
    let bare = common::open(&bare_host.backend(), bare_address);
    let bare_bar0 = bare.device.map_region(0).expect("map the bare BAR0");

    // Write first, so the BAR page exists and reads take the full path.
    write_reg(&nvme_bar0, NVME_PLAIN, 1);
    assert_eq!(read_reg(&nvme_bar0, NVME_PLAIN), 1);
    write_reg(&bare_bar0, 0x28, 7);
    assert_eq!(read_reg(&bare_bar0, 0x28), 7);
    write_reg(&edu_bar0, EDU_LIVENESS, 0x1234_5678);
    assert_eq!(read_reg(&edu_bar0, EDU_LIVENESS), !0x1234_5678);
    write_reg(&nvme_bar0, nvme::reg::ASQ, 0x1000);
    assert_eq!(read_reg(&nvme_bar0, nvme::reg::ASQ), 0x1000);

    let mut g = c.benchmark_group("mock_register");
    g.bench_function("plain_read_u32", |b| {
        b.iter(|| read_reg(&nvme_bar0, black_box(NVME_PLAIN)));
    });
    g.bench_function("plain_write_u32", |b| {
        b.iter(|| write_reg(&nvme_bar0, black_box(NVME_PLAIN), black_box(1)));
    });
    g.bench_function("no_model_read_u32", |b| {
        b.iter(|| read_reg(&bare_bar0, black_box(0x28)));
    });
    g.bench_function("hooked_read_u32", |b| {
        b.iter(|| read_reg(&edu_bar0, black_box(EDU_LIVENESS)));
    });
    g.bench_function("hooked_write_u32", |b| {
        b.iter(|| write_reg(&edu_bar0, black_box(EDU_LIVENESS), black_box(0x1234_5678)));
    });
    g.bench_function("nvme_asq_read_u32", |b| {
        b.iter(|| read_reg(&nvme_bar0, black_box(nvme::reg::ASQ)));
    });
    g.finish();

    host.assert_faults_consumed();
    bare_host.assert_faults_consumed();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = register_access
}
criterion_main!(benches);
