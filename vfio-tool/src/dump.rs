//! Config space as hex text, in the format of `lspci -xxx`, both ways.
//!
//! A dump is one line naming the device, then one line per 16 bytes:
//! `00: 86 80 34 12 ...`, the offset in hex and the bytes in hex. `lspci -F
//! FILE` reads this format back, so a dump made here can be shown by
//! pciutils, and a dump made by `lspci -xxx` (or `vfio config`) can be read
//! here with [`parse`].

use std::fmt::Write as _;

/// The lines of `config` as `lspci -xxx` prints them: 16 bytes a line, each
/// line led by its offset in hex (two digits below 0x100, three above).
pub fn hex_lines(config: &[u8]) -> String {
    let mut out = String::new();
    for (i, chunk) in config.chunks(16).enumerate() {
        let offset = i * 16;
        let _ = write!(out, "{offset:02x}:");
        for b in chunk {
            let _ = write!(out, " {b:02x}");
        }
        out.push('\n');
    }
    out
}

/// A whole dump of one device: its address and a description on the first
/// line, as `lspci` has them, then [`hex_lines`].
pub fn device_dump(address: &str, description: &str, config: &[u8]) -> String {
    format!("{address} {description}\n{}", hex_lines(config))
}

/// One device of a dump file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedDevice {
    /// The address on the device's first line, as written there.
    pub address: String,
    /// The config bytes, in order from offset 0.
    pub config: Vec<u8>,
}

/// A line of a dump that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpError {
    /// 1-based line number.
    pub line: usize,
    /// Why the line was refused.
    pub reason: String,
}

impl std::fmt::Display for DumpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for DumpError {}

/// Reads the devices of a dump in `lspci -xxx` format. Blank lines separate
/// devices; a line that starts with a hex offset and a colon is bytes, any
/// other line starts a new device. Offsets must follow each other with no
/// gap, and a device may hold at most 4096 bytes.
pub fn parse(text: &str) -> Result<Vec<DumpedDevice>, DumpError> {
    let mut devices: Vec<DumpedDevice> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let err = |reason: String| DumpError {
            line: n + 1,
            reason,
        };
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let bytes_line = line
            .split_once(':')
            .filter(|(off, _)| {
                !off.is_empty() && off.len() <= 3 && off.bytes().all(|b| b.is_ascii_hexdigit())
            })
            .filter(|(_, rest)| rest.starts_with(' '));
        let Some((offset, rest)) = bytes_line else {
            let address = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            devices.push(DumpedDevice {
                address,
                config: Vec::new(),
            });
            continue;
        };
        let Some(device) = devices.last_mut() else {
            return Err(err("bytes before any device line".into()));
        };
        let offset = usize::from_str_radix(offset, 16).map_err(|e| err(e.to_string()))?;
        if offset != device.config.len() {
            return Err(err(format!(
                "offset {offset:#x}, expected {:#x}",
                device.config.len()
            )));
        }
        for byte in rest.split_whitespace() {
            let value = u8::from_str_radix(byte, 16)
                .ok()
                .filter(|_| byte.len() == 2)
                .ok_or_else(|| err(format!("`{byte}` is not a hex byte")))?;
            device.config.push(value);
        }
        if device.config.len() > 4096 {
            return Err(err("more than 4096 bytes of config space".into()));
        }
    }
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_and_parse_round_trip() {
        let config: Vec<u8> = (0..=255u8).collect();
        let text = device_dump("0000:00:02.0", "edu", &config);
        assert!(text.starts_with("0000:00:02.0 edu\n00: 00 01 02 03"));
        assert!(text.contains("\nf0: f0 f1"));
        let back = parse(&text).unwrap();
        assert_eq!(
            back,
            vec![DumpedDevice {
                address: "0000:00:02.0".into(),
                config
            }]
        );
        let ext = vec![0xab; 4096];
        let text = device_dump("00:03.0", "nvme", &ext);
        assert!(text.contains("\n100: ab ab") && text.contains("\nff0: ab"));
        assert_eq!(parse(&text).unwrap()[0].config, ext);
    }

    #[test]
    fn parse_reads_several_devices_and_refuses_gaps_and_bad_bytes() {
        let text = "00:01.0 a\n00: 01 02\n\n00:02.0 b\n00: 03\n";
        let devices = parse(text).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!(devices[1].config, vec![3]);
        let e = parse("00:01.0 a\n10: 01\n").unwrap_err();
        assert_eq!(
            (e.line, e.reason.as_str()),
            (2, "offset 0x10, expected 0x0")
        );
        let e = parse("00:01.0 a\n00: 1g\n").unwrap_err();
        assert_eq!(e.reason, "`1g` is not a hex byte");
        assert_eq!(parse("00: 01\n").unwrap_err().line, 1);
    }
}
