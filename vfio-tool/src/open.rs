//! Opening a device, after the checks that turn the kernel's bare errnos
//! into messages that say what is wrong.

use crate::cli::ModeArg;
use crate::error::ToolError;
use crate::sysfs::{self, VFIO_PCI};
use vfio_core::open::{Mode, OpenDevice, open_device};
use vfio_core::{
    Error, ErrorKind, Group, GroupStatus, HostPaths, Operation, PciAddress, VfioBackend,
};

/// The devices of `group` bound to a driver other than vfio-pci, each with
/// its driver: what makes the group not viable.
pub fn blockers(paths: &HostPaths, group: u32) -> Vec<(PciAddress, String)> {
    sysfs::group_devices(paths, group)
        .into_iter()
        .filter_map(|a| match sysfs::driver_of(paths, &a) {
            Ok(Some(d)) if d != VFIO_PCI => Some((a, d)),
            _ => None,
        })
        .collect()
}

/// The words for `blockers`: `0000:01:02.0 is bound to i6300ESB timer`.
pub fn blockers_text(blockers: &[(PciAddress, String)]) -> String {
    blockers
        .iter()
        .map(|(a, d)| format!("{a} is bound to {d}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The mode a device opens in: the one asked for, else noiommu when its
/// group is a no-IOMMU group, else type1.
pub fn mode_for(paths: &HostPaths, group: Option<u32>, asked: Option<ModeArg>) -> Mode {
    match asked {
        Some(ModeArg::Type1) => Mode::Type1,
        Some(ModeArg::Iommufd) => Mode::Iommufd,
        Some(ModeArg::Noiommu) => Mode::NoIommu,
        None => match group {
            Some(n) if !paths.group_path(n).exists() && paths.noiommu_group_path(n).exists() => {
                Mode::NoIommu
            }
            _ => Mode::Type1,
        },
    }
}

/// Opens `address` for the tool's commands: refuses a device sysfs does
/// not have, one not bound to vfio-pci, and (for the group modes) one
/// whose group is not viable, naming the devices that make it so; then
/// opens it with vfio-core's `open_device`.
pub fn open<B: VfioBackend>(
    backend: &B,
    address: &PciAddress,
    mode: Option<ModeArg>,
) -> Result<OpenDevice<B>, ToolError> {
    let paths = backend.host_paths();
    match sysfs::driver_of(paths, address)? {
        Some(d) if d == VFIO_PCI => {}
        other => {
            let bound = other.map_or("no driver".to_owned(), |d| format!("driver {d}"));
            return Err(Error::new(Operation::OpenDevice, ErrorKind::NotFound)
                .with_target(address)
                .with_detail(format_args!(
                    "the device is bound to {bound}, not vfio-pci: bind it with \
                     driver_override and drivers_probe first"
                ))
                .into());
        }
    }
    let group = paths.iommu_group(address).ok();
    let mode = mode_for(paths, group, mode);
    if let (Some(number), Mode::Type1 | Mode::NoIommu) = (group, mode) {
        let handle = if mode == Mode::Type1 {
            backend.open_group(number)?
        } else {
            backend.open_noiommu_group(number)?
        };
        if !handle.status()?.contains(GroupStatus::VIABLE) {
            let why = blockers(paths, number);
            return Err(Error::new(Operation::GroupStatus, ErrorKind::Busy)
                .with_target(address)
                .with_detail(format_args!(
                    "IOMMU group {number} is not viable: {}",
                    if why.is_empty() {
                        "a device of the group is bound to another driver".to_owned()
                    } else {
                        blockers_text(&why)
                    }
                ))
                .into());
        }
    }
    Ok(open_device(backend, address, mode)?)
}
