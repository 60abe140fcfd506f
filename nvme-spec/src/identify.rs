//! Identify: the CNS values and the controller and namespace structures.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// CNS 0x00: the Identify Namespace structure of the namespace in NSID.
pub const CNS_NAMESPACE: u32 = 0x00;
/// CNS 0x01: the Identify Controller structure.
pub const CNS_CONTROLLER: u32 = 0x01;
/// CNS 0x02: up to 1024 active namespace IDs greater than NSID, ascending.
pub const CNS_ACTIVE_NAMESPACES: u32 = 0x02;
/// CNS 0x03: the namespace identification descriptor list of NSID.
pub const CNS_NAMESPACE_DESCRIPTORS: u32 = 0x03;

/// Size of every Identify data structure.
pub const IDENTIFY_SIZE: usize = 4096;

/// The Identify Controller data structure (CNS 0x01).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IdentifyController {
    /// PCI Vendor ID.
    pub vid: u16,
    /// PCI Subsystem Vendor ID.
    pub ssvid: u16,
    /// Serial Number (ASCII, space padded).
    pub sn: [u8; 20],
    /// Model Number (ASCII, space padded).
    pub mn: [u8; 40],
    /// Firmware Revision (ASCII, space padded).
    pub fr: [u8; 8],
    /// Recommended Arbitration Burst.
    pub rab: u8,
    /// IEEE OUI Identifier.
    pub ieee: [u8; 3],
    /// Controller Multi-Path I/O and Namespace Sharing Capabilities.
    pub cmic: u8,
    /// Maximum Data Transfer Size: `2^mdts` minimum pages; 0 means no limit.
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version (as the VS register).
    pub ver: u32,
    /// RTD3 Resume Latency.
    pub rtd3r: u32,
    /// RTD3 Entry Latency.
    pub rtd3e: u32,
    /// Optional Asynchronous Events Supported.
    pub oaes: u32,
    /// Controller Attributes.
    pub ctratt: u32,
    /// Read Recovery Levels Supported.
    pub rrls: u16,
    /// Reserved.
    pub rsvd102: [u8; 9],
    /// Controller Type (1: I/O controller).
    pub cntrltype: u8,
    /// FRU Globally Unique Identifier.
    pub fguid: [u8; 16],
    /// Command Retry Delay Times.
    pub crdt: [u16; 3],
    /// Reserved (and NVMe-MI fields).
    pub rsvd134: [u8; 122],
    /// Optional Admin Command Support.
    pub oacs: u16,
    /// Abort Command Limit, 0's based.
    pub acl: u8,
    /// Asynchronous Event Request Limit, 0's based.
    pub aerl: u8,
    /// Firmware Updates.
    pub frmw: u8,
    /// Log Page Attributes.
    pub lpa: u8,
    /// Error Log Page Entries, 0's based.
    pub elpe: u8,
    /// Number of Power States Support, 0's based.
    pub npss: u8,
    /// Admin Vendor Specific Command Configuration.
    pub avscc: u8,
    /// Autonomous Power State Transition Attributes.
    pub apsta: u8,
    /// Warning Composite Temperature Threshold (kelvin).
    pub wctemp: u16,
    /// Critical Composite Temperature Threshold (kelvin).
    pub cctemp: u16,
    /// Maximum Time for Firmware Activation.
    pub mtfa: u16,
    /// Host Memory Buffer Preferred Size.
    pub hmpre: u32,
    /// Host Memory Buffer Minimum Size.
    pub hmmin: u32,
    /// Total NVM Capacity (bytes, 128-bit little-endian).
    pub tnvmcap: [u8; 16],
    /// Unallocated NVM Capacity.
    pub unvmcap: [u8; 16],
    /// Replay Protected Memory Block Support.
    pub rpmbs: u32,
    /// Extended Device Self-test Time.
    pub edstt: u16,
    /// Device Self-test Options.
    pub dsto: u8,
    /// Firmware Update Granularity.
    pub fwug: u8,
    /// Keep Alive Support.
    pub kas: u16,
    /// Host Controlled Thermal Management Attributes.
    pub hctma: u16,
    /// Minimum Thermal Management Temperature.
    pub mntmt: u16,
    /// Maximum Thermal Management Temperature.
    pub mxtmt: u16,
    /// Sanitize Capabilities.
    pub sanicap: u32,
    /// Host Memory Buffer Minimum Descriptor Entry Size.
    pub hmminds: u32,
    /// Host Memory Maximum Descriptors Entries.
    pub hmmaxd: u16,
    /// NVM Set Identifier Maximum.
    pub nsetidmax: u16,
    /// Endurance Group Identifier Maximum.
    pub endgidmax: u16,
    /// ANA Transition Time.
    pub anatt: u8,
    /// Asymmetric Namespace Access Capabilities.
    pub anacap: u8,
    /// ANA Group Identifier Maximum.
    pub anagrpmax: u32,
    /// Number of ANA Group Identifiers.
    pub nanagrpid: u32,
    /// Persistent Event Log Size.
    pub pels: u32,
    /// Domain Identifier.
    pub domainid: u16,
    /// Reserved.
    pub rsvd358: [u8; 10],
    /// Max Endurance Group Capacity.
    pub megcap: [u8; 16],
    /// Reserved.
    pub rsvd384: [u8; 128],
    /// Submission Queue Entry Size: required (bits 3:0) and maximum (7:4), log2.
    pub sqes: u8,
    /// Completion Queue Entry Size: required and maximum, log2.
    pub cqes: u8,
    /// Maximum Outstanding Commands.
    pub maxcmd: u16,
    /// Number of Namespaces: the largest namespace ID.
    pub nn: u32,
    /// Optional NVM Command Support (bit 2 DSM, bit 3 Write Zeroes, ...).
    pub oncs: u16,
    /// Fused Operation Support.
    pub fuses: u16,
    /// Format NVM Attributes.
    pub fna: u8,
    /// Volatile Write Cache (bit 0: present).
    pub vwc: u8,
    /// Atomic Write Unit Normal.
    pub awun: u16,
    /// Atomic Write Unit Power Fail.
    pub awupf: u16,
    /// I/O Command Set Vendor Specific Command Configuration.
    pub icsvscc: u8,
    /// Namespace Write Protection Capabilities.
    pub nwpc: u8,
    /// Atomic Compare & Write Unit.
    pub acwu: u16,
    /// Optional Copy Formats Supported.
    pub ocfs: u16,
    /// SGL Support.
    pub sgls: u32,
    /// Maximum Number of Allowed Namespaces.
    pub mnan: u32,
    /// Maximum Domain Namespace Attachments.
    pub maxdna: [u8; 16],
    /// Maximum I/O Controller Namespace Attachments.
    pub maxcna: u32,
    /// Reserved.
    pub rsvd564: [u8; 204],
    /// NVM Subsystem NVMe Qualified Name (UTF-8, NUL padded).
    pub subnqn: [u8; 256],
    /// Reserved.
    pub rsvd1024: [u8; 768],
    /// NVMe over Fabrics attributes.
    pub nvmeof: [u8; 256],
    /// Power State Descriptors 0 to 31, 32 bytes each.
    pub psd: [[u8; 32]; 32],
    /// Vendor Specific.
    pub vs: [u8; 1024],
}

const _: () = assert!(size_of::<IdentifyController>() == IDENTIFY_SIZE);

/// Optional NVM Command Support bit for Dataset Management.
pub const ONCS_DSM: u16 = 1 << 2;
/// Optional NVM Command Support bit for Write Zeroes.
pub const ONCS_WRITE_ZEROES: u16 = 1 << 3;

/// The Identify Namespace data structure (CNS 0x00, NVM command set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct IdentifyNamespace {
    /// Namespace Size, in logical blocks.
    pub nsze: u64,
    /// Namespace Capacity, in logical blocks.
    pub ncap: u64,
    /// Namespace Utilization, in logical blocks.
    pub nuse: u64,
    /// Namespace Features.
    pub nsfeat: u8,
    /// Number of LBA Formats, 0's based.
    pub nlbaf: u8,
    /// Formatted LBA Size: the format in use (bits 3:0, and 6:5 above 16).
    pub flbas: u8,
    /// Metadata Capabilities.
    pub mc: u8,
    /// End-to-end Data Protection Capabilities.
    pub dpc: u8,
    /// End-to-end Data Protection Type Settings.
    pub dps: u8,
    /// Namespace Multi-path I/O and Namespace Sharing Capabilities.
    pub nmic: u8,
    /// Reservation Capabilities.
    pub rescap: u8,
    /// Format Progress Indicator.
    pub fpi: u8,
    /// Deallocate Logical Block Features: bits 2:0 say what a read of a
    /// deallocated block returns (1: all zeroes).
    pub dlfeat: u8,
    /// Namespace Atomic Write Unit Normal.
    pub nawun: u16,
    /// Namespace Atomic Write Unit Power Fail.
    pub nawupf: u16,
    /// Namespace Atomic Compare & Write Unit.
    pub nacwu: u16,
    /// Namespace Atomic Boundary Size Normal.
    pub nabsn: u16,
    /// Namespace Atomic Boundary Offset.
    pub nabo: u16,
    /// Namespace Atomic Boundary Size Power Fail.
    pub nabspf: u16,
    /// Namespace Optimal I/O Boundary.
    pub noiob: u16,
    /// NVM Capacity (bytes, 128-bit little-endian).
    pub nvmcap: [u8; 16],
    /// Namespace Preferred Write Granularity.
    pub npwg: u16,
    /// Namespace Preferred Write Alignment.
    pub npwa: u16,
    /// Namespace Preferred Deallocate Granularity.
    pub npdg: u16,
    /// Namespace Preferred Deallocate Alignment.
    pub npda: u16,
    /// Namespace Optimal Write Size.
    pub nows: u16,
    /// Maximum Single Source Range Length.
    pub mssrl: u16,
    /// Maximum Copy Length.
    pub mcl: u32,
    /// Maximum Source Range Count.
    pub msrc: u8,
    /// Reserved.
    pub rsvd81: [u8; 11],
    /// ANA Group Identifier.
    pub anagrpid: u32,
    /// Reserved.
    pub rsvd96: [u8; 3],
    /// Namespace Attributes.
    pub nsattr: u8,
    /// NVM Set Identifier.
    pub nvmsetid: u16,
    /// Endurance Group Identifier.
    pub endgid: u16,
    /// Namespace Globally Unique Identifier.
    pub nguid: [u8; 16],
    /// IEEE Extended Unique Identifier.
    pub eui64: [u8; 8],
    /// LBA Format Support: one [`LbaFormat`] word each.
    pub lbaf: [u32; 64],
    /// Reserved.
    pub rsvd384: [u8; 2688],
    /// Vendor Specific.
    pub vs: [u8; 1024],
}

const _: () = assert!(size_of::<IdentifyNamespace>() == IDENTIFY_SIZE);

impl IdentifyNamespace {
    /// The index of the LBA format in use.
    pub fn format_index(&self) -> usize {
        usize::from(self.flbas & 0xf) | (usize::from((self.flbas >> 5) & 0x3) << 4)
    }

    /// The LBA format in use.
    pub fn format(&self) -> LbaFormat {
        LbaFormat(self.lbaf.get(self.format_index()).copied().unwrap_or(0))
    }
}

/// An LBA Format word of the Identify Namespace structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbaFormat(pub u32);

impl LbaFormat {
    /// Metadata Size in bytes (bits 15:0).
    pub const fn metadata_size(self) -> u16 {
        self.0 as u16
    }
    /// LBA Data Size, log2 of bytes (bits 23:16); 0 means not supported.
    pub const fn lbads(self) -> u8 {
        (self.0 >> 16) as u8
    }
    /// Relative Performance (bits 25:24).
    pub const fn relative_performance(self) -> u8 {
        ((self.0 >> 24) & 0x3) as u8
    }
    /// The block size in bytes, when `lbads` is a size the specification
    /// allows (9 to 31).
    pub const fn block_size(self) -> Option<u32> {
        match self.lbads() {
            l @ 9..=31 => Some(1 << l),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;
    use zerocopy::FromZeros;

    #[test]
    fn controller_fields_are_at_the_specification_offsets() {
        assert_eq!(offset_of!(IdentifyController, sn), 4);
        assert_eq!(offset_of!(IdentifyController, mdts), 77);
        assert_eq!(offset_of!(IdentifyController, ver), 80);
        assert_eq!(offset_of!(IdentifyController, cntrltype), 111);
        assert_eq!(offset_of!(IdentifyController, oacs), 256);
        assert_eq!(offset_of!(IdentifyController, wctemp), 266);
        assert_eq!(offset_of!(IdentifyController, tnvmcap), 280);
        assert_eq!(offset_of!(IdentifyController, anagrpmax), 344);
        assert_eq!(offset_of!(IdentifyController, sqes), 512);
        assert_eq!(offset_of!(IdentifyController, nn), 516);
        assert_eq!(offset_of!(IdentifyController, oncs), 520);
        assert_eq!(offset_of!(IdentifyController, sgls), 536);
        assert_eq!(offset_of!(IdentifyController, subnqn), 768);
        assert_eq!(offset_of!(IdentifyController, psd), 2048);
        assert_eq!(offset_of!(IdentifyController, vs), 3072);
    }

    #[test]
    fn namespace_fields_are_at_the_specification_offsets() {
        assert_eq!(offset_of!(IdentifyNamespace, nsfeat), 24);
        assert_eq!(offset_of!(IdentifyNamespace, dlfeat), 33);
        assert_eq!(offset_of!(IdentifyNamespace, nvmcap), 48);
        assert_eq!(offset_of!(IdentifyNamespace, mcl), 76);
        assert_eq!(offset_of!(IdentifyNamespace, anagrpid), 92);
        assert_eq!(offset_of!(IdentifyNamespace, nguid), 104);
        assert_eq!(offset_of!(IdentifyNamespace, eui64), 120);
        assert_eq!(offset_of!(IdentifyNamespace, lbaf), 128);
        assert_eq!(offset_of!(IdentifyNamespace, vs), 3072);
    }

    #[test]
    fn lba_format_decodes_the_block_size() {
        let mut ns = IdentifyNamespace::new_zeroed();
        ns.lbaf[1] = 12 << 16;
        ns.flbas = 1;
        assert_eq!(ns.format().block_size(), Some(4096));
        assert_eq!(LbaFormat(0).block_size(), None);
    }
}
