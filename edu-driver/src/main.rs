//! Drives QEMU's `edu` device with the example driver and says what it did.
//!
//! ```text
//! cargo run -p edu-driver                        # on the simulated edu (vfio-mock)
//! cargo run -p edu-driver -- --device 0000:00:02.0   # on a real edu bound to vfio-pci
//! ```
//!
//! The same generic function runs in both cases; only the backend differs.

use anyhow::{Context, Result, bail};
use edu::{DMA_IOVA, Edu};
use vfio_core::{Container, Device, Group, IommuType, IrqIndex, PciAddress, VfioBackend, region};

/// Opens `address` on `backend` and exercises every feature of the driver.
fn run<B: VfioBackend>(backend: &B, address: PciAddress) -> Result<()> {
    let paths = backend.host_paths();
    let group_number = paths.iommu_group(&address)?;
    println!(
        "{address}: IOMMU group {group_number} (from {})",
        paths.sysfs().display()
    );
    let group = backend.open_group(group_number)?;
    let container = backend.open_container()?;
    group.set_container(&container)?;
    container.set_iommu(IommuType::Type1v2)?;
    let info = container.iommu_info()?;
    println!(
        "container: Type1v2, IOMMU page sizes {:#x}, {} DMA mappings available",
        info.iova_pgsizes,
        info.dma_avail
            .map_or("unknown".to_owned(), |n| n.to_string())
    );
    // A device bound to vfio-pci a moment ago can answer ENODEV once on
    // Linux 6.1: retry once after 250 ms.
    let device = vfio_core::retry::open_device_with_retry::<B>(
        &group,
        &address.to_string(),
        &vfio_core::SystemClock,
    )?;
    let dinfo = device.info()?;
    let bar0 = device.region_info(region::BAR0)?;
    let vendor = u16::from_le_bytes(device.read_config::<2>(0)?);
    let id = u16::from_le_bytes(device.read_config::<2>(2)?);
    println!(
        "device: {vendor:04x}:{id:04x}, {} regions, {} IRQ indexes, BAR0 {} KiB",
        dinfo.num_regions,
        dinfo.num_irqs,
        bar0.size / 1024
    );
    let mut edu = Edu::<B>::new(backend, device)?;
    println!("edu: identification and liveness check passed; MSI vector 0 bound to an eventfd");
    match paths.vector_irq(&address, IrqIndex::MSI, 0) {
        Ok(irq) => println!("       /proc/interrupts lists vfio-msi[0]({address}) as irq {irq}"),
        Err(e) => println!("       (no /proc/interrupts entry: {e})"),
    }
    for n in [5, 10, 12] {
        println!(
            "factorial: {n}! = {} (completion interrupt received)",
            edu.factorial(n)?
        );
    }
    let message = b"a DMA round trip through the IOMMU";
    let back = edu.dma_round_trip(backend, &container, message)?;
    if back != message {
        bail!("DMA round trip changed the data: {back:?}");
    }
    println!(
        "dma: {} bytes to the device at IOVA {DMA_IOVA:#x} and back: {:?}",
        message.len(),
        String::from_utf8_lossy(&back)
    );
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => {
            let host = vfio_mock::profiles::qemu_guest().build()?;
            println!(
                "backend: vfio-mock (a simulated host with QEMU's edu at {})",
                vfio_mock::profiles::edu_address()
            );
            run(&host.backend(), vfio_mock::profiles::edu_address())?;
            host.done()?;
        }
        (Some("--device"), Some(addr)) => {
            let address: PciAddress = addr.parse()?;
            println!("backend: vfio-linux (the kernel's vfio-pci)");
            run(&vfio_linux::LinuxBackend::new(), address).with_context(|| {
                format!(
                    "driving {address} (is it an edu device bound to vfio-pci, and are you root?)"
                )
            })?;
        }
        _ => bail!("usage: edu-driver [--device DDDD:BB:DD.F]"),
    }
    println!("done");
    Ok(())
}
