//! `vfio list`: the devices bound to vfio-pci and their groups.

use super::Report;
use crate::open::{blockers, blockers_text};
use crate::sysfs;
use serde::Serialize;
use std::io::{self, Write};
use vfio_core::{Group, GroupStatus, VfioBackend};

/// A device of the group bound to another driver, which makes the group not viable.
#[derive(Debug, Serialize)]
pub struct Blocker {
    /// The device of the group bound elsewhere.
    pub address: String,
    /// The driver it is bound to.
    pub driver: String,
}

/// One device bound to vfio-pci.
#[derive(Debug, Serialize)]
pub struct ListedDevice {
    /// Its PCI address.
    pub address: String,
    /// Vendor ID, from sysfs.
    pub vendor_id: Option<u32>,
    /// Device ID, from sysfs.
    pub device_id: Option<u32>,
    /// Class code, from sysfs.
    pub class: Option<u32>,
    /// Its IOMMU group, `None` when sysfs shows none.
    pub group: Option<u32>,
    /// The group's node (`/dev/vfio/N` or `/dev/vfio/noiommu-N`), if present.
    pub group_node: Option<String>,
    /// The device cdev (`/dev/vfio/devices/vfioN`, Linux 6.6 and later), if present.
    pub cdev_node: Option<String>,
    /// The group's viability as the kernel reports it (`VFIO_GROUP_GET_STATUS`);
    /// `None` when the group could not be opened (see `group_error`).
    pub viable: Option<bool>,
    /// Why the group could not be opened to ask, if it could not.
    pub group_error: Option<String>,
    /// The group's devices bound to a driver other than vfio-pci.
    pub blockers: Vec<Blocker>,
}

/// `vfio list`'s output.
#[derive(Debug, Serialize)]
pub struct List {
    /// The devices bound to vfio-pci, by address.
    pub devices: Vec<ListedDevice>,
}

/// Lists the devices bound to vfio-pci under the backend's host paths.
pub fn list<B: VfioBackend>(backend: &B) -> List {
    let paths = backend.host_paths();
    let devices = sysfs::vfio_pci_devices(paths)
        .into_iter()
        .map(|address| {
            let group = paths.iommu_group(&address).ok();
            let mut group_node = None;
            let mut viable = None;
            let mut group_error = None;
            if let Some(n) = group {
                let (node, noiommu) = if paths.group_path(n).exists() {
                    (Some(paths.group_path(n)), false)
                } else if paths.noiommu_group_path(n).exists() {
                    (Some(paths.noiommu_group_path(n)), true)
                } else {
                    (None, false)
                };
                if let Some(node) = node {
                    group_node = Some(sysfs::shown(paths, &node));
                    let opened = if noiommu {
                        backend.open_noiommu_group(n)
                    } else {
                        backend.open_group(n)
                    };
                    match opened.and_then(|g| g.status()) {
                        Ok(s) => viable = Some(s.contains(GroupStatus::VIABLE)),
                        Err(e) => group_error = Some(crate::error::ToolError::from(e).to_string()),
                    }
                }
            }
            let cdev_node = paths
                .device_cdev_name(&address)
                .ok()
                .map(|name| paths.device_cdev_path(&name))
                .filter(|p| p.exists())
                .map(|p| sysfs::shown(paths, &p));
            ListedDevice {
                address: address.to_string(),
                vendor_id: sysfs::id_of(paths, &address, "vendor"),
                device_id: sysfs::id_of(paths, &address, "device"),
                class: sysfs::id_of(paths, &address, "class"),
                group,
                group_node,
                cdev_node,
                viable,
                group_error,
                blockers: group
                    .map(|n| blockers(paths, n))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(a, d)| Blocker {
                        address: a.to_string(),
                        driver: d,
                    })
                    .collect(),
            }
        })
        .collect();
    List { devices }
}

fn id(v: Option<u32>, width: usize) -> String {
    v.map_or_else(|| "?".repeat(width), |v| format!("{v:0width$x}"))
}

impl Report for List {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.devices.is_empty() {
            return writeln!(out, "no device is bound to vfio-pci");
        }
        for d in &self.devices {
            let group = d
                .group
                .map_or("no IOMMU group".to_owned(), |n| format!("group {n}"));
            let state = match (d.viable, &d.group_error) {
                (Some(true), _) => "viable".to_owned(),
                (Some(false), _) if d.blockers.is_empty() => "not viable".to_owned(),
                (Some(false), _) => {
                    let b: Vec<(vfio_core::PciAddress, String)> = d
                        .blockers
                        .iter()
                        .filter_map(|b| Some((b.address.parse().ok()?, b.driver.clone())))
                        .collect();
                    format!("not viable: {}", blockers_text(&b))
                }
                (None, Some(e)) => format!("viability unknown: {e}"),
                (None, None) => "no group node".to_owned(),
            };
            writeln!(
                out,
                "{} [{}:{}] class {}  {group}, {state}",
                d.address,
                id(d.vendor_id, 4),
                id(d.device_id, 4),
                id(d.class, 6),
            )?;
            if let Some(node) = &d.group_node {
                writeln!(out, "    group node: {node}")?;
            }
            if let Some(node) = &d.cdev_node {
                writeln!(out, "    cdev node:  {node}")?;
            }
        }
        Ok(())
    }
}
