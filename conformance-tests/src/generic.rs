//! Cases that hold for any PCI device bound to vfio-pci, given its address.
//!
//! The runner's `--device ADDR` runs these on a driver author's own hardware;
//! CI runs them on both guest devices, on both backends, except where a case
//! written for that device covers the same behaviour there
//! ([`COVERED`](crate::cases::COVERED)). A case that does not apply to a
//! device (an MSI-X case on a device without MSI-X) ends as n/a, not as a
//! pass. They never read or write a device register outside config space (a
//! register read can have side effects on unknown hardware); interrupts are
//! exercised by loopback only.

use crate::{Env, Mode, Opened, expect_error, fired, not_applicable};
use anyhow::{Context, Result, ensure};
use std::time::Duration;
use vfio_core::parse::{pci_caps, sysfs};
use vfio_core::{
    Device, DeviceFlags, DmaFlags, DmaSpace, Errno, ErrorKind, GroupStatus, Interrupt, IrqFlags,
    IrqIndex, MappedRegion, PciAddress, RegionFlags, VfioBackend, region,
};

/// A case over one device.
pub struct DeviceCase<B: VfioBackend> {
    /// What the case proves.
    pub name: &'static str,
    /// The case body, given the environment and the device.
    pub run: fn(&Env<B>, &PciAddress) -> Result<()>,
}

impl<B: VfioBackend> std::fmt::Debug for DeviceCase<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCase")
            .field("name", &self.name)
            .finish()
    }
}

/// Every device-agnostic case.
pub fn all<B: VfioBackend>() -> Vec<DeviceCase<B>> {
    macro_rules! list {
        ($($name:ident),* $(,)?) => { vec![$(DeviceCase { name: stringify!($name), run: $name::<B> }),*] };
    }
    list![
        group_is_viable_and_the_device_opens,
        sysfs_ids_match_config_space,
        read_only_ids_survive_a_config_write,
        device_info_is_pci_with_at_least_nine_regions_and_five_irq_indexes,
        region_table_is_consistent,
        mapped_bars_refuse_out_of_range_and_misaligned_access,
        capability_list_matches_irq_info,
        irq_flags_follow_the_index,
        msix_loopback_reaches_exactly_the_triggered_vectors,
        unbinding_a_vector_range_leaves_the_rest_bound,
        dma_map_and_unmap_round_trip,
        reset_answer_matches_the_reset_flag,
    ]
}

fn config_space<B: VfioBackend>(o: &Opened<B>) -> Result<Vec<u8>> {
    let size = o.device.region_info(region::CONFIG)?.size;
    let mut buf = vec![0u8; usize::try_from(size)?];
    vfio_core::access::read_exact(&o.device, region::CONFIG, 0, &mut buf)?;
    Ok(buf)
}

/// The device's group is viable, and the device opens in a Type1v2 container.
pub fn group_is_viable_and_the_device_opens<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let o = env.open(dev)?;
    let status = vfio_core::Group::status(o.group()?)?;
    ensure!(
        status == GroupStatus::VIABLE | GroupStatus::CONTAINER_SET,
        "status {status:?}"
    );
    Ok(())
}

/// sysfs's `vendor` and `device` files agree with config space.
pub fn sysfs_ids_match_config_space<B: VfioBackend>(env: &Env<B>, dev: &PciAddress) -> Result<()> {
    let o = env.open(dev)?;
    let dir = env.backend.host_paths().pci_device_dir(dev);
    let id = |file: &str| -> Result<u32> {
        let text =
            std::fs::read_to_string(dir.join(file)).with_context(|| format!("sysfs {file}"))?;
        Ok(sysfs::parse_hex_id(&text)?)
    };
    let config = o.device.read_config::<4>(0)?;
    let vendor = u32::from(u16::from_le_bytes([config[0], config[1]]));
    let device = u32::from(u16::from_le_bytes([config[2], config[3]]));
    ensure!(
        (id("vendor")?, id("device")?) == (vendor, device),
        "sysfs and config space disagree"
    );
    Ok(())
}

/// Vendor and device ID are read-only through vfio-pci.
pub fn read_only_ids_survive_a_config_write<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    let o = env.open(dev)?;
    let before = o.device.read_config::<4>(0)?;
    o.device
        .write_config(0, &[!before[0], !before[1], !before[2], !before[3]])?;
    ensure!(o.device.read_config::<4>(0)? == before, "IDs changed");
    Ok(())
}

/// vfio-pci devices are PCI, have BAR0-5, ROM, config and VGA regions (and
/// perhaps device-specific ones), and five IRQ indexes.
pub fn device_info_is_pci_with_at_least_nine_regions_and_five_irq_indexes<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    let o = env.open(dev)?;
    let info = o.device.info()?;
    ensure!(info.flags.contains(DeviceFlags::PCI), "{info:?}");
    ensure!(info.num_regions >= 9 && info.num_irqs == 5, "{info:?}");
    Ok(())
}

/// Every region index answers coherently: fixed regions at `index << 40`,
/// absent ones empty, mmappable ones readable, config space 256 or 4096 bytes
/// and never mmappable; a refused index (VGA on a non-VGA device) is EINVAL.
pub fn region_table_is_consistent<B: VfioBackend>(env: &Env<B>, dev: &PciAddress) -> Result<()> {
    let o = env.open(dev)?;
    let n = o.device.info()?.num_regions;
    for index in 0..n {
        let r = match o.device.region_info(index) {
            Ok(r) => r,
            Err(e) if index == region::VGA => {
                expect_error(
                    "VGA region info",
                    Err::<(), _>(e),
                    ErrorKind::InvalidArgument,
                    Some(Errno::EINVAL),
                )?;
                continue;
            }
            Err(e) => return Err(e).context(format!("region {index}")),
        };
        if index <= region::CONFIG {
            ensure!(
                r.offset == u64::from(index) << 40,
                "region {index}: offset {:#x}",
                r.offset
            );
        }
        ensure!(
            (r.size == 0) == (r.flags == RegionFlags::EMPTY),
            "region {index}: {r:?}"
        );
        if r.flags.contains(RegionFlags::MMAP) {
            ensure!(
                r.flags.contains(RegionFlags::READ),
                "region {index}: mmap without read"
            );
        }
        ensure!(
            r.flags.contains(RegionFlags::CAPS) != r.caps.is_empty(),
            "region {index}: {r:?}"
        );
    }
    let cfg = o.device.region_info(region::CONFIG)?;
    ensure!(
        cfg.size == 256 || cfg.size == 4096,
        "config size {:#x}",
        cfg.size
    );
    ensure!(
        !cfg.flags.contains(RegionFlags::MMAP),
        "config space mmappable"
    );
    Ok(())
}

/// Each mmappable BAR maps at its full size and refuses, without touching the
/// device, accesses at or straddling its end, with an overflowing offset, or
/// misaligned to their width: typed errors with no errno, since no kernel
/// call is involved. (Not applicable to a device with no mmappable BAR.)
pub fn mapped_bars_refuse_out_of_range_and_misaligned_access<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    let o = env.open(dev)?;
    let mut mapped = 0;
    for index in 0..6 {
        let r = o.device.region_info(index)?;
        if !r.flags.contains(RegionFlags::MMAP) {
            continue;
        }
        mapped += 1;
        let map = o.device.map_region(index)?;
        ensure!(
            map.len() == r.size,
            "BAR{index}: mapped {:#x} of {:#x}",
            map.len(),
            r.size
        );
        let at = |what: &str| format!("BAR{index}: {what}");
        let out = ErrorKind::OutOfRange;
        expect_error(at("read at the end"), map.read_u32(r.size), out, None)?;
        expect_error(
            at("read straddling the end"),
            map.read_u64(r.size - 4),
            out,
            None,
        )?;
        expect_error(at("read at u64::MAX"), map.read_u16(u64::MAX), out, None)?;
        let mis = ErrorKind::Misaligned;
        expect_error(
            at("misaligned 8-byte write"),
            map.write_u64(4, 0),
            mis,
            None,
        )?;
        expect_error(
            at("misaligned 4-byte write"),
            map.write_u32(2, 0),
            mis,
            None,
        )?;
    }
    if mapped == 0 {
        return Err(not_applicable("no BAR is mmappable"));
    }
    Ok(())
}

/// The capability list parses, and its MSI and MSI-X capabilities give the
/// vector counts IRQ info reports; the ERR index exists exactly on PCIe devices.
pub fn capability_list_matches_irq_info<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    let o = env.open(dev)?;
    let config = config_space(&o)?;
    let msix = pci_caps::msix(&config)?.map_or(0, |m| u32::from(m.table_size));
    let msi = pci_caps::msi(&config)?.map_or(0, |m| m.vectors_capable);
    ensure!(
        o.device.irq_info(IrqIndex::MSIX)?.count == msix,
        "MSI-X count vs capability ({msix})"
    );
    ensure!(
        o.device.irq_info(IrqIndex::MSI)?.count == msi,
        "MSI count vs capability ({msi})"
    );
    let pcie = pci_caps::find(&config, pci_caps::id::PCIE)?.is_some();
    match o.device.irq_info(IrqIndex::ERR) {
        Ok(info) => ensure!(
            pcie && info.count == 1,
            "ERR on a non-PCIe device: {info:?}"
        ),
        Err(e) => {
            ensure!(!pcie, "no ERR index on a PCIe device: {e}");
            expect_error(
                "ERR info",
                Err::<(), _>(e),
                ErrorKind::InvalidArgument,
                Some(Errno::EINVAL),
            )?;
        }
    }
    Ok(())
}

/// INTx is maskable and automasked; MSI and REQ are NORESIZE; MSI-X is
/// NORESIZE too, except on Linux 6.12 for a device with MSI-X, whose vectors
/// it allocates on demand; all are eventfd-capable.
pub fn irq_flags_follow_the_index<B: VfioBackend>(env: &Env<B>, dev: &PciAddress) -> Result<()> {
    let kernel = env.kernel()?;
    let o = env.open(dev)?;
    let intx = o.device.irq_info(IrqIndex::INTX)?;
    ensure!(
        intx.flags == IrqFlags::EVENTFD | IrqFlags::MASKABLE | IrqFlags::AUTOMASKED,
        "{intx:?}"
    );
    for index in [IrqIndex::MSI, IrqIndex::MSIX, IrqIndex::REQ] {
        let info = o.device.irq_info(index)?;
        let want = if index == IrqIndex::MSIX && info.count > 0 {
            crate::cases::irq::msix_flags(kernel)
        } else {
            IrqFlags::EVENTFD | IrqFlags::NORESIZE
        };
        ensure!(
            info.flags == want,
            "{info:?}, want {want:?} on Linux {}",
            kernel.series()
        );
    }
    Ok(())
}

fn bind_msix<B: VfioBackend>(env: &Env<B>, o: &Opened<B>) -> Result<Vec<B::Interrupt>> {
    let n = o.device.irq_info(IrqIndex::MSIX)?.count;
    let irqs: Vec<B::Interrupt> = (0..n)
        .map(|_| env.backend.new_interrupt())
        .collect::<vfio_core::Result<_>>()?;
    if n > 0 {
        let refs: Vec<&B::Interrupt> = irqs.iter().collect();
        o.device.enable_interrupts(IrqIndex::MSIX, &refs)?;
    }
    Ok(irqs)
}

/// With every MSI-X vector bound, loopback triggers of the first and last
/// vectors reach exactly their eventfds, and each vector has its own line in
/// /proc/interrupts. (Not applicable to a device without MSI-X.)
pub fn msix_loopback_reaches_exactly_the_triggered_vectors<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    let o = env.open(dev)?;
    let irqs = bind_msix(env, &o)?;
    let Some(last) = irqs.len().checked_sub(1) else {
        return Err(not_applicable("the device has no MSI-X vectors"));
    };
    for v in [0, last] {
        o.device.trigger_interrupts(IrqIndex::MSIX, v as u32, 1)?;
        ensure!(
            irqs[v].wait(Some(Duration::from_secs(5)))?.is_some(),
            "vector {v} did not fire"
        );
        ensure!(fired(&irqs)?.is_empty(), "other vectors fired with {v}");
        env.backend
            .host_paths()
            .vector_irq(dev, IrqIndex::MSIX, v as u32)?;
    }
    Ok(())
}

/// Unbinding the middle third of the MSI-X vectors fires nothing and leaves
/// the others bound: a trigger of every vector then signals all but the
/// unbound ones. (Not applicable to a device with fewer than 3 vectors.)
pub fn unbinding_a_vector_range_leaves_the_rest_bound<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    let o = env.open(dev)?;
    let n = o.device.irq_info(IrqIndex::MSIX)?.count as usize;
    if n < 3 {
        return Err(not_applicable(format!(
            "the device has {n} MSI-X vectors, fewer than 3"
        )));
    }
    let irqs = bind_msix(env, &o)?;
    let (start, count) = (n / 3, n / 3);
    o.device
        .unbind_interrupts(IrqIndex::MSIX, start as u32, count as u32)?;
    ensure!(fired(&irqs)?.is_empty(), "unbinding fired vectors");
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, n as u32)?;
    let want: Vec<usize> = (0..n)
        .filter(|v| !(start..start + count).contains(v))
        .collect();
    ensure!(fired(&irqs)? == want, "wrong vectors fired");
    Ok(())
}

/// A DMA buffer maps into the device's container and unmaps with its size.
pub fn dma_map_and_unmap_round_trip<B: VfioBackend>(env: &Env<B>, dev: &PciAddress) -> Result<()> {
    env.only_in(
        &[Mode::Type1, Mode::Iommufd],
        "an IOMMU mapping behaviour; a no-IOMMU container maps nothing",
    )?;
    let o = env.open(dev)?;
    let mem = env.backend.alloc_dma(0x4000)?;
    let mapping = o
        .dma
        .map_dma(&mem, 0, 0x4000, 0x80_0000, DmaFlags::READ | DmaFlags::WRITE)?;
    ensure!(mapping.unmap()? == 0x4000, "unmap size");
    Ok(())
}

/// A reset succeeds exactly when the device advertises it (else EINVAL).
pub fn reset_answer_matches_the_reset_flag<B: VfioBackend>(
    env: &Env<B>,
    dev: &PciAddress,
) -> Result<()> {
    let o = env.open(dev)?;
    let can = o.device.info()?.flags.contains(DeviceFlags::RESET);
    match o.device.reset() {
        Ok(()) => ensure!(can, "reset without the flag"),
        Err(e) => {
            ensure!(!can, "reset failed with the RESET flag: {e}");
            expect_error(
                "reset",
                Err::<(), _>(e),
                ErrorKind::InvalidArgument,
                Some(Errno::EINVAL),
            )?;
        }
    }
    Ok(())
}
