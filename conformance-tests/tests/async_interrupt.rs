//! Awaiting a device's interrupt on tokio, with the simulated device raising it.

use conformance_tests::mock;
use std::time::Duration;
use vfio_core::{AsyncInterrupt, Device, Interrupt, IrqIndex, VfioBackend};
use vfio_mock::{Delivery, Irq};

#[tokio::test(flavor = "current_thread")]
async fn a_task_awaits_the_vector_the_device_raises() {
    let env = mock::env().unwrap();
    let o = env.open_nvme().unwrap();
    let irqs: Vec<AsyncInterrupt<_>> = (0..4)
        .map(|_| AsyncInterrupt::new(env.backend.new_interrupt().unwrap()).unwrap())
        .collect();
    let refs: Vec<_> = irqs.iter().map(AsyncInterrupt::get_ref).collect();
    o.device.enable_interrupts(IrqIndex::MSIX, &refs).unwrap();
    o.device.set_bus_master(true).unwrap();

    let host = env.backend.host();
    let nvme = env.targets.nvme;
    let raiser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        host.with_device(nvme, |device| device.raise(Irq::Msix(2)))
    });
    let fired = tokio::time::timeout(Duration::from_secs(10), irqs[2].wait()).await;
    assert_eq!(fired.expect("vector 2 arrived").unwrap(), 1);
    assert!(matches!(raiser.join().unwrap(), Some(Delivery::Signalled)));
    for (i, irq) in irqs.iter().enumerate() {
        assert_eq!(
            irq.get_ref().try_consume().unwrap(),
            None,
            "vector {i} also fired"
        );
    }
}
