//! The fake `/proc/interrupts` counts an MSI-X interrupt before its
//! eventfd is signalled, as Linux counts an irq before its handler runs:
//! a driver woken by the eventfd reads the new count.

mod common;

use common::{guest, open};
use std::time::Duration;
use vfio_core::parse::proc_interrupts::{IrqId, read_all};
use vfio_core::{Device, Interrupt, IrqIndex, VfioBackend};
use vfio_mock::{Delivery, Irq, profiles};

/// Linux irq `number`'s count over every CPU, as the fake
/// `/proc/interrupts` says now (`None` while it has no line).
fn count_of(paths: &vfio_core::HostPaths, number: u32) -> Option<u64> {
    let text = std::fs::read_to_string(paths.interrupts_path()).unwrap();
    read_all(text.as_bytes())
        .unwrap()
        .into_iter()
        .find(|l| l.irq == IrqId::Number(number))
        .map(|l| l.counts.iter().sum::<u64>())
}

#[test]
fn a_driver_woken_by_the_eventfd_reads_the_count_of_that_interrupt() {
    let (host, b) = guest();
    let nvme = profiles::nvme_address();
    let o = open(&b, nvme);
    o.device.set_bus_master(true).unwrap();
    let irq = b.new_interrupt().unwrap();
    o.device.enable_interrupts(IrqIndex::MSIX, &[&irq]).unwrap();
    let paths = b.host_paths();
    let number = paths.vector_irq(&nvme, IrqIndex::MSIX, 0).unwrap();
    let count = || count_of(paths, number);
    let rounds = 200u64;
    let (ack, acked) = std::sync::mpsc::channel::<()>();
    let host = &host;
    std::thread::scope(|s| {
        let device = s.spawn(move || {
            for _ in 0..rounds {
                assert_eq!(
                    host.with_device(nvme, |ctx| ctx.raise(Irq::Msix(0))),
                    Some(Delivery::Signalled)
                );
                // A timeout, not a hang, if the driver side failed.
                acked.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        });
        for round in 1..=rounds {
            let woken = irq.wait(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(woken, Some(1), "round {round}");
            assert_eq!(count(), Some(round), "round {round}");
            ack.send(()).unwrap();
        }
        device.join().unwrap();
    });
    host.assert_faults_consumed();
}

/// INTx likewise: each assertion is counted before the eventfd is
/// signalled (the driver lowers the line and unmasks between rounds).
#[test]
fn a_driver_woken_by_intx_reads_the_count_of_that_interrupt() {
    let (host, b) = guest();
    let edu = profiles::edu_address();
    let o = open(&b, edu);
    let irq = b.new_interrupt().unwrap();
    o.device.enable_interrupts(IrqIndex::INTX, &[&irq]).unwrap();
    let paths = b.host_paths();
    let number = paths.vector_irq(&edu, IrqIndex::INTX, 0).unwrap();
    let count = || count_of(paths, number);
    let before = count().unwrap_or(0);
    let rounds = 100u64;
    let (ack, acked) = std::sync::mpsc::channel::<()>();
    let host = &host;
    std::thread::scope(|s| {
        let device = s.spawn(move || {
            for _ in 0..rounds {
                assert_eq!(
                    host.with_device(edu, |ctx| ctx.raise(Irq::Intx)),
                    Some(Delivery::Signalled)
                );
                // A timeout, not a hang, if the driver side failed.
                acked.recv_timeout(Duration::from_secs(10)).unwrap();
            }
        });
        for round in 1..=rounds {
            let woken = irq.wait(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(woken, Some(1), "round {round}");
            assert_eq!(count(), Some(before + round), "round {round}");
            host.with_device(edu, |ctx| ctx.lower_intx()).unwrap();
            o.device.unmask_intx().unwrap();
            ack.send(()).unwrap();
        }
        device.join().unwrap();
    });
    host.assert_faults_consumed();
}
