//! Container behaviours: API version, extensions, IOMMU selection.

use crate::Env;
use anyhow::{Result, ensure};
use vfio_core::{Container, ErrorKind, Extension, Group, IommuType, VfioBackend};

/// Every kernel so far reports VFIO API version 0.
pub fn api_version_is_zero<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let c = env.backend.open_container()?;
    let v = c.api_version()?;
    ensure!(v == 0, "API version {v}");
    Ok(())
}

/// A fresh container offers Type1 and Type1v2; no-IOMMU mode is not built
/// into the reference kernel (CONFIG_VFIO_NOIOMMU is off), so it answers 0.
pub fn type1_extensions_are_offered_and_noiommu_is_not<B: VfioBackend>(env: &Env<B>) -> Result<()> {
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
    let c = env.backend.open_container()?;
    let e = c
        .set_iommu(IommuType::Type1v2)
        .expect_err("set_iommu with no group");
    ensure!(
        e.kind() == ErrorKind::InvalidArgument,
        "{e} ({:?})",
        e.errno()
    );
    Ok(())
}

/// Once set, the IOMMU type cannot be set again.
pub fn set_iommu_twice_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let group = env.backend.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    group.set_container(&c)?;
    c.set_iommu(IommuType::Type1v2)?;
    let e = c
        .set_iommu(IommuType::Type1v2)
        .expect_err("second set_iommu");
    ensure!(
        e.kind() == ErrorKind::InvalidArgument,
        "{e} ({:?})",
        e.errno()
    );
    Ok(())
}
