//! Container behaviours: API version, extensions, IOMMU selection.

use crate::{Env, Mode, expect_error};
use anyhow::{Result, ensure};
use vfio_core::{Container, DmaSpace, Errno, ErrorKind, Extension, Group, IommuType, VfioBackend};

/// Every kernel so far reports VFIO API version 0.
pub fn api_version_is_zero<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a container behaviour")?;
    let c = env.backend.open_container()?;
    let v = c.api_version()?;
    ensure!(v == 0, "API version {v}");
    Ok(())
}

/// A fresh container offers Type1 and Type1v2; no-IOMMU mode is not built
/// into the reference kernel (CONFIG_VFIO_NOIOMMU is off), so it answers 0.
pub fn type1_extensions_are_offered_and_noiommu_is_not<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "with no-IOMMU mode off, a container offers Type1 only",
    )?;
    let c = env.backend.open_container()?;
    ensure!(
        c.check_extension(Extension::TYPE1_IOMMU)? == 1,
        "type1 not offered"
    );
    ensure!(
        c.check_extension(Extension::TYPE1V2_IOMMU)? == 1,
        "type1v2 not offered"
    );
    let noiommu = c.check_extension(Extension::NOIOMMU_IOMMU)?;
    ensure!(noiommu == 0, "noiommu extension answered {noiommu}");
    Ok(())
}

/// The IOMMU type can only be chosen once a group is attached.
pub fn set_iommu_without_a_group_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a container behaviour")?;
    let c = env.backend.open_container()?;
    expect_error(
        "set_iommu with no group",
        c.set_iommu(env.iommu_type()),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// Once set, the IOMMU type cannot be set again.
pub fn set_iommu_twice_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a container behaviour")?;
    let group = env.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    group.set_container(&c)?;
    c.set_iommu(env.iommu_type())?;
    expect_error(
        "second set_iommu",
        c.set_iommu(env.iommu_type()),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// Choosing an IOMMU type no loaded driver offers fails with ENODEV
/// (no-IOMMU mode is not built into the reference kernel).
pub fn set_iommu_to_a_type_no_driver_offers_is_not_found<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "with no-IOMMU mode off, no driver offers NoIommu",
    )?;
    let group = env.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    group.set_container(&c)?;
    expect_error(
        "set_iommu(NoIommu)",
        c.set_iommu(IommuType::NoIommu),
        ErrorKind::NotFound,
        Some(Errno::ENODEV),
    )?;
    Ok(())
}

/// IOMMU ioctls on a container without an IOMMU type are invalid.
pub fn iommu_calls_before_set_iommu_are_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a container behaviour")?;
    let c = env.backend.open_container()?;
    expect_error(
        "iommu_info before set_iommu",
        c.iommu_info(),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    expect_error(
        "unmap before set_iommu",
        c.unmap_dma(0x10_0000, 4096),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// A second group joins a container that already has an IOMMU type.
pub fn second_group_joins_a_container_with_an_iommu<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1, Mode::NoIommu],
        "a group and container behaviour",
    )?;
    let o = env.open_edu()?;
    let nvme = env.open_group(env.group_of(&env.targets.nvme)?)?;
    nvme.set_container(o.container()?)?;
    let status = nvme.status()?;
    ensure!(
        status.contains(vfio_core::GroupStatus::CONTAINER_SET),
        "status {status:?}"
    );
    let device = nvme.open_device(&env.targets.nvme.to_string())?;
    vfio_core::Device::info(&device)?;
    Ok(())
}

/// Type1 reports a page-size bitmap that includes 4 KiB, and the usable IOVA
/// ranges, which leave out the x86 MSI window at 0xfee00000.
pub fn iommu_info_reports_4k_pages_and_ranges_without_the_msi_window<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(&[Mode::Type1], "a Type1 container behaviour")?;
    let o = env.open_edu()?;
    let info = o.type1()?.iommu_info()?;
    ensure!(
        info.iova_pgsizes & 0x1000 != 0,
        "pgsizes {:#x}",
        info.iova_pgsizes
    );
    let ranges = info.iova_ranges.as_deref().unwrap_or_default();
    ensure!(!ranges.is_empty(), "no IOVA ranges: {info:?}");
    ensure!(
        ranges
            .iter()
            .all(|r| r.end < 0xfee0_0000 || r.start > 0xfeef_ffff),
        "ranges include the MSI window: {ranges:x?}"
    );
    ensure!(info.dma_avail.is_some(), "no DMA limit reported: {info:?}");
    Ok(())
}

/// The answer of every known extension, on a fresh container and on one set
/// to Type1v2. `UPDATE_VADDR` is only offered once an IOMMU is set.
pub fn extension_answers_match_type1<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1], "a Type1 container behaviour")?;
    // (extension, fresh container, Type1v2 container)
    let table = [
        (Extension::TYPE1_IOMMU, 1, 1),
        (Extension::SPAPR_TCE_IOMMU, 0, 0),
        (Extension::TYPE1V2_IOMMU, 1, 1),
        (Extension::DMA_CC_IOMMU, 0, 0),
        (Extension::EEH, 0, 0),
        (Extension::TYPE1_NESTING_IOMMU, 1, 1),
        (Extension::SPAPR_TCE_V2_IOMMU, 0, 0),
        (Extension::NOIOMMU_IOMMU, 0, 0),
        (Extension::UNMAP_ALL, 1, 1),
        (Extension::UPDATE_VADDR, 0, 1),
        (Extension(4242), 0, 0),
    ];
    let fresh = env.backend.open_container()?;
    let o = env.open_edu()?;
    for (which, c, column) in [("fresh", &fresh, 0), ("type1v2", o.type1()?, 1)] {
        let got: Vec<(u32, u32)> = table
            .iter()
            .map(|(e, ..)| Ok((e.0, c.check_extension(*e)?)))
            .collect::<vfio_core::Result<_>>()?;
        let want: Vec<(u32, u32)> = table
            .iter()
            .map(|&(e, f, t)| (e.0, if column == 0 { f } else { t }))
            .collect();
        ensure!(got == want, "{which} container: {got:?}");
    }
    Ok(())
}

/// The exact IOMMU geometry of the guest's VT-d: 4 KiB, 2 MiB and 1 GiB
/// pages, a 39-bit address width with the MSI window cut out, and 65535
/// mappings available on a fresh container.
pub fn iommu_info_reports_the_vtd_geometry<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1], "a Type1 container behaviour")?;
    let o = env.open_edu()?;
    let info = o.type1()?.iommu_info()?;
    ensure!(
        info.iova_pgsizes == 0x4020_1000,
        "pgsizes {:#x}",
        info.iova_pgsizes
    );
    let ranges: Vec<(u64, u64)> = info
        .iova_ranges
        .iter()
        .flatten()
        .map(|r| (r.start, r.end))
        .collect();
    // The run's VT-d width: 39 bits on the 6.1 guest, 48 on the 6.12 guest.
    let aw = crate::cases::uapi::iommu_address_bits(env);
    ensure!(
        ranges == [(0, 0xfedf_ffff), (0xfef0_0000, (1 << aw) - 1)],
        "ranges {ranges:x?}"
    );
    ensure!(
        info.dma_avail == Some(65535),
        "dma_avail {:?}",
        info.dma_avail
    );
    Ok(())
}
