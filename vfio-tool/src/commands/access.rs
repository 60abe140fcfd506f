//! `vfio read` and `vfio write`: one register of a BAR, the ROM or config space.

use super::Report;
use super::info::region_name;
use crate::cli::ModeArg;
use crate::error::{ToolError, usage};
use serde::Serialize;
use std::io::{self, Write};
use vfio_core::{
    Device, MappedRegion, PciAddress, RegionCap, RegionFlags, RegionInfo, VfioBackend, region,
};

/// Parses REGION: `bar0`..`bar5`, `rom`, `config`, `vga`, or an index.
pub fn parse_region(s: &str) -> Result<u32, ToolError> {
    let lower = s.to_ascii_lowercase();
    match lower.as_str() {
        "rom" => return Ok(region::ROM),
        "config" => return Ok(region::CONFIG),
        "vga" => return Ok(region::VGA),
        _ => {}
    }
    if let Some(n) = lower.strip_prefix("bar") {
        return match n.parse::<u32>() {
            Ok(n @ 0..=5) => Ok(n),
            _ => Err(usage(format!("no region `{s}`: BARs are bar0..bar5"))),
        };
    }
    s.parse::<u32>().map_err(|_| {
        usage(format!(
            "no region `{s}`: expected bar0..bar5, rom, config, vga or a region index"
        ))
    })
}

/// Parses a number: decimal, or hex with `0x`.
pub fn parse_number(what: &str, s: &str) -> Result<u64, ToolError> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    };
    parsed.map_err(|_| {
        usage(format!(
            "{what} `{s}` is not a number (decimal, or hex with 0x)"
        ))
    })
}

/// Parses WIDTH: 1, 2, 4 or 8.
pub fn parse_width(s: &str) -> Result<u8, ToolError> {
    match s {
        "1" => Ok(1),
        "2" => Ok(2),
        "4" => Ok(4),
        "8" => Ok(8),
        _ => Err(usage(format!("width `{s}` is not 1, 2, 4 or 8"))),
    }
}

/// Parses VALUE and checks that it fits in `width` bytes.
pub fn parse_value(s: &str, width: u8) -> Result<u64, ToolError> {
    let value = parse_number("value", s)?;
    if width < 8 && value >> (u32::from(width) * 8) != 0 {
        return Err(usage(format!(
            "value {value:#x} does not fit in {width} byte{}",
            if width == 1 { "" } else { "s" }
        )));
    }
    Ok(value)
}

/// Checks an access of `width` bytes at `offset` against the region's info:
/// present, readable or writable as asked, inside the region and naturally
/// aligned. A refusal is a usage error: nothing has touched the device.
fn check(info: &RegionInfo, offset: u64, width: u8, write: bool) -> Result<(), ToolError> {
    let name = region_name(info.index);
    if info.size == 0 {
        return Err(usage(format!(
            "region {name} is absent on this device (size 0)"
        )));
    }
    let (needed, verb) = if write {
        (RegionFlags::WRITE, "writable")
    } else {
        (RegionFlags::READ, "readable")
    };
    if !info.flags.contains(needed) {
        return Err(usage(format!("region {name} is not {verb}")));
    }
    match offset.checked_add(u64::from(width)) {
        Some(end) if end <= info.size => {}
        _ => {
            return Err(usage(format!(
                "offset {offset:#x} + {width} is past the end of {name} ({:#x} bytes)",
                info.size
            )));
        }
    }
    if offset % u64::from(width) != 0 {
        return Err(usage(format!(
            "offset {offset:#x} is not aligned to the width ({width} bytes)"
        )));
    }
    Ok(())
}

/// Whether the access goes through an mmap of the region: the region is
/// mmappable and, when it has sparse areas, the access lies in one.
fn mappable_at(info: &RegionInfo, offset: u64, width: u8) -> bool {
    if !info.flags.contains(RegionFlags::MMAP) {
        return false;
    }
    let end = offset + u64::from(width);
    info.caps.iter().all(|c| match c {
        RegionCap::SparseMmap(areas) => areas
            .iter()
            .any(|a| a.offset <= offset && a.offset.checked_add(a.size).is_some_and(|e| end <= e)),
        _ => true,
    })
}

/// The output of `vfio read` and `vfio write`.
#[derive(Debug, Serialize)]
pub struct Access {
    /// The device.
    pub address: String,
    /// The region's name.
    pub region: String,
    /// The region's index.
    pub index: u32,
    /// Offset in the region.
    pub offset: u64,
    /// Width in bytes.
    pub width: u8,
    /// The value read or written.
    pub value: u64,
    /// `"read"` or `"write"`.
    pub access: &'static str,
    /// `"mmap"` (through a mapping of the region) or `"file"` (pread/pwrite
    /// of the device file).
    pub via: &'static str,
}

/// What to do: read, or write a value.
#[derive(Debug, Clone, Copy)]
pub enum Op {
    /// Read.
    Read,
    /// Write this value.
    Write(u64),
}

/// Reads or writes one register. Every check on the input runs before the
/// device is opened; nothing is written when one fails.
pub fn access<B: VfioBackend>(
    backend: &B,
    address: &PciAddress,
    mode: Option<ModeArg>,
    region: &str,
    offset: &str,
    width: &str,
    op: Op,
) -> Result<Access, ToolError> {
    let index = parse_region(region)?;
    let offset = parse_number("offset", offset)?;
    let width = parse_width(width)?;
    let opened = crate::open::open(backend, address, mode)?;
    let device = &opened.device;
    let info = device.region_info(index)?;
    check(&info, offset, width, matches!(op, Op::Write(_)))?;
    let via_mmap = mappable_at(&info, offset, width);
    let value = if via_mmap {
        let mapped = device.map_region(index)?;
        match op {
            Op::Read => match width {
                1 => u64::from(mapped.read_u8(offset)?),
                2 => u64::from(mapped.read_u16(offset)?),
                4 => u64::from(mapped.read_u32(offset)?),
                _ => mapped.read_u64(offset)?,
            },
            Op::Write(v) => {
                match width {
                    1 => mapped.write_u8(offset, v as u8)?,
                    2 => mapped.write_u16(offset, v as u16)?,
                    4 => mapped.write_u32(offset, v as u32)?,
                    _ => mapped.write_u64(offset, v)?,
                }
                v
            }
        }
    } else {
        let n = usize::from(width);
        match op {
            Op::Read => {
                let mut buf = [0u8; 8];
                vfio_core::access::read_exact::<B, _>(device, index, offset, &mut buf[..n])?;
                u64::from_le_bytes(buf)
            }
            Op::Write(v) => {
                let bytes = v.to_le_bytes();
                vfio_core::access::write_all::<B, _>(device, index, offset, &bytes[..n])?;
                v
            }
        }
    };
    Ok(Access {
        address: address.to_string(),
        region: region_name(index),
        index,
        offset,
        width,
        value,
        access: match op {
            Op::Read => "read",
            Op::Write(_) => "write",
        },
        via: if via_mmap { "mmap" } else { "file" },
    })
}

impl Report for Access {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let digits = usize::from(self.width) * 2;
        match self.access {
            "read" => writeln!(
                out,
                "{}[{:#x}] = {:#0w$x} ({} bytes, {})",
                self.region,
                self.offset,
                self.value,
                self.width,
                self.via,
                w = digits + 2
            ),
            _ => writeln!(
                out,
                "{}[{:#x}] <- {:#0w$x} ({} bytes, {})",
                self.region,
                self.offset,
                self.value,
                self.width,
                self.via,
                w = digits + 2
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_regions_numbers_widths_and_values() {
        assert_eq!(parse_region("bar0").unwrap(), 0);
        assert_eq!(parse_region("BAR5").unwrap(), 5);
        assert_eq!(parse_region("rom").unwrap(), region::ROM);
        assert_eq!(parse_region("config").unwrap(), region::CONFIG);
        assert_eq!(parse_region("9").unwrap(), 9);
        assert!(parse_region("bar6").is_err());
        assert!(parse_region("bogus").is_err());
        assert_eq!(parse_number("offset", "0x10").unwrap(), 16);
        assert_eq!(parse_number("offset", "16").unwrap(), 16);
        assert!(parse_number("offset", "0xg").is_err());
        assert_eq!(parse_width("8").unwrap(), 8);
        assert!(parse_width("3").is_err());
        assert_eq!(parse_value("0xff", 1).unwrap(), 0xff);
        assert_eq!(
            parse_value("0x100", 1).unwrap_err().to_string(),
            "value 0x100 does not fit in 1 byte"
        );
        assert_eq!(parse_value("0xffffffffffffffff", 8).unwrap(), u64::MAX);
    }
}
