//! The detail lines of the PCI Express extended capabilities decoded here.

use super::express::port;
use super::regs::{Lines, bit, flag, has, r8, r16, r32};
use vfio_core::parse::pci_caps::ext_id;

use ext_id::{AER, L1SS, LTR, PRI, SECONDARY_PCIE, SRIOV};
/// Downstream Port Containment.
const DPC: u16 = 0x001D;
/// Precision Time Measurement.
const PTM: u16 = 0x001F;
/// Virtual Channel, and the second Virtual Channel id (MFVC functions).
const VC: u16 = ext_id::VC;
const VC2: u16 = 0x0009;
/// Root Complex Link declaration.
const RC_LINK: u16 = 0x0005;
/// Root Complex Event Collector endpoint association.
const RCEC: u16 = 0x0007;
/// Multicast.
const MULTICAST: u16 = 0x0012;
/// Data Object Exchange.
const DOE: u16 = 0x002E;
/// Transaction Processing Hints.
const TPH: u16 = 0x0017;
/// Virtual (VF) Resizable BAR.
const VF_RESIZABLE_BAR: u16 = 0x0024;

/// Whether the detail lines decoded for the extended capability at `at`
/// are all the lines lspci prints under it: all but CXL's designated
/// vendor-specific structures. lspci 3.9 details no other id this does
/// not (the rest it names, most with `<?>`, and prints nothing under).
pub(super) fn complete(c: &[u8], cap_id: u16, at: usize) -> bool {
    !(cap_id == ext_id::DVSEC && is_cxl(c, at))
}

/// The detail lines of extended capability `cap_id` at `at`, for a function
/// whose Express port type is `port_type` (lspci adds AER's root registers
/// for root ports and event collectors).
pub(super) fn details(c: &[u8], cap_id: u16, at: usize, port_type: Option<u32>) -> Lines {
    let mut out = Lines::default();
    // Each block is printed only when all of its registers were read, as
    // lspci does; a block cut off leaves only the name line.
    let _ = match cap_id {
        AER => aer(c, at, port_type, &mut out),
        SRIOV => sriov(c, at, &mut out),
        LTR => ltr(c, at, &mut out),
        PRI => pri(c, at, &mut out),
        VC | VC2 => virtual_channel(c, at, &mut out),
        TPH => tph(c, at, &mut out),
        RC_LINK => rc_link(c, at, &mut out),
        RCEC => rcec(c, at, &mut out),
        MULTICAST => multicast(c, at, port_type, &mut out),
        DOE => doe(c, at, &mut out),
        SECONDARY_PCIE => secondary(c, at, &mut out),
        DPC => dpc(c, at, &mut out),
        L1SS => l1_substates(c, at, &mut out),
        PTM => ptm(c, at, &mut out),
        ext_id::RESIZABLE_BAR | VF_RESIZABLE_BAR => resizable_bar(c, at, &mut out),
        ext_id::ACS => acs(c, at, &mut out),
        ext_id::ARI => ari(c, at, &mut out),
        ext_id::ATS => ats(c, at, &mut out),
        ext_id::PASID => pasid(c, at, &mut out),
        _ => None,
    };
    out
}

/// The uncorrectable error bits of UESta, UEMsk and UESvrt.
fn uncorrectable(v: u32) -> String {
    format!(
        "DLP{} SDES{} TLP{} FCP{} CmpltTO{} CmpltAbrt{} UnxCmplt{} RxOF{} MalfTLP{} ECRC{} UnsupReq{} ACSViol{}",
        bit(v, 4),
        bit(v, 5),
        bit(v, 12),
        bit(v, 13),
        bit(v, 14),
        bit(v, 15),
        bit(v, 16),
        bit(v, 17),
        bit(v, 18),
        bit(v, 19),
        bit(v, 20),
        bit(v, 21)
    )
}

/// The correctable error bits of CESta and CEMsk.
fn correctable(v: u32) -> String {
    format!(
        "RxErr{} BadTLP{} BadDLLP{} Rollover{} Timeout{} AdvNonFatalErr{}",
        bit(v, 0),
        bit(v, 6),
        bit(v, 7),
        bit(v, 8),
        bit(v, 12),
        bit(v, 13)
    )
}

fn aer(c: &[u8], at: usize, port_type: Option<u32>, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 40) {
        return None;
    }
    out.line(format!("UESta:\t{}", uncorrectable(r32(c, at + 4)?)));
    out.line(format!("UEMsk:\t{}", uncorrectable(r32(c, at + 8)?)));
    out.line(format!("UESvrt:\t{}", uncorrectable(r32(c, at + 12)?)));
    out.line(format!("CESta:\t{}", correctable(r32(c, at + 16)?)));
    out.line(format!("CEMsk:\t{}", correctable(r32(c, at + 20)?)));
    let cap = r32(c, at + 24)?;
    out.line(format!(
        "AERCap:\tFirst Error Pointer: {:02x}, ECRCGenCap{} ECRCGenEn{} ECRCChkCap{} ECRCChkEn{}",
        cap & 0x1F,
        bit(cap, 5),
        bit(cap, 6),
        bit(cap, 7),
        bit(cap, 8)
    ));
    out.more(format!(
        "MultHdrRecCap{} MultHdrRecEn{} TLPPfxPres{} HdrLogCap{}",
        bit(cap, 9),
        bit(cap, 10),
        bit(cap, 11),
        bit(cap, 12)
    ));
    out.line(format!(
        "HeaderLog: {:08x} {:08x} {:08x} {:08x}",
        r32(c, at + 28)?,
        r32(c, at + 32)?,
        r32(c, at + 36)?,
        r32(c, at + 40)?
    ));
    let root = matches!(port_type, Some(port::ROOT_PORT | port::RC_EVENT_COLLECTOR));
    if !root || !has(c, at + 44, 12) {
        return Some(());
    }
    let cmd = r32(c, at + 44)?;
    out.line(format!(
        "RootCmd: CERptEn{} NFERptEn{} FERptEn{}",
        bit(cmd, 0),
        bit(cmd, 1),
        bit(cmd, 2)
    ));
    let sta = r32(c, at + 48)?;
    out.line(format!(
        "RootSta: CERcvd{} MultCERcvd{} UERcvd{} MultUERcvd{}",
        bit(sta, 0),
        bit(sta, 1),
        bit(sta, 2),
        bit(sta, 3)
    ));
    out.more(format!(
        "FirstFatal{} NonFatalMsg{} FatalMsg{} IntMsg {}",
        bit(sta, 4),
        bit(sta, 5),
        bit(sta, 6),
        sta >> 27 & 0x1F
    ));
    out.line(format!(
        "ErrorSrc: ERR_COR: {:04x} ERR_FATAL/NONFATAL: {:04x}",
        r16(c, at + 52)?,
        r16(c, at + 54)?
    ));
    Some(())
}

fn sriov(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 0x3C) {
        return None;
    }
    let cap = r32(c, at + 4)?;
    out.line(format!(
        "IOVCap:\tMigration{} 10BitTagReq{} Interrupt Message Number: {:03x}",
        bit(cap, 0),
        bit(cap, 2),
        cap >> 21
    ));
    let ctl = u32::from(r16(c, at + 8)?);
    out.line(format!(
        "IOVCtl:\tEnable{} Migration{} Interrupt{} MSE{} ARIHierarchy{} 10BitTagReq{}",
        bit(ctl, 0),
        bit(ctl, 1),
        bit(ctl, 2),
        bit(ctl, 3),
        bit(ctl, 4),
        bit(ctl, 5)
    ));
    out.line(format!(
        "IOVSta:\tMigration{}",
        bit(r16(c, at + 0x0A)?.into(), 0)
    ));
    out.line(format!(
        "Initial VFs: {}, Total VFs: {}, Number of VFs: {}, Function Dependency Link: {:02x}",
        r16(c, at + 0x0C)?,
        r16(c, at + 0x0E)?,
        r16(c, at + 0x10)?,
        r8(c, at + 0x12)?
    ));
    out.line(format!(
        "VF offset: {}, stride: {}, Device ID: {:04x}",
        r16(c, at + 0x14)?,
        r16(c, at + 0x16)?,
        r16(c, at + 0x1A)?
    ));
    out.line(format!(
        "Supported Page Size: {:08x}, System Page Size: {:08x}",
        r32(c, at + 0x1C)?,
        r32(c, at + 0x20)?
    ));
    // The VF BARs: memory only; all ones is read as absent, as 0 is.
    let mut i = 0;
    while i < 6 {
        let mut bar = r32(c, at + 0x24 + 4 * i)?;
        if bar == u32::MAX {
            bar = 0;
        }
        if bar == 0 {
            i += 1;
            continue;
        }
        let is_64 = bar & 6 == 4;
        let mut line = format!("Region {i}: Memory at ");
        if is_64 {
            // The upper half: for VF BAR5 this is the next register, as
            // lspci reads it.
            i += 1;
            line.push_str(&format!("{:08x}", r32(c, at + 0x24 + 4 * i)?));
        }
        line.push_str(&format!(
            "{:08x} ({}-bit, {}prefetchable)",
            bar & !0xF,
            if bar & 6 == 0 { 32 } else { 64 },
            if bar & 8 != 0 { "" } else { "non-" }
        ));
        out.line(line);
        i += 1;
    }
    let msa = r32(c, at + 0x3C)?;
    out.line(format!(
        "VF Migration: offset: {:08x}, BIR: {:x}",
        msa & !7,
        msa & 7
    ));
    Some(())
}

/// A latency register of LTR in ns: a 10-bit value and a 3-bit scale of
/// 2^(5*scale) ns.
fn ltr_ns(v: u16) -> u64 {
    let scale = u32::from(v >> 10 & 7) * 5;
    // Scales 6 and 7 are not allowed; lspci's 32-bit shift wraps there.
    u64::from(v & 0x3FF) * u64::from(1u32.wrapping_shl(scale))
}

fn ltr(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 4) {
        return None;
    }
    out.line(format!("Max snoop latency: {}ns", ltr_ns(r16(c, at + 4)?)));
    out.line(format!(
        "Max no snoop latency: {}ns",
        ltr_ns(r16(c, at + 6)?)
    ));
    Some(())
}

/// A table entry by index, or lspci's `??N` past the table's end.
fn entry(table: &[&str], i: u32) -> String {
    table
        .get(i as usize)
        .map_or_else(|| format!("??{i}"), |s| (*s).to_owned())
}

/// The arbitration capability bits of a port or VC resource: the named
/// schemes always, the reserved ones only when set.
fn arbitration(names: &[&str; 8], reserved_from: usize, bits: u32) -> String {
    let mut line = "Arb:".to_owned();
    for (i, name) in names.iter().enumerate() {
        if i < reserved_from || bits >> i & 1 == 1 {
            line.push(if i == 0 { '\t' } else { ' ' });
            line.push_str(name);
            line.push(bit(bits, i as u32));
        }
    }
    line
}

fn virtual_channel(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    const PORT_ARB: [&str; 8] = [
        "Fixed", "WRR32", "WRR64", "WRR128", "??4", "??5", "??6", "??7",
    ];
    const VC_ARB: [&str; 8] = [
        "Fixed", "WRR32", "WRR64", "WRR128", "TWRR128", "WRR256", "??6", "??7",
    ];
    if !has(c, at + 4, 0x18) {
        return None;
    }
    let cr1 = r32(c, at + 4)?;
    let cr2 = r32(c, at + 8)?;
    let ctrl = u32::from(r16(c, at + 12)?);
    let status = u32::from(r16(c, at + 14)?);
    out.line(format!(
        "Caps:\tLPEVC={} RefClk={} PATEntryBits={}",
        cr1 >> 4 & 7,
        entry(&["100ns"], cr1 >> 8 & 3),
        1u32 << (cr1 >> 10 & 3)
    ));
    out.line(arbitration(&PORT_ARB, 4, cr2));
    out.line(format!(
        "Ctrl:\tArbSelect={}",
        entry(&PORT_ARB, ctrl >> 1 & 7)
    ));
    out.line(format!("Status:\tInProgress{}", bit(status, 0)));
    let table = (cr2 >> 24) as usize;
    if table != 0 {
        out.line(format!(
            "Port Arbitration Table [{:x}] <?>",
            at + 16 * table
        ));
    }
    // The extended VC count: VC0 and as many more.
    for i in 0..=(cr1 & 7) as usize {
        let pos = at + 16 + 12 * i;
        if !has(c, pos, 12) {
            out.line(format!("VC{i}:\t<unreadable>"));
            continue;
        }
        let rcap = r32(c, pos)?;
        let rctrl = r32(c, pos + 4)?;
        let rstatus = u32::from(r16(c, pos + 10)?);
        let pat = rcap >> 24;
        out.line(format!(
            "VC{i}:\tCaps:\tPATOffset={pat:02x} MaxTimeSlots={} RejSnoopTrans{}",
            (rcap >> 16 & 0x7F) + 1,
            bit(rcap, 15)
        ));
        out.more(arbitration(&VC_ARB, 6, rcap));
        out.more(format!(
            "Ctrl:\tEnable{} ID={} ArbSelect={} TC/VC={:02x}",
            bit(rctrl, 31),
            rctrl >> 24 & 7,
            entry(&VC_ARB, rctrl >> 17 & 7),
            rctrl & 0xFF
        ));
        out.more(format!(
            "Status:\tNegoPending{} InProgress{}",
            bit(rstatus, 1),
            bit(rstatus, 0)
        ));
        if pat != 0 {
            out.more("Port Arbitration Table <?>".to_owned());
        }
    }
    Some(())
}

fn rc_link(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 12) {
        return None;
    }
    let esd = r32(c, at + 4)?;
    out.line(format!(
        "Desc:\tPortNumber={:02x} ComponentID={:02x} EltType={}",
        esd >> 24,
        esd >> 16 & 0xFF,
        entry(&["Config", "Egress", "Internal"], esd & 0xFF)
    ));
    for i in 0..(esd >> 8 & 0xFF) as usize {
        let pos = at + 16 + 16 * i;
        if !has(c, pos, 16) {
            out.line(format!("Link{i}:\t<unreadable>"));
            return None;
        }
        let desc = r32(c, pos)?;
        let lo = r32(c, pos + 8)?;
        let hi = r32(c, pos + 12)?;
        let config = desc & 2 != 0;
        out.line(format!(
            "Link{i}:\tDesc:\tTargetPort={:02x} TargetComponent={:02x} AssocRCRB{} LinkType={} LinkValid{}",
            desc >> 24,
            desc >> 16 & 0xFF,
            bit(desc, 2),
            if config { "Config" } else { "MemMapped" },
            bit(desc, 0)
        ));
        if config {
            // The low 3 bits give how many bus-number bits the address
            // carries (0 for 8).
            let n = match lo & 7 {
                0 => 8,
                n => n,
            };
            out.more(format!(
                "Addr:\t{:02x}:{:02x}.{}  CfgSpace={hi:08x}{lo:08x}",
                lo >> 20 & ((1 << n) - 1),
                lo >> 15 & 0x1F,
                lo >> 12 & 7
            ));
        } else {
            out.more(format!("Addr:\t{hi:08x}{lo:08x}"));
        }
    }
    Some(())
}

fn rcec(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at, 12) {
        return None;
    }
    let version = r32(c, at)? >> 16 & 0xF;
    let bitmap = r32(c, at + 4)?;
    let mut line = "RCiEPBitmap: ".to_owned();
    if bitmap == 0 {
        // lspci -vvv shows the empty bitmap's value too.
        line.push_str("00000000 [none]");
    } else {
        // Runs of devices as `first-last`, as lspci lists them (a run
        // that reaches device 31 is shown by its first device only).
        line.push_str("RCiEP at Device(s):");
        let (mut run, mut last, mut any) = (0, 0, false);
        for dev in 0..32 {
            if bitmap >> dev & 1 == 1 {
                if run == 0 {
                    line.push_str(&format!("{} {dev}", if any { "," } else { "" }));
                }
                run += 1;
                last = dev;
                any = true;
            } else {
                if run > 1 {
                    line.push_str(&format!("-{last}"));
                }
                run = 0;
            }
        }
    }
    out.line(line);
    // The bus number register came with version 2.
    if version < 2 {
        return Some(());
    }
    let busn = r32(c, at + 8)?;
    let (next, last) = (busn >> 8 & 0xFF, busn >> 16 & 0xFF);
    if last == 0 && next == 0xFF {
        out.line("AssociatedBusNumbers: ff-00 [none]".to_owned());
    } else {
        out.line(format!("AssociatedBusNumbers: {next:02x}-{last:02x}"));
    }
    Some(())
}

/// `1 << shift` as lspci computes it, in a C `int` on x86-64: the shift
/// count wraps at 32 and bit 31 makes it negative.
fn c_int_shift(shift: u32) -> i32 {
    1i32.wrapping_shl(shift)
}

fn multicast(c: &[u8], at: usize, port_type: Option<u32>, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 0x30) {
        return None;
    }
    let endpoint = matches!(port_type, Some(port::ENDPOINT | port::RC_INTEGRATED));
    let switch_or_root = matches!(
        port_type,
        Some(port::ROOT_PORT | port::UPSTREAM | port::DOWNSTREAM)
    );
    let cap = u32::from(r16(c, at + 4)?);
    let mut line = format!("McastCap: MaxGroups {}", (cap & 0x3F) + 1);
    if endpoint {
        let size = cap >> 8 & 0x3F;
        line.push_str(&format!(", WindowSz {size} ({} bytes)", c_int_shift(size)));
    }
    let ctl = u32::from(r16(c, at + 6)?);
    let ctl_text = format!(
        "McastCtl: NumGroups {}, Enable{}",
        (ctl & 0x3F) + 1,
        bit(ctl, 15)
    );
    if switch_or_root {
        line.push_str(&format!(", ECRCRegen{}", bit(cap, 15)));
        out.line(line);
        out.line(ctl_text);
    } else {
        // lspci ends the McastCap line only for ports: for the others the
        // McastCtl text follows on the same line.
        out.line(format!("{line}\t\t{ctl_text}"));
    }
    let r64 = |off: usize| -> Option<u64> {
        Some(u64::from(r32(c, at + off)?) | u64::from(r32(c, at + off + 4)?) << 32)
    };
    let bar = r64(0x08)?;
    out.line(format!(
        "McastBAR: IndexPos {}, BaseAddr {:016x}",
        bar & 0x3F,
        bar & !0xFFF
    ));
    out.line(format!("McastReceiveVec:      {:016x}", r64(0x10)?));
    out.line(format!("McastBlockAllVec:     {:016x}", r64(0x18)?));
    out.line(format!("McastBlockUntransVec: {:016x}", r64(0x20)?));
    if endpoint {
        return Some(());
    }
    let overlay = r64(0x28)?;
    let size = (overlay & 0x3F) as u32;
    let bytes = if size >= 6 {
        format!("({} bytes)", c_int_shift(size))
    } else {
        "(disabled)".to_owned()
    };
    out.line(format!(
        "McastOverlayBAR: OverlaySize {size} {bytes}, BaseAddr {:016x}",
        overlay & !0x3F
    ));
    Some(())
}

fn doe(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 0x14) {
        out.line("<unreadable>".to_owned());
        return None;
    }
    let cap = r32(c, at + 4)?;
    out.line(format!("DOECap: IntSup{}", bit(cap, 0)));
    if cap & 1 != 0 {
        out.more(format!("Interrupt Message Number {:03x}", cap >> 1 & 0x7FF));
    }
    out.line(format!("DOECtl: IntEn{}", bit(r32(c, at + 8)?, 1)));
    let sta = r32(c, at + 12)?;
    // lspci 3.9 tests the error flag against 0x3 (busy or interrupt
    // status), not the status register's error bit 2.
    out.line(format!(
        "DOESta: Busy{} IntSta{} Error{} ObjectReady{}",
        bit(sta, 0),
        bit(sta, 1),
        flag(sta & 3 != 0),
        bit(sta, 31)
    ));
    Some(())
}

fn tph(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let cap = r32(c, at + 4)?;
    for (n, text) in [
        (1, "Interrupt vector mode supported"),
        (2, "Device specific mode supported"),
        (8, "Extended requester support"),
    ] {
        if cap >> n & 1 == 1 {
            out.line(text.to_owned());
        }
    }
    out.line(
        [
            "No steering table available",
            "Steering table in TPH capability structure",
            "Steering table in MSI-X table",
            "Reserved steering table location",
        ][(cap >> 9 & 3) as usize]
            .to_owned(),
    );
    Some(())
}

fn pri(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 0x0C) {
        return None;
    }
    let ctl = u32::from(r16(c, at + 4)?);
    out.line(format!(
        "PRICtl: Enable{} Reset{}",
        bit(ctl, 0),
        bit(ctl, 1)
    ));
    let sta = u32::from(r16(c, at + 6)?);
    out.line(format!(
        "PRISta: RF{} UPRGI{} Stopped{}",
        bit(sta, 0),
        bit(sta, 1),
        bit(sta, 8)
    ));
    out.line(format!(
        "Page Request Capacity: {:08x}, Page Request Allocation: {:08x}",
        r32(c, at + 8)?,
        r32(c, at + 12)?
    ));
    Some(())
}

fn secondary(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 12) {
        return None;
    }
    let ctl3 = u32::from(r16(c, at + 4)?);
    out.line(format!(
        "LnkCtl3: LnkEquIntrruptEn{} PerformEqu{}",
        bit(ctl3, 1),
        bit(ctl3, 0)
    ));
    // lspci reads the lane error status as a word: lanes 0 to 15.
    let lanes = r16(c, at + 8)?;
    let mut line = "LaneErrStat: ".to_owned();
    if lanes == 0 {
        line.push('0');
    } else {
        line.push_str("LaneErr at lane:");
        for lane in (0..16).filter(|l| lanes >> l & 1 == 1) {
            line.push_str(&format!(" {lane}"));
        }
    }
    out.line(line);
    Some(())
}

fn dpc(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 8) {
        return None;
    }
    let cap = u32::from(r16(c, at + 4)?);
    out.line(format!(
        "DpcCap:\tINT Msg #{}, RPExt{} PoisonedTLP{} SwTrigger{} RP PIO Log {}, DL_ActiveErr{}",
        cap & 0x1F,
        bit(cap, 5),
        bit(cap, 6),
        bit(cap, 7),
        cap >> 8 & 0xF,
        bit(cap, 12)
    ));
    let ctl = u32::from(r16(c, at + 6)?);
    out.line(format!(
        "DpcCtl:\tTrigger:{:x} Cmpl{} INT{} ErrCor{} PoisonedTLP{} SwTrigger{} DL_ActiveErr{}",
        ctl & 3,
        bit(ctl, 2),
        bit(ctl, 3),
        bit(ctl, 4),
        bit(ctl, 5),
        bit(ctl, 6),
        bit(ctl, 7)
    ));
    let sta = u32::from(r16(c, at + 8)?);
    out.line(format!(
        "DpcSta:\tTrigger{} Reason:{:02x} INT{} RPBusy{} TriggerExt:{:02x} RP PIO ErrPtr:{:02x}",
        bit(sta, 0),
        sta >> 1 & 3,
        bit(sta, 3),
        bit(sta, 4),
        sta >> 5 & 3,
        sta >> 8 & 0x1F
    ));
    out.line(format!("Source:\t{:04x}", r16(c, at + 10)?));
    Some(())
}

/// An L1 PM Substates power-on time: a 5-bit value at a scale of 2, 10 or
/// 100 us (3 is not a scale).
fn power_on_time(scale: u32, value: u32) -> String {
    match scale {
        0 => format!("{}us", 2 * value),
        1 => format!("{}us", 10 * value),
        2 => format!("{}us", 100 * value),
        _ => "<error>".to_owned(),
    }
}

fn l1_substates(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 12) {
        out.line("<unreadable>".to_owned());
        return None;
    }
    let cap = r32(c, at + 4)?;
    out.line(format!(
        "L1SubCap: PCI-PM_L1.2{} PCI-PM_L1.1{} ASPM_L1.2{} ASPM_L1.1{} L1_PM_Substates{}",
        bit(cap, 0),
        bit(cap, 1),
        bit(cap, 2),
        bit(cap, 3),
        bit(cap, 4)
    ));
    // The L1.2 timings mean something only where L1.2 is supported.
    let l12 = cap & 0b101 != 0;
    if l12 {
        out.more(format!(
            "PortCommonModeRestoreTime={}us PortTPowerOnTime={}",
            cap >> 8 & 0xFF,
            power_on_time(cap >> 16 & 3, cap >> 19 & 0x1F)
        ));
    }
    let ctl1 = r32(c, at + 8)?;
    out.line(format!(
        "L1SubCtl1: PCI-PM_L1.2{} PCI-PM_L1.1{} ASPM_L1.2{} ASPM_L1.1{}",
        bit(ctl1, 0),
        bit(ctl1, 1),
        bit(ctl1, 2),
        bit(ctl1, 3)
    ));
    if l12 {
        let mut more = format!("T_CommonMode={}us", ctl1 >> 8 & 0xFF);
        if cap & 0b100 != 0 {
            let scale = ctl1 >> 29 & 7;
            if scale > 5 {
                more.push_str(" LTR1.2_Threshold=<error>");
            } else {
                more.push_str(&format!(
                    " LTR1.2_Threshold={}ns",
                    u64::from(ctl1 >> 16 & 0x3FF) << (5 * scale)
                ));
            }
        }
        out.more(more);
    }
    let ctl2 = r32(c, at + 12)?;
    let mut line = "L1SubCtl2:".to_owned();
    if l12 {
        line.push_str(&format!(
            " T_PwrOn={}",
            power_on_time(ctl2 & 3, ctl2 >> 3 & 0x1F)
        ));
    }
    out.line(line);
    Some(())
}

/// A resizable BAR size, log2 of MiB, in lspci's units.
fn bar_size(log2_mib: u32) -> String {
    match log2_mib {
        0..=9 => format!("{}MB", 1u32 << log2_mib),
        10..=19 => format!("{}GB", 1u32 << (log2_mib - 10)),
        20..=29 => format!("{}TB", 1u32 << (log2_mib - 20)),
        30..=39 => format!("{}PB", 1u32 << (log2_mib - 30)),
        40..=43 => format!("{}EB", 1u32 << (log2_mib - 40)),
        _ => "<unknown>".to_owned(),
    }
}

/// Resizable BAR (physical or VF): one capability and control register
/// pair per BAR, the first control register giving how many.
fn resizable_bar(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let mut count = 1;
    let mut n = 0;
    while n < count {
        let reg = at + 4 + 8 * n;
        if !has(c, reg, 8) {
            out.line("<unreadable>".to_owned());
            return None;
        }
        let sizes = r32(c, reg)? >> 4;
        let ctl = r32(c, reg + 4)?;
        if n == 0 {
            count = (ctl >> 5 & 7) as usize;
            if !(1..=6).contains(&count) {
                out.line(format!(
                    "<error in resizable BAR: num_bars={count} is out of specification>"
                ));
                return None;
            }
        }
        let ext_sizes = ctl >> 16;
        let mut line = format!(
            "BAR {}: current size: {}",
            ctl & 7,
            bar_size(ctl >> 8 & 0x3F)
        );
        if sizes != 0 || ext_sizes != 0 {
            line.push_str(", supported:");
            let supported = (0..28)
                .filter(|i| sizes >> i & 1 == 1)
                .chain((0..16).filter(|i| ext_sizes >> i & 1 == 1).map(|i| i + 28));
            for size in supported {
                line.push(' ');
                line.push_str(&bar_size(size));
            }
        }
        out.line(line);
        n += 1;
    }
    Some(())
}

/// A PTM clock granularity in ns: 0 is not implemented (or not known, for
/// the effective one), 0xFF more than 254 ns.
fn granularity(v: u32, zero: &str) -> String {
    match v {
        0 => zero.to_owned(),
        0xFF => "Greater than 254ns".to_owned(),
        ns => format!("{ns}ns"),
    }
}

fn ptm(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    if !has(c, at + 4, 8) {
        out.line("<unreadable>".to_owned());
        return None;
    }
    let cap = r32(c, at + 4)?;
    out.line(format!(
        "PTMCap: Requester:{} Responder:{} Root:{}",
        bit(cap, 0),
        bit(cap, 1),
        bit(cap, 2)
    ));
    out.line(format!(
        "PTMClockGranularity: {}",
        granularity(cap >> 8 & 0xFF, "Unimplemented")
    ));
    let ctl = r32(c, at + 8)?;
    out.line(format!(
        "PTMControl: Enabled:{} RootSelected:{}",
        bit(ctl, 0),
        bit(ctl, 1)
    ));
    out.line(format!(
        "PTMEffectiveGranularity: {}",
        granularity(ctl >> 8 & 0xFF, "Unknown")
    ));
    Some(())
}

fn acs(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let bits = |v: u32| {
        format!(
            "SrcValid{} TransBlk{} ReqRedir{} CmpltRedir{} UpstreamFwd{} EgressCtrl{} DirectTrans{}",
            bit(v, 0),
            bit(v, 1),
            bit(v, 2),
            bit(v, 3),
            bit(v, 4),
            bit(v, 5),
            bit(v, 6)
        )
    };
    let (cap, ctl) = cap_ctl(c, at)?;
    out.line(format!("ACSCap:\t{}", bits(cap)));
    out.line(format!("ACSCtl:\t{}", bits(ctl)));
    Some(())
}

/// The 16-bit capability and control registers at 4 and 6 that ACS, ARI,
/// ATS and PASID have, read together as lspci reads them.
fn cap_ctl(c: &[u8], at: usize) -> Option<(u32, u32)> {
    Some((r16(c, at + 4)?.into(), r16(c, at + 6)?.into()))
}

fn ari(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let (cap, ctl) = cap_ctl(c, at)?;
    out.line(format!(
        "ARICap:\tMFVC{} ACS{}, Next Function: {}",
        bit(cap, 0),
        bit(cap, 1),
        cap >> 8
    ));
    out.line(format!(
        "ARICtl:\tMFVC{} ACS{}, Function Group: {}",
        bit(ctl, 0),
        bit(ctl, 1),
        ctl >> 4 & 7
    ));
    Some(())
}

fn ats(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let (cap, ctl) = cap_ctl(c, at)?;
    out.line(format!(
        "ATSCap:\tInvalidate Queue Depth: {:02x}",
        cap & 0x1F
    ));
    out.line(format!(
        "ATSCtl:\tEnable{}, Smallest Translation Unit: {:02x}",
        bit(ctl, 15),
        ctl & 0x1F
    ));
    Some(())
}

fn pasid(c: &[u8], at: usize, out: &mut Lines) -> Option<()> {
    let (cap, ctl) = cap_ctl(c, at)?;
    out.line(format!(
        "PASIDCap: Exec{} Priv{}, Max PASID Width: {:02x}",
        bit(cap, 1),
        bit(cap, 2),
        cap >> 8 & 0x1F
    ));
    out.line(format!(
        "PASIDCtl: Enable{} Exec{} Priv{}",
        bit(ctl, 0),
        bit(ctl, 1),
        bit(ctl, 2)
    ));
    Some(())
}

/// The name line of the extended capabilities whose line carries fields.
/// lspci words a header it cannot read whole as `<unreadable>` (the
/// serial number as nothing).
pub(super) fn fields(c: &[u8], cap_id: u16, at: usize) -> String {
    match cap_id {
        ext_id::DSN => match (r32(c, at + 4), r32(c, at + 8)) {
            (Some(lo), Some(hi)) => {
                let bytes: Vec<String> = hi
                    .to_be_bytes()
                    .iter()
                    .chain(&lo.to_be_bytes())
                    .map(|b| format!("{b:02x}"))
                    .collect();
                format!("Device Serial Number {}", bytes.join("-"))
            }
            _ => String::new(),
        },
        ext_id::VENDOR => match r32(c, at + 4) {
            Some(h) => format!(
                "Vendor Specific Information: ID={:04x} Rev={} Len={:03x} <?>",
                h & 0xFFFF,
                h >> 16 & 0xF,
                h >> 20
            ),
            None => "Vendor Specific Information: <unreadable>".to_owned(),
        },
        ext_id::DVSEC => match (r32(c, at + 4), r16(c, at + 8)) {
            (Some(h1), Some(h2)) if has(c, at + 4, 8) => {
                let (vendor, len) = (h1 & 0xFFFF, h1 >> 20);
                // CXL's structures are named so and not decoded here.
                let tail = if vendor == CXL_VENDOR && len >= 16 {
                    ": CXL"
                } else {
                    " <?>"
                };
                format!(
                    "Designated Vendor-Specific: Vendor={vendor:04x} ID={h2:04x} Rev={} Len={len}{tail}",
                    h1 >> 16 & 0xF
                )
            }
            _ => "Designated Vendor-Specific: <unreadable>".to_owned(),
        },
        other => format!("Extended Capability ID {other:#x}"),
    }
}

/// The CXL consortium's vendor id in a designated vendor-specific header.
const CXL_VENDOR: u32 = 0x1E98;

/// Whether the designated vendor-specific capability at `at` is one whose
/// detail lspci decodes (CXL's) and this does not.
pub(super) fn is_cxl(c: &[u8], at: usize) -> bool {
    r32(c, at + 4).is_some_and(|h| h & 0xFFFF == CXL_VENDOR && h >> 20 >= 16)
}
