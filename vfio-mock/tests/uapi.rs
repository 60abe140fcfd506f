//! The simulated host's sparse-mmap BARs, hot reset behind a bridge and
//! IOMMU geometry: the parts of the uAPI no device of the QEMU guest can
//! show on a kernel (see docs/kernel-semantics.md), so checked here.

mod common;

use common::open;
use vfio_core::uapi::{DependentDevice, RegionAccess};
use vfio_core::{
    Container, Device, DmaFlags, DmaSpace, Errno, ErrorKind, IovaRange, MappedRegion, PciAddress,
    RegionCap, SparseArea, VfioBackend,
};
use vfio_mock::{BarSpec, Driver, MockHost, PciDeviceBuilder, profiles};

fn addr(s: &str) -> PciAddress {
    s.parse().unwrap()
}

/// A 16 KiB BAR0 whose middle pages (an MSI-X table, say) may not be mapped.
fn sparse_device() -> PciDeviceBuilder {
    PciDeviceBuilder::new(0x1b36, 0x0010)
        .bar(0, BarSpec::memory64(0x4000))
        .sparse_mmap(
            0,
            &[
                SparseArea {
                    offset: 0,
                    size: 0x1000,
                },
                SparseArea {
                    offset: 0x3000,
                    size: 0x1000,
                },
            ],
        )
}

#[test]
fn a_sparse_bar_maps_its_areas_and_refuses_the_holes() {
    let at = addr("0000:00:04.0");
    let host = MockHost::builder()
        .device(at, 1, sparse_device())
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, at);
    let info = o.device.region_info(0).unwrap();
    assert!(
        info.caps
            .iter()
            .any(|c| matches!(c, RegionCap::SparseMmap(a) if a.len() == 2))
    );
    o.device.write_config(0x04, &[0x02, 0x00]).unwrap();
    let bar = o.device.map_region(0).unwrap();
    assert_eq!(bar.len(), 0x4000);
    bar.write_u32(0x3010, 0xfeed_f00d).unwrap();
    bar.write_u32(0x10, 0x1234_5678).unwrap();
    let mut buf = [0u8; 4];
    o.device.read_region(0, 0x3010, &mut buf).unwrap();
    assert_eq!(u32::from_le_bytes(buf), 0xfeed_f00d);
    for hole in [0x1000, 0x2ffc, 0x2000] {
        let e = bar.read_u32(hole).unwrap_err();
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::OutOfRange, None),
            "{hole:#x}"
        );
        let e = bar.write_u32(hole, 0).unwrap_err();
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::OutOfRange, None),
            "{hole:#x}"
        );
    }
    assert_eq!(
        bar.read_u32(0x4000).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    // A partial mapping picks its own range, holes included.
    let part = o
        .device
        .map_region_range(0, 0x1000, 0x3000, RegionAccess::ReadOnly)
        .unwrap();
    assert_eq!(part.read_u32(0x2010).unwrap(), 0xfeed_f00d);
    let e = part.write_u32(0, 1).unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::PermissionDenied, None));
    host.assert_faults_consumed();
}

#[test]
fn a_sparse_cap_with_no_areas_maps_nothing() {
    let at = addr("0000:00:04.0");
    let host = MockHost::builder()
        .device(
            at,
            1,
            PciDeviceBuilder::new(1, 2)
                .bar(0, BarSpec::memory32(0x1000))
                .sparse_mmap(0, &[]),
        )
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, at);
    let e = o.device.map_region(0).unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::InvalidArgument, None));
}

/// Two vfio-pci devices behind a bridge (bus 1), each in a group of its
/// own, and a third device on another driver behind a second bridge.
fn bridged_host(third_driver: Driver) -> MockHost {
    MockHost::builder()
        .device(addr("0000:01:01.0"), 5, profiles::edu())
        .device(addr("0000:01:02.0"), 6, profiles::edu())
        .device(addr("0000:02:01.0"), 7, profiles::edu())
        .device_bound_to(addr("0000:02:02.0"), 7, profiles::i6300esb(), third_driver)
        .build()
        .unwrap()
}

#[test]
fn hot_reset_info_lists_the_bus_and_the_reset_needs_every_group() {
    let host = bridged_host(Driver::None);
    let b = host.backend();
    let one = open(&b, addr("0000:01:01.0"));
    let two = open(&b, addr("0000:01:02.0"));
    let info = one.device.hot_reset_info().unwrap();
    assert_eq!(info.flags, 0);
    assert_eq!(
        info.devices,
        [
            DependentDevice {
                address: addr("0000:01:01.0"),
                group_id: 5
            },
            DependentDevice {
                address: addr("0000:01:02.0"),
                group_id: 6
            },
        ]
    );
    let e = one.device.hot_reset(&[&one.group]).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    let e = one
        .device
        .hot_reset(&[&one.group, &two.group, &one.group])
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    one.device.hot_reset(&[&one.group, &two.group]).unwrap();
}

#[test]
fn a_device_on_another_driver_in_the_reset_set_refuses_the_reset() {
    // The group is viable with the watchdog unbound; the reset still
    // needs every device of the bus on vfio-pci.
    let host = bridged_host(Driver::None);
    let b = host.backend();
    let o = open(&b, addr("0000:02:01.0"));
    assert_eq!(o.device.hot_reset_info().unwrap().devices.len(), 2);
    let e = o.device.hot_reset(&[&o.group]).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
}

#[test]
fn the_iommu_geometry_is_a_host_setting() {
    let at = profiles::edu_address();
    let host = MockHost::builder()
        .device(at, 1, profiles::edu())
        .iommu_address_bits(48)
        .iommu_page_sizes(0x1000)
        .iommu_reserved(&[
            IovaRange {
                start: 0xfee0_0000,
                end: 0xfeef_ffff,
            },
            IovaRange {
                start: 0,
                end: 0xfff,
            },
        ])
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, at);
    let info = o.container.iommu_info().unwrap();
    assert_eq!(info.iova_pgsizes, 0x1000);
    let ranges: Vec<(u64, u64)> = info
        .iova_ranges
        .unwrap()
        .iter()
        .map(|r| (r.start, r.end))
        .collect();
    assert_eq!(
        ranges,
        [(0x1000, 0xfedf_ffff), (0xfef0_0000, (1 << 48) - 1)]
    );
    let memory = b.alloc_dma(0x1000).unwrap();
    let rw = DmaFlags::READ | DmaFlags::WRITE;
    o.container
        .map_dma_raw(&memory, 0, 0x1000, (1 << 48) - 0x1000, rw)
        .unwrap();
    let e = o
        .container
        .map_dma_raw(&memory, 0, 0x1000, 0, rw)
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    assert_eq!(o.container.unmap_all().unwrap(), 0x1000);
}
