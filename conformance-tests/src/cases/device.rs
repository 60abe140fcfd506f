//! Device behaviours: info, regions, config space, mmap and register access.

use crate::{Env, Kernel, expect_error};
use anyhow::{Result, ensure};
use vfio_core::{
    Device, DeviceFlags, Errno, ErrorKind, Group, Interrupt, IrqIndex, MappedRegion, RegionFlags,
    VfioBackend, region,
};

/// Offset of `edu`'s identification register in BAR0.
const EDU_ID: u64 = 0x00;
/// Offset of `edu`'s liveness-check register in BAR0.
const EDU_LIVENESS: u64 = 0x04;

/// vfio-pci reports a PCI device with 9 regions (BAR0-5, ROM, config, VGA)
/// and 5 IRQ indexes (INTx, MSI, MSI-X, ERR, REQ).
pub fn edu_device_info_is_pci_with_nine_regions_and_five_irqs<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let info = o.device.info()?;
    ensure!(
        info.flags.contains(DeviceFlags::PCI),
        "flags {:?}",
        info.flags
    );
    ensure!(info.num_regions == 9, "num_regions {}", info.num_regions);
    ensure!(info.num_irqs == 5, "num_irqs {}", info.num_irqs);
    Ok(())
}

/// `edu`'s BAR0 is 1 MiB of MMIO, readable, writable and mmappable.
pub fn edu_bar0_is_one_mib_readable_writable_mmappable<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let r = o.device.region_info(region::BAR0)?;
    ensure!(r.size == 1 << 20, "size {:#x}", r.size);
    let want = RegionFlags::READ | RegionFlags::WRITE | RegionFlags::MMAP;
    ensure!(r.flags == want, "flags {:?}", r.flags);
    Ok(())
}

/// BARs a device does not implement report size 0 and no flags.
pub fn absent_bars_have_no_size_and_no_flags<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    for index in 1..=5 {
        let r = o.device.region_info(index)?;
        ensure!(
            r.size == 0 && r.flags == RegionFlags::EMPTY,
            "BAR{index}: {r:?}"
        );
    }
    Ok(())
}

/// Config space is region 7: readable and writable through the device file,
/// never mmappable, and mapping it is refused.
pub fn config_region_is_readable_writable_and_never_mmapped<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let r = o.device.region_info(region::CONFIG)?;
    ensure!(
        r.flags == RegionFlags::READ | RegionFlags::WRITE,
        "flags {:?}",
        r.flags
    );
    ensure!(r.size == 256 || r.size == 4096, "size {:#x}", r.size);
    expect_error(
        "mmap of config space",
        o.device.map_region(region::CONFIG),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

fn config_ids<B: VfioBackend>(device: &B::Device) -> Result<(u16, u16)> {
    let vendor = u16::from_le_bytes(device.read_config::<2>(0)?);
    let id = u16::from_le_bytes(device.read_config::<2>(2)?);
    Ok((vendor, id))
}

/// `edu` is vendor 0x1234, device 0x11e8.
pub fn edu_config_space_has_qemu_ids<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let ids = config_ids::<B>(&o.device)?;
    ensure!(ids == (0x1234, 0x11e8), "ids {ids:04x?}");
    Ok(())
}

/// QEMU's NVMe controller is vendor 0x1b36 (Red Hat), device 0x0010.
pub fn nvme_config_space_has_qemu_ids<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let ids = config_ids::<B>(&o.device)?;
    ensure!(ids == (0x1b36, 0x0010), "ids {ids:04x?}");
    Ok(())
}

/// `edu`'s identification register reads 0x010000ed (version 1.0, "ed").
pub fn edu_identification_register_reads_through_mmap<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let bar0 = o.device.map_region(region::BAR0)?;
    ensure!(bar0.len() == 1 << 20, "mapped {:#x} bytes", bar0.len());
    let id = bar0.read_u32(EDU_ID)?;
    ensure!(id == 0x0100_00ed, "id {id:#010x}");
    Ok(())
}

/// `edu`'s liveness register reads back the bitwise inverse of what was written.
pub fn edu_liveness_register_inverts_what_is_written<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let bar0 = o.device.map_region(region::BAR0)?;
    for v in [0u32, 0x1234_5678, 0xffff_ffff] {
        bar0.write_u32(EDU_LIVENESS, v)?;
        let got = bar0.read_u32(EDU_LIVENESS)?;
        ensure!(got == !v, "wrote {v:#x}, read {got:#x}");
    }
    Ok(())
}

/// Reading a region through the device file at or past its end is out of range.
pub fn region_read_past_the_end_is_out_of_range<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let size = o.device.region_info(region::CONFIG)?.size;
    let mut buf = [0u8; 4];
    expect_error(
        "read at the end",
        o.device.read_region(region::CONFIG, size, &mut buf),
        ErrorKind::OutOfRange,
        Some(Errno::EFAULT),
    )?;
    Ok(())
}

/// vfio-pci refuses region info for the VGA region of a device that is not
/// VGA, and for any index past the regions it reports, with EINVAL.
pub fn vga_region_of_a_non_vga_device_and_indexes_past_the_table_are_invalid<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    for index in [region::VGA, 9, 1000] {
        expect_error(
            format_args!("region info {index}"),
            o.device.region_info(index),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
    }
    Ok(())
}

/// IRQ info for an index past the five vfio-pci has is EINVAL.
pub fn irq_info_past_the_last_index_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    expect_error(
        "irq info 5",
        o.device.irq_info(vfio_core::IrqIndex(5)),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// `edu` has no expansion ROM: its ROM region is empty.
pub fn edu_rom_region_is_empty<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let r = o.device.region_info(region::ROM)?;
    ensure!(r.size == 0, "{r:?}");
    Ok(())
}

/// The NVMe controller's BAR0 holds its registers and the MSI-X table; vfio-pci
/// marks the table mappable with a capability.
pub fn nvme_bar0_is_mmappable_with_the_msix_mappable_capability<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_nvme()?;
    let r = o.device.region_info(region::BAR0)?;
    let want = RegionFlags::READ | RegionFlags::WRITE | RegionFlags::MMAP | RegionFlags::CAPS;
    ensure!(r.flags == want, "flags {:?} ({r:?})", r.flags);
    ensure!(r.size == 0x4000, "size {:#x}", r.size);
    ensure!(
        r.caps == [vfio_core::RegionCap::MsixMappable],
        "caps {:?}",
        r.caps
    );
    let cfg = o.device.region_info(region::CONFIG)?;
    ensure!(cfg.size == 4096, "config size {:#x}", cfg.size);
    Ok(())
}

/// A BAR read through the device file sees the same registers as the mapping.
pub fn bar_read_through_the_device_file_matches_the_mapping<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let mut buf = [0u8; 4];
    let n = o.device.read_region(region::BAR0, EDU_ID, &mut buf)?;
    ensure!(
        n == 4 && u32::from_le_bytes(buf) == 0x0100_00ed,
        "read {n} bytes: {buf:x?}"
    );
    o.device
        .write_region(region::BAR0, EDU_LIVENESS, &0x55u32.to_le_bytes())?;
    let bar0 = o.device.map_region(region::BAR0)?;
    ensure!(
        bar0.read_u32(EDU_LIVENESS)? == !0x55,
        "liveness through mmap"
    );
    Ok(())
}

/// A BAR read that straddles the region's end is cut short at the end.
pub fn bar_read_straddling_the_end_is_cut_short<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let size = o.device.region_info(region::BAR0)?.size;
    let mut buf = [0u8; 8];
    let n = o.device.read_region(region::BAR0, size - 4, &mut buf)?;
    ensure!(n == 4, "read {n} bytes");
    Ok(())
}

/// A config read that straddles the end of config space is not cut short:
/// vfio-pci fails it with EFAULT.
pub fn config_read_straddling_the_end_faults<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let size = o.device.region_info(region::CONFIG)?.size;
    let mut buf = [0u8; 8];
    expect_error(
        "straddling read",
        o.device.read_region(region::CONFIG, size - 2, &mut buf),
        ErrorKind::OutOfRange,
        Some(Errno::EFAULT),
    )?;
    Ok(())
}

/// `edu` does not advertise reset, and a reset request is EINVAL.
pub fn edu_reset_matches_the_reset_flag<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let flags = o.device.info()?.flags;
    ensure!(
        !flags.contains(DeviceFlags::RESET),
        "edu advertises reset: {flags:?}"
    );
    expect_error(
        "reset",
        o.device.reset(),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// The NVMe controller can be reset (it has function-level reset).
pub fn nvme_advertises_reset_and_resets<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    ensure!(
        o.device.info()?.flags.contains(DeviceFlags::RESET),
        "no RESET flag"
    );
    o.device.reset()?;
    Ok(())
}

/// What config space says about a device: (subsystem vendor, subsystem id,
/// class code, revision, capabilities as (id, offset) in list order).
type ConfigSummary = (u16, u16, u32, u8, Vec<(u8, u8)>);

fn config_summary<B: VfioBackend>(device: &B::Device) -> Result<ConfigSummary> {
    let mut config = vec![0u8; 256];
    vfio_core::access::read_exact(device, region::CONFIG, 0, &mut config)?;
    let class = u32::from_le_bytes([config[9], config[10], config[11], 0]);
    let caps = vfio_core::parse::pci_caps::capabilities(&config)?
        .iter()
        .map(|c| (c.id, c.offset))
        .collect();
    Ok((
        u16::from_le_bytes([config[0x2c], config[0x2d]]),
        u16::from_le_bytes([config[0x2e], config[0x2f]]),
        class,
        config[8],
        caps,
    ))
}

/// QEMU's NVMe controller: subsystem 1af4:1100, class 010802, revision 2,
/// capabilities MSI-X at 0x40, PCI Express at 0x80, power management at 0x60
/// (in that list order), MSI-X table at BAR0+0x2000 and PBA at BAR0+0x3000.
pub fn nvme_config_space_matches_qemu_layout<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    let summary = config_summary::<B>(&o.device)?;
    let want = (
        0x1af4,
        0x1100,
        0x01_08_02,
        2,
        vec![(0x11, 0x40), (0x10, 0x80), (0x01, 0x60)],
    );
    ensure!(summary == want, "{summary:x?}");
    let config = o.device.read_config::<256>(0)?;
    let msix =
        vfio_core::parse::pci_caps::msix(&config)?.ok_or_else(|| anyhow::anyhow!("no MSI-X"))?;
    let layout = (
        msix.table_bar,
        msix.table_offset,
        msix.pba_bar,
        msix.pba_offset,
        msix.table_size,
    );
    ensure!(
        layout == (0, 0x2000, 0, 0x3000, 65),
        "MSI-X layout {layout:x?}"
    );
    Ok(())
}

/// QEMU's edu: class 00ff00, revision 0x10, one capability (MSI, 64-bit, one
/// vector, no per-vector masking).
pub fn edu_config_space_matches_qemu_layout<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let (_, _, class, revision, caps) = config_summary::<B>(&o.device)?;
    ensure!(
        (class, revision) == (0x00_ff_00, 0x10),
        "class {class:06x} revision {revision:#x}"
    );
    ensure!(
        caps.len() == 1 && caps[0].0 == 0x05,
        "capabilities {caps:x?}"
    );
    let config = o.device.read_config::<256>(0)?;
    let msi = vfio_core::parse::pci_caps::msi(&config)?.ok_or_else(|| anyhow::anyhow!("no MSI"))?;
    let shape = (msi.vectors_capable, msi.is_64bit, msi.per_vector_masking);
    ensure!(shape == (1, true, false), "MSI {shape:?}");
    Ok(())
}

/// Removing a device that a driver holds open (its sysfs `remove`, from
/// another thread) signals the device's REQ interrupt and then waits, with
/// the device still working, until the user has closed every handle and
/// mapping of it (a new open meanwhile succeeds on Linux 6.1, and is waited
/// for too; on 6.12 it is ENODEV). Once released it is gone
/// from sysfs. (The host brings it back afterwards for the cases that follow.)
pub fn removal_asks_for_the_device_and_waits_for_its_release<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    /// Restores the device when the case ends, however it ends, once the
    /// removal thread is done.
    struct Restore {
        host: std::sync::Arc<dyn crate::HostControl>,
        device: vfio_core::PciAddress,
        remover: Option<std::thread::JoinHandle<Result<()>>>,
    }
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(remover) = self.remover.take() {
                let _ = remover.join();
            }
            if let Err(e) = self.host.restore(&self.device) {
                eprintln!("restoring {} after its removal: {e:#}", self.device);
            }
        }
    }
    const ARRIVES: std::time::Duration = std::time::Duration::from_secs(5);
    const STAYS_AWAY: std::time::Duration = std::time::Duration::from_millis(300);
    let kernel = env.kernel()?;
    let edu = env.targets.edu;
    let mut restore = Restore {
        host: env.host.clone(),
        device: edu,
        remover: None,
    };
    let o = env.open_edu()?;
    let req = env.backend.new_interrupt()?;
    o.device.bind_interrupt(IrqIndex::REQ, 0, &req)?;
    let bar = o.device.map_region(region::BAR0)?;
    let (done_tx, done) = std::sync::mpsc::channel();
    let host = env.host.clone();
    restore.remover = Some(std::thread::spawn(move || {
        let r = host.remove(&edu);
        let _ = done_tx.send(());
        r
    }));
    ensure!(
        req.wait(Some(ARRIVES))?.is_some(),
        "no REQ interrupt asked for the device"
    );
    ensure!(
        done.recv_timeout(STAYS_AWAY).is_err(),
        "removed while the device was open"
    );
    ensure!(bar.read_u32(0)? == 0x0100_00ed, "BAR0 stopped working");
    o.device.info()?;
    // Linux 6.1 still lets the device be opened meanwhile, and waits for
    // that handle too. 6.12 takes the device off its group's list before it
    // asks for the device (vfio_device_group_unregister), so the name is
    // ENODEV.
    // (In iommufd mode there is no group to open it through.)
    let second = match (o.dma.group(), kernel) {
        (None, _) => None,
        (Some(group), Kernel::V6_1) => Some(group.open_device(&edu.to_string())?),
        (Some(group), Kernel::V6_12) => {
            expect_error(
                "opening the device while it is being removed",
                group.open_device(&edu.to_string()),
                ErrorKind::NotFound,
                Some(Errno::ENODEV),
            )?;
            None
        }
    };
    let crate::Opened { device, dma } = o;
    drop(device);
    if let Some(second) = second {
        ensure!(
            done.recv_timeout(STAYS_AWAY).is_err(),
            "removed while a second handle was open"
        );
        second.info()?;
        drop(second);
    }
    drop(dma);
    ensure!(
        done.recv_timeout(STAYS_AWAY).is_err(),
        "removed while a BAR was still mapped"
    );
    drop(bar);
    done.recv_timeout(ARRIVES)
        .map_err(|_| anyhow::anyhow!("not removed after the device was released"))?;
    if let Some(remover) = restore.remover.take() {
        remover
            .join()
            .map_err(|_| anyhow::anyhow!("the removal thread panicked"))??;
    }
    let e = env
        .backend
        .host_paths()
        .iommu_group(&edu)
        .expect_err("still in sysfs");
    ensure!(e.kind() == ErrorKind::NotFound, "{e}");
    Ok(())
}

/// Region I/O through the device file at or past the end of a BAR, in an
/// absent BAR, the absent ROM or VGA region, or a region past the table is
/// EINVAL (vfio-pci's answer; the library refuses these itself with it).
pub fn bar_io_at_the_end_or_in_an_absent_region_is_invalid<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let size = o.device.region_info(region::BAR0)?.size;
    let mut buf = [0u8; 4];
    let at = [
        (region::BAR0, size),
        (region::BAR0, size + 0x1000),
        (1, 0),
        (region::ROM, 0),
        (region::VGA, 0),
        (9, 0),
    ];
    for (index, offset) in at {
        expect_error(
            format_args!("read of region {index} at {offset:#x}"),
            o.device.read_region(index, offset, &mut buf),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
        expect_error(
            format_args!("write of region {index} at {offset:#x}"),
            o.device.write_region(index, offset, &buf),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
    }
    Ok(())
}
