//! The PCI Express capability (id 0x10): its name line, and the device,
//! link, slot, root and second-generation registers lspci -vvv details,
//! each block only for the port types and capability versions lspci prints
//! it for.

use super::regs::{Lines, bit, flag, has, power_limit, r16, r32};

/// Device/port types of the capability's flags register (bits 7:4).
pub(super) mod port {
    /// PCI Express endpoint.
    pub const ENDPOINT: u32 = 0;
    /// Legacy PCI Express endpoint.
    pub const LEGACY_ENDPOINT: u32 = 1;
    /// Root port of a root complex.
    pub const ROOT_PORT: u32 = 4;
    /// Upstream port of a switch.
    pub const UPSTREAM: u32 = 5;
    /// Downstream port of a switch.
    pub const DOWNSTREAM: u32 = 6;
    /// PCI Express to PCI/PCI-X bridge.
    pub const PCIE_TO_PCI: u32 = 7;
    /// PCI/PCI-X to PCI Express bridge.
    pub const PCI_TO_PCIE: u32 = 8;
    /// Root-complex integrated endpoint.
    pub const RC_INTEGRATED: u32 = 9;
    /// Root-complex event collector.
    pub const RC_EVENT_COLLECTOR: u32 = 10;
}

use port::*;

/// Where the function sits: lspci leaves an endpoint's LnkCap2 and LnkCtl2
/// out unless it is device 0, function 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) device: u8,
    pub(super) function: u8,
}

pub(super) const L0S_LATENCY: [&str; 8] = [
    "<64ns",
    "<128ns",
    "<256ns",
    "<512ns",
    "<1us",
    "<2us",
    "<4us",
    "unlimited",
];
pub(super) const L1_LATENCY: [&str; 8] = [
    "<1us",
    "<2us",
    "<4us",
    "<8us",
    "<16us",
    "<32us",
    "<64us",
    "unlimited",
];

/// The port type of the Express capability at `at`, if its flags were read.
pub(super) fn port_type(c: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(r16(c, at + 2)?) >> 4 & 0xF)
}

/// The capability's name line and detail lines.
pub(super) fn express(c: &[u8], at: usize, slot_at: Slot) -> Option<(String, Lines)> {
    let flags = u32::from(r16(c, at + 2)?);
    let ty = flags >> 4 & 0xF;
    let version = flags & 0xF;
    let slot_flag = flag(flags & 0x100 != 0);
    let kind = match ty {
        ENDPOINT => "Endpoint".to_owned(),
        LEGACY_ENDPOINT => "Legacy Endpoint".to_owned(),
        ROOT_PORT => format!("Root Port (Slot{slot_flag})"),
        UPSTREAM => "Upstream Port".to_owned(),
        DOWNSTREAM => format!("Downstream Port (Slot{slot_flag})"),
        PCIE_TO_PCI => "PCI-Express to PCI/PCI-X Bridge".to_owned(),
        PCI_TO_PCIE => format!("PCI/PCI-X to PCI-Express Bridge (Slot{slot_flag})"),
        RC_INTEGRATED => "Root Complex Integrated Endpoint".to_owned(),
        RC_EVENT_COLLECTOR => "Root Complex Event Collector".to_owned(),
        other => format!("Unknown type {other}"),
    };
    let name = format!("Express (v{version}) {kind}, MSI {:02x}", flags >> 9 & 0x1F);
    // Only ports with a slot below them carry the slot registers, and the
    // integrated endpoint and event collector have no link.
    let slot = matches!(ty, ROOT_PORT | DOWNSTREAM | PCI_TO_PCIE) && flags & 0x100 != 0;
    let link = !matches!(ty, RC_INTEGRATED | RC_EVENT_COLLECTOR);
    let root = matches!(ty, ROOT_PORT | RC_EVENT_COLLECTOR);
    let mut out = Lines::default();
    let size = if root {
        32
    } else if slot {
        24
    } else {
        16
    };
    if !has(c, at + 4, size) {
        return Some((name, out));
    }
    device(c, at, ty, &mut out)?;
    if link {
        link_registers(c, at, ty, &mut out)?;
    }
    if slot {
        slot_registers(c, at, &mut out)?;
    }
    if root {
        root_registers(c, at, &mut out)?;
    }
    if version < 2 || !has(c, at + 0x24, if slot { 24 } else { 16 }) {
        return Some((name, out));
    }
    device2(c, at, ty, has_memory_bar(c), &mut out)?;
    if link {
        link2(c, at, ty, slot_at, &mut out)?;
    }
    Some((name, out))
}

/// Whether a BAR of the header decodes memory space (lspci's test for
/// printing the AtomicOps completer bits): a BAR that is not 0 and has
/// bit 0 clear, of the six BARs of a type 0 header, the two of a bridge or
/// the one of a CardBus bridge.
fn has_memory_bar(c: &[u8]) -> bool {
    let count = match c.get(0x0E).map(|h| h & 0x7F) {
        Some(0) => 6,
        Some(1) => 2,
        Some(2) => 1,
        _ => 0,
    };
    for i in 0..count {
        let Some(x) = r32(c, 0x10 + 4 * i) else {
            return false;
        };
        // Not there (0), or I/O space (bit 0, which all ones has too).
        if x == 0 || x & 1 == 1 {
            continue;
        }
        // A 64-bit BAR in the last slot has no upper half: lspci leaves
        // it out. Any other memory BAR counts.
        if x & 6 != 4 || i + 1 < count {
            return true;
        }
    }
    false
}

fn device(c: &[u8], at: usize, ty: u32, out: &mut Lines) -> Option<()> {
    let cap = r32(c, at + 4)?;
    let mut line = format!(
        "DevCap:\tMaxPayload {} bytes, PhantFunc {}",
        128u32 << (cap & 7),
        (1u32 << (cap >> 3 & 3)) - 1
    );
    let endpoint = matches!(ty, ENDPOINT | LEGACY_ENDPOINT);
    // Acceptable latencies are an endpoint's (legacy or not) to state.
    if endpoint {
        line.push_str(&format!(
            ", Latency L0s {}, L1 {}",
            L0S_LATENCY[(cap >> 6 & 7) as usize],
            L1_LATENCY[(cap >> 9 & 7) as usize]
        ));
    }
    out.line(line);
    let mut more = format!("ExtTag{}", bit(cap, 5));
    if matches!(ty, ENDPOINT | LEGACY_ENDPOINT | UPSTREAM | PCIE_TO_PCI) {
        more.push_str(&format!(
            " AttnBtn{} AttnInd{} PwrInd{}",
            bit(cap, 12),
            bit(cap, 13),
            bit(cap, 14)
        ));
    }
    more.push_str(&format!(" RBE{}", bit(cap, 15)));
    let flr_kind = matches!(ty, ENDPOINT | LEGACY_ENDPOINT | RC_INTEGRATED);
    if flr_kind {
        more.push_str(&format!(" FLReset{}", bit(cap, 28)));
    }
    if matches!(ty, ENDPOINT | UPSTREAM | PCIE_TO_PCI) {
        more.push_str(&format!(
            " SlotPowerLimit {}",
            power_limit(cap >> 18 & 0xFF, cap >> 26 & 3)
        ));
    }
    out.more(more);

    let ctl = u32::from(r16(c, at + 8)?);
    out.line(format!(
        "DevCtl:\tCorrErr{} NonFatalErr{} FatalErr{} UnsupReq{}",
        bit(ctl, 0),
        bit(ctl, 1),
        bit(ctl, 2),
        bit(ctl, 3)
    ));
    let mut more = format!(
        "RlxdOrd{} ExtTag{} PhantFunc{} AuxPwr{} NoSnoop{}",
        bit(ctl, 4),
        bit(ctl, 8),
        bit(ctl, 9),
        bit(ctl, 10),
        bit(ctl, 11)
    );
    // Bit 15 is the bridge's configuration retry enable, or the
    // function-level reset of a function that has one.
    if ty == PCIE_TO_PCI {
        more.push_str(&format!(" BrConfRtry{}", bit(ctl, 15)));
    }
    if flr_kind && cap & 1 << 28 != 0 {
        more.push_str(&format!(" FLReset{}", bit(ctl, 15)));
    }
    out.more(more);
    out.more(format!(
        "MaxPayload {} bytes, MaxReadReq {} bytes",
        128u32 << (ctl >> 5 & 7),
        128u32 << (ctl >> 12 & 7)
    ));
    let sta = u32::from(r16(c, at + 10)?);
    out.line(format!(
        "DevSta:\tCorrErr{} NonFatalErr{} FatalErr{} UnsupReq{} AuxPwr{} TransPend{}",
        bit(sta, 0),
        bit(sta, 1),
        bit(sta, 2),
        bit(sta, 3),
        bit(sta, 4),
        bit(sta, 5)
    ));
    Some(())
}

fn link_speed(code: u32) -> &'static str {
    match code {
        1 => "2.5GT/s",
        2 => "5GT/s",
        3 => "8GT/s",
        4 => "16GT/s",
        5 => "32GT/s",
        6 => "64GT/s",
        _ => "unknown",
    }
}

/// How a negotiated speed or width compares with the capable one; a
/// downstream-facing port is not said to be downgraded.
fn link_compare(ty: u32, sta: u32, cap: u32) -> &'static str {
    if sta > cap {
        " (overdriven)"
    } else if sta == cap || matches!(ty, ROOT_PORT | DOWNSTREAM | PCI_TO_PCIE) {
        ""
    } else {
        " (downgraded)"
    }
}

fn link_registers(c: &[u8], at: usize, ty: u32, out: &mut Lines) -> Option<()> {
    let cap = r32(c, at + 0x0C)?;
    let aspm = cap >> 10 & 3;
    let cap_speed = cap & 0xF;
    let cap_width = cap >> 4 & 0x3F;
    let support = ["not supported", "L0s", "L1", "L0s L1"][aspm as usize];
    let mut line = format!(
        "LnkCap:\tPort #{}, Speed {}, Width x{cap_width}, ASPM {support}",
        cap >> 24,
        link_speed(cap_speed)
    );
    if aspm != 0 {
        line.push_str(", Exit Latency ");
        if aspm & 1 != 0 {
            line.push_str(&format!("L0s {}", L0S_LATENCY[(cap >> 12 & 7) as usize]));
        }
        if aspm & 2 != 0 {
            if aspm & 1 != 0 {
                line.push_str(", ");
            }
            line.push_str(&format!("L1 {}", L1_LATENCY[(cap >> 15 & 7) as usize]));
        }
    }
    out.line(line);
    out.more(format!(
        "ClockPM{} Surprise{} LLActRep{} BwNot{} ASPMOptComp{}",
        bit(cap, 18),
        bit(cap, 19),
        bit(cap, 20),
        bit(cap, 21),
        bit(cap, 22)
    ));

    let ctl = u32::from(r16(c, at + 0x10)?);
    let enabled = ["Disabled", "L0s Enabled", "L1 Enabled", "L0s L1 Enabled"][(ctl & 3) as usize];
    let mut line = format!("LnkCtl:\tASPM {enabled};");
    if matches!(ty, ROOT_PORT | ENDPOINT | LEGACY_ENDPOINT | PCIE_TO_PCI) {
        line.push_str(&format!(
            " RCB {} bytes,",
            if ctl & 8 != 0 { 128 } else { 64 }
        ));
    }
    line.push_str(&format!(" Disabled{} CommClk{}", bit(ctl, 4), bit(ctl, 6)));
    out.line(line);
    out.more(format!(
        "ExtSynch{} ClockPM{} AutWidDis{} BWInt{} AutBWInt{}",
        bit(ctl, 7),
        bit(ctl, 8),
        bit(ctl, 9),
        bit(ctl, 10),
        bit(ctl, 11)
    ));

    let sta = u32::from(r16(c, at + 0x12)?);
    let speed = sta & 0xF;
    let width = sta >> 4 & 0x3F;
    out.line(format!(
        "LnkSta:\tSpeed {}{}, Width x{width}{}",
        link_speed(speed),
        link_compare(ty, speed, cap_speed),
        link_compare(ty, width, cap_width)
    ));
    out.more(format!(
        "TrErr{} Train{} SlotClk{} DLActive{} BWMgmt{} ABWMgmt{}",
        bit(sta, 10),
        bit(sta, 11),
        bit(sta, 12),
        bit(sta, 13),
        bit(sta, 14),
        bit(sta, 15)
    ));
    Some(())
}

const INDICATOR: [&str; 4] = ["Unknown", "On", "Blink", "Off"];

fn slot_registers(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let cap = r32(c, at + 0x14)?;
    out.line(format!(
        "SltCap:\tAttnBtn{} PwrCtrl{} MRL{} AttnInd{} PwrInd{} HotPlug{} Surprise{}",
        bit(cap, 0),
        bit(cap, 1),
        bit(cap, 2),
        bit(cap, 3),
        bit(cap, 4),
        bit(cap, 6),
        bit(cap, 5)
    ));
    out.more(format!(
        "Slot #{}, PowerLimit {}; Interlock{} NoCompl{}",
        cap >> 19,
        power_limit(cap >> 7 & 0xFF, cap >> 15 & 3),
        bit(cap, 17),
        bit(cap, 18)
    ));
    let ctl = u32::from(r16(c, at + 0x18)?);
    out.line(format!(
        "SltCtl:\tEnable: AttnBtn{} PwrFlt{} MRL{} PresDet{} CmdCplt{} HPIrq{} LinkChg{}",
        bit(ctl, 0),
        bit(ctl, 1),
        bit(ctl, 2),
        bit(ctl, 3),
        bit(ctl, 4),
        bit(ctl, 5),
        bit(ctl, 12)
    ));
    out.more(format!(
        "Control: AttnInd {}, PwrInd {}, Power{} Interlock{}",
        INDICATOR[(ctl >> 6 & 3) as usize],
        INDICATOR[(ctl >> 8 & 3) as usize],
        bit(ctl, 10),
        bit(ctl, 11)
    ));
    let sta = u32::from(r16(c, at + 0x1A)?);
    out.line(format!(
        "SltSta:\tStatus: AttnBtn{} PowerFlt{} MRL{} CmdCplt{} PresDet{} Interlock{}",
        bit(sta, 0),
        bit(sta, 1),
        bit(sta, 5),
        bit(sta, 4),
        bit(sta, 6),
        bit(sta, 7)
    ));
    out.more(format!(
        "Changed: MRL{} PresDet{} LinkState{}",
        bit(sta, 2),
        bit(sta, 3),
        bit(sta, 8)
    ));
    Some(())
}

fn root_registers(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let cap = u32::from(r16(c, at + 0x1E)?);
    out.line(format!("RootCap: CRSVisible{}", bit(cap, 0)));
    let ctl = u32::from(r16(c, at + 0x1C)?);
    out.line(format!(
        "RootCtl: ErrCorrectable{} ErrNon-Fatal{} ErrFatal{} PMEIntEna{} CRSVisible{}",
        bit(ctl, 0),
        bit(ctl, 1),
        bit(ctl, 2),
        bit(ctl, 3),
        bit(ctl, 4)
    ));
    let sta = r32(c, at + 0x20)?;
    out.line(format!(
        "RootSta: PME ReqID {:04x}, PMEStatus{} PMEPending{}",
        sta & 0xFFFF,
        bit(sta, 16),
        bit(sta, 17)
    ));
    Some(())
}

fn timeout_ranges(code: u32) -> &'static str {
    match code {
        0 => "Not Supported",
        1 => "Range A",
        2 => "Range B",
        3 => "Range AB",
        6 => "Range BC",
        7 => "Range ABC",
        14 => "Range BCD",
        15 => "Range ABCD",
        _ => "Unknown",
    }
}

fn timeout_value(code: u32) -> &'static str {
    match code {
        0 => "50us to 50ms",
        1 => "50us to 100us",
        2 => "1ms to 10ms",
        5 => "16ms to 55ms",
        6 => "65ms to 210ms",
        9 => "260ms to 900ms",
        10 => "1s to 3.5s",
        13 => "4s to 13s",
        14 => "17s to 64s",
        _ => "Unknown",
    }
}

fn device2(c: &[u8], at: usize, ty: u32, memory_bar: bool, out: &mut Lines) -> Option<()> {
    let cap = r32(c, at + 0x24)?;
    out.line(format!(
        "DevCap2: Completion Timeout: {}, TimeoutDis{} NROPrPrP{} LTR{}",
        timeout_ranges(cap & 0xF),
        bit(cap, 4),
        bit(cap, 10),
        bit(cap, 11)
    ));
    let obff = [
        "Not Supported",
        "Via message",
        "Via WAKE#",
        "Via message/WAKE#",
    ][(cap >> 18 & 3) as usize];
    let mut more = format!(
        "10BitTagComp{} 10BitTagReq{} OBFF {obff}, ExtFmt{} EETLPPrefix{}",
        bit(cap, 16),
        bit(cap, 17),
        bit(cap, 20),
        bit(cap, 21)
    );
    if cap & 1 << 21 != 0 {
        // Max End-End TLP Prefixes: 0 stands for 4.
        let n = cap >> 22 & 3;
        more.push_str(&format!(
            ", MaxEETLPPrefixes {}",
            if n == 0 { 4 } else { n }
        ));
    }
    out.more(more);
    let epr = [
        "Not Supported",
        "Dev Specific",
        "Form Factor Dev Specific",
        "Reserved",
    ][(cap >> 24 & 3) as usize];
    out.more(format!(
        "EmergencyPowerReduction {epr}, EmergencyPowerReductionInit{}",
        bit(cap, 26)
    ));
    let mut more = format!("FRS{}", bit(cap, 31));
    if ty == ROOT_PORT {
        let cls = [
            "Not Supported",
            "64byte cachelines",
            "128byte cachelines",
            "Reserved",
        ][(cap >> 14 & 3) as usize];
        more.push_str(&format!(" LN System CLS {cls},"));
    }
    if matches!(ty, ROOT_PORT | ENDPOINT) {
        // Encoding 2 is reserved, and lspci leaves it blank.
        let tph = [
            "TPHComp- ExtTPHComp-",
            "TPHComp+ ExtTPHComp-",
            "",
            "TPHComp+ ExtTPHComp+",
        ][(cap >> 12 & 3) as usize];
        more.push_str(&format!(" {tph}"));
    }
    if matches!(ty, ROOT_PORT | DOWNSTREAM) {
        more.push_str(&format!(" ARIFwd{}", bit(cap, 5)));
    }
    out.more(more);
    let switch_or_root = matches!(ty, ROOT_PORT | UPSTREAM | DOWNSTREAM);
    if switch_or_root || memory_bar {
        let mut more = "AtomicOpsCap:".to_owned();
        if switch_or_root {
            more.push_str(&format!(" Routing{}", bit(cap, 6)));
        }
        if ty == ROOT_PORT || memory_bar {
            more.push_str(&format!(
                " 32bit{} 64bit{} 128bitCAS{}",
                bit(cap, 7),
                bit(cap, 8),
                bit(cap, 9)
            ));
        }
        out.more(more);
    }

    let ctl = u32::from(r16(c, at + 0x28)?);
    let obff =
        ["Disabled", "Via message A", "Via message B", "Via WAKE#"][(ctl >> 13 & 3) as usize];
    let mut line = format!(
        "DevCtl2: Completion Timeout: {}, TimeoutDis{} LTR{} 10BitTagReq{} OBFF {obff},",
        timeout_value(ctl & 0xF),
        bit(ctl, 4),
        bit(ctl, 10),
        bit(ctl, 12)
    );
    if matches!(ty, ROOT_PORT | DOWNSTREAM) {
        line.push_str(&format!(" ARIFwd{}", bit(ctl, 5)));
    }
    out.line(line);
    let requester = matches!(ty, ROOT_PORT | ENDPOINT | RC_INTEGRATED | LEGACY_ENDPOINT);
    if requester || switch_or_root {
        let mut more = "AtomicOpsCtl:".to_owned();
        if requester {
            more.push_str(&format!(" ReqEn{}", bit(ctl, 6)));
        }
        if switch_or_root {
            more.push_str(&format!(" EgressBlck{}", bit(ctl, 7)));
        }
        out.more(more);
    }
    Some(())
}

/// The supported-speeds vector of LnkCap2 as a range: a port supports
/// every rate from 2.5 GT/s to its highest.
fn speeds_supported(vector: u32) -> &'static str {
    if vector & 0x60 != 0 {
        "RsvdP"
    } else if vector & 0x10 != 0 {
        "2.5-32GT/s"
    } else if vector & 0x08 != 0 {
        "2.5-16GT/s"
    } else if vector & 0x04 != 0 {
        "2.5-8GT/s"
    } else if vector & 0x02 != 0 {
        "2.5-5GT/s"
    } else if vector & 0x01 != 0 {
        "2.5GT/s"
    } else {
        "Unknown"
    }
}

fn target_speed(code: u32) -> &'static str {
    match code {
        // Hardwired to 0: only 2.5 GT/s.
        0 | 1 => "2.5GT/s",
        2 => "5GT/s",
        3 => "8GT/s",
        4 => "16GT/s",
        5 => "32GT/s",
        6 => "64GT/s",
        _ => "Unknown",
    }
}

fn de_emphasis(code: u32) -> &'static str {
    if code == 0 { "-6dB" } else { "-3.5dB" }
}

fn compliance_preset(code: u32) -> &'static str {
    match code {
        0 => "-6dB de-emphasis, 0dB preshoot",
        1 => "-3.5dB de-emphasis, 0dB preshoot",
        2 => "-4.4dB de-emphasis, 0dB preshoot",
        3 => "-2.5dB de-emphasis, 0dB preshoot",
        4 => "0dB de-emphasis, 0dB preshoot",
        5 => "0dB de-emphasis, 1.9dB preshoot",
        6 => "0dB de-emphasis, 2.5dB preshoot",
        7 => "-6.0dB de-emphasis, 3.5dB preshoot",
        8 => "-3.5dB de-emphasis, 3.5dB preshoot",
        9 => "0dB de-emphasis, 3.5dB preshoot",
        _ => "Unknown",
    }
}

fn transmit_margin(code: u32) -> &'static str {
    match code {
        0 => "Normal Operating Range",
        1 => "800-1200mV(full-swing)/400-700mV(half-swing)",
        2..=5 => "200-400mV(full-swing)/100-200mV(half-swing)",
        _ => "Unknown",
    }
}

fn downstream_component(code: u32) -> &'static str {
    match code {
        0 => "Link Down - Not Determined",
        1 => "Link Down - Not Present",
        2 => "Link Down - Present",
        4 => "Link Up - Present",
        5 => "Link Up - Present and DRS Received",
        _ => "Reserved",
    }
}

fn link2(c: &[u8], at: usize, ty: u32, slot_at: Slot, out: &mut Lines) -> Option<()> {
    let mut cap = 0;
    // lspci reads LnkCap2 and LnkCtl2 of an endpoint only at device 0,
    // function 0 (the registers were reserved before PCIe 3.0).
    let endpoint = matches!(ty, ENDPOINT | LEGACY_ENDPOINT);
    if !(endpoint && (slot_at.device != 0 || slot_at.function != 0)) {
        cap = r32(c, at + 0x2C)?;
        if cap != 0 {
            out.line(format!(
                "LnkCap2: Supported Link Speeds: {}, Crosslink{} Retimer{} 2Retimers{} DRS{}",
                speeds_supported(cap >> 1 & 0x7F),
                bit(cap, 8),
                bit(cap, 23),
                bit(cap, 24),
                bit(cap, 31)
            ));
        }
        let ctl = u32::from(r16(c, at + 0x30)?);
        let mut line = format!(
            "LnkCtl2: Target Link Speed: {}, EnterCompliance{} SpeedDis{}",
            target_speed(ctl & 0xF),
            bit(ctl, 4),
            bit(ctl, 5)
        );
        if ty == DOWNSTREAM {
            line.push_str(&format!(
                ", Selectable De-emphasis: {}",
                de_emphasis(ctl >> 6 & 1)
            ));
        }
        out.line(line);
        out.more(format!(
            "Transmit Margin: {}, EnterModifiedCompliance{} ComplianceSOS{}",
            transmit_margin(ctl >> 7 & 7),
            bit(ctl, 10),
            bit(ctl, 11)
        ));
        out.more(format!(
            "Compliance Preset/De-emphasis: {}",
            compliance_preset(ctl >> 12 & 0xF)
        ));
    }
    let sta = u32::from(r16(c, at + 0x32)?);
    out.line(format!(
        "LnkSta2: Current De-emphasis Level: {}, EqualizationComplete{} EqualizationPhase1{}",
        de_emphasis(sta & 1),
        bit(sta, 1),
        bit(sta, 2)
    ));
    out.more(format!(
        "EqualizationPhase2{} EqualizationPhase3{} LinkEqualizationRequest{}",
        bit(sta, 3),
        bit(sta, 4),
        bit(sta, 5)
    ));
    let crosslink = [
        "unsupported",
        "Upstream Port",
        "Downstream Port",
        "incomplete",
    ][(sta >> 8 & 3) as usize];
    let mut more = format!(
        "Retimer{} 2Retimers{} CrosslinkRes: {crosslink}",
        bit(sta, 6),
        bit(sta, 7)
    );
    let drs = matches!(ty, ROOT_PORT | DOWNSTREAM | PCI_TO_PCIE) && cap & 1 << 31 != 0;
    if drs {
        more.push_str(&format!(", DRS{}", bit(sta, 15)));
    }
    out.more(more);
    if drs {
        out.more(format!(
            "DownstreamComp: {}",
            downstream_component(sta >> 12 & 7)
        ));
    }
    Some(())
}
