//! The rest of the device uAPI a driver meets on real hosts: partial and
//! read-only region mappings and sparse-mmap areas, `VFIO_DEVICE_FEATURE`,
//! and PCI hot reset (`VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`,
//! `VFIO_DEVICE_PCI_HOT_RESET`).

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::info::{RegionCap, RegionInfo, SparseArea};
use crate::pci_address::PciAddress;
use nix::errno::Errno;

/// How a mapping of a region may be used by the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegionAccess {
    /// Loads only (`PROT_READ`). Every write through the mapping is refused
    /// as [`ErrorKind::PermissionDenied`] with no errno, before any store:
    /// a store to such a mapping would fault the process.
    ReadOnly,
    /// Loads and stores (`PROT_READ | PROT_WRITE`), where the region allows
    /// writes (a region without the WRITE flag is mapped read-only).
    ReadWrite,
}

/// The base page size mmap works in on the hosts VFIO runs on (x86-64).
pub const MMAP_PAGE_SIZE: u64 = 4096;

/// The sparse-mmap areas of a region (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`),
/// if it reports them: only these parts of the region may be mmapped.
pub fn sparse_areas(info: &RegionInfo) -> Option<&[SparseArea]> {
    info.caps.iter().find_map(|c| match c {
        RegionCap::SparseMmap(areas) => Some(areas.as_slice()),
        _ => None,
    })
}

/// The checks a backend makes before mapping `len` bytes of region `info`
/// from `offset`, with the answers `vfio_pci_core_mmap` and mmap(2) give:
/// EINVAL for a region without the MMAP flag, a length of 0, an offset
/// that is not page-aligned (mmap's own check), or a range ending past the
/// region rounded up to a page (`req_start + req_len > phys_len`). The
/// length itself need not be page-aligned: mmap rounds it up.
pub fn check_region_range(info: &RegionInfo, offset: u64, len: u64) -> Result<()> {
    let einval = |detail: std::fmt::Arguments<'_>| {
        Err(Error::from_errno(Operation::MapRegion, Errno::EINVAL).with_detail(detail))
    };
    if !info.flags.contains(crate::info::RegionFlags::MMAP) {
        return einval(format_args!("region {} cannot be mmapped", info.index));
    }
    if len == 0 {
        return einval(format_args!("a mapping of 0 bytes"));
    }
    if offset % MMAP_PAGE_SIZE != 0 {
        return einval(format_args!("offset {offset:#x} is not page-aligned"));
    }
    let phys_len = info.size.div_ceil(MMAP_PAGE_SIZE) * MMAP_PAGE_SIZE;
    let page_len = len.div_ceil(MMAP_PAGE_SIZE).saturating_mul(MMAP_PAGE_SIZE);
    if offset
        .checked_add(page_len)
        .is_none_or(|end| end > phys_len)
    {
        return einval(format_args!(
            "{len:#x} bytes at {offset:#x} end past region {} ({:#x} bytes)",
            info.index, info.size
        ));
    }
    Ok(())
}

/// The error for an access that falls in a hole of a sparse mapping.
pub fn sparse_hole(op: Operation, offset: u64, width: u64) -> Error {
    Error::new(op, ErrorKind::OutOfRange).with_detail(format_args!(
        "{width}-byte access at offset {offset:#x} is outside the region's mmappable areas"
    ))
}

/// The `VFIO_DEVICE_FEATURE` flag bits, and the feature numbers under
/// [`FeatureFlags::MASK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FeatureFlags(pub u32);

impl FeatureFlags {
    /// The bits that hold the feature number.
    pub const MASK: Self = Self(0xffff);
    /// `VFIO_DEVICE_FEATURE_GET`: read the feature's data.
    pub const GET: Self = Self(1 << 16);
    /// `VFIO_DEVICE_FEATURE_SET`: write the feature's data.
    pub const SET: Self = Self(1 << 17);
    /// `VFIO_DEVICE_FEATURE_PROBE`: ask whether GET and/or SET would be
    /// accepted, doing neither.
    pub const PROBE: Self = Self(1 << 18);

    /// No bits.
    pub const EMPTY: Self = Self(0);

    /// True when every bit of `other` is set in `self`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The raw bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for FeatureFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A `VFIO_DEVICE_FEATURE` feature number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Feature(pub u16);

impl Feature {
    /// `VFIO_DEVICE_FEATURE_PCI_VF_TOKEN`: SET only, on a PF with SR-IOV.
    pub const PCI_VF_TOKEN: Self = Self(0);
    /// `VFIO_DEVICE_FEATURE_MIGRATION`: variant drivers with migration only.
    pub const MIGRATION: Self = Self(1);
    /// `VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`.
    pub const MIG_DEVICE_STATE: Self = Self(2);
    /// `VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY`: SET only.
    pub const LOW_POWER_ENTRY: Self = Self(3);
    /// `VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP`: SET only.
    pub const LOW_POWER_ENTRY_WITH_WAKEUP: Self = Self(4);
    /// `VFIO_DEVICE_FEATURE_LOW_POWER_EXIT`: SET only.
    pub const LOW_POWER_EXIT: Self = Self(5);
    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_START`: drivers with dirty tracking only.
    pub const DMA_LOGGING_START: Self = Self(6);
    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP`.
    pub const DMA_LOGGING_STOP: Self = Self(7);
    /// `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`.
    pub const DMA_LOGGING_REPORT: Self = Self(8);
    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`.
    pub const MIG_DATA_SIZE: Self = Self(9);
    /// `VFIO_DEVICE_FEATURE_BUS_MASTER` (Linux 6.12; vfio-cdx only).
    pub const BUS_MASTER: Self = Self(10);

    /// The feature as the low bits of a flags word.
    pub fn flags(self) -> FeatureFlags {
        FeatureFlags(u32::from(self.0))
    }
}

/// What vfio-pci answers a `VFIO_DEVICE_FEATURE` call on a device bound to
/// vfio-pci itself (no variant driver: no migration, no dirty tracking),
/// with `vf_token` true for a PF with SR-IOV. `data_len` is the payload
/// length after the 8-byte header. Ok(()) for an accepted PROBE; a GET or
/// SET that would act is answered `None` (the caller does it).
///
/// The order of `vfio_ioctl_device_feature` (unknown flag bits, GET with
/// SET without PROBE: EINVAL), then the feature's handler:
/// `vfio_check_feature` (a GET or SET the feature does not support:
/// EINVAL; PROBE: 0; neither GET nor SET: EINVAL; short data: EINVAL) and
/// ENOTTY for a feature the device does not have.
pub fn vfio_pci_feature_answer(
    flags: FeatureFlags,
    data_len: usize,
    vf_token: bool,
) -> std::result::Result<Option<()>, Errno> {
    let known = FeatureFlags::MASK.0 | FeatureFlags::GET.0 | FeatureFlags::SET.0;
    if flags.0 & !(known | FeatureFlags::PROBE.0) != 0 {
        return Err(Errno::EINVAL);
    }
    let probe = flags.contains(FeatureFlags::PROBE);
    let get = flags.contains(FeatureFlags::GET);
    let set = flags.contains(FeatureFlags::SET);
    if !probe && get && set {
        return Err(Errno::EINVAL);
    }
    let feature = Feature((flags.0 & FeatureFlags::MASK.0) as u16);
    // (supported GET/SET, payload size a SET needs)
    let (supported, minsz) = match feature {
        Feature::LOW_POWER_ENTRY | Feature::LOW_POWER_EXIT => (FeatureFlags::SET, 0),
        // struct vfio_device_low_power_entry_with_wakeup: fd and reserved.
        Feature::LOW_POWER_ENTRY_WITH_WAKEUP => (FeatureFlags::SET, 8),
        // A UUID.
        Feature::PCI_VF_TOKEN if vf_token => (FeatureFlags::SET, 16),
        _ => return Err(Errno::ENOTTY),
    };
    if (get && !supported.contains(FeatureFlags::GET))
        || (set && !supported.contains(FeatureFlags::SET))
    {
        return Err(Errno::EINVAL);
    }
    if probe {
        return Ok(Some(()));
    }
    if !get && !set {
        return Err(Errno::EINVAL);
    }
    if data_len < minsz {
        return Err(Errno::EINVAL);
    }
    Ok(None)
}

/// One device a hot reset would reset (`struct vfio_pci_dependent_device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DependentDevice {
    /// The device's PCI address.
    pub address: PciAddress,
    /// Its IOMMU group number (for a device opened through its group); for
    /// a cdev-opened device (`HotResetInfo::flags` has `DEV_ID`), the
    /// device id in the caller's iommufd, 0 when owned, `u32::MAX` when not.
    pub group_id: u32,
}

/// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the devices a hot reset of this
/// one would reset, itself included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HotResetInfo {
    /// `VFIO_PCI_HOT_RESET_FLAG_*` (DEV_ID 1, DEV_ID_OWNED 2; 0 for a
    /// device opened through its group).
    pub flags: u32,
    /// The devices of the slot or bus that would be reset.
    pub devices: Vec<DependentDevice>,
}
