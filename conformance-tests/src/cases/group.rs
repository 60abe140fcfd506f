//! Group behaviours: status, container attachment, opening devices.

use crate::{Env, Mode, expect_error};
use anyhow::{Result, ensure};
use vfio_core::{Errno, ErrorKind, Group, GroupStatus, VfioBackend};

/// A group whose devices are all bound to vfio-pci is viable, and a freshly
/// opened group has no container.
pub fn group_is_viable_and_unattached_when_opened<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    for dev in [env.targets.edu, env.targets.nvme] {
        let group = env.open_group(env.group_of(&dev)?)?;
        let status = group.status()?;
        ensure!(status == GroupStatus::VIABLE, "{dev}: status {status:?}");
    }
    Ok(())
}

/// `SET_CONTAINER` sets the container flag.
pub fn set_container_marks_the_group_attached<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let group = env.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    group.set_container(&c)?;
    let status = group.status()?;
    ensure!(
        status == GroupStatus::VIABLE | GroupStatus::CONTAINER_SET,
        "status {status:?}"
    );
    Ok(())
}

/// `UNSET_CONTAINER` clears it again, and a second unset is invalid.
pub fn unset_container_detaches_the_group<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let group = env.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    group.set_container(&c)?;
    group.unset_container()?;
    let status = group.status()?;
    ensure!(status == GroupStatus::VIABLE, "status {status:?}");
    expect_error(
        "unset without a container",
        group.unset_container(),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// A group can be open only once at a time.
pub fn opening_a_group_twice_is_busy<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let n = env.group_of(&env.targets.edu)?;
    let _first = env.open_group(n)?;
    expect_error(
        "second open",
        env.open_group(n),
        ErrorKind::Busy,
        Some(Errno::EBUSY),
    )?;
    Ok(())
}

/// A group number with no `/dev/vfio` node is not found.
pub fn missing_group_is_not_found<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    expect_error(
        "open of group 4242",
        env.open_group(4242),
        ErrorKind::NotFound,
        Some(Errno::ENOENT),
    )?;
    Ok(())
}

/// A device cannot be opened until its container has an IOMMU type.
pub fn open_device_before_set_iommu_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let group = env.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    group.set_container(&c)?;
    expect_error(
        "open before set_iommu",
        group.open_device(&env.targets.edu.to_string()),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// A name that is not a device of the group is not found (after the retry).
pub fn unknown_device_name_is_not_found<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let opened = env.open_edu()?;
    expect_error(
        "open of unknown device",
        opened.group()?.open_device("0000:00:1f.7"),
        ErrorKind::NotFound,
        Some(Errno::ENODEV),
    )?;
    Ok(())
}

/// A name with an interior NUL is refused before reaching the kernel, as
/// invalid with no errno: the kernel reads names as C strings, so it could
/// be given only the part before the NUL (and would open that device).
pub fn device_name_with_nul_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let opened = env.open_edu()?;
    expect_error(
        "open with NUL",
        opened.group()?.open_device("0000:00:02.0\0x"),
        ErrorKind::InvalidArgument,
        None,
    )?;
    Ok(())
}

/// The keep-alive ioctl is a downstream addition: upstream answers ENOTTY.
pub fn keep_alive_is_unsupported_upstream<B: crate::SuiteBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    use vfio_core::GroupKeepAlive;
    let opened = env.open_edu()?;
    expect_error(
        "keep-alive",
        opened.group()?.set_keep_alive(&env.targets.edu.to_string()),
        ErrorKind::Unsupported,
        Some(Errno::ENOTTY),
    )?;
    Ok(())
}

/// A group already attached cannot be attached again.
pub fn set_container_twice_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let group = env.open_group(env.group_of(&env.targets.edu)?)?;
    let c = env.backend.open_container()?;
    group.set_container(&c)?;
    let other = env.backend.open_container()?;
    expect_error(
        "second set_container",
        group.set_container(&other),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// Unsetting the container of a group with an open device is busy.
pub fn unset_container_with_an_open_device_is_busy<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let o = env.open_edu()?;
    expect_error(
        "unset with open device",
        o.group()?.unset_container(),
        ErrorKind::Busy,
        Some(Errno::EBUSY),
    )?;
    Ok(())
}

/// The same device can be opened a second time while the first is open.
pub fn a_device_can_be_opened_twice<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let o = env.open_edu()?;
    let second = o.group()?.open_device(&env.targets.edu.to_string())?;
    vfio_core::Device::info(&second)?;
    Ok(())
}

/// Both devices behind the PCI bridge report the same IOMMU group in sysfs.
pub fn devices_behind_a_pci_bridge_share_a_group<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "IOMMU grouping of the devices behind a PCI bridge",
    )?;
    let a = env.group_of(&env.targets.shared_edu)?;
    let b = env.group_of(&env.targets.watchdog)?;
    ensure!(a == b, "groups {a} and {b}");
    ensure!(
        a != env.group_of(&env.targets.edu)?,
        "shares a group with the lone edu"
    );
    Ok(())
}

/// A group with a device bound to another kernel driver is not viable: its
/// status has no flags, attaching it to a container is EPERM, and so its
/// vfio-pci device cannot be opened (EINVAL: no container).
pub fn group_with_a_device_on_another_driver_is_not_viable<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "IOMMU grouping of the devices behind a PCI bridge",
    )?;
    let group = env
        .backend
        .open_group(env.group_of(&env.targets.shared_edu)?)?;
    let status = group.status()?;
    ensure!(status == GroupStatus::EMPTY, "status {status:?}");
    let c = env.backend.open_container()?;
    expect_error(
        "attach a non-viable group",
        group.set_container(&c),
        ErrorKind::PermissionDenied,
        Some(Errno::EPERM),
    )?;
    expect_error(
        "open a device of a non-viable group",
        group.open_device(&env.targets.shared_edu.to_string()),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

fn open_error<B: VfioBackend>(
    group: &B::Group,
    name: &str,
) -> Result<(ErrorKind, Option<vfio_core::Errno>)> {
    match group.open_device(name) {
        Ok(_) => anyhow::bail!("{:?} opened a device", name.escape_debug().to_string()),
        Err(e) => Ok((e.kind(), e.errno())),
    }
}

/// The kernel copies at most a page of the name, its NUL included: a name of
/// 4096 bytes or more is EINVAL, while one of 4095 bytes is looked up (and
/// names no device: ENODEV).
pub fn device_name_of_a_page_or_more_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let opened = env.open_edu()?;
    for (len, want) in [
        (
            4096,
            (ErrorKind::InvalidArgument, Some(vfio_core::Errno::EINVAL)),
        ),
        (
            5000,
            (ErrorKind::InvalidArgument, Some(vfio_core::Errno::EINVAL)),
        ),
        (4095, (ErrorKind::NotFound, Some(vfio_core::Errno::ENODEV))),
    ] {
        let got = open_error::<B>(opened.group()?, &"a".repeat(len))?;
        ensure!(got == want, "a {len}-byte name: {got:?}");
    }
    Ok(())
}

/// An empty device name names no device: ENODEV.
pub fn empty_device_name_is_not_found<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let opened = env.open_edu()?;
    let got = open_error::<B>(opened.group()?, "")?;
    ensure!(
        got == (ErrorKind::NotFound, Some(vfio_core::Errno::ENODEV)),
        "{got:?}"
    );
    Ok(())
}

/// vfio-pci matches a name that starts with the device's address: trailing
/// spaces still open the device; anything else after a space is an option,
/// and options (even a well-formed `vf_token=<uuid>`) are EINVAL on a device
/// that is neither an SR-IOV PF nor a VF; a name that merely starts with the
/// address, or a prefix of it, names no device (ENODEV).
pub fn device_name_options_after_a_space_are_invalid_without_sr_iov<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(&[Mode::Type1, Mode::NoIommu], "a group behaviour")?;
    let opened = env.open_edu()?;
    let edu = env.targets.edu.to_string();
    opened
        .group()?
        .open_device(&format!("{edu}  "))
        .map_err(|e| anyhow::anyhow!("the address with trailing spaces: {e}"))?;
    let invalid = (ErrorKind::InvalidArgument, Some(vfio_core::Errno::EINVAL));
    let not_found = (ErrorKind::NotFound, Some(vfio_core::Errno::ENODEV));
    for (name, want) in [
        (format!("{edu} junk"), invalid),
        (
            format!("{edu} vf_token=2ab74924-c335-45f4-9b16-8569e5b08258"),
            invalid,
        ),
        (format!("{edu}x"), not_found),
        (edu[..edu.len() - 2].to_owned(), not_found),
    ] {
        let got = open_error::<B>(opened.group()?, &name)?;
        ensure!(got == want, "{name:?}: {got:?}");
    }
    Ok(())
}
