//! The host's kernel-version setting: the vfio-pci behaviours that changed
//! between Linux 6.1 and 6.12 follow it, and nothing else does.

mod common;

use common::open;
use std::time::Duration;
use vfio_core::{Device, Errno, Group, IrqFlags, IrqIndex, VfioBackend};
use vfio_mock::{KernelVersion, MockHost, profiles};

fn guest(kernel: KernelVersion) -> MockHost {
    profiles::qemu_guest().kernel(kernel).build().unwrap()
}

#[test]
fn the_default_is_6_1() {
    assert_eq!(
        profiles::qemu_guest().build().unwrap().kernel(),
        KernelVersion::V6_1
    );
    assert_eq!(guest(KernelVersion::V6_12).kernel().series(), "6.12");
}

#[test]
fn msix_is_noresize_on_6_1_and_resizable_on_6_12_where_the_device_has_it() {
    for (kernel, nvme_msix) in [
        (KernelVersion::V6_1, IrqFlags::EVENTFD | IrqFlags::NORESIZE),
        (KernelVersion::V6_12, IrqFlags::EVENTFD),
    ] {
        let host = guest(kernel);
        let b = host.backend();
        let nvme = open(&b, profiles::nvme_address());
        let info = nvme.device.irq_info(IrqIndex::MSIX).unwrap();
        assert_eq!((info.flags, info.count), (nvme_msix, 65), "{kernel:?}");
        let msi = nvme.device.irq_info(IrqIndex::MSI).unwrap();
        assert_eq!(msi.flags, IrqFlags::EVENTFD | IrqFlags::NORESIZE);
        drop(nvme);
        // edu has no MSI-X capability: nothing to allocate dynamically.
        let edu = open(&b, profiles::edu_address());
        let info = edu.device.irq_info(IrqIndex::MSIX).unwrap();
        assert_eq!(
            (info.flags, info.count),
            (IrqFlags::EVENTFD | IrqFlags::NORESIZE, 0),
            "{kernel:?}"
        );
    }
}

#[test]
fn a_device_being_removed_opens_on_6_1_and_is_enodev_on_6_12() {
    for kernel in [KernelVersion::V6_1, KernelVersion::V6_12] {
        let host = guest(kernel);
        let b = host.backend();
        let edu = profiles::edu_address();
        let o = open(&b, edu);
        let removal = host.remove_device(edu).unwrap();
        let second = o.group.open_device(&edu.to_string());
        match kernel {
            KernelVersion::V6_1 => {
                let second = second.unwrap();
                drop(o.device);
                assert!(!removal.wait(Duration::from_millis(10)), "second handle");
                drop(second);
            }
            KernelVersion::V6_12 => {
                assert_eq!(second.unwrap_err().errno(), Some(Errno::ENODEV));
                drop(o.device);
            }
        }
        assert!(removal.wait(Duration::from_secs(5)), "{kernel:?}");
    }
}

#[test]
fn two_cpus_bind_395_vectors_on_both_kernels() {
    for kernel in [KernelVersion::V6_1, KernelVersion::V6_12] {
        let host = guest(kernel);
        let b = host.backend();
        let big = open(&b, profiles::big_nvme_address());
        let irq = b.new_interrupt().unwrap();
        big.device
            .enable_interrupts_unbound(IrqIndex::MSIX, 2048)
            .unwrap();
        let mut bound = 0;
        let errno = loop {
            match big.device.bind_interrupt(IrqIndex::MSIX, bound, &irq) {
                Ok(()) => bound += 1,
                Err(e) => break e.errno(),
            }
        };
        assert_eq!((bound, errno), (395, Some(Errno::ENOSPC)), "{kernel:?}");
    }
}
