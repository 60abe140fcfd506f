//! No-IOMMU mode: a host without an IOMMU whose vfio was loaded with
//! `enable_unsafe_noiommu_mode=1` (the 6.12 guest booted without
//! intel-iommu), as Linux 6.12's `drivers/vfio/group.c` and
//! `drivers/vfio/container.c` answer.
//!
//! Every case runs in no-IOMMU mode only (n/a elsewhere, on both twins
//! alike).

use crate::{Env, Mode, expect_error};
use anyhow::{Context, Result, ensure};
use vfio_core::{
    Container, Device, DmaFlags, DmaMemory, DmaSpace, Errno, ErrorKind, Extension, Group,
    GroupStatus, IommuType, VfioBackend, region,
};

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// `TAINT_USER`: the bit of `/proc/sys/kernel/tainted` vfio sets when it
/// gives a device a no-IOMMU group.
const TAINT_USER: u64 = 1 << 6;

fn noiommu_only<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::NoIommu], "a no-IOMMU behaviour")
}

/// The kind the library gives `errno`, with the errno.
fn kernel_says(errno: Errno) -> (ErrorKind, Option<Errno>) {
    (ErrorKind::from_errno(errno), Some(errno))
}

/// Each vfio-pci device has a no-IOMMU group of its own, whose node is
/// `/dev/vfio/noiommu-N`: there is no `/dev/vfio/N` (ENOENT), and the
/// no-IOMMU group opens viable and unattached.
pub fn noiommu_groups_are_named_noiommu_n<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    noiommu_only(env)?;
    let paths = env.backend.host_paths();
    let (edu, nvme) = (
        env.group_of(&env.targets.edu)?,
        env.group_of(&env.targets.nvme)?,
    );
    ensure!(edu != nvme, "edu and NVMe share no-IOMMU group {edu}");
    for n in [edu, nvme] {
        ensure!(
            paths.noiommu_group_path(n).exists(),
            "no {}",
            paths.noiommu_group_path(n).display()
        );
        ensure!(
            !paths.group_path(n).exists(),
            "{} exists",
            paths.group_path(n).display()
        );
        let (kind, errno) = kernel_says(Errno::ENOENT);
        expect_error(
            format_args!("open /dev/vfio/{n}"),
            env.backend.open_group(n),
            kind,
            errno,
        )?;
        let group = env.backend.open_noiommu_group(n)?;
        let status = group.status()?;
        ensure!(
            status == GroupStatus::VIABLE,
            "group {n}: status {status:?}"
        );
    }
    Ok(())
}

/// A container holding a no-IOMMU group takes only the no-IOMMU driver:
/// it answers 0 for Type1 and Type1v2 and 1 for NoIommu, refuses Type1v2
/// (ENODEV: no allowed driver offers it) and takes NoIommu. (A container
/// with no group polls every driver, so it offers both.)
pub fn a_noiommu_container_takes_only_the_noiommu_driver<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    noiommu_only(env)?;
    let c = env.backend.open_container()?;
    let fresh = [
        c.check_extension(Extension::TYPE1V2_IOMMU)?,
        c.check_extension(Extension::NOIOMMU_IOMMU)?,
    ];
    ensure!(fresh == [1, 1], "a fresh container answers {fresh:?}");
    let group = env
        .backend
        .open_noiommu_group(env.group_of(&env.targets.edu)?)?;
    group.set_container(&c)?;
    let attached = [
        c.check_extension(Extension::TYPE1_IOMMU)?,
        c.check_extension(Extension::TYPE1V2_IOMMU)?,
        c.check_extension(Extension::NOIOMMU_IOMMU)?,
    ];
    ensure!(
        attached == [0, 0, 1],
        "with the no-IOMMU group: {attached:?}"
    );
    let (kind, errno) = kernel_says(Errno::ENODEV);
    expect_error(
        "set_iommu(Type1v2)",
        c.set_iommu(IommuType::Type1v2),
        kind,
        errno,
    )?;
    c.set_iommu(IommuType::NoIommu)?;
    ensure!(
        c.check_extension(Extension::NOIOMMU_IOMMU)? == 1,
        "NoIommu set, the extension is gone"
    );
    ensure!(!c.translates(), "a no-IOMMU container translates");
    Ok(())
}

/// The no-IOMMU driver implements no IOMMU ioctl: IOMMU info, map and
/// unmap are ENOTTY (`vfio_noiommu_ioctl`).
pub fn noiommu_map_unmap_and_info_are_enotty<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    noiommu_only(env)?;
    let o = env.open_edu()?;
    let c = o.container()?;
    let mem = env.backend.alloc_dma(0x1000)?;
    let (kind, errno) = kernel_says(Errno::ENOTTY);
    expect_error("IOMMU info", c.iommu_info(), kind, errno)?;
    expect_error(
        "map",
        c.map_dma_raw(&mem, 0, 0x1000, 0x10_0000, RW),
        kind,
        errno,
    )?;
    expect_error("unmap", c.unmap_dma(0x10_0000, 0x1000), kind, errno)?;
    Ok(())
}

/// Giving a device a no-IOMMU group taints the kernel: `TAINT_USER`
/// (bit 6) is set in `/proc/sys/kernel/tainted`.
pub fn noiommu_groups_taint_the_kernel<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    noiommu_only(env)?;
    let path = env.backend.host_paths().procfs().join("sys/kernel/tainted");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let tainted: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("{}: {text:?}", path.display()))?;
    ensure!(
        tainted & TAINT_USER != 0,
        "tainted is {tainted:#x}, without TAINT_USER"
    );
    Ok(())
}

/// A no-IOMMU device has no cdev (vfio adds its device without one), so
/// there is no `/dev/vfio/devices` and opening the device's cdev is
/// ENOENT.
pub fn a_noiommu_device_has_no_cdev<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    noiommu_only(env)?;
    let devices = env.backend.host_paths().dev().join("vfio/devices");
    ensure!(!devices.exists(), "{} exists", devices.display());
    let (kind, errno) = kernel_says(Errno::ENOENT);
    expect_error(
        "open the edu's cdev",
        env.backend.open_device_cdev(&env.targets.edu),
        kind,
        errno,
    )?;
    Ok(())
}

/// With nothing to translate, a mapping maps nothing and gives the device
/// the buffer's physical address (`DmaMapping::device_address` is
/// `DmaMemory::physical_address`): edu's DMA engine, given it, copies a
/// pattern from the buffer into its own and back into the buffer's second
/// page.
pub fn edu_dma_reaches_a_buffer_at_its_physical_address<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    noiommu_only(env)?;
    let o = env.open_edu()?;
    o.device.set_bus_master(true)?;
    let bar0 = o.device.map_region(region::BAR0)?;
    let mem = env.backend.alloc_dma(0x2000)?;
    let mapping = o.dma.map_dma(&mem, 0, 0x2000, 0x10_0000, RW)?;
    let (out, back) = (mapping.device_address(0)?, mapping.device_address(0x1000)?);
    ensure!(
        (out, back) == (mem.physical_address(0)?, mem.physical_address(0x1000)?),
        "device addresses {out:#x} and {back:#x} are not the pages' physical addresses"
    );
    ensure!(
        out % 0x1000 == 0 && back % 0x1000 == 0,
        "{out:#x}, {back:#x}"
    );
    let pattern: Vec<u8> = (0..128u8).map(|b| b ^ 0xa5).collect();
    mem.write_at(0, &pattern)?;
    mem.wmb();
    crate::cases::dma_fault::edu_dma(&bar0, out, 0, pattern.len() as u64, false)?;
    crate::cases::dma_fault::edu_dma(&bar0, back, 0, pattern.len() as u64, true)?;
    mem.rmb();
    let mut got = vec![0u8; pattern.len()];
    mem.read_at(0x1000, &mut got)?;
    ensure!(got == pattern, "the DMA round trip changed the data");
    Ok(())
}
