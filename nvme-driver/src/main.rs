//! Drives an NVMe controller with the example driver and says what it did.
//!
//! ```text
//! cargo run -p nvme-driver                          # on the simulated NVMe (vfio-mock)
//! cargo run -p nvme-driver -- --device 0000:00:03.0 # on a real one bound to vfio-pci
//! ```
//!
//! The same generic function runs in both cases; only the backend differs.
//! It writes to the namespace: point it only at a disk whose contents do
//! not matter.

use anyhow::{Context, Result, bail};
use nvme::{CompletionMode, Nvme, Options};
use std::sync::Arc;
use std::time::Instant;
use vfio_core::{Container, Group, IommuType, PciAddress, VfioBackend};

/// ASCII, space padded, as a string.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim_end().to_owned()
}

/// Opens `address` on `backend` and exercises every feature of the driver.
fn run<B: VfioBackend>(backend: &B, address: PciAddress) -> Result<()> {
    let paths = backend.host_paths();
    let group_number = paths.iommu_group(&address)?;
    println!("{address}: IOMMU group {group_number}");
    let group = backend.open_group(group_number)?;
    let container = Arc::new(backend.open_container()?);
    group.set_container(&container)?;
    container.set_iommu(IommuType::Type1v2)?;
    let device = vfio_core::retry::open_device_with_retry::<B>(
        &group,
        &address.to_string(),
        &vfio_core::SystemClock,
    )?;
    let start = Instant::now();
    let mut nvme = Nvme::<B>::new(backend, device, container, Options::default())?;
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

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (None, _) => {
            let host = vfio_mock::profiles::qemu_guest().build()?;
            println!(
                "backend: vfio-mock (a simulated host with QEMU's NVMe at {})",
                vfio_mock::profiles::nvme_address()
            );
            run(&host.backend(), vfio_mock::profiles::nvme_address())?;
            host.done()?;
        }
        (Some("--device"), Some(addr)) => {
            let address: PciAddress = addr.parse()?;
            println!("backend: vfio-linux (the kernel's vfio-pci)");
            run(&vfio_linux::LinuxBackend::new(), address).with_context(|| {
                format!("driving {address} (is it an NVMe controller bound to vfio-pci, and are you root?)")
            })?;
        }
        _ => bail!("usage: nvme-driver [--device DDDD:BB:DD.F]"),
    }
    println!("done");
    Ok(())
}
