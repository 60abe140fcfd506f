//! Linux 6.12's iommufd, VFIO device cdevs and no-IOMMU mode, as the mock
//! models them from the kernel source: each test names the rule and the
//! errno.

use std::os::fd::AsFd;
use vfio_core::open::{Mode, open_device};
use vfio_core::{
    Device, DmaFlags, DmaMemory, DmaSpace, Errno, ErrorKind, Group, HugePages, Ioas, IommuFd,
    IovaRange, IrqIndex, VfioBackend,
};
use vfio_mock::{
    DmaFault, KernelVersion, MockBackend, MockDevice, MockHost, NoIommuMode, profiles,
};

const RW: DmaFlags = DmaFlags(3);
const PAGE: u64 = 4096;

fn guest(kernel: KernelVersion) -> (MockHost, MockBackend) {
    let host = profiles::qemu_guest().kernel(kernel).build().unwrap();
    let backend = host.backend();
    (host, backend)
}

fn errno<T: std::fmt::Debug>(r: vfio_core::Result<T>) -> Option<Errno> {
    r.unwrap_err().errno()
}

/// A bound cdev of edu, its iommufd, and an IOAS.
fn bound(b: &MockBackend) -> (MockDevice, vfio_mock::MockIommuFd) {
    let device = b.open_device_cdev(&profiles::edu_address()).unwrap();
    let iommufd = b.open_iommufd().unwrap();
    device.bind_iommufd(iommufd.as_fd()).unwrap();
    (device, iommufd)
}

#[test]
fn a_6_1_host_has_no_iommufd_and_no_cdev_nodes() {
    let (_host, b) = guest(KernelVersion::V6_1);
    let e = b.open_iommufd().unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::NotFound, Some(Errno::ENOENT))
    );
    assert!(e.detail().unwrap().contains("CONFIG_IOMMUFD"), "{e}");
    assert!(!b.host_paths().iommufd_path().exists());
    let e = b.open_device_cdev(&profiles::edu_address()).unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::NotFound, Some(Errno::ENOENT))
    );
    assert!(
        e.detail().unwrap().contains("CONFIG_VFIO_DEVICE_CDEV"),
        "{e}"
    );
    assert!(!b.host_paths().dev().join("vfio/devices").exists());
}

#[test]
fn a_6_12_host_has_dev_iommu_and_a_cdev_per_vfio_device_in_registration_order() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let p = b.host_paths();
    assert!(p.iommufd_path().exists());
    for (address, name) in [
        (profiles::edu_address(), "vfio0"),
        (profiles::nvme_address(), "vfio1"),
        (profiles::shared_edu_address(), "vfio2"),
        (profiles::big_nvme_address(), "vfio3"),
    ] {
        assert_eq!(p.device_cdev_name(&address).unwrap(), name);
        assert!(p.device_cdev_path(name).exists(), "{name}");
        assert!(p.sysfs().join("class/vfio-dev").join(name).exists());
    }
    // Bound to another driver: no vfio device.
    let e = p
        .device_cdev_name(&profiles::watchdog_address())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = b
        .open_device_cdev(&profiles::watchdog_address())
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

fn noiommu_host(kernel: KernelVersion) -> MockHost {
    MockHost::builder()
        .kernel(kernel)
        .noiommu_mode(NoIommuMode::Enabled)
        .noiommu_device(profiles::edu_address(), 0, profiles::edu())
        .build()
        .unwrap()
}

#[test]
fn a_no_iommu_device_has_the_sysfs_entry_but_no_cdev_node() {
    let host = noiommu_host(KernelVersion::V6_12);
    let b = host.backend();
    let p = b.host_paths();
    let name = p.device_cdev_name(&profiles::edu_address()).unwrap();
    assert_eq!(name, "vfio0");
    assert!(!p.device_cdev_path(&name).exists());
    let e = b.open_device_cdev(&profiles::edu_address()).unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::NotFound, Some(Errno::ENOENT))
    );
    // devtmpfs makes /dev/vfio/devices with a first node: there is none.
    assert!(!p.dev().join("vfio/devices").exists());
}

#[test]
fn an_unbound_cdev_answers_einval_to_everything_but_bind() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let d = b.open_device_cdev(&profiles::edu_address()).unwrap();
    assert_eq!(errno(d.info()), Some(Errno::EINVAL));
    assert_eq!(errno(d.region_info(0)), Some(Errno::EINVAL));
    assert_eq!(errno(d.irq_info(IrqIndex::MSI)), Some(Errno::EINVAL));
    assert_eq!(errno(d.reset()), Some(Errno::EINVAL));
    assert_eq!(errno(d.read_region(0, 0, &mut [0; 4])), Some(Errno::EINVAL));
    assert_eq!(errno(d.write_region(0, 0, &[0; 4])), Some(Errno::EINVAL));
    assert_eq!(errno(d.map_region(0)), Some(Errno::EINVAL));
    assert_eq!(errno(d.attach_pt(1)), Some(Errno::EINVAL));
    assert_eq!(errno(d.detach_pt()), Some(Errno::EINVAL));
    assert_eq!(
        errno(d.disable_interrupts(IrqIndex::MSI)),
        Some(Errno::EINVAL)
    );
}

#[test]
fn bind_returns_the_device_id_and_refuses_a_second_bind_and_a_file_that_is_no_iommufd() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let d = b.open_device_cdev(&profiles::edu_address()).unwrap();
    let not_iommufd = b.new_interrupt().unwrap();
    assert_eq!(
        errno(d.bind_iommufd(not_iommufd.as_fd())),
        Some(Errno::EBADFD)
    );
    let iommufd = b.open_iommufd().unwrap();
    // A dup of the iommufd is the same file.
    let dup = iommufd.as_fd().try_clone_to_owned().unwrap();
    assert_eq!(d.bind_iommufd(dup.as_fd()).unwrap(), 1);
    assert_eq!(errno(d.bind_iommufd(iommufd.as_fd())), Some(Errno::EINVAL));
    // Bound: the device answers.
    assert_eq!(d.info().unwrap().num_regions, 9);
    // A second cdev file of the same device cannot open it again.
    let again = b.open_device_cdev(&profiles::edu_address()).unwrap();
    assert_eq!(
        errno(again.bind_iommufd(iommufd.as_fd())),
        Some(Errno::EINVAL)
    );
}

#[test]
fn a_cdev_bind_and_the_group_open_exclude_each_other_with_ebusy() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let edu = profiles::edu_address();
    let number = b.host_paths().iommu_group(&edu).unwrap();
    let group = b.open_group(number).unwrap();
    let d = b.open_device_cdev(&edu).unwrap();
    let iommufd = b.open_iommufd().unwrap();
    assert_eq!(errno(d.bind_iommufd(iommufd.as_fd())), Some(Errno::EBUSY));
    drop(group);
    d.bind_iommufd(iommufd.as_fd()).unwrap();
    assert_eq!(errno(b.open_group(number)), Some(Errno::EBUSY));
    // Closing the cdev unbinds it: the group opens again.
    drop(d);
    b.open_group(number).unwrap();
}

#[test]
fn a_device_opened_through_its_group_cannot_bind_and_has_no_attach() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let opened = open_device(&b, &profiles::edu_address(), Mode::Type1).unwrap();
    let iommufd = b.open_iommufd().unwrap();
    assert_eq!(
        errno(opened.device.bind_iommufd(iommufd.as_fd())),
        Some(Errno::EINVAL)
    );
    assert_eq!(errno(opened.device.attach_pt(1)), Some(Errno::ENOTTY));
    assert_eq!(errno(opened.device.detach_pt()), Some(Errno::ENOTTY));
}

#[test]
fn bind_is_eperm_while_a_kernel_driver_or_another_iommufd_owns_the_group() {
    let (_host, b) = guest(KernelVersion::V6_12);
    // The shared group holds a device on another driver.
    let shared = b.open_device_cdev(&profiles::shared_edu_address()).unwrap();
    let iommufd = b.open_iommufd().unwrap();
    assert_eq!(
        errno(shared.bind_iommufd(iommufd.as_fd())),
        Some(Errno::EPERM)
    );
    // A two-device group: the second device may bind to the same iommufd
    // only.
    let host = MockHost::builder()
        .kernel(KernelVersion::V6_12)
        .device(profiles::edu_address(), 4, profiles::edu())
        .device(profiles::nvme_address(), 4, profiles::edu())
        .build()
        .unwrap();
    let b = host.backend();
    let one = b.open_device_cdev(&profiles::edu_address()).unwrap();
    let two = b.open_device_cdev(&profiles::nvme_address()).unwrap();
    let (a, other) = (b.open_iommufd().unwrap(), b.open_iommufd().unwrap());
    one.bind_iommufd(a.as_fd()).unwrap();
    assert_eq!(errno(two.bind_iommufd(other.as_fd())), Some(Errno::EPERM));
    assert_eq!(two.bind_iommufd(a.as_fd()).unwrap(), 2);
}

#[test]
fn ids_are_allocated_from_1_for_devices_ioases_and_hardware_page_tables() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let (d, iommufd) = bound(&b);
    let ioas = iommufd.alloc_ioas().unwrap();
    assert_eq!(ioas.id(), 2);
    assert_eq!(errno(d.attach_pt(99)), Some(Errno::ENOENT));
    // The device's own id is no page table.
    assert_eq!(errno(d.attach_pt(1)), Some(Errno::EINVAL));
    assert_eq!(d.attach_ioas(&ioas).unwrap(), 3);
    // Again: the same page table.
    assert_eq!(d.attach_ioas(&ioas).unwrap(), 3);
    // The page table itself can be attached to.
    assert_eq!(d.attach_pt(3).unwrap(), 3);
    // Another IOAS: a new page table replaces the first, which goes.
    let other = iommufd.alloc_ioas().unwrap();
    assert_eq!(other.id(), 4);
    assert_eq!(d.attach_ioas(&other).unwrap(), 5);
    assert_eq!(errno(iommufd.destroy(3)), Some(Errno::ENOENT));
    // The freed id is the lowest free one.
    let third = iommufd.alloc_ioas().unwrap();
    assert_eq!(third.id(), 3);
}

#[test]
fn destroy_is_enoent_for_nothing_and_ebusy_for_objects_in_use() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let (d, iommufd) = bound(&b);
    assert_eq!(errno(iommufd.destroy(42)), Some(Errno::ENOENT));
    let ioas = iommufd.alloc_ioas().unwrap();
    let hwpt = d.attach_ioas(&ioas).unwrap();
    assert_eq!(errno(iommufd.destroy(ioas.id())), Some(Errno::EBUSY));
    assert_eq!(errno(iommufd.destroy(hwpt)), Some(Errno::EBUSY));
    assert_eq!(
        errno(iommufd.destroy(1)),
        Some(Errno::EBUSY),
        "a bound device"
    );
    d.detach_pt().unwrap();
    d.detach_pt().unwrap();
    // Detached: the page table went with it, the IOAS is free.
    assert_eq!(errno(iommufd.destroy(hwpt)), Some(Errno::ENOENT));
    iommufd.destroy(ioas.id()).unwrap();
    assert_eq!(errno(ioas.iova_ranges()), Some(Errno::ENOENT));
}

#[test]
fn closing_a_bound_cdev_detaches_and_unbinds_it() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let (d, iommufd) = bound(&b);
    let ioas = iommufd.alloc_ioas().unwrap();
    d.attach_ioas(&ioas).unwrap();
    drop(d);
    iommufd.destroy(ioas.id()).unwrap();
    assert_eq!(errno(iommufd.destroy(1)), Some(Errno::ENOENT));
    // The device can be bound again, and gets the lowest free id.
    let (d, _other) = bound(&b);
    let third = iommufd.alloc_ioas().unwrap();
    assert_eq!(third.id(), 1);
    drop(d);
}

fn full() -> Vec<IovaRange> {
    vec![IovaRange {
        start: 0,
        end: u64::MAX,
    }]
}

#[test]
fn an_ioas_reports_everything_until_a_device_behind_intel_iommu_is_attached() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let (d, iommufd) = bound(&b);
    let ioas = iommufd.alloc_ioas().unwrap();
    assert_eq!(ioas.iova_ranges().unwrap(), full());
    assert_eq!(ioas.iova_alignment().unwrap(), 1);
    assert_eq!(ioas.iova_page_sizes().unwrap(), u64::MAX);
    d.attach_ioas(&ioas).unwrap();
    assert_eq!(
        ioas.iova_ranges().unwrap(),
        vec![
            IovaRange {
                start: 0,
                end: 0xfedf_ffff
            },
            IovaRange {
                start: 0xfef0_0000,
                end: (1 << 39) - 1
            },
        ]
    );
    assert_eq!(ioas.iova_alignment().unwrap(), PAGE);
    d.detach_pt().unwrap();
    assert_eq!(ioas.iova_ranges().unwrap(), full());
    assert_eq!(ioas.iova_alignment().unwrap(), 1);
}

#[test]
fn fixed_maps_follow_iopt_check_iova() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let (d, iommufd) = bound(&b);
    let ioas = iommufd.alloc_ioas().unwrap();
    let m = b.alloc_dma(4 * PAGE as usize).unwrap();
    // Nothing attached: no alignment, no reserved range.
    ioas.map_dma_raw(&m, 0, 0x100, 0x800, RW).unwrap();
    ioas.map_dma_raw(&m, 0, PAGE, 0xfee0_0000, RW).unwrap();
    assert_eq!(ioas.unmap_all().unwrap(), 0x100 + PAGE);
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, 0, 0x1000, RW)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, PAGE, 0x1000, DmaFlags(0))),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, PAGE, u64::MAX, RW)),
        Some(Errno::EOVERFLOW)
    );
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, 2 * PAGE, u64::MAX - PAGE, RW)),
        Some(Errno::EOVERFLOW)
    );
    d.attach_ioas(&ioas).unwrap();
    ioas.map_dma_raw(&m, 0, 2 * PAGE, 0x10_0000, RW).unwrap();
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, PAGE, 0x10_1000, RW)),
        Some(Errno::EEXIST)
    );
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, PAGE, 0x800, RW)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, 0x800, 0x1000, RW)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0x800, PAGE, 0x1000, RW)),
        Some(Errno::EINVAL)
    );
    // Reserved: the MSI window, and past the aperture.
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, PAGE, 0xfee0_0000, RW)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, PAGE, 1 << 39, RW)),
        Some(Errno::EINVAL)
    );
    // Past the buffer: EFAULT, before the kernel.
    assert_eq!(
        errno(ioas.map_dma_raw(&m, 0, 8 * PAGE, 0x20_0000, RW)),
        Some(Errno::EFAULT)
    );
}

#[test]
fn attach_is_eaddrinuse_for_mappings_the_domain_cannot_hold() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let (d, iommufd) = bound(&b);
    let m = b.alloc_dma(PAGE as usize).unwrap();
    for iova in [0xfee0_0000, 1 << 39] {
        let ioas = iommufd.alloc_ioas().unwrap();
        ioas.map_dma_raw(&m, 0, PAGE, iova, RW).unwrap();
        assert_eq!(
            errno(d.attach_ioas(&ioas)),
            Some(Errno::EADDRINUSE),
            "{iova:#x}"
        );
    }
    let ioas = iommufd.alloc_ioas().unwrap();
    ioas.map_dma_raw(&m, 0, 0x100, 0x1000, RW).unwrap();
    assert_eq!(errno(d.attach_ioas(&ioas)), Some(Errno::EADDRINUSE));
    ioas.unmap_all().unwrap();
    // Failed attaches leave no page table behind, and each IOAS of the
    // loop was destroyed as it was dropped: the IOAS is 2, its table 3.
    assert_eq!(ioas.id(), 2);
    assert_eq!(d.attach_ioas(&ioas).unwrap(), 3);
}

#[test]
fn kernel_chosen_iovas_follow_iopt_alloc_iova() {
    let host = profiles::qemu_guest()
        .kernel(KernelVersion::V6_12)
        .hugetlb_pages(1)
        .build()
        .unwrap();
    let b = host.backend();
    let (d, iommufd) = bound(&b);
    let ioas = iommufd.alloc_ioas().unwrap();
    d.attach_ioas(&ioas).unwrap();
    let m = b.alloc_dma(4 * PAGE as usize).unwrap();
    // From PAGE_SIZE up, never 0.
    assert_eq!(ioas.map_dma_anywhere_raw(&m, 0, PAGE, RW).unwrap(), 0x1000);
    assert_eq!(ioas.map_dma_anywhere_raw(&m, 0, PAGE, RW).unwrap(), 0x2000);
    // Aligned to the length's power of two, capped by the address's.
    assert_eq!(
        ioas.map_dma_anywhere_raw(&m, 0, 2 * PAGE, RW).unwrap(),
        0x3000
    );
    let huge = b.alloc_dma_with(2 << 20, HugePages::Require).unwrap();
    assert_eq!(
        ioas.map_dma_anywhere_raw(&huge, 0, 2 << 20, RW).unwrap(),
        0x20_0000
    );
    // A freed hole is used again.
    ioas.unmap_dma(0x2000, PAGE).unwrap();
    assert_eq!(ioas.map_dma_anywhere_raw(&m, 0, PAGE, RW).unwrap(), 0x2000);
    // Mappings that unmap themselves.
    let mapping = ioas.map_dma_anywhere(&m, 0, PAGE, RW).unwrap();
    assert_eq!(mapping.iova(), 0x5000);
    drop(mapping);
    assert_eq!(ioas.map_dma_anywhere_raw(&m, 0, PAGE, RW).unwrap(), 0x5000);
}

#[test]
fn unmap_follows_iopt_unmap_iova_range() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let (d, iommufd) = bound(&b);
    let ioas = iommufd.alloc_ioas().unwrap();
    d.attach_ioas(&ioas).unwrap();
    let m = b.alloc_dma(4 * PAGE as usize).unwrap();
    assert_eq!(ioas.unmap_all().unwrap(), 0);
    assert_eq!(errno(ioas.unmap_dma(0x1000, PAGE)), Some(Errno::ENOENT));
    assert_eq!(errno(ioas.unmap_dma(0x1000, 0)), Some(Errno::EINVAL));
    assert_eq!(errno(ioas.unmap_dma(u64::MAX, 1)), Some(Errno::EOVERFLOW));
    assert_eq!(
        errno(ioas.unmap_dma(3, u64::MAX - 1)),
        Some(Errno::EOVERFLOW)
    );
    ioas.map_dma_raw(&m, 0, PAGE, 0x1000, RW).unwrap();
    ioas.map_dma_raw(&m, 0, 2 * PAGE, 0x2000, RW).unwrap();
    // A range ending inside a mapping: ENOENT, after the mappings before
    // it went.
    assert_eq!(errno(ioas.unmap_dma(0x1000, 2 * PAGE)), Some(Errno::ENOENT));
    assert_eq!(errno(ioas.unmap_dma(0x1000, PAGE)), Some(Errno::ENOENT));
    // Starting inside one: ENOENT, nothing unmapped.
    assert_eq!(errno(ioas.unmap_dma(0x3000, PAGE)), Some(Errno::ENOENT));
    assert_eq!(ioas.unmap_dma(0, 0x10_0000).unwrap(), 2 * PAGE);
    ioas.map_dma_raw(&m, 0, PAGE, 0x1000, RW).unwrap();
    ioas.map_dma_raw(&m, 0, PAGE, 0x8000_0000, RW).unwrap();
    assert_eq!(ioas.unmap_all().unwrap(), 2 * PAGE);
}

#[test]
fn an_attached_device_dmas_through_the_ioas_and_faults_as_with_type1() {
    let (host, b) = guest(KernelVersion::V6_12);
    let edu = profiles::edu_address();
    let opened = open_device(&b, &edu, Mode::Iommufd).unwrap();
    assert_eq!(opened.dma.mode(), Mode::Iommufd);
    opened.device.set_bus_master(true).unwrap();
    let m = b.alloc_dma(PAGE as usize).unwrap();
    let ioas = opened.dma.ioas().unwrap();
    ioas.map_dma_raw(&m, 0, PAGE, 0x10_0000, RW).unwrap();
    let dma = |iova, data: &'static [u8]| {
        host.with_device(edu, |ctx| ctx.dma_write(iova, data))
            .unwrap()
    };
    dma(0x10_0010, b"hi").unwrap();
    assert_eq!(m.read_u16(0x10).unwrap(), u16::from_le_bytes(*b"hi"));
    assert_eq!(
        dma(0x20_0000, b"x"),
        Err(DmaFault::Unmapped {
            iova: 0x20_0000,
            completed: 0
        })
    );
    assert_eq!(host.iommu_faults().len(), 1);
    assert_eq!(host.iommu_faults()[0].page, 0x20_0000);
    // Detached, the device is blocked.
    opened.device.detach_pt().unwrap();
    assert_eq!(dma(0x10_0010, b"hi"), Err(DmaFault::NoIommu));
}

#[test]
fn open_device_in_iommufd_mode_needs_6_12() {
    let (_host, b) = guest(KernelVersion::V6_1);
    let e = open_device(&b, &profiles::edu_address(), Mode::Iommufd).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let (_host, b) = guest(KernelVersion::V6_12);
    let opened = open_device(&b, &profiles::nvme_address(), Mode::Iommufd).unwrap();
    assert_eq!(opened.device.info().unwrap().num_regions, 9);
    // The context: device 1, IOAS 2, its page table 3.
    assert_eq!(opened.dma.ioas().unwrap().id(), 2);
    assert_eq!(opened.device.attach_pt(2).unwrap(), 3);
}

#[test]
fn a_device_being_removed_loses_its_cdev_at_once_on_6_12() {
    let (host, b) = guest(KernelVersion::V6_12);
    let edu = profiles::edu_address();
    let d = b.open_device_cdev(&edu).unwrap();
    let removal = host.remove_device(edu).unwrap();
    // The open cdev holds the device: the removal waits for it.
    assert!(!removal.is_done());
    let p = b.host_paths();
    assert_eq!(
        p.device_cdev_name(&edu).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(!p.device_cdev_path("vfio0").exists());
    assert_eq!(
        b.open_device_cdev(&edu).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    drop(d);
    assert!(removal.is_done());
    // The other devices keep their names.
    assert_eq!(
        p.device_cdev_name(&profiles::nvme_address()).unwrap(),
        "vfio1"
    );
}

#[test]
fn a_tree_made_after_a_removal_began_has_no_cdev_for_the_device_on_6_12() {
    use vfio_core::{Container, IommuType};
    for (kernel, listed) in [(KernelVersion::V6_1, true), (KernelVersion::V6_12, false)] {
        let edu = profiles::edu_address();
        let host = MockHost::builder()
            .kernel(kernel)
            .device(edu, 7, profiles::edu())
            .build()
            .unwrap();
        let b = host.backend();
        // Opened through the group, which needs no files.
        let group = b.open_group(7).unwrap();
        let container = b.open_container().unwrap();
        group.set_container(&container).unwrap();
        container.set_iommu(IommuType::Type1v2).unwrap();
        let device = group.open_device(&edu.to_string()).unwrap();
        let removal = host.remove_device(edu).unwrap();
        assert_eq!(
            b.host_paths().device_cdev_name(&edu).is_ok(),
            listed,
            "{kernel:?}"
        );
        drop(device);
        assert!(removal.is_done());
        assert!(b.host_paths().device_cdev_name(&edu).is_err());
    }
}

fn open_noiommu(host: &MockHost) -> vfio_core::open::OpenDevice<MockBackend> {
    open_device(&host.backend(), &profiles::edu_address(), Mode::NoIommu).unwrap()
}

#[test]
fn no_iommu_devices_dma_to_physical_addresses_and_pages_are_not_contiguous() {
    let host = noiommu_host(KernelVersion::V6_12);
    let b = host.backend();
    let opened = open_noiommu(&host);
    assert_eq!(opened.dma.mode(), Mode::NoIommu);
    opened.device.set_bus_master(true).unwrap();
    let edu = profiles::edu_address();
    let m = b.alloc_dma(2 * PAGE as usize).unwrap();
    let mapping = opened.dma.map_dma(&m, 0, 2 * PAGE, 0, RW).unwrap();
    let first = mapping.device_address(0).unwrap();
    assert_eq!(first, m.physical_address(0).unwrap());
    let second = mapping.device_address(PAGE).unwrap();
    assert_ne!(second, first + PAGE);
    // Early buffers lie where edu's 28-bit DMA mask reaches.
    assert!(second < 1 << 28, "{second:#x}");
    host.with_device(edu, |ctx| ctx.dma_write(second + 8, b"ok"))
        .unwrap()
        .unwrap();
    assert_eq!(
        m.read_u16(PAGE as usize + 8).unwrap(),
        u16::from_le_bytes(*b"ok")
    );
    // A driver that takes the buffer as contiguous runs off its first page.
    let across = host
        .with_device(edu, |ctx| ctx.dma_write(first + PAGE - 1, b"ab"))
        .unwrap();
    assert_eq!(
        across,
        Err(DmaFault::NoMemory {
            address: first + PAGE,
            completed: 1
        })
    );
    assert!(host.iommu_faults().is_empty(), "no IOMMU to log it");
    // A dropped buffer's address names nothing.
    drop(mapping);
    drop(m);
    let gone = host
        .with_device(edu, |ctx| ctx.dma_write(first, b"x"))
        .unwrap();
    assert!(matches!(gone, Err(DmaFault::NoMemory { .. })));
}

#[test]
fn a_huge_page_is_physically_contiguous() {
    let host = MockHost::builder().hugetlb_pages(1).build().unwrap();
    let m = host
        .backend()
        .alloc_dma_with(2 << 20, HugePages::Require)
        .unwrap();
    let base = m.physical_address(0).unwrap();
    assert_eq!(base % (2 << 20), 0);
    assert_eq!(
        m.physical_address((1 << 20) + 5).unwrap(),
        base + (1 << 20) + 5
    );
}

#[test]
fn the_kernel_is_tainted_on_a_host_with_no_iommu_groups() {
    let host = noiommu_host(KernelVersion::V6_1);
    let tainted = host.paths().procfs().join("sys/kernel/tainted");
    assert_eq!(std::fs::read_to_string(&tainted).unwrap(), "64\n");
    let (host, _b) = guest(KernelVersion::V6_12);
    let tainted = host.paths().procfs().join("sys/kernel/tainted");
    assert_eq!(std::fs::read_to_string(&tainted).unwrap(), "0\n");
}

#[test]
fn a_no_iommu_group_without_no_iommu_mode_names_the_parameter() {
    let (_host, b) = guest(KernelVersion::V6_12);
    let e = b.open_noiommu_group(0).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOENT));
    assert!(
        e.detail()
            .unwrap()
            .contains("vfio.enable_unsafe_noiommu_mode=1"),
        "{e}"
    );
}

#[test]
fn physical_addresses_of_the_same_buffer_sequence_are_the_same_on_every_host() {
    let address = |host: &MockHost| {
        let m = host.backend().alloc_dma(PAGE as usize).unwrap();
        m.physical_address(0).unwrap()
    };
    let (a, _) = guest(KernelVersion::V6_1);
    let (b, _) = guest(KernelVersion::V6_1);
    assert_eq!(address(&a), address(&b));
}

/// `open_device` leaves nothing behind when a step fails: with the IOAS
/// allocation failing, the cdev it had bound is closed again, so the group
/// opens (a bound cdev would keep it EBUSY) and a second try succeeds.
#[test]
fn a_failed_open_device_in_iommufd_mode_leaves_nothing_bound() {
    let (host, backend) = guest(KernelVersion::V6_12);
    host.fail_next(vfio_core::Operation::AllocIoas, Errno::ENOMEM, 1);
    let e = open_device(&backend, &profiles::edu_address(), Mode::Iommufd).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOMEM), "{e}");
    let group = backend
        .open_group(profiles::QEMU_GUEST_GROUPS.0)
        .expect("the group opens: nothing holds the cdev bound");
    drop(group);
    let opened = open_device(&backend, &profiles::edu_address(), Mode::Iommufd).unwrap();
    assert_eq!(opened.dma.mode(), Mode::Iommufd);
    drop(opened);
    host.done().unwrap();
}
