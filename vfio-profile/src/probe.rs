//! Which config bits capture may write to learn whether they are writable.
//!
//! Capture writes the inverted bits, reads the byte back, and restores it.
//! That is harmless only where a write has no effect beyond the register:
//! vfio-pci (`drivers/vfio/pci/vfio_pci_config.c`) virtualizes most of the
//! header and drops writes to read-only capability bytes, but it passes
//! some writes on to the device, and some registers act on a write. Those
//! bits are left out of the plan, and so marked unprobed:
//!
//! - the command register's I/O, memory and bus master bits (turning decode
//!   off zaps the user's BAR mappings; bus mastering stops DMA and MSIs);
//! - the Status register, PCIe Device, Link, Slot and Root Status and Link
//!   Status 2: their error bits are write-one-to-clear, so no write of an
//!   inverted value could be undone;
//! - BIST (a write can start a self test);
//! - the power management Control/Status register (a power state change)
//!   and its data bytes;
//! - MSI and MSI-X Message Control (vfio-pci enables and sizes the vectors
//!   from them);
//! - PCIe Device Control (Initiate FLR), Device Control 2, Link Control
//!   (retrain), Link Control 2, Slot and Root Control;
//! - Advanced Features Control (FLR) and Status;
//! - the bodies of VPD (an address write starts a VPD cycle), PCI-X and
//!   vendor-specific capabilities, and of extended capabilities other than
//!   AER's masks and header log, DSN, Power Budget, ARI's capability word
//!   and LTR: vfio-pci writes vendor-specific and DVSEC bytes straight to
//!   the device, with semantics only its vendor knows;
//! - every byte outside the header and the listed capabilities: vfio-pci
//!   passes writes to such gaps straight to the device.
//!
//! Only a type 0 header (what vfio-pci binds) is probed at all.

use crate::chain;
use crate::error::ProfileError;

/// The bits of each config byte capture probes: one mask byte per config
/// byte, clear where a write could have a side effect (see the module
/// documentation). Errors when a capability list is broken.
pub fn probe_plan(config: &[u8]) -> Result<Vec<u8>, ProfileError> {
    let mut plan = vec![0u8; config.len()];
    if config.len() < 0x40 || config.get(0x0e).copied().unwrap_or(0) & 0x7f != 0 {
        return Ok(plan);
    }
    let mut probe = |range: std::ops::Range<usize>, mask: u8| {
        for at in range {
            if let Some(p) = plan.get_mut(at) {
                *p = mask;
            }
        }
    };
    // The type 0 header.
    probe(0x00..0x04, 0xff);
    // Command: all but I/O, memory and bus master.
    probe(0x04..0x05, 0xf8);
    probe(0x05..0x06, 0xff);
    // 0x06..0x08 Status: write-one-to-clear bits.
    probe(0x08..0x0f, 0xff);
    // 0x0f BIST.
    probe(0x10..0x40, 0xff);

    let standard = chain::standard(config)?;
    // A standard capability ends inside the first 256 bytes, however long
    // its ID says it is.
    let mut probe = |range: std::ops::Range<usize>, mask: u8| {
        probe(range.start..range.end.min(0x100), mask);
    };
    for (at, id) in standard {
        // Next pointer and ID: vfio-pci's, read-only.
        probe(at..at + 2, 0xff);
        match id {
            // Power management: capabilities only.
            0x01 => probe(at + 2..at + 4, 0xff),
            // MSI: address, data, mask and pending, not Message Control.
            0x05 => {
                let control = u16::from_le_bytes([
                    config.get(at + 2).copied().unwrap_or(0),
                    config.get(at + 3).copied().unwrap_or(0),
                ]);
                let is_64 = control & (1 << 7) != 0;
                let masking = control & (1 << 8) != 0;
                let len = match (is_64, masking) {
                    (false, false) => 10,
                    (true, false) => 14,
                    (false, true) => 20,
                    (true, true) => 24,
                };
                probe(at + 4..at + len, 0xff);
            }
            // MSI-X: table and PBA offsets, not Message Control.
            0x11 => probe(at + 4..at + 12, 0xff),
            // PCI Express: the capability and capabilities registers only.
            0x10 => {
                let version = config.get(at + 2).copied().unwrap_or(0) & 0xf;
                probe(at + 2..at + 8, 0xff);
                probe(at + 0x0c..at + 0x10, 0xff);
                probe(at + 0x14..at + 0x18, 0xff);
                if version >= 2 {
                    probe(at + 0x1e..at + 0x20, 0xff);
                    probe(at + 0x24..at + 0x28, 0xff);
                    probe(at + 0x2a..at + 0x30, 0xff);
                    probe(at + 0x34..at + 0x38, 0xff);
                }
            }
            // Advanced features: length and capabilities, not Control/Status.
            0x13 => probe(at + 2..at + 4, 0xff),
            // VPD, PCI-X, vendor-specific and anything else: header only.
            _ => {}
        }
    }

    let mut probe = |range: std::ops::Range<usize>, mask: u8| {
        for at in range {
            if let Some(p) = plan.get_mut(at) {
                *p = mask;
            }
        }
    };
    for (at, id, _version) in chain::extended(config)? {
        match id {
            // Vendor-specific and DVSEC: vfio-pci writes them to the device.
            0x000b | 0x0023 => continue,
            // AER: masks, severity and header log; not the status registers
            // (write-one-to-clear) nor capabilities and control.
            0x0001 => {
                probe(at + 0x08..at + 0x10, 0xff);
                probe(at + 0x14..at + 0x18, 0xff);
                probe(at + 0x1c..at + 0x2c, 0xff);
            }
            // Device serial number: read-only.
            0x0003 => probe(at + 4..at + 12, 0xff),
            // Power budgeting: data select, data and capability.
            0x0004 => probe(at + 4..at + 16, 0xff),
            // ARI: the capability word, not control.
            0x000e => probe(at + 4..at + 6, 0xff),
            // LTR: the latency values.
            0x0018 => probe(at + 4..at + 8, 0xff),
            _ => {}
        }
        probe(at..at + 4, 0xff);
    }
    Ok(plan)
}
