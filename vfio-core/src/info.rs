//! What a backend reports about groups, devices, regions, IRQs and the IOMMU.
//!
//! These mirror the VFIO uAPI structures (`linux/vfio.h`) as plain Rust
//! values, with flags kept as the kernel's bits so nothing is lost.

/// Declares a `u32` flag set with named bits and `contains`.
macro_rules! flags {
    ($(#[$m:meta])* $name:ident { $($(#[$bm:meta])* $bit:ident = $val:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $name(pub u32);
        impl $name {
            $($(#[$bm])* pub const $bit: Self = Self($val);)*
            /// No flags.
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
        impl std::ops::BitOr for $name {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                Self(self.0 | rhs.0)
            }
        }
    };
}

flags! {
    /// `VFIO_GROUP_FLAGS_*`.
    GroupStatus {
        /// Every device of the group is bound to a VFIO driver (or unbound).
        VIABLE = 1 << 0;
        /// The group is attached to a container.
        CONTAINER_SET = 1 << 1;
    }
}

flags! {
    /// `VFIO_DEVICE_FLAGS_*`.
    DeviceFlags {
        /// The device supports `VFIO_DEVICE_RESET`.
        RESET = 1 << 0;
        /// A PCI device.
        PCI = 1 << 1;
        /// A platform device.
        PLATFORM = 1 << 2;
        /// An AMBA device.
        AMBA = 1 << 3;
        /// A CCW device.
        CCW = 1 << 4;
        /// An AP device.
        AP = 1 << 5;
        /// An FSL-MC device.
        FSL_MC = 1 << 6;
        /// The device supports capability chains in device info.
        CAPS = 1 << 7;
        /// A CDX device.
        CDX = 1 << 8;
    }
}

flags! {
    /// `VFIO_REGION_INFO_FLAG_*`.
    RegionFlags {
        /// The region supports read.
        READ = 1 << 0;
        /// The region supports write.
        WRITE = 1 << 1;
        /// The region supports mmap.
        MMAP = 1 << 2;
        /// The region info has a capability chain.
        CAPS = 1 << 3;
    }
}

flags! {
    /// `VFIO_IRQ_INFO_*`.
    IrqFlags {
        /// The IRQ can signal an eventfd.
        EVENTFD = 1 << 0;
        /// The IRQ can be masked.
        MASKABLE = 1 << 1;
        /// The IRQ masks itself when it fires (level-triggered INTx).
        AUTOMASKED = 1 << 2;
        /// The number of enabled vectors cannot change without disabling all.
        NORESIZE = 1 << 3;
    }
}

flags! {
    /// `VFIO_DMA_MAP_FLAG_*`: the device's access to a DMA mapping.
    DmaFlags {
        /// The device may read the memory.
        READ = 1 << 0;
        /// The device may write the memory.
        WRITE = 1 << 1;
    }
}

/// `VFIO_DEVICE_GET_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device flags.
    pub flags: DeviceFlags,
    /// Number of regions (for vfio-pci: 9, or 10 with a VGA region, plus device-specific).
    pub num_regions: u32,
    /// Number of IRQ indexes.
    pub num_irqs: u32,
}

/// A capability found in a region's info chain.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegionCap {
    /// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`: only these areas may be mmapped.
    SparseMmap(Vec<SparseArea>),
    /// `VFIO_REGION_INFO_CAP_TYPE`: a device-specific region's type.
    Type {
        /// Region type.
        ty: u32,
        /// Region subtype.
        subtype: u32,
    },
    /// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`: the MSI-X table in this BAR may be mmapped.
    MsixMappable,
    /// Any capability this crate does not decode, kept whole.
    Unknown {
        /// Capability id.
        id: u16,
        /// Capability version.
        version: u16,
        /// Bytes after the 8-byte header, up to the next capability or the end.
        data: Vec<u8>,
    },
}

/// One mmappable area of a region with a sparse-mmap capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseArea {
    /// Offset from the start of the region.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

/// `VFIO_DEVICE_GET_REGION_INFO` with its capability chain decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionInfo {
    /// The region index.
    pub index: u32,
    /// Region flags. A region the device lacks has no flags and size 0.
    pub flags: RegionFlags,
    /// Region size in bytes.
    pub size: u64,
    /// Offset of the region in the device file (for pread/pwrite and mmap).
    pub offset: u64,
    /// The decoded capability chain.
    pub caps: Vec<RegionCap>,
}

impl RegionInfo {
    /// True when the device has this region (a region the device lacks reports size 0).
    pub fn is_present(&self) -> bool {
        self.size != 0
    }
}

/// `VFIO_DEVICE_GET_IRQ_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqInfo {
    /// The IRQ index.
    pub index: IrqIndex,
    /// IRQ flags.
    pub flags: IrqFlags,
    /// Number of vectors (0 when the device lacks this kind of interrupt).
    pub count: u32,
}

/// An IRQ index of a vfio-pci device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IrqIndex(pub u32);

impl IrqIndex {
    /// Legacy INTx.
    pub const INTX: Self = Self(0);
    /// MSI.
    pub const MSI: Self = Self(1);
    /// MSI-X.
    pub const MSIX: Self = Self(2);
    /// PCIe AER error notification.
    pub const ERR: Self = Self(3);
    /// Device release request.
    pub const REQ: Self = Self(4);

    /// The name the kernel uses for this index's vectors in /proc/interrupts
    /// (`vfio-intx`, `vfio-msi`, `vfio-msix`), if it names them.
    pub fn proc_name(self) -> Option<&'static str> {
        match self {
            Self::INTX => Some("vfio-intx"),
            Self::MSI => Some("vfio-msi"),
            Self::MSIX => Some("vfio-msix"),
            _ => None,
        }
    }
}

impl std::fmt::Display for IrqIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::INTX => f.write_str("INTx"),
            Self::MSI => f.write_str("MSI"),
            Self::MSIX => f.write_str("MSI-X"),
            Self::ERR => f.write_str("ERR"),
            Self::REQ => f.write_str("REQ"),
            Self(n) => write!(f, "IRQ index {n}"),
        }
    }
}

/// Well-known vfio-pci region indexes.
pub mod region {
    /// BAR 0 .. BAR 5 are indexes 0 .. 5.
    pub const BAR0: u32 = 0;
    /// The expansion ROM.
    pub const ROM: u32 = 6;
    /// PCI configuration space (never mmapped).
    pub const CONFIG: u32 = 7;
    /// The legacy VGA region (only on VGA devices).
    pub const VGA: u32 = 8;
}

/// An IOMMU model a container can be set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IommuType {
    /// `VFIO_TYPE1_IOMMU`.
    Type1,
    /// `VFIO_TYPE1v2_IOMMU`, what new code should use.
    Type1v2,
    /// `VFIO_NOIOMMU_IOMMU`: no isolation, needs `enable_unsafe_noiommu_mode`.
    NoIommu,
}

impl IommuType {
    /// The uAPI value, also the extension number checked with `VFIO_CHECK_EXTENSION`.
    pub fn raw(self) -> u32 {
        match self {
            Self::Type1 => 1,
            Self::Type1v2 => 3,
            Self::NoIommu => 8,
        }
    }
}

/// A `VFIO_CHECK_EXTENSION` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Extension(pub u32);

impl Extension {
    /// `VFIO_TYPE1_IOMMU`.
    pub const TYPE1_IOMMU: Self = Self(1);
    /// `VFIO_SPAPR_TCE_IOMMU`.
    pub const SPAPR_TCE_IOMMU: Self = Self(2);
    /// `VFIO_TYPE1v2_IOMMU`.
    pub const TYPE1V2_IOMMU: Self = Self(3);
    /// `VFIO_DMA_CC_IOMMU`: the IOMMU enforces cache coherence.
    pub const DMA_CC_IOMMU: Self = Self(4);
    /// `VFIO_EEH`.
    pub const EEH: Self = Self(5);
    /// `VFIO_TYPE1_NESTING_IOMMU`.
    pub const TYPE1_NESTING_IOMMU: Self = Self(6);
    /// `VFIO_SPAPR_TCE_v2_IOMMU`.
    pub const SPAPR_TCE_V2_IOMMU: Self = Self(7);
    /// `VFIO_NOIOMMU_IOMMU`.
    pub const NOIOMMU_IOMMU: Self = Self(8);
    /// `VFIO_UNMAP_ALL`.
    pub const UNMAP_ALL: Self = Self(9);
    /// `VFIO_UPDATE_VADDR`.
    pub const UPDATE_VADDR: Self = Self(10);
}

/// An inclusive range of IOVAs the IOMMU can translate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaRange {
    /// First usable IOVA.
    pub start: u64,
    /// Last usable IOVA (inclusive).
    pub end: u64,
}

/// `VFIO_IOMMU_GET_INFO` with its capability chain decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IommuInfo {
    /// Bitmap of supported IOMMU page sizes (bit n set: 2^n bytes).
    pub iova_pgsizes: u64,
    /// Usable IOVA ranges, if the kernel reports them.
    pub iova_ranges: Option<Vec<IovaRange>>,
    /// How many more DMA mappings may be created, if the kernel reports it.
    pub dma_avail: Option<u32>,
}
