//! PCI and PCI Express capability lists in a device's configuration space.
//!
//! Standard capabilities form a linked list in bytes 0x40..0x100, announced by
//! bit 4 of the Status register (0x06) and starting at the pointer at 0x34.
//! PCI Express extended capabilities form a second list from 0x100 up to
//! 0x1000. The device writes both lists, so both are walked with bounds
//! checks, loop detection and a fixed step limit. The MSI and MSI-X
//! capabilities are also decoded.

use super::ParseError;
use super::bytes::{u8_at, u16_at, u32_at};

/// Offset of the Status register.
const STATUS: usize = 0x06;
/// Status bit: the device has a capability list.
const STATUS_CAP_LIST: u16 = 1 << 4;
/// Offset of the capabilities pointer.
const CAP_PTR: usize = 0x34;
/// The low two bits of every standard capability pointer are reserved.
const PTR_MASK: u8 = 0xFC;
/// Where standard capabilities may start.
pub const STANDARD_START: usize = 0x40;
/// Where standard capabilities must end; also where extended ones start.
pub const EXTENDED_START: usize = 0x100;
/// The end of PCI Express extended configuration space.
pub const EXTENDED_END: usize = 0x1000;
/// The most standard capabilities a list may hold: one per dword of 0x40..0x100.
pub const MAX_STANDARD: usize = (EXTENDED_START - STANDARD_START) / 4;
/// The most extended capabilities a list may hold (Linux's limit: one per
/// 8 bytes of 0x100..0x1000).
pub const MAX_EXTENDED: usize = (EXTENDED_END - EXTENDED_START) / 8;

const LIST: &str = "PCI capability list";
const EXT_LIST: &str = "PCI Express extended capability list";
const MSIX: &str = "MSI-X capability";
const MSI: &str = "MSI capability";

/// Well-known standard capability ids.
pub mod id {
    /// Power Management.
    pub const PM: u8 = 0x01;
    /// Accelerated Graphics Port.
    pub const AGP: u8 = 0x02;
    /// Vital Product Data.
    pub const VPD: u8 = 0x03;
    /// Slot Identification.
    pub const SLOT_ID: u8 = 0x04;
    /// Message Signalled Interrupts.
    pub const MSI: u8 = 0x05;
    /// Vendor-specific.
    pub const VENDOR: u8 = 0x09;
    /// Debug port.
    pub const DEBUG: u8 = 0x0A;
    /// Bridge subsystem vendor/device id.
    pub const SUBSYSTEM_VENDOR: u8 = 0x0D;
    /// PCI Express.
    pub const PCIE: u8 = 0x10;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
    /// SATA data/index configuration.
    pub const SATA: u8 = 0x12;
    /// Advanced Features (conventional PCI FLR).
    pub const AF: u8 = 0x13;
    /// Enhanced Allocation.
    pub const EA: u8 = 0x14;
}

/// Well-known PCI Express extended capability ids.
pub mod ext_id {
    /// Advanced Error Reporting.
    pub const AER: u16 = 0x0001;
    /// Virtual Channel.
    pub const VC: u16 = 0x0002;
    /// Device Serial Number.
    pub const DSN: u16 = 0x0003;
    /// Power Budgeting.
    pub const POWER_BUDGET: u16 = 0x0004;
    /// Vendor-specific.
    pub const VENDOR: u16 = 0x000B;
    /// Access Control Services.
    pub const ACS: u16 = 0x000D;
    /// Alternative Routing-ID Interpretation.
    pub const ARI: u16 = 0x000E;
    /// Address Translation Services.
    pub const ATS: u16 = 0x000F;
    /// Single Root I/O Virtualization.
    pub const SRIOV: u16 = 0x0010;
    /// Page Request Interface.
    pub const PRI: u16 = 0x0013;
    /// Resizable BAR.
    pub const RESIZABLE_BAR: u16 = 0x0015;
    /// Latency Tolerance Reporting.
    pub const LTR: u16 = 0x0018;
    /// Secondary PCI Express.
    pub const SECONDARY_PCIE: u16 = 0x0019;
    /// Process Address Space ID.
    pub const PASID: u16 = 0x001B;
    /// L1 PM Substates.
    pub const L1SS: u16 = 0x001E;
    /// Designated Vendor-Specific.
    pub const DVSEC: u16 = 0x0023;
}

/// A standard capability: its id and where it sits in config space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PciCapability {
    /// Capability id (see [`id`]).
    pub id: u8,
    /// Offset of the capability in config space (0x40..0x100, dword-aligned).
    pub offset: u8,
}

/// A PCI Express extended capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedCapability {
    /// Capability id (see [`ext_id`]).
    pub id: u16,
    /// Capability version (4 bits).
    pub version: u8,
    /// Offset of the capability in config space (0x100..0x1000, dword-aligned).
    pub offset: u16,
}

/// The MSI-X capability, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsixCapability {
    /// Number of table entries (1..=2048).
    pub table_size: u16,
    /// BAR holding the table (0..=5).
    pub table_bar: u8,
    /// Offset of the table in that BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR holding the pending-bit array (0..=5).
    pub pba_bar: u8,
    /// Offset of the pending-bit array in that BAR (8-byte aligned).
    pub pba_offset: u32,
    /// MSI-X Enable is set.
    pub enabled: bool,
    /// Function Mask is set: every vector is masked.
    pub function_masked: bool,
}

/// The MSI capability, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MsiCapability {
    /// How many vectors the device can use: 1, 2, 4, 8, 16 or 32. The
    /// Multiple Message Capable encodings 6 and 7 are reserved and make
    /// [`msi`] fail rather than be clamped.
    pub vectors_capable: u32,
    /// The capability has a 64-bit message address.
    pub is_64bit: bool,
    /// The capability has Mask and Pending registers.
    pub per_vector_masking: bool,
    /// MSI Enable is set.
    pub enabled: bool,
}

/// The cycle and length guard both list walks share: marks dword `at` as
/// visited (a second visit is a loop, reported at the capability `from` that
/// pointed back) and refuses a list longer than `max`.
fn visit(
    seen: &mut [bool],
    list: &'static str,
    at: u16,
    from: Option<u16>,
    count: usize,
    max: usize,
) -> Result<(), ParseError> {
    match seen.get_mut(usize::from(at / 4)) {
        Some(s) if !*s => *s = true,
        _ => {
            let prev = from.unwrap_or(0);
            return Err(ParseError::at(
                list,
                prev.into(),
                format!("capability at {prev:#x} points back to {at:#x}: loop"),
            ));
        }
    }
    if count >= max {
        return Err(ParseError::at(
            list,
            at.into(),
            format!("more than {max} capabilities"),
        ));
    }
    Ok(())
}

/// The standard capabilities, in list order.
///
/// Empty when the Status register says there is no list, or when the
/// capabilities pointer is 0. Errors on: config space too short for the
/// Status register or the pointer, a pointer below 0x40, a capability whose
/// two header bytes are past the buffer, a loop, and more than
/// [`MAX_STANDARD`] entries. Reserved pointer bits are masked off.
pub fn capabilities(config: &[u8]) -> Result<Vec<PciCapability>, ParseError> {
    let status = u16_at(config, STATUS).ok_or_else(|| too_short(LIST, config, STATUS + 2))?;
    if status & STATUS_CAP_LIST == 0 {
        return Ok(Vec::new());
    }
    let ptr = u8_at(config, CAP_PTR).ok_or_else(|| too_short(LIST, config, CAP_PTR + 1))?;
    let mut next = ptr & PTR_MASK;
    let mut from: Option<u8> = None;
    let mut seen = [false; 64];
    let mut caps = Vec::new();
    while next != 0 {
        let here = || match from {
            Some(prev) => format!("capability at {prev:#x} points to {next:#x}"),
            None => format!("capabilities pointer is {next:#x}"),
        };
        if usize::from(next) < STANDARD_START {
            return Err(ParseError::at(
                LIST,
                from.map_or(CAP_PTR as u64, u64::from),
                format!("{}, below {STANDARD_START:#x}", here()),
            ));
        }
        visit(
            &mut seen,
            LIST,
            next.into(),
            from.map(u16::from),
            caps.len(),
            MAX_STANDARD,
        )?;
        let at = usize::from(next);
        let (Some(id), Some(link)) = (u8_at(config, at), u8_at(config, at.saturating_add(1)))
        else {
            return Err(ParseError::at(
                LIST,
                next.into(),
                format!("{}, but config space ends at {:#x}", here(), config.len()),
            ));
        };
        caps.push(PciCapability { id, offset: next });
        from = Some(next);
        next = link & PTR_MASK;
    }
    Ok(caps)
}

/// The offset of the first standard capability with id `id`, if any.
/// Errors when the list is malformed (see [`capabilities`]).
pub fn find(config: &[u8], id: u8) -> Result<Option<u8>, ParseError> {
    Ok(capabilities(config)?
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.offset))
}

/// The PCI Express extended capabilities, in list order.
///
/// Empty when config space is 0x100 bytes or shorter, or when the header at
/// 0x100 is 0 or all ones. The next-offset field is masked to a dword
/// boundary, as the PCIe spec tells software to do. Errors on: a header
/// cut off by the end of the buffer, a next offset below 0x100, a loop, and
/// more than [`MAX_EXTENDED`] entries.
pub fn extended_capabilities(config: &[u8]) -> Result<Vec<ExtendedCapability>, ParseError> {
    if config.len() <= EXTENDED_START {
        return Ok(Vec::new());
    }
    match u32_at(config, EXTENDED_START) {
        None => return Err(too_short(EXT_LIST, config, EXTENDED_START + 4)),
        Some(0 | u32::MAX) => return Ok(Vec::new()),
        Some(_) => {}
    }
    let mut offset = EXTENDED_START as u16;
    let mut from: Option<u16> = None;
    let mut seen = [false; EXTENDED_END / 4];
    let mut caps = Vec::new();
    loop {
        visit(&mut seen, EXT_LIST, offset, from, caps.len(), MAX_EXTENDED)?;
        let Some(header) = u32_at(config, usize::from(offset)) else {
            return Err(ParseError::at(
                EXT_LIST,
                offset.into(),
                format!(
                    "capability at {:#x} points to {offset:#x}, but config space ends at {:#x}",
                    from.unwrap_or(0),
                    config.len()
                ),
            ));
        };
        caps.push(ExtendedCapability {
            id: (header & 0xFFFF) as u16,
            version: ((header >> 16) & 0xF) as u8,
            offset,
        });
        // 12 bits, dword-aligned: always below 0x1000.
        let next = ((header >> 20) & 0xFFC) as u16;
        if next == 0 {
            return Ok(caps);
        }
        if usize::from(next) < EXTENDED_START {
            return Err(ParseError::at(
                EXT_LIST,
                offset.into(),
                format!("capability at {offset:#x} points to {next:#x}, below {EXTENDED_START:#x}"),
            ));
        }
        from = Some(offset);
        offset = next;
    }
}

/// The offset of the first extended capability with id `id`, if any.
/// Errors when the list is malformed (see [`extended_capabilities`]).
pub fn find_extended(config: &[u8], id: u16) -> Result<Option<u16>, ParseError> {
    Ok(extended_capabilities(config)?
        .into_iter()
        .find(|c| c.id == id)
        .map(|c| c.offset))
}

/// The first MSI-X capability, decoded; `None` when the device has none.
///
/// Errors when the list is malformed, when the 12-byte capability runs past
/// the buffer or past 0x100, or when a BIR names no BAR (6 or 7).
pub fn msix(config: &[u8]) -> Result<Option<MsixCapability>, ParseError> {
    let Some(at) = find(config, id::MSIX)? else {
        return Ok(None);
    };
    let at = usize::from(at);
    check_fits(MSIX, config, at, 12)?;
    let (Some(control), Some(table), Some(pba)) = (
        u16_at(config, at.saturating_add(2)),
        u32_at(config, at.saturating_add(4)),
        u32_at(config, at.saturating_add(8)),
    ) else {
        return Err(too_short(MSIX, config, at.saturating_add(12)));
    };
    let bar = |value: u32, name: &str| {
        let bir = (value & 7) as u8;
        if bir > 5 {
            return Err(ParseError::at(
                MSIX,
                at as u64,
                format!(
                    "MSI-X capability at {at:#x} puts its {name} in BAR {bir}, which does not exist"
                ),
            ));
        }
        Ok(bir)
    };
    Ok(Some(MsixCapability {
        table_size: (control & 0x7FF) + 1,
        table_bar: bar(table, "table")?,
        table_offset: table & !7,
        pba_bar: bar(pba, "pending-bit array")?,
        pba_offset: pba & !7,
        enabled: control & (1 << 15) != 0,
        function_masked: control & (1 << 14) != 0,
    }))
}

/// The first MSI capability, decoded; `None` when the device has none.
///
/// Errors when the list is malformed, when the capability (10 to 24 bytes,
/// depending on its 64-bit and per-vector-masking bits) runs past the
/// buffer or past 0x100, or when Multiple Message Capable holds a reserved
/// encoding (6 or 7).
pub fn msi(config: &[u8]) -> Result<Option<MsiCapability>, ParseError> {
    let Some(at) = find(config, id::MSI)? else {
        return Ok(None);
    };
    let at = usize::from(at);
    let control = u16_at(config, at.saturating_add(2))
        .ok_or_else(|| too_short(MSI, config, at.saturating_add(4)))?;
    let is_64bit = control & (1 << 7) != 0;
    let per_vector_masking = control & (1 << 8) != 0;
    let len = match (is_64bit, per_vector_masking) {
        (false, false) => 10,
        (true, false) => 14,
        (false, true) => 20,
        (true, true) => 24,
    };
    check_fits(MSI, config, at, len)?;
    let mmc = (control >> 1) & 7;
    if mmc > 5 {
        return Err(ParseError::at(
            MSI,
            at as u64,
            format!(
                "MSI capability at {at:#x} has the reserved Multiple Message Capable encoding {mmc}"
            ),
        ));
    }
    Ok(Some(MsiCapability {
        vectors_capable: 1 << mmc,
        is_64bit,
        per_vector_masking,
        enabled: control & 1 != 0,
    }))
}

/// Checks that a `len`-byte capability at `at` lies in the buffer and below 0x100.
fn check_fits(what: &'static str, config: &[u8], at: usize, len: usize) -> Result<(), ParseError> {
    let end = at.saturating_add(len);
    let limit = config.len().min(EXTENDED_START);
    if end > limit {
        let which = if config.len() < EXTENDED_START && end > config.len() {
            format!("config space ends at {:#x}", config.len())
        } else {
            format!("standard capabilities end at {EXTENDED_START:#x}")
        };
        return Err(ParseError::at(
            what,
            at as u64,
            format!("{what} at {at:#x} is {len} bytes but {which}"),
        ));
    }
    Ok(())
}

fn too_short(what: &'static str, config: &[u8], needed: usize) -> ParseError {
    ParseError::new(
        what,
        format!(
            "config space is {:#x} bytes, needs at least {needed:#x}",
            config.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 256 bytes of config space with a capability list of (offset, id, body).
    fn config_with(caps: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[0..4].copy_from_slice(&[0x86, 0x80, 0x34, 0x12]);
        if let Some(&(first, ..)) = caps.first() {
            c[STATUS] = STATUS_CAP_LIST as u8;
            c[CAP_PTR] = first;
        }
        for (i, &(off, id, body)) in caps.iter().enumerate() {
            let next = caps.get(i + 1).map_or(0, |c| c.0);
            let off = usize::from(off);
            c[off] = id;
            c[off + 1] = next;
            c[off + 2..off + 2 + body.len()].copy_from_slice(body);
        }
        c
    }

    #[test]
    fn walks_the_standard_list() {
        let c = config_with(&[
            (0x40, id::PM, &[]),
            (0x50, id::MSI, &[]),
            (0x70, id::PCIE, &[]),
        ]);
        assert_eq!(
            capabilities(&c).unwrap(),
            vec![
                PciCapability {
                    id: id::PM,
                    offset: 0x40
                },
                PciCapability {
                    id: id::MSI,
                    offset: 0x50
                },
                PciCapability {
                    id: id::PCIE,
                    offset: 0x70
                },
            ]
        );
        assert_eq!(find(&c, id::PCIE).unwrap(), Some(0x70));
        assert_eq!(find(&c, id::MSIX).unwrap(), None);
    }

    #[test]
    fn no_status_bit_or_null_pointer_means_no_list() {
        let mut c = config_with(&[(0x40, id::PM, &[])]);
        c[STATUS] = 0;
        assert_eq!(capabilities(&c).unwrap(), vec![]);
        c[STATUS] = STATUS_CAP_LIST as u8;
        c[CAP_PTR] = 0x03; // Only reserved bits set.
        assert_eq!(capabilities(&c).unwrap(), vec![]);
    }

    #[test]
    fn reserved_pointer_bits_are_masked() {
        let mut c = config_with(&[(0x40, id::PM, &[]), (0x48, id::MSIX, &[])]);
        c[CAP_PTR] = 0x43;
        c[0x41] = 0x4B;
        assert_eq!(
            capabilities(&c).unwrap(),
            vec![
                PciCapability {
                    id: id::PM,
                    offset: 0x40
                },
                PciCapability {
                    id: id::MSIX,
                    offset: 0x48
                }
            ]
        );
    }

    #[test]
    fn pointer_below_0x40_is_an_error() {
        let mut c = config_with(&[(0x40, id::PM, &[])]);
        c[CAP_PTR] = 0x3C;
        let e = capabilities(&c).unwrap_err();
        assert_eq!(e.reason(), "capabilities pointer is 0x3c, below 0x40");
        let mut c = config_with(&[(0x40, id::PM, &[])]);
        c[0x41] = 0x10;
        let e = capabilities(&c).unwrap_err();
        assert_eq!(e.reason(), "capability at 0x40 points to 0x10, below 0x40");
        assert_eq!(e.offset(), Some(0x40));
    }

    #[test]
    fn a_loop_is_an_error() {
        let mut c = config_with(&[(0x40, id::PM, &[]), (0x50, id::MSI, &[])]);
        c[0x51] = 0x40;
        let e = capabilities(&c).unwrap_err();
        assert_eq!(e.reason(), "capability at 0x50 points back to 0x40: loop");
        // A device that reads all ones: a capability at 0xFC pointing at itself.
        let c = vec![0xFF; 256];
        assert!(capabilities(&c).unwrap_err().reason().ends_with("loop"));
    }

    #[test]
    fn truncated_config_space_is_an_error() {
        assert!(capabilities(&[0; 4]).is_err());
        let mut c = vec![0u8; 0x35];
        c[STATUS] = STATUS_CAP_LIST as u8;
        assert_eq!(capabilities(&c).unwrap(), vec![]);
        c[CAP_PTR] = 0x40;
        let e = capabilities(&c).unwrap_err();
        assert!(e.reason().contains("config space ends at 0x35"), "{e}");
        assert!(capabilities(&c[..0x34]).is_err());
    }

    fn ext_header(id: u16, version: u8, next: u16) -> [u8; 4] {
        (u32::from(id) | u32::from(version) << 16 | u32::from(next) << 20).to_le_bytes()
    }

    fn with_ext(caps: &[(u16, u16, u8)]) -> Vec<u8> {
        let mut c = vec![0u8; 4096];
        for (i, &(off, id, version)) in caps.iter().enumerate() {
            let next = caps.get(i + 1).map_or(0, |c| c.0);
            let off = usize::from(off);
            c[off..off + 4].copy_from_slice(&ext_header(id, version, next));
        }
        c
    }

    #[test]
    fn walks_the_extended_list() {
        let c = with_ext(&[
            (0x100, ext_id::AER, 2),
            (0x148, ext_id::DSN, 1),
            (0x1b8, ext_id::SRIOV, 1),
        ]);
        assert_eq!(
            extended_capabilities(&c).unwrap(),
            vec![
                ExtendedCapability {
                    id: ext_id::AER,
                    version: 2,
                    offset: 0x100
                },
                ExtendedCapability {
                    id: ext_id::DSN,
                    version: 1,
                    offset: 0x148
                },
                ExtendedCapability {
                    id: ext_id::SRIOV,
                    version: 1,
                    offset: 0x1b8
                },
            ]
        );
        assert_eq!(find_extended(&c, ext_id::SRIOV).unwrap(), Some(0x1b8));
        assert_eq!(find_extended(&c, ext_id::ACS).unwrap(), None);
    }

    #[test]
    fn no_extended_space_or_empty_header_means_no_list() {
        assert_eq!(extended_capabilities(&[0; 256]).unwrap(), vec![]);
        assert_eq!(extended_capabilities(&vec![0; 4096]).unwrap(), vec![]);
        assert_eq!(extended_capabilities(&vec![0xFF; 4096]).unwrap(), vec![]);
    }

    #[test]
    fn extended_errors() {
        // Header at 0x100 cut off.
        let c = with_ext(&[(0x100, ext_id::AER, 1)]);
        let e = extended_capabilities(&c[..0x102]).unwrap_err();
        assert!(e.reason().contains("needs at least 0x104"), "{e}");
        // Next below 0x100.
        let mut c = with_ext(&[(0x100, ext_id::AER, 1)]);
        c[0x100..0x104].copy_from_slice(&ext_header(1, 1, 0x40));
        let e = extended_capabilities(&c).unwrap_err();
        assert_eq!(
            e.reason(),
            "capability at 0x100 points to 0x40, below 0x100"
        );
        // Loop.
        let mut c = with_ext(&[(0x100, ext_id::AER, 1), (0x200, ext_id::ACS, 1)]);
        c[0x200..0x204].copy_from_slice(&ext_header(ext_id::ACS, 1, 0x100));
        let e = extended_capabilities(&c).unwrap_err();
        assert_eq!(e.reason(), "capability at 0x200 points back to 0x100: loop");
        // Next past a truncated buffer.
        let c = with_ext(&[(0x100, ext_id::AER, 1), (0x800, ext_id::ACS, 1)]);
        let e = extended_capabilities(&c[..0x400]).unwrap_err();
        assert!(e.reason().contains("config space ends at 0x400"), "{e}");
        // More than MAX_EXTENDED distinct 4-byte capabilities.
        let chain: Vec<(u16, u16, u8)> = (0..=MAX_EXTENDED as u16)
            .map(|i| (0x100 + 4 * i, 0x99, 1))
            .collect();
        let e = extended_capabilities(&with_ext(&chain)).unwrap_err();
        assert!(e.reason().contains("more than 480"), "{e}");
        assert_eq!(
            extended_capabilities(&with_ext(&chain[..MAX_EXTENDED]))
                .unwrap()
                .len(),
            MAX_EXTENDED
        );
    }

    #[test]
    fn decodes_msix() {
        // 64 entries, enabled, table in BAR 4 at 0x2000, PBA in BAR 4 at 0x3000.
        let mut body = vec![];
        body.extend_from_slice(&(63u16 | 1 << 15).to_le_bytes());
        body.extend_from_slice(&(0x2000u32 | 4).to_le_bytes());
        body.extend_from_slice(&(0x3000u32 | 4).to_le_bytes());
        let c = config_with(&[(0x40, id::PM, &[]), (0x70, id::MSIX, &body)]);
        assert_eq!(
            msix(&c).unwrap(),
            Some(MsixCapability {
                table_size: 64,
                table_bar: 4,
                table_offset: 0x2000,
                pba_bar: 4,
                pba_offset: 0x3000,
                enabled: true,
                function_masked: false,
            })
        );
        assert_eq!(msix(&config_with(&[(0x40, id::PM, &[])])).unwrap(), None);
        // Table size field all ones: 2048 entries, function mask.
        let mut c2 = c.clone();
        c2[0x72..0x74].copy_from_slice(&(0x7FFu16 | 1 << 14).to_le_bytes());
        let m = msix(&c2).unwrap().unwrap();
        assert_eq!(
            (m.table_size, m.enabled, m.function_masked),
            (2048, false, true)
        );
    }

    #[test]
    fn msix_errors() {
        let mut body = vec![0u8; 10];
        body[2] = 6; // Table BIR 6.
        let c = config_with(&[(0x70, id::MSIX, &body)]);
        let e = msix(&c).unwrap_err();
        assert!(e.reason().contains("table in BAR 6"), "{e}");
        // A 12-byte capability at 0xF8 crosses 0x100.
        let c = config_with(&[(0xF8, id::MSIX, &[])]);
        let e = msix(&c).unwrap_err();
        assert_eq!(
            e.reason(),
            "MSI-X capability at 0xf8 is 12 bytes but standard capabilities end at 0x100"
        );
        // Cut off by a short buffer.
        let c = config_with(&[(0x70, id::MSIX, &[])]);
        let e = msix(&c[..0x78]).unwrap_err();
        assert!(e.reason().contains("config space ends at 0x78"), "{e}");
    }

    #[test]
    fn decodes_msi() {
        // 64-bit, per-vector masking, 8 vectors capable, enabled.
        let ctrl: u16 = 1 | 3 << 1 | 1 << 7 | 1 << 8;
        let c = config_with(&[(0x50, id::MSI, &ctrl.to_le_bytes())]);
        assert_eq!(
            msi(&c).unwrap(),
            Some(MsiCapability {
                vectors_capable: 8,
                is_64bit: true,
                per_vector_masking: true,
                enabled: true
            })
        );
        let c = config_with(&[(0x50, id::MSI, &[0, 0])]);
        assert_eq!(
            msi(&c).unwrap(),
            Some(MsiCapability {
                vectors_capable: 1,
                is_64bit: false,
                per_vector_masking: false,
                enabled: false
            })
        );
        assert_eq!(msi(&config_with(&[(0x40, id::PM, &[])])).unwrap(), None);
    }

    #[test]
    fn msi_errors() {
        let c = config_with(&[(0x50, id::MSI, &(6u16 << 1).to_le_bytes())]);
        let e = msi(&c).unwrap_err();
        assert!(
            e.reason()
                .contains("reserved Multiple Message Capable encoding 6"),
            "{e}"
        );
        // A 24-byte (64-bit, masking) capability at 0xF0 crosses 0x100; 10 bytes at 0xF4 fit.
        let ctrl: u16 = 1 << 7 | 1 << 8;
        let c = config_with(&[(0xF0, id::MSI, &ctrl.to_le_bytes())]);
        assert!(msi(&c).unwrap_err().reason().contains("is 24 bytes"));
        let c = config_with(&[(0xF4, id::MSI, &[0, 0])]);
        assert!(msi(&c).unwrap().is_some());
    }

    proptest! {
        #[test]
        fn standard_walk_never_panics_and_keeps_its_invariants(
            mut config in prop::collection::vec(any::<u8>(), 0..300),
            set_status in any::<bool>(),
        ) {
            if set_status && config.len() > STATUS {
                config[STATUS] |= STATUS_CAP_LIST as u8;
            }
            match capabilities(&config) {
                Ok(caps) => {
                    prop_assert!(caps.len() <= MAX_STANDARD);
                    let mut offsets: Vec<u8> = caps.iter().map(|c| c.offset).collect();
                    for c in &caps {
                        prop_assert!(usize::from(c.offset) >= STANDARD_START && c.offset % 4 == 0);
                        prop_assert!(usize::from(c.offset) + 1 < config.len());
                        prop_assert_eq!(config[usize::from(c.offset)], c.id);
                    }
                    offsets.sort_unstable();
                    offsets.dedup();
                    prop_assert_eq!(offsets.len(), caps.len());
                }
                Err(e) => prop_assert_eq!(e.what(), LIST),
            }
            let _ = find(&config, id::MSIX);
            if let Ok(Some(m)) = msix(&config) {
                prop_assert!((1..=2048).contains(&m.table_size) && m.table_bar <= 5 && m.pba_bar <= 5);
            }
            if let Ok(Some(m)) = msi(&config) {
                prop_assert!(m.vectors_capable.is_power_of_two() && m.vectors_capable <= 32);
            }
        }

        #[test]
        fn extended_walk_never_panics_and_keeps_its_invariants(
            config in prop::collection::vec(any::<u8>(), 0..4200),
            links in prop::collection::vec((0x40usize..0x400, any::<u16>(), 0u16..0x1000), 0..40),
        ) {
            // Plant headers at dword offsets so chains actually form.
            let mut config = config;
            for (slot, id, next) in links {
                let at = slot * 4;
                if at + 4 <= config.len() {
                    config[at..at + 4].copy_from_slice(&ext_header(id, 1, next));
                }
            }
            if let Ok(caps) = extended_capabilities(&config) {
                prop_assert!(caps.len() <= MAX_EXTENDED);
                let mut offsets: Vec<u16> = caps.iter().map(|c| c.offset).collect();
                for c in &caps {
                    let off = usize::from(c.offset);
                    prop_assert!(off >= EXTENDED_START && off % 4 == 0 && off + 4 <= config.len());
                    prop_assert_eq!(u16_at(&config, off), Some(c.id));
                }
                offsets.sort_unstable();
                offsets.dedup();
                prop_assert_eq!(offsets.len(), caps.len());
            }
        }

        #[test]
        fn dense_standard_lists_never_panic(links in prop::collection::vec((any::<u8>(), any::<u8>()), 48), ptr in any::<u8>()) {
            // Every dword of 0x40..0x100 holds a capability pointing anywhere.
            let mut c = vec![0u8; 256];
            c[STATUS] = STATUS_CAP_LIST as u8;
            c[CAP_PTR] = ptr;
            for (i, (id, next)) in links.into_iter().enumerate() {
                c[0x40 + 4 * i] = id;
                c[0x41 + 4 * i] = next;
            }
            match capabilities(&c) {
                Ok(caps) => prop_assert!(caps.len() <= MAX_STANDARD),
                Err(e) => prop_assert!(
                    e.reason().ends_with("loop") || e.reason().contains("below 0x40"),
                    "unexpected error {}", e
                ),
            }
        }
    }
}
