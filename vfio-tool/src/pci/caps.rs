//! The capability lists, each entry named and detailed as `lspci -vvv` does.

use super::express::{self, Slot};
use super::extended;
use super::names::{extended_name, standard_name};
use super::regs::{self, Lines, bit, flag, has, r8, r16, r32};
use serde::Serialize;
use vfio_core::parse::pci_caps::{self, id};

/// One capability, standard or extended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// Offset in config space.
    pub offset: u16,
    /// Capability id (8 bits for standard, 16 for extended capabilities).
    pub id: u16,
    /// A PCI Express extended capability (in 0x100..0x1000).
    pub extended: bool,
    /// The extended capability's version; `None` for standard ones.
    pub version: Option<u8>,
    /// What `lspci -vvv` prints after `Capabilities: [offset]` (and the
    /// version, for an extended capability).
    pub name: String,
    /// `name` is only the start of what lspci prints. Every name is whole
    /// now; the field stays for the JSON output's users.
    pub name_is_prefix: bool,
    /// Detail lines, each one `lspci -vvv` prints under the capability
    /// (without its indentation, and trimmed). lspci may print more, unless
    /// `details_complete`.
    pub details: Vec<String>,
    /// How much further than a register's first line lspci indents each of
    /// `details`: 0 for a register's first line, 1 for the lines that
    /// continue it (`ExtTag- RBE+ FLReset-` under `DevCap:`). As long as
    /// `details`.
    pub detail_indents: Vec<u8>,
    /// `details` are all the lines `lspci -vvv` prints under the
    /// capability, in its order: the capability is decoded in full.
    pub details_complete: bool,
}

impl Capability {
    /// The capability's line as `lspci -vvv` prints it, without its
    /// leading tab: `Capabilities: [40] Power Management version 3` or
    /// `Capabilities: [100 v2] Advanced Error Reporting`.
    pub fn header_line(&self) -> String {
        match self.version {
            // A serial number cut off (or a PCI-X capability in a CardBus
            // header) leaves lspci's line with no name.
            Some(v) => format!("Capabilities: [{:03x} v{v}] {}", self.offset, self.name)
                .trim_end()
                .to_owned(),
            None => format!("Capabilities: [{:02x}] {}", self.offset, self.name)
                .trim_end()
                .to_owned(),
        }
    }
}

/// Both capability lists of a function's config space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapabilityList {
    /// The standard capabilities, in list order.
    pub standard: Vec<Capability>,
    /// Why the standard list could not be walked to its end, if it could not.
    pub standard_error: Option<String>,
    /// The extended capabilities, in list order. Walked only when the
    /// function has a PCI Express capability and more than 256 bytes of
    /// config space were read, as lspci does: a conventional PCI function
    /// has no extended space.
    pub extended: Vec<Capability>,
    /// Why the extended list could not be walked to its end, if it could not.
    pub extended_error: Option<String>,
}

/// Decodes both capability lists of `config` (any length; fields past its
/// end are left out) as `lspci -vvv` decodes those of a function at device
/// 0, function 0. [`decode_at`] says where the function is.
pub fn decode(config: &[u8]) -> CapabilityList {
    decode_at(config, 0, 0)
}

/// Decodes both capability lists of `config`, the config space of the
/// function at `device` and `function` of its bus: lspci leaves an
/// endpoint's LnkCap2 and LnkCtl2 out unless it is device 0, function 0.
pub fn decode_at(config: &[u8], device: u8, function: u8) -> CapabilityList {
    let slot = Slot { device, function };
    let mut list = CapabilityList {
        standard: Vec::new(),
        standard_error: None,
        extended: Vec::new(),
        extended_error: None,
    };
    let standard = match pci_caps::capabilities(config) {
        Ok(caps) => caps,
        Err(e) => {
            list.standard_error = Some(e.to_string());
            Vec::new()
        }
    };
    let mut express = false;
    // The port type of the last Express capability, which lspci words
    // AER's root registers by.
    let mut port_type = None;
    for cap in standard {
        let at = usize::from(cap.offset);
        if cap.id == id::PCIE {
            express = true;
            port_type = express::port_type(config, at);
        }
        list.standard.push(standard_cap(config, cap.id, at, slot));
    }
    if express && config.len() > pci_caps::EXTENDED_START {
        match pci_caps::extended_capabilities(config) {
            Ok(caps) => {
                list.extended = caps
                    .into_iter()
                    // lspci ends the list at a header of 0 or all ones
                    // wherever it is; the walker only at 0x100.
                    .take_while(|c| {
                        !matches!(regs::r32(config, usize::from(c.offset)), Some(0 | u32::MAX))
                    })
                    .map(|c| {
                        extended_cap(config, c.id, c.version, usize::from(c.offset), port_type)
                    })
                    .collect();
            }
            Err(e) => list.extended_error = Some(e.to_string()),
        }
    }
    list
}

fn standard_cap(c: &[u8], cap_id: u8, at: usize, slot: Slot) -> Capability {
    let decoded = match standard_name(cap_id) {
        Some(name) => Some((name.to_owned(), Lines::default())),
        None => standard_fields(c, cap_id, at, slot),
    };
    let complete = decoded.is_some() && standard_complete(c, cap_id, at);
    let (name, details) = decoded.unwrap_or_else(|| {
        (
            format!("<cut off: capability {cap_id:#04x} runs past the bytes read>"),
            Lines::default(),
        )
    });
    Capability {
        offset: at as u16,
        id: cap_id.into(),
        extended: false,
        version: None,
        name,
        name_is_prefix: false,
        details: details.lines,
        detail_indents: details.indents,
        details_complete: complete,
    }
}

/// Whether the detail lines decoded for standard capability `cap_id` are
/// all lspci prints under it: all but VPD (whose contents lspci reads
/// through the kernel) and HyperTransport's primary and secondary
/// interfaces (whose link registers are not decoded here).
fn standard_complete(c: &[u8], cap_id: u8, at: usize) -> bool {
    match cap_id {
        id::VPD => false,
        HYPERTRANSPORT => r16(c, at + 2).is_some_and(|cmd| cmd & 0xC000 != 0),
        _ => true,
    }
}

/// The name line and details of the standard capabilities whose line carries fields.
fn standard_fields(c: &[u8], cap_id: u8, at: usize, slot: Slot) -> Option<(String, Lines)> {
    let named = |name: String| Some((name, Lines::default()));
    match cap_id {
        id::PM => power_management(c, at),
        id::MSI => msi(c, at),
        id::MSIX => msix(c, at),
        id::VENDOR => vendor(c, at),
        id::PCIE => express::express(c, at, slot),
        id::AGP => agp(c, at),
        PCI_X => pci_x(c, at),
        id::SLOT_ID => {
            let esr = r8(c, at + 2)?;
            let chassis = r8(c, at + 3)?;
            named(format!(
                "Slot ID: {} slots, First{}, chassis {chassis:02x}",
                esr & 0x1F,
                flag(esr & 0x20 != 0)
            ))
        }
        id::DEBUG => {
            let d = r16(c, at + 2)?;
            named(format!(
                "Debug port: BAR={} offset={:04x}",
                d >> 13,
                d & 0x1FFF
            ))
        }
        id::SUBSYSTEM_VENDOR => {
            let vendor = r16(c, at + 4)?;
            let device = r16(c, at + 6)?;
            named(format!("Subsystem: Device {vendor:04x}:{device:04x}"))
        }
        id::AF => advanced_features(c, at),
        id::EA => enhanced_allocation(c, at),
        HYPERTRANSPORT => hypertransport(c, at),
        id::SATA => {
            let rev = r8(c, at + 2)?;
            let mut name = format!("SATA HBA v{}.{}", rev >> 4 & 0xF, rev & 0xF);
            if let Some(bars) = r32(c, at + 4) {
                let bar = bars & 0xF;
                match bar {
                    4..=9 => name.push_str(&format!(
                        " BAR{} Offset={:08x}",
                        bar - 4,
                        bars >> 4 & 0xF_FFFF
                    )),
                    15 => name.push_str(" InCfgSpace"),
                    _ => name.push_str(&format!(" BAR??{bar}")),
                }
            }
            named(name)
        }
        other => {
            let word = r16(c, at + 2)?;
            named(format!("Capability ID {other:#x} [{word:04x}]"))
        }
    }
}

/// PCI-X (0x07).
const PCI_X: u8 = 0x07;
/// HyperTransport (0x08).
const HYPERTRANSPORT: u8 = 0x08;

/// HyperTransport: named by its capability type (bits 15:11 of its
/// command register, or 15:13 for the interface blocks); MSI Mapping with
/// its flags and, where the address is not fixed, the mapping base.
fn hypertransport(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let cmd = u32::from(r16(c, at + 2)?);
    let mut out = Lines::default();
    let kind = match cmd & 0xE000 {
        0x0000 => "Slave or Primary Interface".to_owned(),
        0x2000 => "Host or Secondary Interface".to_owned(),
        _ => match cmd & 0xF800 {
            0x4000 => "Switch".to_owned(),
            0x8000 => "Interrupt Discovery and Configuration".to_owned(),
            0x8800 => format!("Revision ID: {}.{:02}", cmd >> 5 & 7, cmd & 0x1F),
            0x9000 => "UnitID Clumping".to_owned(),
            0x9800 => "Extended Configuration Space Access".to_owned(),
            0xA000 => "Address Mapping".to_owned(),
            0xA800 => {
                let fixed = cmd & 2 != 0;
                if !fixed && has(c, at + 4, 8) {
                    let base =
                        u64::from(r32(c, at + 8)?) << 32 | u64::from(r32(c, at + 4)? & 0xFFF0_0000);
                    out.line(format!("Mapping Address Base: {base:016x}"));
                }
                format!("MSI Mapping Enable{} Fixed{}", bit(cmd, 0), flag(fixed))
            }
            0xB000 => "DirectRoute".to_owned(),
            0xB800 => "VCSet".to_owned(),
            0xC000 => "Retry Mode".to_owned(),
            0xC800 => "X86 (reserved)".to_owned(),
            other => format!("#{:02x}", other >> 11),
        },
    };
    Some((format!("HyperTransport: {kind}"), out))
}

/// AGP's transfer rates from a rate field: 1x, 2x, 4x, or in AGP3 mode 4x
/// and 8x.
fn agp_rate(rate: u32, agp3: bool) -> String {
    let shift = if agp3 { 2 } else { 0 };
    let rates: Vec<String> = (0..3)
        .filter(|i| rate >> i & 1 == 1)
        .map(|i| format!("x{}", 1 << (i + shift)))
        .collect();
    if rates.is_empty() {
        "<none>".to_owned()
    } else {
        rates.join(",")
    }
}

fn agp(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let v = u32::from(r8(c, at + 2)?);
    let (major, minor) = (v >> 4 & 0xF, v & 0xF);
    let name = format!("AGP version {major:x}.{minor:x}");
    let mut out = Lines::default();
    if !has(c, at + 4, 8) {
        return Some((name, out));
    }
    let sta = r32(c, at + 4)?;
    let agp3 = major >= 3 && sta & 8 != 0;
    out.line(format!(
        "Status: RQ={} Iso{} ArqSz={} Cal={} SBA{} ITACoh{} GART64{} HTrans{} 64bit{} FW{} AGP3{} Rate={}",
        (sta >> 24) + 1,
        bit(sta, 16),
        sta >> 13 & 7,
        sta >> 10 & 7,
        bit(sta, 9),
        bit(sta, 8),
        bit(sta, 7),
        bit(sta, 6),
        bit(sta, 5),
        bit(sta, 4),
        bit(sta, 3),
        agp_rate(sta & 7, agp3)
    ));
    let cmd = r32(c, at + 8)?;
    out.line(format!(
        "Command: RQ={} ArqSz={} Cal={} SBA{} AGP{} GART64{} 64bit{} FW{} Rate={}",
        (cmd >> 24) + 1,
        cmd >> 13 & 7,
        cmd >> 10 & 7,
        bit(cmd, 9),
        bit(cmd, 8),
        bit(cmd, 7),
        bit(cmd, 5),
        bit(cmd, 4),
        agp_rate(cmd & 7, agp3)
    ));
    Some((name, out))
}

/// PCI-X's outstanding split transactions, by their 3-bit code.
const MAX_OUTSTANDING: [u32; 8] = [1, 2, 3, 4, 8, 12, 16, 32];

/// PCI-X: a device's or a bridge's registers, by the header type; lspci
/// names it nothing in other headers.
fn pci_x(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let mut out = Lines::default();
    let requester = |s: u32| format!("Dev={:02x}:{:02x}.{}", s >> 8 & 0xFF, s >> 3 & 0x1F, s & 7);
    match r8(c, 0x0E)? & 0x7F {
        0 => {
            let name = "PCI-X non-bridge device".to_owned();
            if !has(c, at + 4, 4) {
                return Some((name, out));
            }
            let cmd = u32::from(r16(c, at + 2)?);
            let sta = r32(c, at + 4)?;
            out.line(format!(
                "Command: DPERE{} ERO{} RBC={} OST={}",
                bit(cmd, 0),
                bit(cmd, 1),
                1u32 << (9 + (cmd >> 2 & 3)),
                MAX_OUTSTANDING[(cmd >> 4 & 7) as usize]
            ));
            out.line(format!(
                "Status: {} 64bit{} 133MHz{} SCD{} USC{} DC={} DMMRBC={} DMOST={} DMCRS={} RSCEM{} 266MHz{} 533MHz{}",
                requester(sta),
                bit(sta, 16),
                bit(sta, 17),
                bit(sta, 18),
                bit(sta, 19),
                if sta & 1 << 20 != 0 { "bridge" } else { "simple" },
                1u32 << (9 + (sta >> 21 & 3)),
                MAX_OUTSTANDING[(sta >> 23 & 7) as usize],
                1u32 << (3 + (sta >> 26 & 7)),
                bit(sta, 29),
                bit(sta, 30),
                bit(sta, 31)
            ));
            Some((name, out))
        }
        1 => {
            let name = "PCI-X bridge device".to_owned();
            if !has(c, at + 4, 12) {
                return Some((name, out));
            }
            const FREQ: [&str; 8] = ["conv", "66MHz", "100MHz", "133MHz", "?4", "?5", "?6", "?7"];
            let sec = u32::from(r16(c, at + 2)?);
            out.line(format!(
                "Secondary Status: 64bit{} 133MHz{} SCD{} USC{} SCO{} SRD{} Freq={}",
                bit(sec, 0),
                bit(sec, 1),
                bit(sec, 2),
                bit(sec, 3),
                bit(sec, 4),
                bit(sec, 5),
                FREQ[(sec >> 6 & 7) as usize]
            ));
            let sta = r32(c, at + 4)?;
            out.line(format!(
                "Status: {} 64bit{} 133MHz{} SCD{} USC{} SCO{} SRD{}",
                requester(sta),
                bit(sta, 16),
                bit(sta, 17),
                bit(sta, 18),
                bit(sta, 19),
                bit(sta, 20),
                bit(sta, 21)
            ));
            for (label, off) in [("Upstream", 8), ("Downstream", 12)] {
                let v = r32(c, at + off)?;
                out.line(format!(
                    "{label}: Capacity={} CommitmentLimit={}",
                    v & 0xFFFF,
                    v >> 16
                ));
            }
            Some((name, out))
        }
        _ => Some((String::new(), out)),
    }
}

/// What an Enhanced Allocation entry's properties byte says, if lspci
/// knows the value.
fn ea_property(p: u32, secondary: bool) -> Option<&'static str> {
    Some(match p {
        0x00 => "memory space, non-prefetchable",
        0x01 => "memory space, prefetchable",
        0x02 => "I/O space",
        0x03 => "VF memory space, prefetchable",
        0x04 => "VF memory space, non-prefetchable",
        0x05 => "allocation behind bridge, non-prefetchable memory",
        0x06 => "allocation behind bridge, prefetchable memory",
        0x07 => "allocation behind bridge, I/O space",
        0xFD => "memory space resource unavailable for use",
        0xFE => "I/O space resource unavailable for use",
        0xFF if secondary => "entry unavailable for use, PrimaryProperties should be used",
        0xFF => "entry unavailable for use",
        _ => return None,
    })
}

/// Enhanced Allocation: the entry count (and a bridge's fixed bus
/// numbers) on the name line, then each entry's header, BAR equivalent,
/// properties, base and max offset.
fn enhanced_allocation(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let count = u32::from(r8(c, at + 2)? & 0x3F);
    let mut name = format!("Enhanced Allocation (EA): NumEntries={count}");
    let mut entry_at = at + 4;
    let mut out = Lines::default();
    if r8(c, 0x0E).is_some_and(|h| h & 0x7F == 1) {
        entry_at += 4;
        match (r8(c, at + 4), r8(c, at + 5)) {
            (Some(secondary), Some(subordinate)) => name.push_str(&format!(
                ", secondary={secondary}, subordinate={subordinate}"
            )),
            _ => return Some((name, out)),
        }
    }
    for entry in 0..count {
        let Some(header) = r32(c, entry_at) else {
            break;
        };
        let size = header & 7;
        if !has(c, entry_at + 4, 4 * size as usize) {
            break;
        }
        out.line(format!(
            "Entry {entry}: Enable{} Writable{} EntrySize={size}",
            bit(header, 31),
            bit(header, 30)
        ));
        let bei = header >> 4 & 0xF;
        let equivalent = match bei {
            0..=5 => format!("BAR {bei}"),
            6 => "resource behind function".to_owned(),
            7 => "not indicated".to_owned(),
            8 => "expansion ROM".to_owned(),
            9..=14 => format!("VF-BAR {}", bei - 9),
            _ => "reserved".to_owned(),
        };
        out.more(format!("BAR Equivalent Indicator: {equivalent}"));
        for (label, p, secondary) in [
            ("PrimaryProperties", header >> 8 & 0xFF, false),
            ("SecondaryProperties", header >> 16 & 0xFF, true),
        ] {
            let text =
                ea_property(p, secondary).map_or_else(|| format!("[{p:02x}]"), str::to_owned);
            out.more(format!("{label}: {text}"));
        }
        // Bit 1 of the base and of the max offset says a high dword follows.
        let base = r32(c, entry_at + 4)?;
        let max = r32(c, entry_at + 8)?;
        let mut high_at = entry_at + 12;
        let mut line = "Base: ".to_owned();
        if base & 2 != 0 {
            line.push_str(&format!("{:x}", r32(c, entry_at + 12)?));
            high_at += 4;
        }
        line.push_str(&format!("{:08x}", base & !3));
        out.more(line);
        let mut line = "MaxOffset: ".to_owned();
        if max & 2 != 0 {
            line.push_str(&format!("{:x}", r32(c, high_at)?));
        }
        line.push_str(&format!("{:08x}", max | 3));
        out.more(line);
        entry_at += 4 + 4 * size as usize;
    }
    Some((name, out))
}

/// PCI Advanced Features: transactions pending and function-level reset.
fn advanced_features(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let mut out = Lines::default();
    if let (Some(cap), Some(ctl), Some(sta)) = (r8(c, at + 3), r8(c, at + 4), r8(c, at + 5)) {
        let (cap, ctl, sta) = (u32::from(cap), u32::from(ctl), u32::from(sta));
        out.line(format!("AFCap: TP{} FLR{}", bit(cap, 0), bit(cap, 1)));
        out.line(format!("AFCtrl: FLR{}", bit(ctl, 0)));
        out.line(format!("AFStatus: TP{}", bit(sta, 0)));
    }
    Some(("PCI Advanced Features".to_owned(), out))
}

const AUX_CURRENT_MA: [u32; 8] = [0, 55, 100, 160, 220, 270, 320, 375];

fn power_management(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let pmc = u32::from(r16(c, at + 2)?);
    let pmcsr = u32::from(r16(c, at + 4)?);
    let state = match pmcsr & 3 {
        0 => "D0",
        1 => "D1",
        2 => "D2",
        _ => "D3",
    };
    let mut out = Lines::default();
    out.line(format!(
        "Flags: PMEClk{} DSI{} D1{} D2{} AuxCurrent={}mA PME(D0{},D1{},D2{},D3hot{},D3cold{})",
        bit(pmc, 3),
        bit(pmc, 5),
        bit(pmc, 9),
        bit(pmc, 10),
        AUX_CURRENT_MA[(pmc >> 6 & 7) as usize],
        bit(pmc, 11),
        bit(pmc, 12),
        bit(pmc, 13),
        bit(pmc, 14),
        bit(pmc, 15),
    ));
    out.line(format!(
        "Status: {state} NoSoftRst{} PME-Enable{} DSel={} DScale={} PME{}",
        bit(pmcsr, 3),
        bit(pmcsr, 8),
        pmcsr >> 9 & 0xF,
        pmcsr >> 13 & 3,
        bit(pmcsr, 15),
    ));
    // A bridge's PCI-to-PCI bridge support extensions, when it has any.
    let bridge = u32::from(r8(c, at + 6)?);
    if bridge != 0 {
        out.line(format!(
            "Bridge: PM{} B3{}",
            bit(bridge, 7),
            flag(bridge & 0x40 == 0)
        ));
    }
    Some((format!("Power Management version {}", pmc & 7), out))
}

fn msi(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let ctrl = u32::from(r16(c, at + 2)?);
    let is_64 = ctrl & 0x80 != 0;
    let maskable = ctrl & 0x100 != 0;
    let name = format!(
        "MSI: Enable{} Count={}/{} Maskable{} 64bit{}",
        bit(ctrl, 0),
        1u32 << (ctrl >> 4 & 7),
        1u32 << (ctrl >> 1 & 7),
        flag(maskable),
        flag(is_64),
    );
    let lo = r32(c, at + 4)?;
    let (address, data_at) = if is_64 {
        (format!("{:08x}{lo:08x}", r32(c, at + 8)?), at + 12)
    } else {
        (format!("{lo:08x}"), at + 8)
    };
    let mut details = Lines::default();
    details.line(format!(
        "Address: {address}  Data: {:04x}",
        r16(c, data_at)?
    ));
    if maskable {
        details.line(format!(
            "Masking: {:08x}  Pending: {:08x}",
            r32(c, data_at + 4)?,
            r32(c, data_at + 8)?
        ));
    }
    Some((name, details))
}

fn msix(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let ctrl = u32::from(r16(c, at + 2)?);
    let table = r32(c, at + 4)?;
    let pba = r32(c, at + 8)?;
    let mut out = Lines::default();
    out.line(format!(
        "Vector table: BAR={} offset={:08x}",
        table & 7,
        table & !7
    ));
    out.line(format!("PBA: BAR={} offset={:08x}", pba & 7, pba & !7));
    Some((
        format!(
            "MSI-X: Enable{} Count={} Masked{}",
            bit(ctrl, 15),
            (ctrl & 0x7FF) + 1,
            bit(ctrl, 14)
        ),
        out,
    ))
}

/// A virtio device's vendor capability: the vendor is Red Hat's 0x1af4, the
/// device 0x1000..=0x107f, and the capability is at least 16 bytes long.
fn vendor(c: &[u8], at: usize) -> Option<(String, Lines)> {
    let len = r8(c, at + 2)?;
    let is_virtio = r16(c, 0) == Some(0x1AF4)
        && r16(c, 2).is_some_and(|d| (0x1000..=0x107F).contains(&d))
        && len >= 16;
    if !is_virtio {
        return Some((
            format!("Vendor Specific Information: Len={len:02x} <?>"),
            Lines::default(),
        ));
    }
    let cfg_type = r8(c, at + 3)?;
    let bar = r8(c, at + 4)?;
    let offset = r32(c, at + 8)?;
    let size = r32(c, at + 12)?;
    let kind = match cfg_type {
        1 => "CommonCfg",
        2 => "Notify",
        3 => "ISR",
        4 => "DeviceCfg",
        _ => "<unknown>",
    };
    let mut line = format!("BAR={bar} offset={offset:08x} size={size:08x}");
    if cfg_type == 2 && len >= 20 {
        line.push_str(&format!(" multiplier={:08x}", r32(c, at + 16)?));
    }
    let mut out = Lines::default();
    out.line(line);
    Some((format!("Vendor Specific Information: VirtIO: {kind}"), out))
}

fn extended_cap(
    c: &[u8],
    cap_id: u16,
    version: u8,
    at: usize,
    port_type: Option<u32>,
) -> Capability {
    let name = extended_name(cap_id)
        .map(str::to_owned)
        .unwrap_or_else(|| extended::fields(c, cap_id, at));
    let details = extended::details(c, cap_id, at, port_type);
    Capability {
        offset: at as u16,
        id: cap_id,
        extended: true,
        version: Some(version),
        name,
        name_is_prefix: false,
        details: details.lines,
        detail_indents: details.indents,
        details_complete: extended::complete(c, cap_id, at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(caps: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[6] = 0x10;
        c[0x34] = caps[0].0;
        for (i, &(off, cid, body)) in caps.iter().enumerate() {
            let off = usize::from(off);
            c[off] = cid;
            c[off + 1] = caps.get(i + 1).map_or(0, |n| n.0);
            c[off + 2..off + 2 + body.len()].copy_from_slice(body);
        }
        c
    }

    #[test]
    fn msi_and_msix_lines_carry_their_fields() {
        let mut msi_body = vec![0u8; 22];
        msi_body[0..2].copy_from_slice(&(0x0181u16 | 3 << 1 | 1 << 4).to_le_bytes());
        msi_body[2..6].copy_from_slice(&0xfee0_0000u32.to_le_bytes());
        let mut msix_body = vec![0u8; 10];
        msix_body[0..2].copy_from_slice(&0x8003u16.to_le_bytes());
        msix_body[2..6].copy_from_slice(&0x2004u32.to_le_bytes());
        msix_body[6..10].copy_from_slice(&0x3004u32.to_le_bytes());
        let c = config(&[(0x50, 0x05, &msi_body), (0x70, 0x11, &msix_body)]);
        let list = decode(&c);
        assert_eq!(list.standard_error, None);
        let [msi, msix] = &list.standard[..] else {
            panic!("{list:?}")
        };
        assert_eq!(
            msi.header_line(),
            "Capabilities: [50] MSI: Enable+ Count=2/8 Maskable+ 64bit+"
        );
        assert_eq!(
            msi.details,
            [
                "Address: 00000000fee00000  Data: 0000",
                "Masking: 00000000  Pending: 00000000"
            ]
        );
        assert_eq!(msix.name, "MSI-X: Enable+ Count=4 Masked-");
        assert_eq!(
            msix.details,
            [
                "Vector table: BAR=4 offset=00002000",
                "PBA: BAR=4 offset=00003000"
            ]
        );
        assert!(list.extended.is_empty());
    }

    #[test]
    fn extended_list_is_read_only_for_express_functions() {
        let mut c = config(&[(0x40, 0x10, &[0x02, 0x00])]);
        c.resize(4096, 0);
        c[0x100..0x104].copy_from_slice(&(0x0003u32 | 1 << 16 | 0x140 << 20).to_le_bytes());
        c[0x104..0x10C].copy_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
        c[0x140..0x144].copy_from_slice(&(0x0001u32 | 2 << 16).to_le_bytes());
        let list = decode(&c);
        assert_eq!(list.standard[0].name, "Express (v2) Endpoint, MSI 00");
        let lines: Vec<String> = list.extended.iter().map(Capability::header_line).collect();
        assert_eq!(
            lines,
            [
                "Capabilities: [100 v1] Device Serial Number 88-77-66-55-44-33-22-11",
                "Capabilities: [140 v2] Advanced Error Reporting"
            ]
        );
        // The same bytes with the Express capability renamed: no extended list.
        c[0x40] = 0x09;
        assert!(decode(&c).extended.is_empty());
    }

    #[test]
    fn a_broken_list_is_reported_and_a_cut_off_capability_named_so() {
        let mut c = config(&[(0x40, 0x01, &[])]);
        c[0x41] = 0x40;
        let list = decode(&c);
        assert!(list.standard_error.unwrap().ends_with("loop"));
        let c = config(&[(0xFC, 0x11, &[])]);
        assert_eq!(
            decode(&c).standard[0].name,
            "<cut off: capability 0x11 runs past the bytes read>"
        );
    }

    /// A v2 root port with a slot: 0x40 holds the Express capability.
    fn root_port() -> Vec<u8> {
        let mut body = vec![0u8; 0x3A];
        let mut put = |at: usize, v: u32, n: usize| {
            body[at - 2..at - 2 + n].copy_from_slice(&v.to_le_bytes()[..n]);
        };
        put(2, 0x0142, 2); // v2, root port, slot implemented
        put(0x0C, 0x0303_6C43, 4); // port 3, 8GT/s x4, ASPM L0s L1
        put(0x12, 0x2043, 2); // 8GT/s x4, DLActive
        put(0x14, 0x0028_0C8A, 4); // slot 5, 25W
        put(0x20, 0x0001_0018, 4); // PME from 00:03.0, status
        put(0x2C, 0x0000_000E, 4); // 2.5 to 8 GT/s
        config(&[(0x40, 0x10, &body)])
    }

    #[test]
    fn a_root_port_has_its_link_slot_and_root_registers() {
        let c = root_port();
        let list = decode(&c);
        let express = &list.standard[0];
        assert_eq!(express.name, "Express (v2) Root Port (Slot+), MSI 00");
        assert!(express.details_complete);
        let has = |line: &str| express.details.iter().any(|d| d == line);
        assert!(has(
            "LnkCap:\tPort #3, Speed 8GT/s, Width x4, ASPM L0s L1, Exit Latency L0s <4us, L1 <64us"
        ));
        // A root port is never said to be downgraded.
        assert!(has("LnkSta:\tSpeed 8GT/s, Width x4"));
        assert!(has(
            "SltCap:\tAttnBtn- PwrCtrl+ MRL- AttnInd+ PwrInd- HotPlug- Surprise-"
        ));
        assert!(has("Slot #5, PowerLimit 25W; Interlock- NoCompl-"));
        assert!(has("RootSta: PME ReqID 0018, PMEStatus+ PMEPending-"));
        assert!(has(
            "LnkCap2: Supported Link Speeds: 2.5-8GT/s, Crosslink- Retimer- 2Retimers- DRS-"
        ));
        assert_eq!(express.details.len(), express.detail_indents.len());
        let at = |prefix: &str| {
            let i = express.details.iter().position(|d| d.starts_with(prefix));
            express.detail_indents[i.unwrap()]
        };
        assert_eq!(at("LnkCap:"), 0);
        assert_eq!(at("ClockPM-"), 1);
    }

    #[test]
    fn an_endpoint_away_from_function_0_has_no_lnkcap2() {
        let mut c = root_port();
        // The same registers as an endpoint.
        c[0x42] = 0x02;
        let lines = |l: CapabilityList| l.standard[0].details.clone();
        let at_0 = lines(decode_at(&c, 0, 0));
        let at_1 = lines(decode_at(&c, 1, 0));
        assert!(at_0.iter().any(|d| d.starts_with("LnkCap2:")));
        assert!(at_0.iter().any(|d| d.starts_with("LnkCtl2:")));
        assert!(
            !at_1
                .iter()
                .any(|d| d.starts_with("LnkCap2:") || d.starts_with("LnkCtl2:"))
        );
        assert!(at_1.iter().any(|d| d.starts_with("LnkSta2:")));
        // No slot or root registers for an endpoint.
        assert!(
            !at_0
                .iter()
                .any(|d| d.starts_with("SltCap:") || d.starts_with("RootSta:"))
        );
    }
}
