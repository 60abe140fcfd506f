//! Device profiles: what vfio-pci shows of a PCI function, captured once
//! through any [`VfioBackend`](vfio_core::VfioBackend) and replayed by
//! `vfio-mock`, so a driver's tests run in CI without the hardware.
//!
//! [`capture`] reads an opened device's info, region and IRQ tables, config
//! space and BAR layout, and probes which config bits a write through
//! vfio-pci changes (skipping the bits where a write acts on the device:
//! [`probe_plan`]). [`DeviceProfile::to_json`] writes the result;
//! [`DeviceProfile::from_json`] reads one back and
//! [`validate`](DeviceProfile::validate)s it; `vfio-mock`'s
//! `PciDeviceBuilder::from_profile` builds a simulated device that answers
//! exactly as the profile says. Capturing that device gives the same
//! profile back.
//!
//! ```
//! use vfio_core::{Container, Group, IommuType, VfioBackend};
//! use vfio_mock::{MockBackend, PciDeviceBuilder, profiles};
//! use vfio_profile::{CaptureOptions, DeviceProfile, Source, capture};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = profiles::qemu_guest().build()?;
//! let backend = host.backend();
//! let edu = profiles::edu_address();
//! let group = backend.open_group(backend.host_paths().iommu_group(&edu)?)?;
//! let container = backend.open_container()?;
//! group.set_container(&container)?;
//! container.set_iommu(IommuType::Type1v2)?;
//! let device = group.open_device(&edu.to_string())?;
//! let source = Source {
//!     kernel_release: "6.1.0-54-amd64".into(),
//!     pci_address: edu.to_string(),
//!     driver: "vfio-pci".into(),
//!     iommu_group: None,
//!     date: None,
//! };
//! let profile = capture::<MockBackend>(&device, &CaptureOptions::new(source))?;
//! assert_eq!(profile.ids.vendor, 0x1234);
//!
//! // Written, read back, and replayed by a new mock device.
//! let profile = DeviceProfile::from_json(&profile.to_json())?;
//! let replay = vfio_mock::MockHost::builder()
//!     .device(edu, 1, PciDeviceBuilder::from_profile(&profile))
//!     .build()?;
//! # drop(replay);
//! # Ok(())
//! # }
//! ```
//!
//! # The format, field by field (version 1)
//!
//! A profile is one JSON object; its fields are always written in this
//! order, numbers that are IDs, flags, sizes or offsets as `"0x…"` strings,
//! and byte arrays as rows of 16 bytes prefixed by their offset
//! (`"010: 00 00 a0 fe 00 00 00 00 00 00 00 00 00 00 00 00"`), like
//! `lspci -xxx`, so a change shows as one row in a diff. Unknown fields
//! are refused.
//!
//! - `format`: `"vfio-device-profile"`.
//! - `version`: `1`. A reader of this version refuses any other.
//! - `source`: where it was taken, as the caller of [`capture`] says;
//!   nothing in it is replayed but the group. `kernel_release` (`uname -r`),
//!   `pci_address`, `driver`, and optionally `iommu_group` and `date`. What differs between
//!   hosts and is not the device's belongs here.
//! - `ids`: `vendor`, `device`, `subsystem_vendor`, `subsystem_device`
//!   (4 hex digits), `class` (6), `revision` (2), as config space has them
//!   (checked).
//! - `device`: `VFIO_DEVICE_GET_INFO`: `flags` (`VFIO_DEVICE_FLAGS_*`),
//!   `num_regions`, `num_irqs`, and `caps`, the device-info capability
//!   chain as raw capabilities (`id`, `version`, `data` after the header),
//!   present only when the backend reports it. vfio-core's `DeviceInfo`
//!   carries no chain, so [`capture`] leaves it out; on x86 vfio-pci adds
//!   one only for a device that can complete atomic operations (Linux 6.7+).
//! - `regions`: one entry per index below `num_regions`, in order:
//!   `index`; `refused`, the errno when the kernel refused the index (VGA on
//!   a device that is not VGA: EINVAL, 22), absent otherwise; `flags`
//!   (`VFIO_REGION_INFO_FLAG_*`); `size`; `caps`, each with a `type`:
//!   `sparse_mmap` with `areas` (`offset`, `size`), `type` with
//!   `region_type` and `subtype`, `msix_mappable`, or `unknown` with `id`,
//!   `version` and `data`. The region's offset in the device file is not
//!   recorded: it is vfio-pci's fixed layout (index << 40).
//! - `irqs`: one entry per index below `num_irqs`: `index`, `refused` (ERR
//!   on a device that is not PCI Express), `flags` (`VFIO_IRQ_INFO_*`),
//!   `count`.
//! - `config`: `bytes`, config space as read through the config region
//!   (256 or 4096 bytes: what vfio-pci virtualizes, as it shows it);
//!   `writable`, per byte the bits a write changed; `probed`, per byte the
//!   bits [`capture`] wrote to find out. A bit not probed is unknown, not
//!   read-only: the mock replays such bits as vfio-pci treats them for the
//!   capabilities it knows, and as read-only elsewhere.
//! - `bars`: one entry per BAR region present: `index`, `size`, `kind`
//!   (`memory32`, `memory64`, `io`, from the BAR register), `prefetchable`,
//!   `mmappable` (the region's mmap flag), and `contents` (the BAR's bytes
//!   as the device file reads them; the MSI-X table reads as `ff`) only when
//!   [`CaptureOptions::bar_contents`] asked for them.
//!
//! Not captured: the expansion ROM's contents (reading the ROM enables its
//! decoding), BAR contents unless asked, and anything a config write
//! would have to be made for beyond the probe plan.
#![deny(missing_docs)]

mod capture;
mod chain;
mod error;
mod format;
mod hex;
mod probe;
mod validate;

pub use capture::{CaptureOptions, capture};
pub use error::ProfileError;
pub use format::{
    AreaProfile, BarKindProfile, BarProfile, ConfigProfile, DeviceInfoProfile, DeviceProfile,
    FORMAT, IrqProfile, PciIds, RawCapProfile, RegionCapProfile, RegionProfile, Source, VERSION,
};
pub use hex::HexBytes;
pub use probe::probe_plan;
