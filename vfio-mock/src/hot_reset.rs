//! PCI hot reset (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`,
//! `VFIO_DEVICE_PCI_HOT_RESET`) and `VFIO_DEVICE_FEATURE` on the simulated
//! host, whose topology (bus numbers, groups, drivers) decides the answers.

use crate::host::{HostInner, KernelVersion};
use crate::pci_device::{Driver, PciDevice};
use nix::errno::Errno;
use std::sync::Arc;
use vfio_core::uapi::{DependentDevice, FeatureFlags, HotResetInfo, vfio_pci_feature_answer};

/// The devices a bus reset of `device` would reset, with their groups, in
/// address order. A device on the root bus (bus 0 here: the host bridge's)
/// has neither a slot reset (no hotplug slot) nor a bus reset (no bridge
/// above it): ENODEV, `pci_probe_reset_slot` and `pci_probe_reset_bus`
/// both refusing. Behind a bridge, every device on the same bus.
pub(crate) fn reset_set(
    host: &HostInner,
    device: &PciDevice,
) -> Result<Vec<(Arc<PciDevice>, u32)>, Errno> {
    let at = device.address;
    if at.bus() == 0 {
        return Err(Errno::ENODEV);
    }
    let mut set: Vec<(Arc<PciDevice>, u32)> = host
        .groups
        .values()
        .flat_map(|g| {
            g.devices
                .iter()
                .filter(|d| {
                    d.address.domain() == at.domain()
                        && d.address.bus() == at.bus()
                        && !d.is_removed()
                })
                .map(|d| (d.clone(), g.number))
        })
        .collect();
    set.sort_by_key(|(d, _)| (d.address.device(), d.address.function()));
    Ok(set)
}

/// `vfio_pci_ioctl_get_pci_hot_reset_info` for a device opened through its
/// group: flags 0, each device with its group number.
pub(crate) fn info(host: &HostInner, device: &PciDevice) -> Result<HotResetInfo, Errno> {
    let devices = reset_set(host, device)?
        .into_iter()
        .map(|(d, group_id)| DependentDevice {
            address: d.address,
            group_id,
        })
        .collect();
    Ok(HotResetInfo { flags: 0, devices })
}

/// `vfio_pci_ioctl_pci_hot_reset` for a device opened through its group,
/// with the groups numbered `groups`, in the kernel's order of checks:
/// no groups (EINVAL on Linux 6.12, where a zero-length array is for cdev
/// devices only), no reset possible (ENODEV), no groups on 6.1 or more
/// groups than affected devices (EINVAL), an affected device not bound to
/// vfio-pci (`vfio_pci_dev_set_resettable`: EINVAL), an affected device in
/// none of the groups (EINVAL); then every affected device is reset.
pub(crate) fn hot_reset(host: &HostInner, device: &PciDevice, groups: &[u32]) -> Result<(), Errno> {
    if groups.is_empty() && host.kernel == KernelVersion::V6_12 {
        return Err(Errno::EINVAL);
    }
    let set = reset_set(host, device)?;
    if groups.is_empty() || groups.len() > set.len() {
        return Err(Errno::EINVAL);
    }
    if set.iter().any(|(d, _)| d.driver != Driver::VfioPci) {
        return Err(Errno::EINVAL);
    }
    if set.iter().any(|(_, g)| !groups.contains(g)) {
        return Err(Errno::EINVAL);
    }
    for (d, _) in &set {
        d.bus_reset();
    }
    Ok(())
}

/// `VFIO_DEVICE_FEATURE` on a device bound to vfio-pci (no variant
/// driver, no SR-IOV): [`vfio_pci_feature_answer`]. The LOW_POWER SETs it
/// accepts are no-ops here: the mock models no D3 state (the kernel's
/// device wakes at the next ioctl or access through its file anyway).
pub(crate) fn feature(flags: FeatureFlags, data_len: usize) -> Result<(), Errno> {
    vfio_pci_feature_answer(flags, data_len, false).map(drop)
}
