//! Drives QEMU's `edu` device with the example driver and says what it did.
//!
//! ```text
//! cargo run -p edu-driver                          # on the simulated edu (vfio-mock)
//! cargo run -p edu-driver -- --device 0000:00:02.0   # on a real edu bound to vfio-pci
//! cargo run -p edu-driver -- --mode iommufd          # through the device cdev and iommufd
//! cargo run -p edu-driver -- --mode noiommu          # no IOMMU: physical addresses
//! ```
//!
//! The same generic function runs in every case; only the backend and the
//! way the device is opened ([`vfio_core::open::Mode`]) differ.

use anyhow::{Context, Result, bail};
use edu::{DMA_IOVA, Edu};
use vfio_core::open::{DmaContext, Mode, OpenDevice, open_device};
use vfio_core::{
    Container, Device, DmaSpace, Group, Ioas, IrqIndex, PciAddress, VfioBackend, region,
};
use vfio_mock::profiles;

/// Opens `address` on `backend` in `mode` and exercises every feature of the driver.
fn run<B: VfioBackend>(backend: &B, address: PciAddress, mode: Mode) -> Result<()> {
    let paths = backend.host_paths();
    let OpenDevice { device, dma } = open_device(backend, &address, mode)
        .with_context(|| format!("opening {address} in {mode} mode"))?;
    match &dma {
        DmaContext::Container { group, container } if mode == Mode::Type1 => {
            let info = container.iommu_info()?;
            println!(
                "{address}: IOMMU group {} in a Type1v2 container, IOMMU page sizes {:#x}, {} DMA \
                 mappings available",
                group.number(),
                info.iova_pgsizes,
                info.dma_avail
                    .map_or("unknown".to_owned(), |n| n.to_string())
            );
        }
        DmaContext::Container { group, .. } => println!(
            "{address}: no-IOMMU group noiommu-{} in a container with the no-IOMMU driver: \
             the device is given physical addresses",
            group.number()
        ),
        DmaContext::Ioas { ioas, .. } => println!(
            "{address}: cdev {} bound to an iommufd, attached to IOAS {} (IOVA alignment {:#x})",
            paths.device_cdev_name(&address)?,
            ioas.id(),
            ioas.iova_alignment()?
        ),
    }
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
    let message = b"a DMA round trip to the device and back";
    let back = edu.dma_round_trip(backend, &dma, message)?;
    if back != message {
        bail!("DMA round trip changed the data: {back:?}");
    }
    let at = if dma.translates() {
        format!("IOVA {DMA_IOVA:#x}")
    } else {
        "its physical address".to_owned()
    };
    println!(
        "dma: {} bytes to the device at {at} and back: {:?}",
        message.len(),
        String::from_utf8_lossy(&back)
    );
    Ok(())
}

const USAGE: &str = "usage: edu-driver [--mode type1|iommufd|noiommu] [--device DDDD:BB:DD.F]";

fn main() -> Result<()> {
    let mut mode = Mode::Type1;
    let mut device: Option<PciAddress> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--mode", Some(m)) => mode = m.parse()?,
            ("--device", Some(addr)) => device = Some(addr.parse()?),
            _ => bail!(USAGE),
        }
    }
    match device {
        None => {
            let host = profiles::qemu_guest_in(mode).build()?;
            println!(
                "backend: vfio-mock (a simulated Linux {} host with QEMU's edu at {})",
                host.kernel().series(),
                profiles::edu_address()
            );
            run(&host.backend(), profiles::edu_address(), mode)?;
            host.done()?;
        }
        Some(address) => {
            println!("backend: vfio-linux (the kernel's vfio-pci)");
            run(&vfio_linux::LinuxBackend::new(), address, mode).with_context(|| {
                format!(
                    "driving {address} (is it an edu device bound to vfio-pci, and are you root?)"
                )
            })?;
        }
    }
    println!("done");
    Ok(())
}
