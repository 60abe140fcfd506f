//! A mapped BAR's plain memory (a device without a model, or the MSI-X
//! table and PBA) is reached by a lock-free fast path: it must refuse all
//! that the checked path refuses, with the same answers, and leave every
//! other register to the model.

mod common;

use common::{guest, open};
use nix::errno::Errno;
use vfio_core::uapi::RegionAccess;
use vfio_core::{Device, ErrorKind, MappedRegion, Operation, PciAddress, region};
use vfio_mock::profiles::{self, nvme};
use vfio_mock::{BarSpec, MockHost, PciDeviceBuilder};

/// A host with one device at slot 4 that has no model: an 8 KiB memory BAR0.
fn bare() -> (MockHost, PciAddress) {
    let at = PciAddress::new(0, 0, 4, 0).unwrap();
    let host = MockHost::builder()
        .device(
            at,
            1,
            PciDeviceBuilder::new(0x1b36, 0x0001).bar(0, BarSpec::memory32(0x2000)),
        )
        .build()
        .unwrap();
    (host, at)
}

fn kind_errno(e: &vfio_core::Error) -> (ErrorKind, Option<Errno>) {
    (e.kind(), e.errno())
}

/// Out of range and misaligned at every width, whatever the offset's high
/// bits; a planned fault is taken once, by the access it was planned for,
/// with its errno; memory decode off is EIO, and a refused write never
/// reaches the BAR; decode back on, the bytes are where they were written.
fn refuses_like_the_checked_path(host: &MockHost, bar: &impl MappedRegion, plain: u64) {
    let len = bar.len();
    for (offset, kind) in [
        (len, ErrorKind::OutOfRange),
        (len - 2, ErrorKind::OutOfRange),
        (u64::MAX - 3, ErrorKind::OutOfRange),
        (1 << 63, ErrorKind::OutOfRange),
        (plain + 2, ErrorKind::Misaligned),
    ] {
        assert_eq!(
            bar.read_u32(offset).unwrap_err().kind(),
            kind,
            "{offset:#x}"
        );
        assert_eq!(
            bar.write_u32(offset, 1).unwrap_err().kind(),
            kind,
            "{offset:#x}"
        );
    }
    assert_eq!(
        bar.read_u64((plain & !7) | 4).unwrap_err().kind(),
        ErrorKind::Misaligned
    );
    assert_eq!(
        bar.read_u16(plain + 1).unwrap_err().kind(),
        ErrorKind::Misaligned
    );

    bar.write_u32(plain, 0x1234_5678).unwrap();
    host.fail_next(Operation::RegisterRead, Errno::ENXIO, 1);
    host.fail_next(Operation::RegisterWrite, Errno::EFAULT, 1);
    // A refused bounds check does not use up the planned fault.
    assert_eq!(bar.read_u32(len).unwrap_err().kind(), ErrorKind::OutOfRange);
    assert_eq!(
        kind_errno(&bar.read_u32(plain).unwrap_err()).1,
        Some(Errno::ENXIO)
    );
    assert_eq!(
        kind_errno(&bar.write_u32(plain, 0).unwrap_err()).1,
        Some(Errno::EFAULT)
    );
    assert_eq!(bar.read_u32(plain).unwrap(), 0x1234_5678);
    host.assert_faults_consumed();
}

#[test]
fn a_bar_without_a_model_refuses_what_the_checked_path_refuses() {
    let (host, at) = bare();
    let o = open(&host.backend(), at);
    let bar = o.device.map_region(region::BAR0).unwrap();
    refuses_like_the_checked_path(&host, &bar, 0x1028);

    // Memory decode off: EIO for reads and writes; the write is dropped.
    o.device.write_config(0x04, &[0x00, 0x00]).unwrap();
    let eio = (ErrorKind::Io, Some(Errno::EIO));
    assert_eq!(kind_errno(&bar.read_u32(0x1028).unwrap_err()), eio);
    assert_eq!(kind_errno(&bar.write_u32(0x1028, 7).unwrap_err()), eio);
    // Out of range stays out of range with decode off (bounds come first).
    assert_eq!(
        bar.read_u32(0x2000).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    // Bus mastering is not memory decode.
    o.device.set_bus_master(true).unwrap();
    assert_eq!(kind_errno(&bar.read_u8(0x1028).unwrap_err()), eio);
    o.device.write_config(0x04, &[0x06, 0x00]).unwrap();
    assert_eq!(bar.read_u32(0x1028).unwrap(), 0x1234_5678);

    // A read-only partial mapping: its offsets start at its base, and
    // every write is refused before reaching the BAR.
    let part = o
        .device
        .map_region_range(region::BAR0, 0x1000, 0x1000, RegionAccess::ReadOnly)
        .unwrap();
    assert_eq!(part.read_u32(0x28).unwrap(), 0x1234_5678);
    let e = part.write_u32(0x28, 0).unwrap_err();
    assert_eq!(kind_errno(&e), (ErrorKind::PermissionDenied, None));
    assert_eq!(
        part.read_u32(0x1000).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(bar.read_u32(0x1028).unwrap(), 0x1234_5678);
    host.assert_faults_consumed();
}

#[test]
fn the_msix_table_is_plain_and_the_registers_around_it_stay_the_models() {
    let (host, b) = guest();
    let o = open(&b, profiles::nvme_address());
    let bar = o.device.map_region(region::BAR0).unwrap();
    let entry0_control = u64::from(nvme::MSIX_TABLE_OFFSET) + 0xc;
    refuses_like_the_checked_path(&host, &bar, entry0_control);
    // The controller's registers are the model's: ASQ keeps what is written.
    bar.write_u64(nvme::reg::ASQ, 0x1000).unwrap();
    assert_eq!(bar.read_u64(nvme::reg::ASQ).unwrap(), 0x1000);
    // The model's registers are refused with decode off too.
    o.device.write_config(0x04, &[0x00, 0x00]).unwrap();
    let eio = (ErrorKind::Io, Some(Errno::EIO));
    assert_eq!(kind_errno(&bar.read_u64(nvme::reg::ASQ).unwrap_err()), eio);
    assert_eq!(kind_errno(&bar.read_u32(entry0_control).unwrap_err()), eio);
    host.assert_faults_consumed();
}
