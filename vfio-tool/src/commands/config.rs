//! `vfio config DEV`: config space as vfio-pci gives it.

use super::{Report, read_config};
use crate::cli::ModeArg;
use crate::dump;
use crate::error::ToolError;
use crate::pci;
use serde::Serialize;
use std::io::{self, Write};
use vfio_core::{PciAddress, VfioBackend};

/// `vfio config`'s output.
#[derive(Debug, Serialize)]
pub struct Config {
    /// The device.
    pub address: String,
    /// Config space as read through the config region (at most 4096 bytes).
    pub bytes: Vec<u8>,
    /// The decoded header.
    pub header: Option<pci::Header>,
}

/// Reads `address`'s config space through VFIO.
pub fn config<B: VfioBackend>(
    backend: &B,
    address: &PciAddress,
    mode: Option<ModeArg>,
) -> Result<Config, ToolError> {
    let opened = crate::open::open(backend, address, mode)?;
    let bytes = read_config::<B>(&opened.device)?;
    Ok(Config {
        address: address.to_string(),
        header: pci::header(&bytes),
        bytes,
    })
}

fn class_name(class: u32) -> &'static str {
    match class >> 16 {
        0x00 => "unclassified device",
        0x01 => "mass storage controller",
        0x02 => "network controller",
        0x03 => "display controller",
        0x04 => "multimedia controller",
        0x05 => "memory controller",
        0x06 => "bridge",
        0x07 => "communication controller",
        0x08 => "generic system peripheral",
        0x09 => "input device controller",
        0x0c => "serial bus controller",
        0xff => "unassigned class",
        _ => "other class",
    }
}

impl Report for Config {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        let description = self
            .header
            .as_ref()
            .map_or("(short config space)".to_owned(), |h| {
                format!(
                    "{} [{:04x}:{:04x}]",
                    class_name(h.class),
                    h.vendor_id,
                    h.device_id
                )
            });
        out.write_all(dump::device_dump(&self.address, &description, &self.bytes).as_bytes())?;
        let Some(h) = &self.header else {
            return Ok(());
        };
        writeln!(out)?;
        writeln!(out, "vendor {:04x} device {:04x}", h.vendor_id, h.device_id)?;
        writeln!(out, "command {:04x}  {}", h.command, h.control_line)?;
        writeln!(out, "status {:04x}  {}", h.status, h.status_line)?;
        writeln!(
            out,
            "revision {:02x} class {:06x} ({})",
            h.revision,
            h.class,
            class_name(h.class)
        )?;
        writeln!(
            out,
            "header type {:02x}{} cache line {} latency {}",
            h.header_type,
            if h.multi_function {
                " (multi-function)"
            } else {
                ""
            },
            h.cache_line_size,
            h.latency_timer
        )?;
        for b in &h.bars {
            writeln!(
                out,
                "BAR{} {} at {:#x}{}{}",
                b.index,
                b.space,
                b.address,
                if b.is_64bit { " (64-bit)" } else { "" },
                if b.prefetchable {
                    " (prefetchable)"
                } else {
                    ""
                }
            )?;
        }
        if let Some((v, d)) = h.subsystem {
            writeln!(out, "subsystem {v:04x}:{d:04x}")?;
        }
        writeln!(out, "capabilities pointer {:02x}", h.capabilities_pointer)?;
        let pin = match h.interrupt_pin {
            0 => "none".to_owned(),
            p @ 1..=4 => format!("INT{}", char::from(b'A' + p - 1)),
            p => format!("{p} (reserved)"),
        };
        writeln!(out, "interrupt pin {pin} line {}", h.interrupt_line)
    }
}
