//! PCI configuration space as the user sees it through vfio-pci: bytes plus
//! a write mask per byte, so read-only bits stay read-only.

/// Standard header offsets and bits.
pub(crate) mod reg {
    pub const VENDOR_ID: usize = 0x00;
    pub const DEVICE_ID: usize = 0x02;
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const REVISION: usize = 0x08;
    pub const CLASS_PROG: usize = 0x09;
    pub const CACHE_LINE_SIZE: usize = 0x0c;
    pub const BAR0: usize = 0x10;
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
    pub const SUBSYSTEM_ID: usize = 0x2e;
    pub const ROM_ADDRESS: usize = 0x30;
    pub const CAPABILITY_LIST: usize = 0x34;
    pub const INTERRUPT_LINE: usize = 0x3c;
    pub const INTERRUPT_PIN: usize = 0x3d;

    /// Command: I/O space decode.
    pub const COMMAND_IO: u16 = 1 << 0;
    /// Command: memory space decode.
    pub const COMMAND_MEMORY: u16 = 1 << 1;
    /// Command: bus master (the device may DMA).
    pub const COMMAND_MASTER: u16 = 1 << 2;
    /// The command bits a driver may change through vfio-pci on QEMU's
    /// devices: I/O, memory, bus master, SERR# enable, INTx disable (parity
    /// error response does not stick: `command_register_keeps_only_qemus_writable_bits`).
    pub const COMMAND_WRITABLE: u16 = 0x0507;
    /// Status: the capability list exists.
    pub const STATUS_CAP_LIST: u16 = 1 << 4;
}

/// Config space bytes and their write masks.
#[derive(Debug, Clone)]
pub(crate) struct ConfigSpace {
    bytes: Vec<u8>,
    wmask: Vec<u8>,
}

impl ConfigSpace {
    /// `len` zero bytes (256 or 4096), all read-only.
    pub(crate) fn new(len: usize) -> Self {
        Self {
            bytes: vec![0; len],
            wmask: vec![0; len],
        }
    }

    /// Size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Reads `buf.len()` bytes at `offset`; bytes past the end read as 0.
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = offset
                .checked_add(i)
                .and_then(|at| self.bytes.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Writes `data` at `offset` as a driver would: only bits set in the
    /// write mask change. Bytes past the end are dropped.
    pub(crate) fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            let Some(at) = offset.checked_add(i) else {
                return;
            };
            if let (Some(b), Some(&m)) = (self.bytes.get_mut(at), self.wmask.get(at)) {
                *b = (*b & !m) | (v & m);
            }
        }
    }

    /// Sets bytes at `offset` regardless of the write mask (the device or
    /// the kernel changing its own registers).
    pub(crate) fn set(&mut self, offset: usize, data: &[u8]) {
        for (i, &v) in data.iter().enumerate() {
            if let Some(b) = offset.checked_add(i).and_then(|at| self.bytes.get_mut(at)) {
                *b = v;
            }
        }
    }

    /// Sets the write mask of the bytes at `offset`.
    pub(crate) fn set_wmask(&mut self, offset: usize, mask: &[u8]) {
        for (i, &m) in mask.iter().enumerate() {
            if let Some(b) = offset.checked_add(i).and_then(|at| self.wmask.get_mut(at)) {
                *b = m;
            }
        }
    }

    /// Sets a little-endian `u16` regardless of the write mask.
    pub(crate) fn set_u16(&mut self, offset: usize, value: u16) {
        self.set(offset, &value.to_le_bytes());
    }

    /// Sets a little-endian `u32` regardless of the write mask.
    pub(crate) fn set_u32(&mut self, offset: usize, value: u32) {
        self.set(offset, &value.to_le_bytes());
    }

    /// Reads a little-endian `u16`.
    pub(crate) fn u16_at(&self, offset: usize) -> u16 {
        let mut b = [0; 2];
        self.read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    /// Reads a byte.
    pub(crate) fn u8_at(&self, offset: usize) -> u8 {
        let mut b = [0; 1];
        self.read(offset, &mut b);
        b[0]
    }

    /// The write masks, one per byte.
    pub(crate) fn wmask(&self) -> &[u8] {
        &self.wmask
    }

    /// The whole space, for parsers and tests.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_masked_bits_change() {
        let mut c = ConfigSpace::new(256);
        c.set_u16(reg::VENDOR_ID, 0x1234);
        c.set_wmask(reg::COMMAND, &reg::COMMAND_WRITABLE.to_le_bytes());
        c.write(reg::VENDOR_ID, &[0xff, 0xff]);
        c.write(reg::COMMAND, &[0xff, 0xff]);
        assert_eq!(c.u16_at(reg::VENDOR_ID), 0x1234);
        assert_eq!(c.u16_at(reg::COMMAND), reg::COMMAND_WRITABLE);
        c.write(255, &[1, 2, 3]);
        let mut b = [9u8; 4];
        c.read(254, &mut b);
        assert_eq!(b, [0, 0, 0, 0]);
        c.write(usize::MAX, &[1, 2]);
        c.read(usize::MAX, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
