//! `vfio info DEV`: device, region and IRQ info, and the PCI capabilities.

use super::{Report, read_config};
use crate::cli::ModeArg;
use crate::error::ToolError;
use crate::pci::{self, CapabilityList};
use serde::Serialize;
use std::io::{self, Write};
use vfio_core::{
    Device, DeviceFlags, IrqFlags, IrqIndex, PciAddress, RegionCap, RegionFlags, RegionInfo,
    VfioBackend, region,
};

/// The name of region `index` of a vfio-pci device.
pub fn region_name(index: u32) -> String {
    match index {
        0..=5 => format!("bar{index}"),
        region::ROM => "rom".to_owned(),
        region::CONFIG => "config".to_owned(),
        region::VGA => "vga".to_owned(),
        n => format!("region{n}"),
    }
}

/// The names of the flag bits set in `bits`, from `names` (bit, name).
fn flag_names(bits: u32, names: &[(u32, &'static str)]) -> Vec<&'static str> {
    names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|&(_, n)| n)
        .collect()
}

/// A VFIO region capability, decoded.
#[derive(Debug, Serialize)]
#[serde(tag = "cap", rename_all = "snake_case")]
pub enum RegionCapOut {
    /// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`: the areas that may be mmapped.
    SparseMmap {
        /// (offset, size) of each area.
        areas: Vec<(u64, u64)>,
    },
    /// `VFIO_REGION_INFO_CAP_TYPE`: a device-specific region's type.
    Type {
        /// The type.
        ty: u32,
        /// The subtype.
        subtype: u32,
    },
    /// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`: the MSI-X table may be mmapped.
    MsixMappable,
    /// A capability vfio-core does not know.
    Unknown {
        /// Its id.
        id: u16,
        /// Its version.
        version: u16,
        /// Its length in bytes, after the header.
        len: usize,
    },
}

impl RegionCapOut {
    fn from_cap(cap: &RegionCap) -> Self {
        match cap {
            RegionCap::SparseMmap(areas) => RegionCapOut::SparseMmap {
                areas: areas.iter().map(|a| (a.offset, a.size)).collect(),
            },
            RegionCap::Type { ty, subtype } => RegionCapOut::Type {
                ty: *ty,
                subtype: *subtype,
            },
            RegionCap::MsixMappable => RegionCapOut::MsixMappable,
            RegionCap::Unknown { id, version, data } => RegionCapOut::Unknown {
                id: *id,
                version: *version,
                len: data.len(),
            },
            // RegionCap is non-exhaustive: a kind added later shows as unknown.
            _ => RegionCapOut::Unknown {
                id: 0,
                version: 0,
                len: 0,
            },
        }
    }

    fn text(&self) -> String {
        match self {
            RegionCapOut::SparseMmap { areas } => {
                let a: Vec<String> = areas
                    .iter()
                    .map(|(o, s)| format!("{o:#x}+{s:#x}"))
                    .collect();
                format!(
                    "sparse mmap: {}",
                    if a.is_empty() {
                        "none".to_owned()
                    } else {
                        a.join(", ")
                    }
                )
            }
            RegionCapOut::Type { ty, subtype } => format!("type {ty:#x} subtype {subtype:#x}"),
            RegionCapOut::MsixMappable => "MSI-X mappable".to_owned(),
            RegionCapOut::Unknown { id, version, len } => {
                format!("capability {id:#x} v{version} ({len} bytes)")
            }
        }
    }
}

/// One region's info.
#[derive(Debug, Serialize)]
pub struct RegionOut {
    /// Region index.
    pub index: u32,
    /// Its name (`bar0`..`bar5`, `rom`, `config`, `vga`, `regionN`).
    pub name: String,
    /// Size in bytes (0: absent).
    pub size: u64,
    /// Offset of the region in the device file.
    pub offset: u64,
    /// The raw flag bits.
    pub flags: u32,
    /// The flags by name (`read`, `write`, `mmap`, `caps`).
    pub flag_names: Vec<&'static str>,
    /// Its capabilities, decoded.
    pub caps: Vec<RegionCapOut>,
    /// Why `VFIO_DEVICE_GET_REGION_INFO` failed, if it did.
    pub error: Option<String>,
}

impl RegionOut {
    fn from_info(info: &RegionInfo) -> Self {
        RegionOut {
            index: info.index,
            name: region_name(info.index),
            size: info.size,
            offset: info.offset,
            flags: info.flags.bits(),
            flag_names: flag_names(
                info.flags.bits(),
                &[
                    (RegionFlags::READ.bits(), "read"),
                    (RegionFlags::WRITE.bits(), "write"),
                    (RegionFlags::MMAP.bits(), "mmap"),
                    (RegionFlags::CAPS.bits(), "caps"),
                ],
            ),
            caps: info.caps.iter().map(RegionCapOut::from_cap).collect(),
            error: None,
        }
    }
}

/// One IRQ index's info.
#[derive(Debug, Serialize)]
pub struct IrqOut {
    /// The index.
    pub index: u32,
    /// Its name (`INTx`, `MSI`, `MSI-X`, `ERR`, `REQ`).
    pub name: String,
    /// How many vectors it has.
    pub count: u32,
    /// The raw flag bits.
    pub flags: u32,
    /// The flags by name (`eventfd`, `maskable`, `automasked`, `noresize`).
    pub flag_names: Vec<&'static str>,
    /// Why `VFIO_DEVICE_GET_IRQ_INFO` failed, if it did.
    pub error: Option<String>,
}

/// `vfio info`'s output.
#[derive(Debug, Serialize)]
pub struct Info {
    /// The device.
    pub address: String,
    /// How it was opened (`type1`, `iommufd`, `noiommu`).
    pub mode: String,
    /// The device flags' raw bits.
    pub flags: u32,
    /// The device flags by name.
    pub flag_names: Vec<&'static str>,
    /// The regions, by index.
    pub regions: Vec<RegionOut>,
    /// The IRQ indexes.
    pub irqs: Vec<IrqOut>,
    /// The decoded header of config space, as vfio-pci shows it.
    pub header: Option<pci::Header>,
    /// The PCI capabilities of config space, as vfio-pci shows it.
    pub capabilities: CapabilityList,
}

/// What `vfio info` says of a region index the kernel refused: vfio-pci
/// answers EINVAL for the VGA region of a device that is not VGA, which is
/// no failure, so it is said as such; any other refusal is the error.
fn region_refusal(index: u32, e: vfio_core::Error) -> String {
    if index == vfio_core::region::VGA && e.errno() == Some(vfio_core::Errno::EINVAL) {
        return "none: not a VGA device (the kernel answers EINVAL)".to_owned();
    }
    ToolError::from(e).to_string()
}

/// What `vfio info` says of an IRQ index the kernel refused: vfio-pci
/// answers EINVAL for the error-reporting index of a device that is not PCI
/// Express, said as such; any other refusal is the error.
fn irq_refusal(index: IrqIndex, e: vfio_core::Error) -> String {
    if index == IrqIndex::ERR && e.errno() == Some(vfio_core::Errno::EINVAL) {
        return "none: not PCI Express (the kernel answers EINVAL)".to_owned();
    }
    ToolError::from(e).to_string()
}

/// Gathers `vfio info` for `address`.
pub fn info<B: VfioBackend>(
    backend: &B,
    address: &PciAddress,
    mode: Option<ModeArg>,
) -> Result<Info, ToolError> {
    let opened = crate::open::open(backend, address, mode)?;
    let device = &opened.device;
    let dev = device.info()?;
    let regions = (0..dev.num_regions)
        .map(|i| match device.region_info(i) {
            Ok(r) => RegionOut::from_info(&r),
            Err(e) => RegionOut {
                index: i,
                name: region_name(i),
                size: 0,
                offset: 0,
                flags: 0,
                flag_names: Vec::new(),
                caps: Vec::new(),
                error: Some(region_refusal(i, e)),
            },
        })
        .collect();
    let irqs = (0..dev.num_irqs)
        .map(|i| {
            let index = IrqIndex(i);
            match device.irq_info(index) {
                Ok(q) => IrqOut {
                    index: i,
                    name: index.to_string(),
                    count: q.count,
                    flags: q.flags.bits(),
                    flag_names: flag_names(
                        q.flags.bits(),
                        &[
                            (IrqFlags::EVENTFD.bits(), "eventfd"),
                            (IrqFlags::MASKABLE.bits(), "maskable"),
                            (IrqFlags::AUTOMASKED.bits(), "automasked"),
                            (IrqFlags::NORESIZE.bits(), "noresize"),
                        ],
                    ),
                    error: None,
                },
                Err(e) => IrqOut {
                    index: i,
                    name: index.to_string(),
                    count: 0,
                    flags: 0,
                    flag_names: Vec::new(),
                    error: Some(irq_refusal(index, e)),
                },
            }
        })
        .collect();
    let config = read_config::<B>(device)?;
    Ok(Info {
        address: address.to_string(),
        mode: opened.dma.mode().to_string(),
        flags: dev.flags.bits(),
        flag_names: flag_names(
            dev.flags.bits(),
            &[
                (DeviceFlags::RESET.bits(), "reset"),
                (DeviceFlags::PCI.bits(), "pci"),
                (DeviceFlags::PLATFORM.bits(), "platform"),
                (DeviceFlags::AMBA.bits(), "amba"),
                (DeviceFlags::CCW.bits(), "ccw"),
                (DeviceFlags::AP.bits(), "ap"),
                (DeviceFlags::FSL_MC.bits(), "fsl-mc"),
                (DeviceFlags::CAPS.bits(), "caps"),
                (DeviceFlags::CDX.bits(), "cdx"),
            ],
        ),
        regions,
        irqs,
        header: pci::header(&config),
        capabilities: pci::decode_at(&config, address.device(), address.function()),
    })
}

/// Writes the capability lists as `lspci -vvv` lays them out, with
/// `indent` before each capability line.
pub fn write_capabilities(
    out: &mut dyn Write,
    caps: &CapabilityList,
    indent: &str,
) -> io::Result<()> {
    for cap in caps.standard.iter().chain(&caps.extended) {
        writeln!(out, "{indent}{}", cap.header_line())?;
        for (i, line) in cap.details.iter().enumerate() {
            // A line continuing a register goes one step further in, as
            // lspci sets it.
            let more = if cap.detail_indents.get(i).is_some_and(|&d| d > 0) {
                "    "
            } else {
                ""
            };
            writeln!(out, "{indent}    {more}{line}")?;
        }
    }
    if let Some(e) = &caps.standard_error {
        writeln!(out, "{indent}Capabilities: <{e}>")?;
    }
    if let Some(e) = &caps.extended_error {
        writeln!(out, "{indent}Extended capabilities: <{e}>")?;
    }
    Ok(())
}

impl Report for Info {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{} (opened with {})", self.address, self.mode)?;
        if let Some(h) = &self.header {
            writeln!(
                out,
                "  [{:04x}:{:04x}] class {:06x} rev {:02x}",
                h.vendor_id, h.device_id, h.class, h.revision
            )?;
        }
        writeln!(
            out,
            "  flags: {} ({:#x}), {} regions, {} IRQ indexes",
            self.flag_names.join(" "),
            self.flags,
            self.regions.len(),
            self.irqs.len()
        )?;
        writeln!(out, "Regions:")?;
        for r in &self.regions {
            if let Some(e) = &r.error {
                writeln!(out, "  {:<7} {e}", r.name)?;
                continue;
            }
            if r.size == 0 {
                writeln!(out, "  {:<7} absent", r.name)?;
                continue;
            }
            writeln!(
                out,
                "  {:<7} size {:#x} at file offset {:#x} [{}]",
                r.name,
                r.size,
                r.offset,
                r.flag_names.join(" ")
            )?;
            for cap in &r.caps {
                writeln!(out, "          {}", cap.text())?;
            }
        }
        writeln!(out, "IRQs:")?;
        for q in &self.irqs {
            match &q.error {
                Some(e) => writeln!(out, "  {:<6} {e}", q.name)?,
                None => writeln!(
                    out,
                    "  {:<6} count {} [{}]",
                    q.name,
                    q.count,
                    q.flag_names.join(" ")
                )?,
            }
        }
        writeln!(out, "PCI capabilities:")?;
        write_capabilities(out, &self.capabilities, "  ")
    }
}
