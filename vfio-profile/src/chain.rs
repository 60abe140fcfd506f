//! Strict walks of config space's capability lists: unlike a driver's
//! walk, which masks reserved pointer bits and carries on, a profile's
//! lists must be exactly well formed, since the mock replays them byte for
//! byte.

use crate::error::ProfileError;

/// Where the standard capabilities start.
const STANDARD_START: usize = 0x40;
/// Where the extended capabilities start.
const EXTENDED_START: usize = 0x100;
/// The Status register and its Capabilities List bit.
const STATUS: usize = 0x06;
const STATUS_CAP_LIST: u8 = 1 << 4;
/// The capabilities pointer.
const CAP_PTR: usize = 0x34;

/// The standard capabilities `(offset, id)`, in list order.
pub(crate) fn standard(config: &[u8]) -> Result<Vec<(usize, u8)>, ProfileError> {
    let broken = |offset: usize, reason: String| ProfileError::CapabilityChain { offset, reason };
    let status = config.get(STATUS).copied().unwrap_or(0);
    if status & STATUS_CAP_LIST == 0 {
        return Ok(Vec::new());
    }
    let mut from = CAP_PTR;
    let mut next = usize::from(config.get(CAP_PTR).copied().unwrap_or(0));
    let mut seen = [false; 256];
    let mut caps = Vec::new();
    while next != 0 {
        if next < STANDARD_START {
            return Err(broken(
                from,
                format!("points to {next:#x}, below {STANDARD_START:#x}"),
            ));
        }
        if next % 4 != 0 {
            return Err(broken(
                from,
                format!("points to {next:#x}, not dword-aligned"),
            ));
        }
        if next + 2 > 0x100 {
            return Err(broken(from, format!("points to {next:#x}, past 0xff")));
        }
        if seen[next] {
            return Err(broken(from, format!("points back to {next:#x}: loop")));
        }
        let (Some(&id), Some(&link)) = (config.get(next), config.get(next + 1)) else {
            return Err(broken(
                from,
                format!("points to {next:#x}, past config space"),
            ));
        };
        seen[next] = true;
        caps.push((next, id));
        from = next + 1;
        next = usize::from(link);
    }
    Ok(caps)
}

/// The extended capabilities `(offset, id, version)`, in list order: none
/// in 256-byte config space, or when the header at 0x100 is 0 or all ones.
pub(crate) fn extended(config: &[u8]) -> Result<Vec<(usize, u16, u8)>, ProfileError> {
    let broken =
        |offset: usize, reason: String| ProfileError::ExtendedCapabilityChain { offset, reason };
    let header_at = |at: usize| -> Option<u32> {
        let b = config.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if config.len() <= EXTENDED_START {
        return Ok(Vec::new());
    }
    match header_at(EXTENDED_START) {
        None | Some(0 | u32::MAX) => return Ok(Vec::new()),
        Some(_) => {}
    }
    let mut at = EXTENDED_START;
    let mut seen = vec![false; config.len() / 4];
    let mut caps = Vec::new();
    loop {
        let Some(header) = header_at(at) else {
            return Err(broken(
                at,
                format!("header at {at:#x} is past config space"),
            ));
        };
        if let Some(s) = seen.get_mut(at / 4) {
            *s = true;
        }
        caps.push((at, (header & 0xffff) as u16, ((header >> 16) & 0xf) as u8));
        let next = (header >> 20) as usize;
        if next == 0 {
            return Ok(caps);
        }
        if next < EXTENDED_START {
            return Err(broken(
                at,
                format!("points to {next:#x}, below {EXTENDED_START:#x}"),
            ));
        }
        if next % 4 != 0 {
            return Err(broken(
                at,
                format!("points to {next:#x}, not dword-aligned"),
            ));
        }
        if next + 4 > config.len() {
            return Err(broken(
                at,
                format!("points to {next:#x}, past config space"),
            ));
        }
        if seen.get(next / 4).copied().unwrap_or(true) {
            return Err(broken(at, format!("points back to {next:#x}: loop")));
        }
        at = next;
    }
}
