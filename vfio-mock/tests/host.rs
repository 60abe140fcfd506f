//! Host semantics: sysfs, groups, containers, fault injection, removal.

mod common;

use common::{guest, open};
use nix::errno::Errno;
use vfio_core::{
    Container, Device, DmaSpace, ErrorKind, Extension, Group, GroupKeepAlive, GroupStatus,
    IommuType, IrqIndex, MappedRegion, Operation, VfioBackend,
};
use vfio_mock::{Driver, KeepAlive, MockHost, NoIommuMode, PciDeviceBuilder, profiles};

#[test]
fn sysfs_gives_groups_drivers_ids_and_module_parameters() {
    let (host, b) = guest();
    let paths = b.host_paths();
    assert_eq!(
        paths.iommu_group(&profiles::edu_address()).unwrap(),
        profiles::QEMU_GUEST_GROUPS.0
    );
    assert_eq!(
        paths.iommu_group(&profiles::nvme_address()).unwrap(),
        profiles::QEMU_GUEST_GROUPS.1
    );
    let dir = paths.pci_device_dir(&profiles::nvme_address());
    assert_eq!(
        std::fs::read_to_string(dir.join("vendor")).unwrap(),
        "0x1b36\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("class")).unwrap(),
        "0x010802\n"
    );
    let driver = std::fs::read_link(dir.join("driver")).unwrap();
    assert!(driver.ends_with("vfio-pci"));
    assert!(dir.join("iommu_group").canonicalize().unwrap().is_dir());
    assert!(paths.group_path(1).exists() && paths.container_path().exists());
    assert_eq!(
        paths
            .module_parameter("vfio_iommu_type1", "dma_entry_limit")
            .unwrap(),
        "65535"
    );
    // The reference kernel has no CONFIG_VFIO_NOIOMMU, so no parameter.
    assert_eq!(
        paths
            .module_parameter("vfio", "enable_unsafe_noiommu_mode")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    host.assert_faults_consumed();
}

#[test]
fn injected_faults_hit_the_next_calls_and_leftovers_are_reported() {
    let (host, b) = guest();
    let o = open(&b, profiles::nvme_address());
    let bar = o.device.map_region(0).unwrap();
    host.fail_next(Operation::RegisterRead, Errno::EIO, 1);
    host.fail_next(Operation::MapDma, Errno::ENOMEM, 1);
    host.fail_next(Operation::Reset, Errno::EBUSY, 3);
    assert_eq!(bar.read_u32(0).unwrap_err().errno(), Some(Errno::EIO));
    assert!(bar.read_u32(0).is_ok());
    let mem = b.alloc_dma(4096).unwrap();
    let e = o
        .container
        .map_dma(&mem, 0, 4096, 0x1000, vfio_core::DmaFlags::READ)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NoSpace);
    assert!(
        e.detail().is_some_and(|d| d.contains("RLIMIT_MEMLOCK")),
        "{e}"
    );
    assert_eq!(o.device.reset().unwrap_err().errno(), Some(Errno::EBUSY));
    let left = host.done().unwrap_err();
    assert_eq!(left.pending.len(), 1);
    assert_eq!(left.pending[0].remaining, 2);
    assert!(left.to_string().contains("reset device"), "{left}");
}

#[test]
fn a_removed_device_asks_for_release_and_goes_once_released() {
    use vfio_core::Interrupt;
    let (host, b) = guest();
    let nvme = profiles::nvme_address();
    let o = open(&b, nvme);
    let req = b.new_interrupt().unwrap();
    o.device.bind_interrupt(IrqIndex::REQ, 0, &req).unwrap();
    let msix = b.new_interrupt().unwrap();
    o.device
        .enable_interrupts(IrqIndex::MSIX, &[&msix])
        .unwrap();
    let bar = o.device.map_region(0).unwrap();
    let removal = host.remove_device(nvme).expect("the device is there");
    assert!(host.remove_device(nvme).is_none(), "removal already begun");
    assert_eq!(
        req.try_consume().unwrap(),
        Some(1),
        "the kernel asks for the device back"
    );
    // Until released, the device works, and a new handle is waited for too.
    o.device.info().unwrap();
    bar.read_u32(0).unwrap();
    b.host_paths().vector_irq(&nvme, IrqIndex::MSIX, 0).unwrap();
    let second = o.group.open_device("0000:00:03.0").unwrap();
    assert!(!removal.wait(std::time::Duration::from_millis(5)));
    drop(second);
    assert!(!removal.is_done());
    // A mapping keeps the device open after its handle is closed.
    let group = o.group;
    drop(o.device);
    assert!(!removal.is_done());
    drop(bar);
    assert!(removal.wait(std::time::Duration::from_secs(5)));
    assert_eq!(
        b.host_paths()
            .vector_irq(&nvme, IrqIndex::MSIX, 0)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        b.host_paths().iommu_group(&nvme).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        group.open_device("0000:00:03.0").unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    // Removal of a device nobody holds completes at once.
    let edu = host.remove_device(profiles::edu_address()).unwrap();
    assert!(edu.is_done());
}

#[test]
fn a_group_with_a_device_on_another_driver_is_not_viable() {
    let a: vfio_core::PciAddress = "0000:05:00.0".parse().unwrap();
    let c: vfio_core::PciAddress = "0000:05:00.1".parse().unwrap();
    let host = MockHost::builder()
        .device(a, 9, PciDeviceBuilder::new(0x8086, 0x1521))
        .device_bound_to(
            c,
            9,
            PciDeviceBuilder::new(0x8086, 0x1521),
            Driver::Other("igb".into()),
        )
        .build()
        .unwrap();
    let b = host.backend();
    let group = b.open_group(9).unwrap();
    assert_eq!(group.status().unwrap(), GroupStatus::EMPTY);
    let container = b.open_container().unwrap();
    assert_eq!(
        group.set_container(&container).unwrap_err().errno(),
        Some(Errno::EPERM)
    );
    assert_eq!(
        group.open_device(&a.to_string()).unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        group.open_device(&c.to_string()).unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
}

#[test]
fn containers_follow_type1_rules() {
    let (_host, b) = guest();
    let c = b.open_container().unwrap();
    assert_eq!(c.check_extension(Extension::UNMAP_ALL).unwrap(), 1);
    assert_eq!(c.check_extension(Extension::DMA_CC_IOMMU).unwrap(), 0);
    assert_eq!(c.iommu_info().unwrap_err().errno(), Some(Errno::EINVAL));
    let g1 = b.open_group(profiles::QEMU_GUEST_GROUPS.0).unwrap();
    let g2 = b.open_group(profiles::QEMU_GUEST_GROUPS.1).unwrap();
    g1.set_container(&c).unwrap();
    assert_eq!(
        c.set_iommu(IommuType::NoIommu).unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    c.set_iommu(IommuType::Type1v2).unwrap();
    g2.set_container(&c).unwrap();
    let info = c.iommu_info().unwrap();
    assert_eq!(info.iova_pgsizes, 0x4020_1000);
    assert_eq!(info.dma_avail, Some(65535));
    let ranges = info.iova_ranges.unwrap();
    assert_eq!((ranges[0].end, ranges[1].start), (0xfedf_ffff, 0xfef0_0000));
    // When the last group leaves, the container forgets its IOMMU type and mappings.
    let mem = b.alloc_dma(4096).unwrap();
    let first = c
        .map_dma(&mem, 0, 4096, 0x1000, vfio_core::DmaFlags::READ)
        .unwrap();
    g1.unset_container().unwrap();
    assert_eq!(first.unmap().unwrap(), 4096);
    let second = c
        .map_dma(&mem, 0, 4096, 0x1000, vfio_core::DmaFlags::READ)
        .unwrap();
    drop(g2);
    assert_eq!(second.unmap().unwrap_err().errno(), Some(Errno::EINVAL));
}

#[test]
fn keep_alive_succeeds_on_a_downstream_kernel_and_noiommu_mode_can_exist() {
    let host = profiles::qemu_guest()
        .keep_alive(KeepAlive::Downstream)
        .noiommu_mode(NoIommuMode::Enabled)
        .noiommu_device("0000:00:04.0".parse().unwrap(), 10, profiles::edu())
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, profiles::edu_address());
    GroupKeepAlive::set_keep_alive(&o.group, "0000:00:02.0").unwrap();
    assert_eq!(
        GroupKeepAlive::set_keep_alive(&o.group, "0000:00:1e.0")
            .unwrap_err()
            .errno(),
        Some(Errno::ENODEV)
    );
    assert_eq!(
        b.host_paths()
            .module_parameter("vfio", "enable_unsafe_noiommu_mode")
            .unwrap(),
        "Y"
    );
    let c = b.open_container().unwrap();
    assert_eq!(c.check_extension(Extension::NOIOMMU_IOMMU).unwrap(), 1);
    assert_eq!(b.open_group(10).unwrap_err().errno(), Some(Errno::ENOENT));
    let g = b.open_noiommu_group(10).unwrap();
    g.set_container(&c).unwrap();
    assert_eq!(
        c.set_iommu(IommuType::Type1v2).unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    c.set_iommu(IommuType::NoIommu).unwrap();
    let d = g.open_device("0000:00:04.0").unwrap();
    assert_eq!(d.map_region(0).unwrap().read_u32(0).unwrap(), 0x0100_00ed);
}

#[test]
fn a_one_tib_64_bit_bar_builds_cheaply_and_works_at_both_ends() {
    const TIB: u64 = 1 << 40;
    let address = "0000:00:01.0".parse().unwrap();
    let host = MockHost::builder()
        .device(
            address,
            1,
            PciDeviceBuilder::new(1, 2).bar(2, vfio_mock::BarSpec::memory64(TIB)),
        )
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, address);
    assert_eq!(o.device.region_info(2).unwrap().size, TIB);
    // Decode on, as a driver does before touching a BAR.
    o.device.write_config(0x04, &[0x02, 0x00]).unwrap();
    let bar = o.device.map_region(2).unwrap();
    assert_eq!(bar.len(), TIB);
    bar.write_u64(TIB - 8, 0x0123_4567_89ab_cdef).unwrap();
    bar.write_u32(0, 0xdead_beef).unwrap();
    assert_eq!(bar.read_u64(TIB - 8).unwrap(), 0x0123_4567_89ab_cdef);
    assert_eq!(bar.read_u32(0).unwrap(), 0xdead_beef);
    assert_eq!(bar.read_u32(TIB / 2).unwrap(), 0);
    let e = bar.read_u32(TIB).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::OutOfRange);
    host.assert_faults_consumed();
}

#[test]
fn a_bar_past_the_supported_sizes_is_a_build_error() {
    let address = "0000:00:01.0".parse().unwrap();
    for (kind, bar) in [
        ("64-bit 2 TiB", vfio_mock::BarSpec::memory64(2 << 40)),
        ("64-bit 2^63", vfio_mock::BarSpec::memory64(1 << 63)),
        ("32-bit 4 GiB", vfio_mock::BarSpec::memory32(4 << 30)),
        ("I/O 512", vfio_mock::BarSpec::io(512)),
    ] {
        let e = MockHost::builder()
            .device(address, 1, PciDeviceBuilder::new(1, 2).bar(0, bar))
            .build()
            .expect_err(kind);
        assert!(e.to_string().contains("BAR 0 size"), "{kind}: {e}");
    }
    let e = MockHost::builder()
        .device(address, 1, PciDeviceBuilder::new(1, 2).rom(4 << 30))
        .build()
        .expect_err("a 4 GiB ROM");
    assert!(e.to_string().contains("ROM size"), "{e}");
}

#[test]
fn builder_mistakes_are_errors_not_panics() {
    let bad = [
        PciDeviceBuilder::new(1, 2).bar(0, vfio_mock::BarSpec::memory32(3000)),
        PciDeviceBuilder::new(1, 2).bar(5, vfio_mock::BarSpec::memory64(4096)),
        PciDeviceBuilder::new(1, 2).bar(9, vfio_mock::BarSpec::memory32(4096)),
        PciDeviceBuilder::new(1, 2).msix(4, 0, 0, 0, 0x100),
        PciDeviceBuilder::new(1, 2)
            .bar(0, vfio_mock::BarSpec::memory32(4096))
            .msix(300, 0, 0, 0, 0x800),
        PciDeviceBuilder::new(1, 2).msi(3, false, false),
        PciDeviceBuilder::new(1, 2).pm().at(0x41),
        PciDeviceBuilder::new(1, 2).pcie().pcie(),
        PciDeviceBuilder::new(1, 2).interrupt_pin(9),
    ];
    for (i, d) in bad.into_iter().enumerate() {
        let r = MockHost::builder()
            .device("0000:00:01.0".parse().unwrap(), 1, d)
            .build();
        assert!(r.is_err(), "case {i} built");
    }
    let dup = MockHost::builder()
        .device(
            "0000:00:01.0".parse().unwrap(),
            1,
            PciDeviceBuilder::new(1, 2),
        )
        .device(
            "0000:00:01.0".parse().unwrap(),
            2,
            PciDeviceBuilder::new(1, 2),
        )
        .build();
    assert!(dup.unwrap_err().to_string().contains("two devices"));
}

/// The simulated hugetlb pool: huge pages while enough are free, held by a
/// DMA mapping after the memory handle is dropped (the kernel's pin), and
/// free again once it is unmapped.
#[test]
fn huge_pages_come_from_the_hosts_pool_and_a_mapping_holds_them() {
    use vfio_core::{DmaFlags, DmaMemory, HUGE_PAGE_SIZE, HugePages};
    let host = profiles::qemu_guest().hugetlb_pages(2).build().unwrap();
    let b = host.backend();
    let o = open(&b, profiles::edu_address());
    let mem = b.alloc_dma_with(4096, HugePages::Require).unwrap();
    assert_eq!(
        (mem.page_size(), mem.len()),
        (HUGE_PAGE_SIZE, HUGE_PAGE_SIZE)
    );
    // The raw call: the mapping the kernel holds, not a DmaMapping, keeps
    // the pages once the memory handle is gone.
    o.container
        .map_dma_raw(&mem, 0, HUGE_PAGE_SIZE as u64, 0x20_0000, DmaFlags::READ)
        .unwrap();
    drop(mem);
    let e = b
        .alloc_dma_with(2 * HUGE_PAGE_SIZE, HugePages::Require)
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::NoSpace, Some(Errno::ENOMEM))
    );
    let base = b
        .alloc_dma_with(2 * HUGE_PAGE_SIZE, HugePages::Prefer)
        .unwrap();
    assert_eq!(base.page_size(), 4096);
    assert_eq!(
        o.container
            .unmap_dma(0x20_0000, HUGE_PAGE_SIZE as u64)
            .unwrap(),
        HUGE_PAGE_SIZE as u64
    );
    let two = b
        .alloc_dma_with(2 * HUGE_PAGE_SIZE, HugePages::Require)
        .unwrap();
    assert_eq!(two.page_size(), HUGE_PAGE_SIZE);
    host.assert_faults_consumed();
}

#[test]
fn trees_written_on_first_use_show_the_host_as_it_is_then() {
    use vfio_core::Interrupt;
    use vfio_core::parse::proc_interrupts::read_all;
    let (host, b) = guest();
    let nvme = profiles::nvme_address();
    // Before anyone asks for a path: bind, fire and remove.
    let o = open(&b, nvme);
    let irq = b.new_interrupt().unwrap();
    o.device.enable_interrupts(IrqIndex::MSIX, &[&irq]).unwrap();
    o.device.set_bus_master(true).unwrap();
    // Raised by the device (a loopback trigger is not counted).
    let fire = || host.with_device(nvme, |ctx| ctx.raise(vfio_mock::Irq::Msix(0)));
    assert_eq!(fire(), Some(vfio_mock::Delivery::Signalled));
    assert_eq!(irq.try_consume().unwrap(), Some(1));
    let removal = host.remove_device(profiles::edu_address()).unwrap();
    assert!(removal.is_done());

    let paths = host.paths();
    let text = std::fs::read_to_string(paths.interrupts_path()).unwrap();
    let line = read_all(text.as_bytes())
        .unwrap()
        .into_iter()
        .find(|l| l.actions == ["vfio-msix[0](0000:00:03.0)"])
        .expect("the bound vector's line");
    assert_eq!(line.counts.iter().sum::<u64>(), 1, "{text}");
    assert_eq!(
        paths.vector_irq(&nvme, IrqIndex::MSIX, 0).unwrap(),
        match line.irq {
            vfio_core::parse::proc_interrupts::IrqId::Number(n) => n,
            other => panic!("{other:?}"),
        }
    );
    // The removed edu is not there; its group has no node.
    assert!(!paths.pci_device_dir(&profiles::edu_address()).exists());
    assert!(!paths.group_path(profiles::QEMU_GUEST_GROUPS.0).exists());
    assert!(paths.group_path(profiles::QEMU_GUEST_GROUPS.1).exists());

    // From then on, the file follows: another fire counts.
    assert_eq!(fire(), Some(vfio_mock::Delivery::Signalled));
    let text = std::fs::read_to_string(paths.interrupts_path()).unwrap();
    let counts: u64 = read_all(text.as_bytes())
        .unwrap()
        .into_iter()
        .find(|l| l.actions == ["vfio-msix[0](0000:00:03.0)"])
        .map(|l| l.counts.iter().sum())
        .unwrap();
    assert_eq!(counts, 2);
    host.assert_faults_consumed();
}

#[test]
fn a_thousand_hosts_across_threads_leave_nothing_behind() {
    let roots: Vec<std::path::PathBuf> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let mut roots = Vec::new();
                    for i in 0..250 {
                        let host = profiles::qemu_guest().build().unwrap();
                        // Every other host writes its trees.
                        if (t + i) % 2 == 0 {
                            let root = host.paths().sysfs().parent().unwrap().to_owned();
                            assert!(root.is_dir());
                            roots.push(root);
                        }
                        host.assert_faults_consumed();
                    }
                    roots
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(roots.len(), 500);
    let unique: std::collections::BTreeSet<_> = roots.iter().collect();
    assert_eq!(unique.len(), 500, "two hosts shared a tree");
    for root in &roots {
        assert!(!root.exists(), "{} outlived its host", root.display());
    }
}
