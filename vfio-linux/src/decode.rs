//! Memory decode as this device handle last saw it, shared with the BARs
//! mapped from it.
//!
//! While the command register's Memory Space bit is clear, vfio-pci zaps
//! every BAR mapping and its fault handler refuses to map the pages back:
//! the next load or store through the mapping raises SIGBUS and kills the
//! process (Linux 6.1, checked in the guest). A read or write of the BAR
//! through the device file instead fails with EIO. So that a driver sees
//! the same answer either way, a [`LinuxRegion`](crate::LinuxRegion)
//! refuses register access with [`ErrorKind::Io`](vfio_core::ErrorKind::Io)
//! and EIO, without touching the mapping, while decode is off.
//!
//! What this covers: config writes through [`LinuxDevice`](crate::LinuxDevice)
//! (`write_region` on the config region, and so `write_config` and
//! `set_bus_master`) and resets through it. After each the handle reads the
//! command register back from the kernel, so the gate holds the kernel's
//! value, not a guess from the bytes written. Not covered: a write through
//! another handle of the same device, or by another process; accesses
//! through a mapping then raise SIGBUS as they would without this crate.

use crate::mmap::REFUSE;
use nix::errno::Errno;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use vfio_core::{Error, Operation, Result};

/// Offset of the command register in config space.
pub(crate) const COMMAND: u64 = 0x04;
/// The command register's Memory Space enable bit.
const MEMORY_SPACE: u16 = 1 << 1;

/// Whether the device's memory BARs decode, shared by a device handle and
/// the regions mapped from it. Held as the mask the hot path ORs into its
/// one comparison ([`Mapping::read_if`](crate::mmap::Mapping::read_if)):
/// 0 while decode is on, [`REFUSE`] while it is off.
#[derive(Debug, Clone)]
pub(crate) struct MemoryDecode(Arc<AtomicU64>);

/// The mask for a command register value.
fn mask(command: u16) -> u64 {
    if command & MEMORY_SPACE != 0 {
        0
    } else {
        REFUSE
    }
}

impl MemoryDecode {
    /// A gate that is open when `command` has Memory Space set.
    pub(crate) fn new(command: u16) -> Self {
        Self(Arc::new(AtomicU64::new(mask(command))))
    }

    /// A gate that is always open: a region mapped without a device (so
    /// every region has a gate, and its hot path no `Option` to test).
    pub(crate) fn always_on() -> Self {
        Self(Arc::new(AtomicU64::new(0)))
    }

    /// 0 while decode is on, [`REFUSE`] while it is off: one `Acquire`
    /// load, a plain load on x86-64.
    #[inline(always)]
    pub(crate) fn refuse(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Records a command register value read back from the kernel.
    pub(crate) fn update(&self, command: u16) {
        self.0.store(mask(command), Ordering::Release);
    }

    /// Ok while decode is on; the EIO the device file would answer otherwise.
    #[inline]
    pub(crate) fn check(&self, op: Operation) -> Result<()> {
        if self.refuse() == 0 {
            Ok(())
        } else {
            Err(decode_off(op))
        }
    }
}

#[cold]
#[inline(never)]
fn decode_off(op: Operation) -> Error {
    Error::from_errno(op, Errno::EIO).with_detail(
        "memory decode is off in the command register (the mapping would raise SIGBUS)",
    )
}

/// True when a config access of `len` bytes at `offset` includes the
/// command register's low byte (where Memory Space is).
pub(crate) fn covers_command(offset: u64, len: usize) -> bool {
    offset <= COMMAND && offset.saturating_add(len as u64) > COMMAND
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::ErrorKind;

    #[test]
    fn the_gate_follows_the_memory_space_bit() {
        let gate = MemoryDecode::new(0x0103);
        let shared = gate.clone();
        assert!(shared.check(Operation::RegisterRead).is_ok());
        gate.update(0x0404);
        let e = shared.check(Operation::RegisterWrite).unwrap_err();
        assert_eq!((e.kind(), e.errno()), (ErrorKind::Io, Some(Errno::EIO)));
        gate.update(0x0002);
        assert!(shared.check(Operation::RegisterRead).is_ok());
    }

    #[test]
    fn only_accesses_reaching_byte_4_cover_the_command_register() {
        assert!(covers_command(0, 8));
        assert!(covers_command(4, 2));
        assert!(covers_command(2, 4));
        assert!(!covers_command(0, 4));
        assert!(!covers_command(5, 1));
        assert!(!covers_command(u64::MAX, usize::MAX));
    }
}
