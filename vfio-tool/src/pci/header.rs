//! The config header (the first 64 bytes), decoded.

use serde::Serialize;

/// A base address register as config space holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Bar {
    /// BAR number (0..=5).
    pub index: u8,
    /// `"memory"` or `"io"`.
    pub space: &'static str,
    /// A 64-bit memory BAR (it takes this slot and the next).
    pub is_64bit: bool,
    /// A prefetchable memory BAR.
    pub prefetchable: bool,
    /// The address the register holds, flag bits masked off (0: unassigned).
    pub address: u64,
}

/// The header fields of a function's config space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Vendor ID (0x00).
    pub vendor_id: u16,
    /// Device ID (0x02).
    pub device_id: u16,
    /// Command register (0x04).
    pub command: u16,
    /// Status register (0x06).
    pub status: u16,
    /// Revision ID (0x08).
    pub revision: u8,
    /// Class code, sub-class and programming interface (0x09..0x0c).
    pub class: u32,
    /// Cache line size in dwords (0x0c).
    pub cache_line_size: u8,
    /// Latency timer (0x0d).
    pub latency_timer: u8,
    /// Header type, without the multi-function bit (0x0e).
    pub header_type: u8,
    /// The multi-function bit of the header type.
    pub multi_function: bool,
    /// The BARs the header type has (six for type 0, two for type 1) that
    /// hold anything; the upper half of a 64-bit BAR is not listed on its own.
    pub bars: Vec<Bar>,
    /// Subsystem vendor and device IDs (type 0 only).
    pub subsystem: Option<(u16, u16)>,
    /// Capabilities pointer (0x34).
    pub capabilities_pointer: u8,
    /// Interrupt line (0x3c).
    pub interrupt_line: u8,
    /// Interrupt pin (0x3d): 0 none, 1..=4 INTA..INTD.
    pub interrupt_pin: u8,
    /// The Command register as `lspci -vvv` words it (`Control: ...`).
    pub control_line: String,
    /// The Status register as `lspci -vvv` words it (`Status: ...`).
    pub status_line: String,
}

fn flag(value: u16, n: u32) -> char {
    if value >> n & 1 == 1 { '+' } else { '-' }
}

/// The header of `config`, or `None` when fewer than 64 bytes were read.
pub fn header(config: &[u8]) -> Option<Header> {
    let c = config.get(..64)?;
    let r16 = |at: usize| u16::from_le_bytes([c[at], c[at + 1]]);
    let r32 = |at: usize| u32::from_le_bytes([c[at], c[at + 1], c[at + 2], c[at + 3]]);
    let header_type = c[0x0E] & 0x7F;
    let bar_count = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let mut bars = Vec::new();
    let mut i = 0;
    while i < bar_count {
        let raw = r32(0x10 + 4 * i);
        if raw == 0 {
            // Nothing assigned and no flags: an unimplemented BAR.
            i += 1;
            continue;
        }
        if raw & 1 == 1 {
            bars.push(Bar {
                index: i as u8,
                space: "io",
                is_64bit: false,
                prefetchable: false,
                address: u64::from(raw & !3),
            });
            i += 1;
            continue;
        }
        let is_64bit = raw >> 1 & 3 == 2 && i + 1 < bar_count;
        let high = if is_64bit {
            u64::from(r32(0x14 + 4 * i))
        } else {
            0
        };
        bars.push(Bar {
            index: i as u8,
            space: "memory",
            is_64bit,
            prefetchable: raw & 8 != 0,
            address: high << 32 | u64::from(raw & !0xF),
        });
        i += if is_64bit { 2 } else { 1 };
    }
    let command = r16(0x04);
    let status = r16(0x06);
    let control_line = format!(
        "Control: I/O{} Mem{} BusMaster{} SpecCycle{} MemWINV{} VGASnoop{} ParErr{} Stepping{} SERR{} FastB2B{} DisINTx{}",
        flag(command, 0),
        flag(command, 1),
        flag(command, 2),
        flag(command, 3),
        flag(command, 4),
        flag(command, 5),
        flag(command, 6),
        flag(command, 7),
        flag(command, 8),
        flag(command, 9),
        flag(command, 10),
    );
    let devsel = match status >> 9 & 3 {
        0 => "fast",
        1 => "medium",
        2 => "slow",
        _ => "??",
    };
    let status_line = format!(
        "Status: Cap{} 66MHz{} UDF{} FastB2B{} ParErr{} DEVSEL={devsel} >TAbort{} <TAbort{} <MAbort{} >SERR{} <PERR{} INTx{}",
        flag(status, 4),
        flag(status, 5),
        flag(status, 6),
        flag(status, 7),
        flag(status, 8),
        flag(status, 11),
        flag(status, 12),
        flag(status, 13),
        flag(status, 14),
        flag(status, 15),
        flag(status, 3),
    );
    Some(Header {
        vendor_id: r16(0x00),
        device_id: r16(0x02),
        command,
        status,
        revision: c[0x08],
        class: r32(0x08) >> 8,
        cache_line_size: c[0x0C],
        latency_timer: c[0x0D],
        header_type,
        multi_function: c[0x0E] & 0x80 != 0,
        bars,
        subsystem: (header_type == 0).then(|| (r16(0x2C), r16(0x2E))),
        capabilities_pointer: c[0x34],
        interrupt_line: c[0x3C],
        interrupt_pin: c[0x3D],
        control_line,
        status_line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_ids_bars_and_the_lspci_lines() {
        let mut c = vec![0u8; 64];
        c[0..4].copy_from_slice(&[0x36, 0x1b, 0x10, 0x00]);
        c[4..8].copy_from_slice(&[0x07, 0x05, 0x10, 0x02]);
        c[8..12].copy_from_slice(&[0x02, 0x02, 0x08, 0x01]);
        c[0x10..0x18].copy_from_slice(&[0x04, 0x00, 0xb1, 0xfe, 0x01, 0x00, 0x00, 0x00]);
        c[0x18..0x1c].copy_from_slice(&[0x01, 0xc0, 0x00, 0x00]);
        c[0x3d] = 1;
        let h = header(&c).unwrap();
        assert_eq!((h.vendor_id, h.device_id, h.revision), (0x1b36, 0x0010, 2));
        assert_eq!(h.class, 0x01_08_02);
        assert_eq!(
            h.bars,
            [
                Bar {
                    index: 0,
                    space: "memory",
                    is_64bit: true,
                    prefetchable: false,
                    address: 0x1_feb1_0000
                },
                Bar {
                    index: 2,
                    space: "io",
                    is_64bit: false,
                    prefetchable: false,
                    address: 0xc000
                }
            ]
        );
        assert_eq!(
            h.control_line,
            "Control: I/O+ Mem+ BusMaster+ SpecCycle- MemWINV- VGASnoop- ParErr- Stepping- SERR+ FastB2B- DisINTx+"
        );
        assert_eq!(
            h.status_line,
            "Status: Cap+ 66MHz- UDF- FastB2B- ParErr- DEVSEL=medium >TAbort- <TAbort- <MAbort- >SERR- <PERR- INTx-"
        );
        assert!(header(&c[..63]).is_none());
    }
}
