//! What sysfs says of PCI devices and IOMMU groups, under a [`HostPaths`].

use std::fs;
use std::path::Path;
use vfio_core::parse::sysfs::parse_hex_id;
use vfio_core::{Error, ErrorKind, HostPaths, Operation, PciAddress};

/// The driver vfio-pci devices are bound to.
pub const VFIO_PCI: &str = "vfio-pci";

/// The name of the driver `address` is bound to, `None` when it is bound
/// to none. Errors when sysfs has no such device.
pub fn driver_of(paths: &HostPaths, address: &PciAddress) -> Result<Option<String>, Error> {
    let dir = paths.pci_device_dir(address);
    if !dir.exists() {
        return Err(Error::new(Operation::OpenDevice, ErrorKind::NotFound)
            .with_target(address)
            .with_detail(format_args!("no PCI device {address} ({})", dir.display())));
    }
    Ok(fs::read_link(dir.join("driver"))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())))
}

/// The PCI addresses in a sysfs directory of device links, sorted.
fn addresses_in(dir: &Path) -> Vec<PciAddress> {
    let mut out: Vec<PciAddress> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    out.sort();
    out
}

/// The devices bound to vfio-pci, sorted by address.
pub fn vfio_pci_devices(paths: &HostPaths) -> Vec<PciAddress> {
    addresses_in(&paths.sysfs().join("bus/pci/drivers").join(VFIO_PCI))
}

/// Every PCI device sysfs lists, sorted by address.
pub fn pci_devices(paths: &HostPaths) -> Vec<PciAddress> {
    addresses_in(&paths.sysfs().join("bus/pci/devices"))
}

/// The devices of IOMMU group `group`, sorted by address.
pub fn group_devices(paths: &HostPaths, group: u32) -> Vec<PciAddress> {
    addresses_in(
        &paths
            .sysfs()
            .join("kernel/iommu_groups")
            .join(group.to_string())
            .join("devices"),
    )
}

/// A hex id file of a device (`vendor`, `device`, `class`), if readable.
pub fn id_of(paths: &HostPaths, address: &PciAddress, name: &str) -> Option<u32> {
    let text = fs::read_to_string(paths.pci_device_dir(address).join(name)).ok()?;
    parse_hex_id(text.trim()).ok()
}

/// `path` as the host's own tree names it: a path under the paths' dev
/// root is shown under `/dev` (the mock keeps its tree in a temporary
/// directory), others unchanged.
pub fn shown(paths: &HostPaths, path: &Path) -> String {
    match path.strip_prefix(paths.dev()) {
        Ok(rest) => Path::new("/dev").join(rest).display().to_string(),
        Err(_) => path.display().to_string(),
    }
}
