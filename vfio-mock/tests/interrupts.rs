//! VFIO_DEVICE_SET_IRQS as 6.1 runs it, and the fake /proc/interrupts.

mod common;

use common::{guest, open};
use nix::errno::Errno;
use std::os::fd::AsFd;
use vfio_core::parse::proc_interrupts::{IrqId, read_all};
use vfio_core::{
    Device, ErrorKind, EventFdInterrupt, Interrupt, IrqAction, IrqData, IrqIndex, VfioBackend,
};
use vfio_mock::{Delivery, Irq, profiles};

fn irqs(b: &vfio_mock::MockBackend, n: usize) -> Vec<EventFdInterrupt> {
    (0..n).map(|_| b.new_interrupt().unwrap()).collect()
}

fn fired(irqs: &[EventFdInterrupt]) -> Vec<usize> {
    irqs.iter()
        .enumerate()
        .filter(|(_, i)| i.try_consume().unwrap().is_some())
        .map(|(n, _)| n)
        .collect()
}

fn errno(r: vfio_core::Result<()>) -> Option<Errno> {
    r.unwrap_err().errno()
}

#[test]
fn msix_validation_follows_6_1() {
    let (_host, b) = guest();
    let o = open(&b, profiles::nvme_address());
    let d = &o.device;
    let v = irqs(&b, 4);
    let fd = |i: usize| Some(v[i].as_fd());
    // Vector 70 of 65, and a block running past the end.
    assert_eq!(
        errno(d.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            70,
            IrqData::Eventfds(&[fd(0)])
        )),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(d.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            64,
            IrqData::Eventfds(&[fd(0), fd(1)])
        )),
        Some(Errno::EINVAL)
    );
    // Index 5, MSI (no vectors on this device), MSI-X masking.
    assert_eq!(
        errno(d.set_irqs(
            IrqIndex(5),
            IrqAction::Trigger,
            0,
            IrqData::None { count: 0 }
        )),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(d.disable_interrupts(IrqIndex::MSI)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(d.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Mask,
            0,
            IrqData::None { count: 1 }
        )),
        Some(Errno::ENOTTY)
    );
    // Disabling or firing a disabled index; enabling zero vectors.
    assert_eq!(
        errno(d.disable_interrupts(IrqIndex::MSIX)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(d.trigger_interrupts(IrqIndex::MSIX, 0, 1)),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(d.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            0,
            IrqData::Eventfds(&[])
        )),
        Some(Errno::ERANGE)
    );
    // Enable 2; growing to 3 is EINVAL (NORESIZE), rebinding within is fine.
    d.enable_interrupts(IrqIndex::MSIX, &[&v[0], &v[1]])
        .unwrap();
    assert_eq!(
        errno(d.bind_interrupts(IrqIndex::MSIX, 1, &[&v[1], &v[2]])),
        Some(Errno::EINVAL)
    );
    d.bind_interrupts(IrqIndex::MSIX, 1, &[&v[3]]).unwrap();
    d.trigger_interrupts(IrqIndex::MSIX, 0, 2).unwrap();
    assert_eq!(fired(&v), [0, 3]);
    // BOOL fires only the flagged vectors.
    d.set_irqs(
        IrqIndex::MSIX,
        IrqAction::Trigger,
        0,
        IrqData::Bool(&[false, true]),
    )
    .unwrap();
    assert_eq!(fired(&v), [3]);
    // Another type while MSI-X is enabled.
    assert_eq!(
        errno(d.enable_interrupts(IrqIndex::INTX, &[&v[2]])),
        Some(Errno::EINVAL)
    );
    d.disable_interrupts(IrqIndex::MSIX).unwrap();
    d.enable_interrupts(IrqIndex::INTX, &[&v[2]]).unwrap();
    assert_eq!(
        errno(d.enable_interrupts(IrqIndex::MSIX, &[&v[0]])),
        Some(Errno::EINVAL)
    );
}

#[test]
fn a_bind_with_a_non_eventfd_changes_nothing() {
    let (_host, b) = guest();
    let o = open(&b, profiles::nvme_address());
    let d = &o.device;
    let v = irqs(&b, 4);
    let file = tempfile::tempfile().unwrap();
    // The fds are checked before anything changes: the index stays disabled.
    let r = d.set_irqs(
        IrqIndex::MSIX,
        IrqAction::Trigger,
        0,
        IrqData::Eventfds(&[Some(v[0].as_fd()), Some(file.as_fd())]),
    );
    assert_eq!(r.unwrap_err().kind(), ErrorKind::InvalidArgument);
    assert_eq!(
        errno(d.trigger_interrupts(IrqIndex::MSIX, 0, 1)),
        Some(Errno::EINVAL)
    );
    // On an enabled index, every earlier binding survives the failed call.
    let refs: Vec<_> = v.iter().collect();
    d.enable_interrupts(IrqIndex::MSIX, &refs).unwrap();
    let r = d.set_irqs(
        IrqIndex::MSIX,
        IrqAction::Trigger,
        1,
        IrqData::Eventfds(&[Some(v[1].as_fd()), Some(file.as_fd())]),
    );
    assert_eq!(r.unwrap_err().errno(), Some(Errno::EINVAL));
    d.trigger_interrupts(IrqIndex::MSIX, 0, 4).unwrap();
    assert_eq!(fired(&v), [0, 1, 2, 3]);
}

#[test]
fn proc_interrupts_lists_bound_vectors_and_counts_device_interrupts_only() {
    let (host, b) = guest();
    let o = open(&b, profiles::nvme_address());
    let nvme = profiles::nvme_address();
    let v = irqs(&b, 3);
    let refs: Vec<_> = v.iter().collect();
    o.device.enable_interrupts(IrqIndex::MSIX, &refs).unwrap();
    let paths = b.host_paths();
    let irq1 = paths.vector_irq(&nvme, IrqIndex::MSIX, 1).unwrap();
    assert!(irq1 >= 24);
    let counts = |irq: u32| {
        let text = std::fs::read_to_string(paths.interrupts_path()).unwrap();
        let all = read_all(text.as_bytes()).unwrap();
        all.into_iter()
            .find(|l| l.irq == IrqId::Number(irq))
            .map(|l| l.counts.iter().sum::<u64>())
    };
    assert_eq!(counts(irq1), Some(0));
    // A loopback trigger signals the eventfd but is no hardware interrupt.
    o.device.trigger_interrupts(IrqIndex::MSIX, 1, 1).unwrap();
    assert_eq!(fired(&v), [1]);
    assert_eq!(counts(irq1), Some(0));
    // The device raising the vector is, once it may write the message
    // (Bus Master Enable); a loopback trigger needs no bus mastering.
    assert_eq!(
        host.with_device(nvme, |ctx| ctx.raise(Irq::Msix(1))),
        Some(Delivery::BusMasterDisabled)
    );
    assert_eq!(counts(irq1), Some(0));
    o.device.set_bus_master(true).unwrap();
    let delivery = host
        .with_device(nvme, |ctx| {
            (ctx.raise(Irq::Msix(1)), ctx.raise(Irq::Msix(1)))
        })
        .unwrap();
    assert_eq!(delivery, (Delivery::Signalled, Delivery::Signalled));
    assert_eq!(v[1].try_consume().unwrap(), Some(2));
    assert_eq!(counts(irq1), Some(2));
    assert_eq!(
        host.with_device(nvme, |ctx| ctx.raise(Irq::Msix(9))),
        Some(Delivery::NotBound)
    );
    // Unbinding drops the action; the line stays while it has counts, until disable frees the irq.
    o.device.unbind_interrupts(IrqIndex::MSIX, 1, 1).unwrap();
    assert_eq!(
        paths
            .vector_irq(&nvme, IrqIndex::MSIX, 1)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(counts(irq1), Some(2));
    o.device.disable_interrupts(IrqIndex::MSIX).unwrap();
    assert_eq!(counts(irq1), None);
}

#[test]
fn closing_the_last_handle_releases_vectors_but_a_mapping_keeps_it_open() {
    let (_host, b) = guest();
    let nvme = profiles::nvme_address();
    let o = open(&b, nvme);
    let v = irqs(&b, 1);
    o.device
        .enable_interrupts(IrqIndex::MSIX, &[&v[0]])
        .unwrap();
    let bar = o.device.map_region(0).unwrap();
    drop(o.device);
    b.host_paths().vector_irq(&nvme, IrqIndex::MSIX, 0).unwrap();
    drop(bar);
    assert_eq!(
        b.host_paths()
            .vector_irq(&nvme, IrqIndex::MSIX, 0)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn err_and_req_are_single_eventfds() {
    let (_host, b) = guest();
    let n = open(&b, profiles::nvme_address());
    let e = open(&b, profiles::edu_address());
    let v = irqs(&b, 1);
    assert_eq!(
        e.device.irq_info(IrqIndex::ERR).unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(e.device.bind_interrupts(IrqIndex::ERR, 0, &[&v[0]])),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        errno(n.device.trigger_interrupts(IrqIndex::REQ, 0, 1)),
        Some(Errno::EINVAL)
    );
    n.device
        .bind_interrupts(IrqIndex::REQ, 0, &[&v[0]])
        .unwrap();
    n.device.trigger_interrupts(IrqIndex::REQ, 0, 1).unwrap();
    assert_eq!(v[0].try_consume().unwrap(), Some(1));
    assert_eq!(
        errno(n.device.set_irqs(
            IrqIndex::REQ,
            IrqAction::Unmask,
            0,
            IrqData::None { count: 1 }
        )),
        Some(Errno::ENOTTY)
    );
}

/// Raises the soft open-file limit to at least `want` (within the hard limit):
/// 2048 vectors need 2048 eventfd references on top of the caller's fds.
fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).unwrap();
    }
}

#[test]
fn a_device_with_2048_msix_vectors_binds_them_all_in_one_call_given_the_cpus() {
    raise_fd_limit(4608);
    // 2048 table entries of 16 bytes at 0x8000, the pending bits after them.
    let big = vfio_mock::PciDeviceBuilder::new(0x1b36, 0x0010)
        .pcie()
        .bar(0, vfio_mock::BarSpec::memory64(0x2_0000))
        .msix(2048, 0, 0x8000, 0, 0x1_0000);
    let address = vfio_core::PciAddress::new(0, 5, 0, 0).unwrap();
    // 2048 vectors need 11 CPUs' worth (201 each, less the host's 7 irqs).
    let host = vfio_mock::MockHost::builder()
        .cpus(11)
        .device(address, 9, big)
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, address);
    let info = o.device.irq_info(IrqIndex::MSIX).unwrap();
    assert_eq!(info.count, 2048);
    // One eventfd may serve many vectors, as with the kernel.
    let shared = b.new_interrupt().unwrap();
    let refs = vec![&shared; 2048];
    o.device.enable_interrupts(IrqIndex::MSIX, &refs).unwrap();
    o.device
        .trigger_interrupts(IrqIndex::MSIX, 2047, 1)
        .unwrap();
    assert_eq!(shared.try_consume().unwrap(), Some(1));
    o.device
        .trigger_interrupts(IrqIndex::MSIX, 0, 2048)
        .unwrap();
    assert_eq!(shared.try_consume().unwrap(), Some(2048));
    assert!(
        b.host_paths()
            .vector_irq(&address, IrqIndex::MSIX, 2047)
            .is_ok()
    );
    host.done().unwrap();
}
