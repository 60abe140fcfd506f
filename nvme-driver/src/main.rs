//! Drives an NVMe controller with the example driver and says what it did.
//!
//! ```text
//! cargo run -p nvme-driver                          # on the simulated NVMe (vfio-mock)
//! cargo run -p nvme-driver -- --device 0000:00:03.0 # on a real one bound to vfio-pci
//! cargo run -p nvme-driver -- --mode iommufd        # through the device cdev and iommufd
//! cargo run -p nvme-driver -- --mode noiommu        # no IOMMU: physical addresses
//! ```
//!
//! The same generic function runs in every case; only the backend and the
//! way the device is opened ([`vfio_core::open::Mode`]) differ.
//! It writes to the namespace: point it only at a disk whose contents do
//! not matter.

use anyhow::{Context, Result, bail};
use nvme::{CompletionMode, Nvme, Options};
use std::sync::Arc;
use std::time::Instant;
use vfio_core::open::{DmaContext, Mode, OpenDevice, open_device};
use vfio_core::{Group, Ioas, PciAddress, VfioBackend};
use vfio_mock::profiles;

/// ASCII, space padded, as a string.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_owned()
}

/// Opens `address` on `backend` in `mode` and exercises every feature of the driver.
fn run<B: VfioBackend>(backend: &B, address: PciAddress, mode: Mode) -> Result<()> {
    let OpenDevice { device, dma } = open_device(backend, &address, mode)
        .with_context(|| format!("opening {address} in {mode} mode"))?;
    match &dma {
        DmaContext::Container { group, .. } if mode == Mode::Type1 => {
            println!(
                "{address}: IOMMU group {}, Type1v2 container",
                group.number()
            );
        }
        DmaContext::Container { group, .. } => println!(
            "{address}: no-IOMMU group noiommu-{}: the controller is given physical addresses",
            group.number()
        ),
        DmaContext::Ioas { ioas, .. } => {
            println!(
                "{address}: device cdev bound to an iommufd, attached to IOAS {}",
                ioas.id()
            );
        }
    }
    let start = Instant::now();
    let mut nvme = Nvme::<B>::new(backend, device, Arc::new(dma), Options::default())?;
    let cap = nvme.cap();
    println!(
        "controller: NVMe {}.{}, CAP {:#018x} (MQES {}, TO {} = {} ms, DSTRD {}), ready in {:?}",
        nvme.version() >> 16,
        (nvme.version() >> 8) & 0xff,
        cap.0,
        cap.mqes(),
        cap.to(),
        cap.timeout_ms(),
        cap.dstrd(),
        start.elapsed()
    );
    let c = nvme.identify_controller();
    println!(
        "identify: vid {:#06x} ssvid {:#06x} sn {:?} mn {:?} fr {:?} mdts {} sqes {:#04x} cqes {:#04x} nn {} oncs {:#06x} vwc {:#x}",
        c.vid,
        c.ssvid,
        text(&c.sn),
        text(&c.mn),
        text(&c.fr),
        c.mdts,
        c.sqes,
        c.cqes,
        c.nn,
        c.oncs,
        c.vwc
    );
    let ns = nvme.namespace();
    println!(
        "namespace {}: {} blocks of {} bytes ({} MiB), format {}, DLFEAT {:#x}",
        ns.nsid,
        ns.blocks,
        ns.block_size,
        (ns.blocks * u64::from(ns.block_size)) >> 20,
        ns.format_index,
        ns.dlfeat
    );
    println!(
        "queues: {} I/O queue pairs of {} entries, each on its own MSI-X vector (granted {:#010x}); longest transfer {} KiB",
        nvme.io_queue_count(),
        nvme.queue_entries(1)?,
        nvme.queues_granted(),
        nvme.max_transfer() >> 10
    );
    let bs = ns.block_size as usize;
    for (mode, qid) in [(CompletionMode::Interrupt, 1), (CompletionMode::Polled, 2)] {
        nvme.set_completion_mode(mode);
        let qid = qid.min(nvme.io_queue_count());
        let len = 40 * bs;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + qid as usize) as u8).collect();
        nvme.write(qid, 8, &data)?;
        nvme.flush(qid)?;
        let mut back = vec![0; len];
        nvme.read(qid, 8, &mut back)?;
        if back != data {
            bail!("queue {qid}: {len} bytes read back differ from what was written");
        }
        println!("io ({mode:?}, queue {qid}): wrote, flushed and read back {len} bytes at LBA 8");
    }
    nvme.write_zeroes(1, 8, 8)?;
    let mut back = vec![0xff; 8 * bs];
    nvme.read(1, 8, &mut back)?;
    if back.iter().any(|&b| b != 0) {
        bail!("write zeroes left non-zero bytes");
    }
    println!("write zeroes: 8 blocks at LBA 8 read back as zeroes");
    nvme.deallocate(1, &[(16, 8)])?;
    nvme.read(1, 16, &mut back)?;
    println!(
        "deallocate: 8 blocks at LBA 16 read back {}",
        if back.iter().all(|&b| b == 0) {
            "as zeroes".to_owned()
        } else {
            format!("with data ({:02x?}...)", &back[..8])
        }
    );
    let past = ns.blocks;
    match nvme.read(1, past, &mut back[..bs]) {
        Err(e) => println!("read past the end (LBA {past}): {e}"),
        Ok(()) => bail!("a read past the end of the namespace succeeded"),
    }
    nvme.reset()?;
    nvme.read(1, 8, &mut back)?;
    println!("controller reset: queues recreated, LBA 8 still reads back");
    Ok(())
}

const USAGE: &str = "usage: nvme-driver [--mode type1|iommufd|noiommu] [--device DDDD:BB:DD.F]";

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
                "backend: vfio-mock (a simulated Linux {} host with QEMU's NVMe at {})",
                host.kernel().series(),
                profiles::nvme_address()
            );
            run(&host.backend(), profiles::nvme_address(), mode)?;
            host.done()?;
        }
        Some(address) => {
            println!("backend: vfio-linux (the kernel's vfio-pci)");
            run(&vfio_linux::LinuxBackend::new(), address, mode).with_context(|| {
                format!(
                    "driving {address} (is it an NVMe controller bound to vfio-pci, and are you root?)"
                )
            })?;
        }
    }
    println!("done");
    Ok(())
}
