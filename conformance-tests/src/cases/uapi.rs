//! Partial and read-only region mappings, sparse-mmap areas,
//! `VFIO_DEVICE_FEATURE` probes, PCI hot reset, unmap-all and the IOMMU
//! geometry.

use crate::{Env, Kernel, Mode, expect_error, not_applicable};
use anyhow::{Result, ensure};
use vfio_core::uapi::{DependentDevice, Feature, FeatureFlags, RegionAccess, sparse_areas};
use vfio_core::{
    Container, Device, DmaFlags, DmaSpace, Errno, ErrorKind, Extension, MappedRegion, VfioBackend,
    region,
};

/// `edu`'s identification register and its liveness register (reads back
/// the inverse of what was written).
const EDU_ID: u64 = 0x00;
const EDU_LIVENESS: u64 = 0x04;

/// The address width of the QEMU guest's VT-d on `kernel`, and of the
/// mock twin's IOMMU: 39 bits (QEMU 7.2's default) on Linux 6.1 and when
/// the kernel is not known, 48 on Linux 6.12 (xtask's guest gives that
/// guest `aw-bits=48`: `GuestKernel::iommu_address_bits`).
pub fn guest_address_bits(kernel: Option<Kernel>) -> u32 {
    match kernel {
        Some(Kernel::V6_12) => 48,
        _ => 39,
    }
}

/// The VT-d units' maximum guest address width, from the capability
/// register sysfs shows (`class/iommu/dmar*/intel-iommu/cap`, hex; MGAW
/// is bits 21:16, plus one): the narrowest unit's, `None` without VT-d.
pub fn vtd_address_bits(sysfs: &std::path::Path) -> Option<u32> {
    std::fs::read_dir(sysfs.join("class/iommu"))
        .ok()?
        .filter_map(|unit| {
            let cap = std::fs::read_to_string(unit.ok()?.path().join("intel-iommu/cap")).ok()?;
            let cap = u64::from_str_radix(cap.trim(), 16).ok()?;
            Some(((cap >> 16) & 0x3f) as u32 + 1)
        })
        .min()
}

/// The IOMMU address width of the run's host: what its VT-d reports in
/// sysfs ([`vtd_address_bits`]), else the guest's on the run's kernel
/// ([`guest_address_bits`]: the mock's sysfs has no IOMMU class).
pub fn iommu_address_bits<B: VfioBackend>(env: &Env<B>) -> u32 {
    vtd_address_bits(env.backend.host_paths().sysfs())
        .unwrap_or_else(|| guest_address_bits(env.kernel))
}

/// A page of `edu`'s BAR0 mapped read-only reads the identification
/// register as the whole mapping does, and refuses every write in software
/// (permission denied, no errno: a store would fault the process); a page
/// mapped read-write reaches the liveness register; a range from a page
/// offset sees the BAR from there.
pub fn edu_bar0_maps_in_part_and_read_only<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let ro = o
        .device
        .map_region_range(region::BAR0, 0, 0x1000, RegionAccess::ReadOnly)?;
    ensure!(ro.len() == 0x1000, "mapped {:#x} bytes", ro.len());
    let id = ro.read_u32(EDU_ID)?;
    ensure!(id == 0x0100_00ed, "id {id:#010x}");
    expect_error(
        "write through a read-only mapping",
        ro.write_u32(EDU_LIVENESS, 1),
        ErrorKind::PermissionDenied,
        None,
    )?;
    expect_error(
        "read past a 0x1000-byte mapping",
        ro.read_u32(0x1000),
        ErrorKind::OutOfRange,
        None,
    )?;
    let rw = o
        .device
        .map_region_range(region::BAR0, 0, 0x100, RegionAccess::ReadWrite)?;
    ensure!(rw.len() == 0x100, "mapped {:#x} bytes", rw.len());
    rw.write_u32(EDU_LIVENESS, 0x1234_5678)?;
    let got = rw.read_u32(EDU_LIVENESS)?;
    ensure!(got == !0x1234_5678, "liveness read {got:#x}");
    let got = ro.read_u32(EDU_LIVENESS)?;
    ensure!(
        got == !0x1234_5678,
        "liveness through the read-only page {got:#x}"
    );
    // A second page: the same bytes as the whole mapping has there.
    let whole = o.device.map_region(region::BAR0)?;
    let page1 = o
        .device
        .map_region_range(region::BAR0, 0x1000, 0x1000, RegionAccess::ReadOnly)?;
    for at in [0u64, 0x80, 0xffc] {
        let (a, b) = (page1.read_u32(at)?, whole.read_u32(0x1000 + at)?);
        ensure!(
            a == b,
            "offset {at:#x} of page 1: {a:#x}, whole mapping {b:#x}"
        );
    }
    Ok(())
}

/// The partial mappings the kernel refuses, all EINVAL: an offset that is
/// not page-aligned and a length of 0 (mmap(2)), config space and the ROM
/// (`vfio_pci_core_mmap` maps BARs only), a range ending past the BAR
/// (`req_start + req_len > phys_len`, refused before the mmap, since the
/// device file holds the next region there).
pub fn partial_maps_the_kernel_refuses_are_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let size = o.device.region_info(region::BAR0)?.size;
    for (index, offset, len) in [
        (region::BAR0, 0x800, 0x1000),
        (region::BAR0, 0, 0),
        (region::BAR0, size, 0x1000),
        (region::BAR0, size - 0x1000, 0x2000),
        (region::CONFIG, 0, 0x1000),
        (region::ROM, 0, 0x1000),
    ] {
        expect_error(
            format_args!("map of region {index} at {offset:#x}+{len:#x}"),
            o.device
                .map_region_range(index, offset, len, RegionAccess::ReadOnly),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
    }
    Ok(())
}

/// A BAR with sparse-mmap areas is mapped area by area: accesses inside an
/// area reach the BAR, accesses in a hole are out of range with no errno.
///
/// Mock-only ([`mock::only_cases`](crate::mock::only_cases), on a host
/// whose device reports the capability): no x86 vfio-pci device reports a
/// sparse-mmap capability (`vfio_pci_ioctl_get_region_info` adds
/// MSIX_MAPPABLE to the BAR holding the MSI-X table instead, as
/// `nvme_bar0_is_mmappable_with_the_msix_mappable_capability` checks; only
/// variant drivers add sparse areas), so the guest's devices cannot show
/// it and the mock's sparse option (`PciDeviceBuilder::sparse_mmap`) is
/// checked on no kernel. Not applicable on targets with no sparse BAR.
pub fn a_sparse_bar_maps_only_its_areas<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    for target in [env.targets.edu, env.targets.nvme] {
        let o = env.open(&target)?;
        for index in 0..6 {
            let info = o.device.region_info(index)?;
            let Some(areas) = sparse_areas(&info) else {
                continue;
            };
            let mapped = o.device.map_region(index)?;
            ensure!(mapped.len() == info.size, "len {:#x}", mapped.len());
            for a in areas.iter().filter(|a| a.size >= 4) {
                mapped.read_u32(a.offset)?;
            }
            let hole = (0..info.size).step_by(4).find(|at| {
                !areas
                    .iter()
                    .any(|a| *at >= a.offset && at + 4 <= a.offset + a.size)
            });
            if let Some(at) = hole {
                expect_error(
                    format_args!("read in a hole at {at:#x}"),
                    mapped.read_u32(at),
                    ErrorKind::OutOfRange,
                    None,
                )?;
            }
            return Ok(());
        }
    }
    Err(not_applicable(
        "no x86 vfio-pci device reports a sparse-mmap capability (MSI-X tables are mappable)",
    ))
}

/// What `VFIO_DEVICE_FEATURE` probes answer on `edu` (vfio-pci, no variant
/// driver, no SR-IOV): the three LOW_POWER features take SET only; every
/// other feature is ENOTTY (migration and dirty tracking need a variant
/// driver's ops, the VF token a PF with SR-IOV, BUS_MASTER is vfio-cdx's).
/// A LOW_POWER_EXIT SET on a device not in low power succeeds.
pub fn edu_feature_probes_get_vfio_pcis_answers<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    o.device
        .device_feature(Feature::LOW_POWER_EXIT.flags() | FeatureFlags::SET, &mut [])?;
    for f in [
        Feature::LOW_POWER_ENTRY,
        Feature::LOW_POWER_ENTRY_WITH_WAKEUP,
        Feature::LOW_POWER_EXIT,
    ] {
        let got = o.device.probe_feature(f)?;
        ensure!(got == FeatureFlags::SET, "{f:?}: {got:?}");
    }
    for f in [
        Feature::PCI_VF_TOKEN,
        Feature::MIGRATION,
        Feature::MIG_DEVICE_STATE,
        Feature::DMA_LOGGING_START,
        Feature::DMA_LOGGING_STOP,
        Feature::DMA_LOGGING_REPORT,
        Feature::MIG_DATA_SIZE,
        Feature::BUS_MASTER,
        Feature(0x1234),
    ] {
        expect_error(
            format_args!("probe of {f:?}"),
            o.device.probe_feature(f),
            ErrorKind::Unsupported,
            Some(Errno::ENOTTY),
        )?;
    }
    Ok(())
}

/// The `VFIO_DEVICE_FEATURE` calls the kernel refuses with EINVAL: an
/// unknown flag bit, GET with SET without PROBE, neither GET nor SET nor
/// PROBE, a GET of a SET-only feature, a SET whose data is shorter than the
/// feature's (LOW_POWER_ENTRY_WITH_WAKEUP takes 8 bytes).
pub fn device_feature_calls_the_kernel_refuses_are_invalid<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let entry = Feature::LOW_POWER_ENTRY.flags();
    let wakeup = Feature::LOW_POWER_ENTRY_WITH_WAKEUP.flags();
    for (what, flags, len) in [
        ("unknown flag bit", entry | FeatureFlags(1 << 19), 0),
        (
            "GET with SET",
            entry | FeatureFlags::GET | FeatureFlags::SET,
            0,
        ),
        ("no GET, SET or PROBE", entry, 0),
        ("GET of a SET-only feature", entry | FeatureFlags::GET, 0),
        ("short SET", wakeup | FeatureFlags::SET, 4),
    ] {
        let mut data = vec![0u8; len];
        expect_error(
            what,
            o.device.device_feature(flags, &mut data),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
    }
    Ok(())
}

/// `edu` and the NVMe controller sit on the root bus, with no hotplug slot
/// and no bridge above them: neither a slot nor a bus reset is possible,
/// and hot-reset info is ENODEV. A hot reset with the device's own group is
/// ENODEV too; with no groups, Linux 6.12 answers EINVAL first (a
/// zero-length array is for cdev-opened devices only), 6.1 ENODEV.
pub fn root_bus_devices_cannot_be_hot_reset<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1, Mode::NoIommu],
        "a hot reset naming its groups (a cdev's, by iommufd ownership, is not modelled)",
    )?;
    let kernel = env.kernel()?;
    for target in [env.targets.edu, env.targets.nvme] {
        let o = env.open(&target)?;
        expect_error(
            format_args!("hot-reset info of {target}"),
            o.device.hot_reset_info(),
            ErrorKind::NotFound,
            Some(Errno::ENODEV),
        )?;
        expect_error(
            format_args!("hot reset of {target} with its group"),
            o.device.hot_reset(&[o.group()?]),
            ErrorKind::NotFound,
            Some(Errno::ENODEV),
        )?;
        let (kind, errno) = match kernel {
            Kernel::V6_1 => (ErrorKind::NotFound, Errno::ENODEV),
            Kernel::V6_12 => (ErrorKind::InvalidArgument, Errno::EINVAL),
        };
        expect_error(
            format_args!("hot reset of {target} with no groups"),
            o.device.hot_reset(&[]),
            kind,
            Some(errno),
        )?;
    }
    Ok(())
}

/// The sysfs name of the watchdog's driver.
const WATCHDOG_DRIVER: &str = "i6300ESB timer";

/// Behind the guest's PCI bridge (bus 1, no hotplug slot), with the
/// watchdog removed so that its group is viable, the second `edu` can be
/// bus-reset: hot-reset info lists it alone, with its group; the reset is
/// EINVAL with no groups (a zero-length array is for cdev-opened devices;
/// 6.1 wants at least one), with more groups than devices on the bus, and
/// with a group that is not its own (`vfio_pci_dev_set_hot_reset`: a
/// device of the set in none of the groups), and succeeds with its group.
/// The watchdog is brought back, bound to its driver, before the case
/// ends.
///
/// Linux 6.12 only: on Debian's 6.1 (6.1.190), attaching the group after
/// the watchdog's removal hits a kernel BUG (`list_del corruption` in
/// intel-iommu's `device_block_translation`, from
/// `iommu_group_claim_dma_owner` under `VFIO_GROUP_SET_CONTAINER`), so the
/// case does not apply there, on the mock imitating 6.1 either.
pub fn a_bus_reset_behind_the_bridge_needs_the_group_of_every_device_on_the_bus<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "a hot reset of the bridged group, whose watchdog the no-IOMMU guest leaves \
         out of any group (a cdev's, by iommufd ownership, is not modelled)",
    )?;
    if env.kernel()? == Kernel::V6_1 {
        return Err(not_applicable(
            "Linux 6.1's intel-iommu corrupts a list (kernel BUG) attaching a group \
             whose device was removed",
        ));
    }
    let (shared, watchdog) = (env.targets.shared_edu, env.targets.watchdog);
    env.host.remove(&watchdog)?;
    let result = (|| {
        let o = env.open(&shared)?;
        let info = o.device.hot_reset_info()?;
        let want = [DependentDevice {
            address: shared,
            group_id: env.group_of(&shared)?,
        }];
        ensure!(
            info.flags == 0 && info.devices == want,
            "hot-reset info {info:?}"
        );
        expect_error(
            "hot reset with no groups",
            o.device.hot_reset(&[]),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
        expect_error(
            "hot reset with two groups for one device",
            o.device.hot_reset(&[o.group()?, o.group()?]),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
        let edu = env.open_edu()?;
        expect_error(
            "hot reset with another device's group",
            o.device.hot_reset(&[edu.group()?]),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
        o.device.hot_reset(&[o.group()?])?;
        // The device answers as before.
        let id = u16::from_le_bytes(o.device.read_config::<2>(0)?);
        ensure!(id == 0x1234, "vendor {id:#06x} after the reset");
        Ok(())
    })();
    env.host.rescan(&watchdog, WATCHDOG_DRIVER)?;
    result
}

/// Unmap-all (`VFIO_DMA_UNMAP_FLAG_ALL`, offered as `VFIO_UNMAP_ALL`)
/// unmaps three mappings at once and returns their total size; the
/// DMA-entries-available count goes back up by three; a second unmap-all
/// unmaps nothing.
pub fn unmap_all_returns_the_total_and_gives_back_dma_entries<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "a Type1 container's unmap-all and DMA-available count",
    )?;
    let opened = env.open_edu()?;
    let o = opened.type1()?;
    ensure!(
        o.check_extension(Extension::UNMAP_ALL)? == 1,
        "VFIO_UNMAP_ALL not offered"
    );
    let avail = o.iommu_info()?.dma_avail;
    let rw = DmaFlags::READ | DmaFlags::WRITE;
    let sizes = [0x1000u64, 0x2000, 0x4000];
    let memory: Vec<B::DmaMemory> = sizes
        .iter()
        .map(|&s| env.backend.alloc_dma(s as usize))
        .collect::<vfio_core::Result<_>>()?;
    for (i, (m, &s)) in memory.iter().zip(&sizes).enumerate() {
        o.map_dma_raw(m, 0, s, 0x10_0000 * (i as u64 + 1), rw)?;
    }
    let during = o.iommu_info()?.dma_avail;
    ensure!(
        during == avail.map(|a| a - 3),
        "dma_avail {during:?} with three mappings, {avail:?} before"
    );
    let total = o.unmap_all()?;
    ensure!(total == 0x7000, "unmap-all unmapped {total:#x}");
    let after = o.iommu_info()?.dma_avail;
    ensure!(
        after == avail,
        "dma_avail {after:?} after, {avail:?} before"
    );
    let again = o.unmap_all()?;
    ensure!(again == 0, "a second unmap-all unmapped {again:#x}");
    // The IOVAs are free again.
    o.map_dma_raw(&memory[0], 0, 0x1000, 0x10_0000, rw)?;
    ensure!(o.unmap_dma(0x10_0000, 0x1000)? == 0x1000);
    Ok(())
}

/// Type1's IOVA ranges follow the IOMMU's address width
/// ([`iommu_address_bits`]: VT-d's MGAW on a kernel, the host setting on
/// the mock): 0..=0xfedfffff and 0xfef00000..=2^aw-1 (the
/// MSI window 0xfee00000..=0xfeefffff reserved). The last page below 2^aw
/// maps; a page at 2^aw is EINVAL.
pub fn iova_ranges_follow_the_iommu_address_width<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let aw = iommu_address_bits(env);
    let last = if aw >= 64 { u64::MAX } else { (1u64 << aw) - 1 };
    env.only_in(
        &[Mode::Type1, Mode::Iommufd],
        "an IOMMU's address width (no-IOMMU mode has none)",
    )?;
    let o = env.open_edu()?;
    let ranges: Vec<(u64, u64)> = o
        .dma
        .iova_ranges()?
        .iter()
        .map(|r| (r.start, r.end))
        .collect();
    ensure!(
        ranges == [(0, 0xfedf_ffff), (0xfef0_0000, last)],
        "ranges {ranges:x?} with a {aw}-bit IOMMU"
    );
    let memory = env.backend.alloc_dma(0x1000)?;
    let rw = DmaFlags::READ | DmaFlags::WRITE;
    o.dma.map_dma_raw(&memory, 0, 0x1000, last - 0xfff, rw)?;
    ensure!(o.dma.unmap_dma(last - 0xfff, 0x1000)? == 0x1000);
    if aw < 64 {
        expect_error(
            format_args!("map at 2^{aw}"),
            o.dma.map_dma_raw(&memory, 0, 0x1000, 1 << aw, rw),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
    }
    Ok(())
}
