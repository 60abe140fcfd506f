//! The fake sysfs and devfs trees: enough of `/sys` and `/dev/vfio` for
//! vfio-core's lookups ([`HostPaths`]) to work unchanged.

use crate::KernelVersion;
use crate::group::GroupCore;
use crate::pci_device::PciDevice;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use vfio_core::{HostPaths, PciAddress};

/// Whether the kernel has no-IOMMU mode, and whether it is turned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoIommuMode {
    /// Built without `CONFIG_VFIO_NOIOMMU` (the reference kernel): the
    /// `enable_unsafe_noiommu_mode` parameter does not exist.
    #[default]
    Unsupported,
    /// Built with it, parameter `N`.
    Disabled,
    /// Built with it, parameter `Y`: no-IOMMU groups can be used.
    Enabled,
}

/// `/sys/devices/pci<domain>:<bus>/<address>`, the device's real directory.
fn device_dir(paths: &HostPaths, d: &PciDevice) -> PathBuf {
    paths
        .sysfs()
        .join("devices")
        .join(format!(
            "pci{:04x}:{:02x}",
            d.address.domain(),
            d.address.bus()
        ))
        .join(d.address.to_string())
}

fn device_target(d: &PciDevice) -> String {
    format!(
        "devices/pci{:04x}:{:02x}/{}",
        d.address.domain(),
        d.address.bus(),
        d.address
    )
}

fn write_param(paths: &HostPaths, module: &str, name: &str, value: &str) -> io::Result<()> {
    let dir = paths.sysfs().join("module").join(module).join("parameters");
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(name), format!("{value}\n"))
}

/// What the trees show.
pub(crate) struct Tree<'a> {
    pub groups: &'a [std::sync::Arc<GroupCore>],
    pub noiommu: NoIommuMode,
    pub kernel: KernelVersion,
    /// Each vfio-pci device's `vfio-dev` index.
    pub cdev_index: &'a BTreeMap<PciAddress, u32>,
}

/// `<device>/vfio-dev/vfioN`, the vfio device's class device.
fn cdev_dir(paths: &HostPaths, d: &PciDevice, index: u32) -> PathBuf {
    device_dir(paths, d)
        .join("vfio-dev")
        .join(format!("vfio{index}"))
}

/// Adds a vfio device's class device (`vfio_device_add`): the sysfs entry
/// `<device>/vfio-dev/vfioN` (linked from `/sys/class/vfio-dev`), and on a
/// kernel with `CONFIG_VFIO_DEVICE_CDEV` the node `/dev/vfio/devices/vfioN`,
/// which a no-IOMMU device does not get.
///
/// The class device came with Linux 6.1 ("vfio: Add struct device to
/// vfio_device"), so the mock shows it on both kernels; only the cdev node
/// needs `CONFIG_VFIO_DEVICE_CDEV`.
// Unconfirmed: the entry on 6.1 (and that 6.1 deletes it only when the
// removal completes, with the device's directory), from the commit, not
// from 6.1's source.
fn add_cdev(paths: &HostPaths, tree: &Tree<'_>, d: &PciDevice, noiommu: bool) -> io::Result<()> {
    let Some(&index) = tree.cdev_index.get(&d.address) else {
        return Ok(());
    };
    let name = format!("vfio{index}");
    let dir = cdev_dir(paths, d, index);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("uevent"), "")?;
    let class = paths.sysfs().join("class/vfio-dev");
    fs::create_dir_all(&class)?;
    symlink(
        format!("../../{}/vfio-dev/{name}", device_target(d)),
        class.join(&name),
    )?;
    if tree.kernel.has_device_cdev() && !noiommu {
        // devtmpfs makes `/dev/vfio/devices` with the first node in it.
        let node = paths.device_cdev_path(&name);
        if let Some(dir) = node.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(node, b"")?;
    }
    Ok(())
}

/// Deletes a vfio device's class device and cdev node (`vfio_device_del`).
pub(crate) fn remove_cdev(paths: &HostPaths, d: &PciDevice, index: u32) -> io::Result<()> {
    let name = format!("vfio{index}");
    let node = paths.device_cdev_path(&name);
    ignore_missing(fs::remove_file(&node))?;
    // devtmpfs removes the directory with its last node.
    if let Some(dir) = node.parent() {
        let _ = fs::remove_dir(dir);
    }
    ignore_missing(fs::remove_file(
        paths.sysfs().join("class/vfio-dev").join(&name),
    ))?;
    ignore_missing(fs::remove_dir_all(device_dir(paths, d).join("vfio-dev")))
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Creates the whole tree, as the devices are now: a removed device is
/// not in it.
pub(crate) fn create(paths: &HostPaths, tree: &Tree<'_>) -> io::Result<()> {
    let (groups, noiommu) = (tree.groups, tree.noiommu);
    let sys = paths.sysfs();
    fs::create_dir_all(sys.join("bus/pci/devices"))?;
    fs::create_dir_all(sys.join("bus/pci/drivers/vfio-pci"))?;
    fs::create_dir_all(sys.join("kernel/iommu_groups"))?;
    match noiommu {
        NoIommuMode::Unsupported => {}
        NoIommuMode::Disabled => write_param(paths, "vfio", "enable_unsafe_noiommu_mode", "N")?,
        NoIommuMode::Enabled => write_param(paths, "vfio", "enable_unsafe_noiommu_mode", "Y")?,
    }
    write_param(paths, "vfio_iommu_type1", "allow_unsafe_interrupts", "N")?;
    write_param(
        paths,
        "vfio_iommu_type1",
        "dma_entry_limit",
        &crate::iommu::DMA_ENTRY_LIMIT.to_string(),
    )?;
    write_param(paths, "vfio_pci", "ids", "")?;
    write_param(paths, "vfio_pci", "nointxmask", "N")?;
    write_param(paths, "vfio_pci", "disable_idle_d3", "N")?;
    fs::create_dir_all(paths.procfs())?;
    // TAINT_USER (bit 6), which vfio_group_find_or_alloc adds as it makes
    // each no-IOMMU group; it is never cleared.
    // Unconfirmed: that the guest has no other taint bit (an unsigned or
    // out-of-tree module would add its own).
    let tainted = if groups.iter().any(|g| g.noiommu) {
        64
    } else {
        0
    };
    let kernel_dir = paths.procfs().join("sys/kernel");
    fs::create_dir_all(&kernel_dir)?;
    fs::write(kernel_dir.join("tainted"), format!("{tainted}\n"))?;
    let vfio_dev = paths.dev().join("vfio");
    fs::create_dir_all(&vfio_dev)?;
    fs::write(paths.container_path(), b"")?;
    if tree.kernel.has_iommufd() {
        fs::write(paths.iommufd_path(), b"")?;
    }

    for group in groups {
        let group_dir = sys
            .join("kernel/iommu_groups")
            .join(group.number.to_string());
        fs::create_dir_all(group_dir.join("devices"))?;
        if group.has_vfio_device() {
            let node = if group.noiommu {
                paths.noiommu_group_path(group.number)
            } else {
                paths.group_path(group.number)
            };
            fs::write(node, b"")?;
        }
        for d in group.devices.iter().filter(|d| !d.is_removed()) {
            let dir = device_dir(paths, d);
            fs::create_dir_all(&dir)?;
            let (vendor, device, sub_vendor, sub_device, class, revision) = d.ids();
            for (name, value) in [
                ("vendor", format!("0x{vendor:04x}")),
                ("device", format!("0x{device:04x}")),
                ("subsystem_vendor", format!("0x{sub_vendor:04x}")),
                ("subsystem_device", format!("0x{sub_device:04x}")),
                ("class", format!("0x{class:06x}")),
                ("revision", format!("0x{revision:02x}")),
                ("irq", d.intx_irq.to_string()),
            ] {
                fs::write(dir.join(name), format!("{value}\n"))?;
            }
            fs::write(dir.join("config"), d.config_bytes())?;
            symlink(
                format!("../../../kernel/iommu_groups/{}", group.number),
                dir.join("iommu_group"),
            )?;
            symlink(
                format!("../../../../{}", device_target(d)),
                group_dir.join("devices").join(d.address.to_string()),
            )?;
            symlink(
                format!("../../../{}", device_target(d)),
                sys.join("bus/pci/devices").join(d.address.to_string()),
            )?;
            if let Some(driver) = d.driver.name() {
                let driver_dir = sys.join("bus/pci/drivers").join(driver);
                fs::create_dir_all(&driver_dir)?;
                symlink(
                    format!("../../../bus/pci/drivers/{driver}"),
                    dir.join("driver"),
                )?;
                symlink(
                    format!("../../../../{}", device_target(d)),
                    driver_dir.join(d.address.to_string()),
                )?;
            }
            // 6.12 deletes the class device as removal begins.
            if !d.is_unregistering() || tree.kernel.opens_devices_being_removed() {
                add_cdev(paths, tree, d, group.noiommu)?;
            }
        }
    }
    Ok(())
}

/// Removes a hot-unplugged device from sysfs, and the group's `/dev/vfio`
/// node when no vfio-pci device is left in it.
pub(crate) fn remove_device(
    paths: &HostPaths,
    group: &GroupCore,
    d: &PciDevice,
    cdev_index: Option<u32>,
) -> io::Result<()> {
    let sys = paths.sysfs();
    let name = d.address.to_string();
    if let Some(index) = cdev_index {
        remove_cdev(paths, d, index)?;
    }
    ignore_missing(fs::remove_file(sys.join("bus/pci/devices").join(&name)))?;
    ignore_missing(fs::remove_file(
        sys.join("kernel/iommu_groups")
            .join(group.number.to_string())
            .join("devices")
            .join(&name),
    ))?;
    if let Some(driver) = d.driver.name() {
        ignore_missing(fs::remove_file(
            sys.join("bus/pci/drivers").join(driver).join(&name),
        ))?;
    }
    ignore_missing(fs::remove_dir_all(device_dir(paths, d)))?;
    if !group.has_vfio_device() {
        let node = if group.noiommu {
            paths.noiommu_group_path(group.number)
        } else {
            paths.group_path(group.number)
        };
        ignore_missing(fs::remove_file(node))?;
    }
    Ok(())
}
