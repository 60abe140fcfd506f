//! The profile's types, in the order their fields are written.

use crate::error::ProfileError;
use crate::hex::{HexBytes, id, num};
use serde::{Deserialize, Serialize};
use vfio_core::{RegionCap, SparseArea};

/// The `format` string every profile starts with.
pub const FORMAT: &str = "vfio-device-profile";

/// The version of the format this crate reads and writes.
pub const VERSION: u32 = 1;

/// What vfio-pci showed of one PCI function: identity, device, region and
/// IRQ info, config space with its writable bits, and the BAR layout.
/// The crate documentation describes every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProfile {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`]; any other is refused.
    pub version: u32,
    /// Where and when the profile was taken, as the caller of
    /// [`capture`](crate::capture) said.
    pub source: Source,
    /// The PCI IDs, as config space has them.
    pub ids: PciIds,
    /// `VFIO_DEVICE_GET_INFO`.
    pub device: DeviceInfoProfile,
    /// `VFIO_DEVICE_GET_REGION_INFO` of every index below `num_regions`.
    pub regions: Vec<RegionProfile>,
    /// `VFIO_DEVICE_GET_IRQ_INFO` of every index below `num_irqs`.
    pub irqs: Vec<IrqProfile>,
    /// Config space as read through vfio-pci's config region.
    pub config: ConfigProfile,
    /// The BARs the device has.
    pub bars: Vec<BarProfile>,
}

/// Where a profile was taken. Nothing here is replayed: it is what makes a
/// profile's answers reproducible by a reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The kernel's release (`uname -r`), e.g. `6.1.0-54-amd64`.
    pub kernel_release: String,
    /// The function's PCI address, e.g. `0000:00:03.0`.
    pub pci_address: String,
    /// The driver the function was bound to (`vfio-pci`).
    pub driver: String,
    /// The IOMMU group the function was in, if the caller says (a no-IOMMU
    /// group's number for a no-IOMMU device). A replay puts the device in
    /// the same group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iommu_group: Option<u32>,
    /// When it was taken, if the caller says (any text; RFC 3339 suggested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

impl Source {
    /// The source block of the function at `address` of the host `paths`
    /// describe, on a kernel of release `kernel_release` (`uname -r`, or
    /// `/proc/sys/kernel/osrelease`): the driver is the name sysfs's
    /// `driver` link of the device points to, the IOMMU group the one its
    /// `iommu_group` link names. No date.
    pub fn of_device(
        paths: &vfio_core::HostPaths,
        address: &vfio_core::PciAddress,
        kernel_release: &str,
    ) -> Result<Self, ProfileError> {
        let link = paths.pci_device_dir(address).join("driver");
        let target = std::fs::read_link(&link).map_err(|source| ProfileError::Host {
            path: link.clone(),
            source,
        })?;
        let driver = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| ProfileError::Host {
                path: link,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!(
                        "the link points to {}, which names no driver",
                        target.display()
                    ),
                ),
            })?;
        let group = paths
            .iommu_group(address)
            .map_err(|source| ProfileError::Device {
                step: format!("reading the IOMMU group of {address}"),
                source,
            })?;
        Ok(Self {
            kernel_release: kernel_release.trim().to_owned(),
            pci_address: address.to_string(),
            driver,
            iommu_group: Some(group),
            date: None,
        })
    }
}

/// The PCI IDs at the start of config space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciIds {
    /// Vendor ID (config 0x00).
    #[serde(with = "id")]
    pub vendor: u16,
    /// Device ID (config 0x02).
    #[serde(with = "id")]
    pub device: u16,
    /// Subsystem vendor ID (config 0x2c).
    #[serde(with = "id")]
    pub subsystem_vendor: u16,
    /// Subsystem ID (config 0x2e).
    #[serde(with = "id")]
    pub subsystem_device: u16,
    /// The 24-bit class code: class, subclass, programming interface (config 0x09..0x0c).
    #[serde(with = "id")]
    pub class: u32,
    /// Revision ID (config 0x08).
    #[serde(with = "id")]
    pub revision: u8,
}

impl PciIds {
    /// The IDs as `config` has them (at least 0x30 bytes).
    pub fn from_config(config: &[u8]) -> Option<Self> {
        let u16_at = |at: usize| Some(u16::from_le_bytes([*config.get(at)?, *config.get(at + 1)?]));
        Some(Self {
            vendor: u16_at(0x00)?,
            device: u16_at(0x02)?,
            subsystem_vendor: u16_at(0x2c)?,
            subsystem_device: u16_at(0x2e)?,
            class: u32::from_le_bytes([
                *config.get(0x09)?,
                *config.get(0x0a)?,
                *config.get(0x0b)?,
                0,
            ]),
            revision: *config.get(0x08)?,
        })
    }
}

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceInfoProfile {
    /// `VFIO_DEVICE_FLAGS_*` as the kernel's bits.
    #[serde(with = "num")]
    pub flags: u32,
    /// Region count.
    pub num_regions: u32,
    /// IRQ index count.
    pub num_irqs: u32,
    /// The device-info capability chain, when the backend reports it; absent
    /// when it does not ([`vfio_core::DeviceInfo`] carries no chain, so a
    /// capture through the trait leaves this out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caps: Option<Vec<RawCapProfile>>,
}

/// A VFIO capability kept whole: its header's id and version and the bytes after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapProfile {
    /// Capability id.
    pub id: u16,
    /// Capability version.
    pub version: u16,
    /// The bytes after the 8-byte header.
    pub data: HexBytes,
}

/// One region index's `VFIO_DEVICE_GET_REGION_INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionProfile {
    /// The region index (its position in [`DeviceProfile::regions`]).
    pub index: u32,
    /// The errno the kernel refused this index with (vfio-pci answers
    /// EINVAL for the VGA region of a device that is not VGA); flags and
    /// size are then 0 and there are no caps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<i32>,
    /// `VFIO_REGION_INFO_FLAG_*` as the kernel's bits.
    #[serde(with = "num")]
    pub flags: u32,
    /// Size in bytes (0: the device lacks the region).
    #[serde(with = "num")]
    pub size: u64,
    /// The capability chain, decoded.
    pub caps: Vec<RegionCapProfile>,
}

/// A region capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegionCapProfile {
    /// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`: only these areas may be mmapped.
    SparseMmap {
        /// The areas, as the kernel lists them.
        areas: Vec<AreaProfile>,
    },
    /// `VFIO_REGION_INFO_CAP_TYPE`.
    Type {
        /// Region type.
        #[serde(with = "num")]
        region_type: u32,
        /// Region subtype.
        #[serde(with = "num")]
        subtype: u32,
    },
    /// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`.
    MsixMappable,
    /// A capability vfio-core does not decode, kept whole.
    Unknown {
        /// Capability id.
        id: u16,
        /// Capability version.
        version: u16,
        /// The bytes after the 8-byte header.
        data: HexBytes,
    },
}

/// One area of a sparse-mmap capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AreaProfile {
    /// Offset from the start of the region.
    #[serde(with = "num")]
    pub offset: u64,
    /// Size in bytes.
    #[serde(with = "num")]
    pub size: u64,
}

impl RegionCapProfile {
    /// The profile's spelling of a decoded capability. A variant vfio-core
    /// added after this crate was written is refused rather than guessed at.
    pub fn from_cap(cap: &RegionCap) -> Result<Self, ProfileError> {
        Ok(match cap {
            RegionCap::SparseMmap(areas) => Self::SparseMmap {
                areas: areas
                    .iter()
                    .map(|a| AreaProfile {
                        offset: a.offset,
                        size: a.size,
                    })
                    .collect(),
            },
            RegionCap::Type { ty, subtype } => Self::Type {
                region_type: *ty,
                subtype: *subtype,
            },
            RegionCap::MsixMappable => Self::MsixMappable,
            RegionCap::Unknown { id, version, data } => Self::Unknown {
                id: *id,
                version: *version,
                data: HexBytes(data.clone()),
            },
            other => {
                return Err(ProfileError::Unrepresentable {
                    what: format!("region capability {other:?}"),
                });
            }
        })
    }

    /// The capability as vfio-core decodes it.
    pub fn to_cap(&self) -> RegionCap {
        match self {
            Self::SparseMmap { areas } => RegionCap::SparseMmap(
                areas
                    .iter()
                    .map(|a| SparseArea {
                        offset: a.offset,
                        size: a.size,
                    })
                    .collect(),
            ),
            Self::Type {
                region_type,
                subtype,
            } => RegionCap::Type {
                ty: *region_type,
                subtype: *subtype,
            },
            Self::MsixMappable => RegionCap::MsixMappable,
            Self::Unknown { id, version, data } => RegionCap::Unknown {
                id: *id,
                version: *version,
                data: data.0.clone(),
            },
        }
    }
}

/// One IRQ index's `VFIO_DEVICE_GET_IRQ_INFO`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrqProfile {
    /// The IRQ index (its position in [`DeviceProfile::irqs`]).
    pub index: u32,
    /// The errno the kernel refused this index with (vfio-pci answers
    /// EINVAL for the ERR index of a device that is not PCI Express);
    /// flags and count are then 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<i32>,
    /// `VFIO_IRQ_INFO_*` as the kernel's bits.
    #[serde(with = "num")]
    pub flags: u32,
    /// Vectors.
    pub count: u32,
}

/// Config space as vfio-pci shows it, with what a write through vfio-pci
/// can change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigProfile {
    /// The bytes, as long as the config region (256 or 4096).
    pub bytes: HexBytes,
    /// Per byte, the bits a write through vfio-pci changed (set: writable).
    /// Only probed bits can be set.
    pub writable: HexBytes,
    /// Per byte, the bits capture probed (set: probed). A clear bit was not
    /// written, because a write there has side effects; its writability is
    /// unknown, not "read-only".
    pub probed: HexBytes,
}

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarKindProfile {
    /// 32-bit memory.
    Memory32,
    /// 64-bit memory: takes this BAR register and the next.
    Memory64,
    /// I/O ports.
    Io,
}

impl BarKindProfile {
    /// What a BAR register's low byte says it decodes: bit 0 set is I/O,
    /// else type bits 2:1 of 0b10 are 64-bit memory, anything else 32-bit.
    pub fn from_register(low: u8) -> Self {
        if low & 1 != 0 {
            Self::Io
        } else if low & 0x6 == 0x4 {
            Self::Memory64
        } else {
            Self::Memory32
        }
    }
}

/// One BAR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BarProfile {
    /// BAR index 0..=5 (also its region index).
    pub index: u32,
    /// Size in bytes (the region's).
    #[serde(with = "num")]
    pub size: u64,
    /// What it decodes, from the BAR register's low bits.
    pub kind: BarKindProfile,
    /// Prefetchable memory (bit 3 of the BAR register).
    pub prefetchable: bool,
    /// The region may be mmapped (`VFIO_REGION_INFO_FLAG_MMAP`).
    pub mmappable: bool,
    /// The BAR's bytes as read through the device file, only when capture
    /// was asked for them ([`CaptureOptions::bar_contents`](crate::CaptureOptions::bar_contents)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<HexBytes>,
}

impl DeviceProfile {
    /// Reads a profile and [`validate`](Self::validate)s it. The `format`
    /// and `version` are checked first, so a file of another version is
    /// refused as such whatever else it holds.
    pub fn from_json(text: &str) -> Result<Self, ProfileError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(ProfileError::Json)?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(ProfileError::Format {
                found: format.map(str::to_owned),
            });
        }
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(VERSION)) {
            return Err(ProfileError::Version {
                found: value.get("version").map(|v| v.to_string()),
            });
        }
        let profile: Self = serde_json::from_value(value).map_err(ProfileError::Json)?;
        profile.validate()?;
        Ok(profile)
    }

    /// The profile as pretty JSON with a trailing newline, fields in the
    /// order of the types here.
    pub fn to_json(&self) -> String {
        // Every field is a string, number, bool, list or map: this cannot fail.
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("a profile always serializes: {e}"));
        text.push('\n');
        text
    }
}
