//! The submission queue entry, the completion queue entry, and the Dataset
//! Management range.

use crate::Status;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A 64-byte submission queue entry (common command format).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Command {
    /// Dword 0: opcode (bits 7:0), fused operation (9:8), PSDT (15:14),
    /// command identifier (31:16).
    pub cdw0: u32,
    /// Namespace identifier.
    pub nsid: u32,
    /// Dword 2 (command specific).
    pub cdw2: u32,
    /// Dword 3 (command specific).
    pub cdw3: u32,
    /// Metadata pointer.
    pub mptr: u64,
    /// PRP entry 1 (data pointer, first part).
    pub prp1: u64,
    /// PRP entry 2, or a pointer to a PRP list.
    pub prp2: u64,
    /// Dword 10 (command specific).
    pub cdw10: u32,
    /// Dword 11 (command specific).
    pub cdw11: u32,
    /// Dword 12 (command specific).
    pub cdw12: u32,
    /// Dword 13 (command specific).
    pub cdw13: u32,
    /// Dword 14 (command specific).
    pub cdw14: u32,
    /// Dword 15 (command specific).
    pub cdw15: u32,
}

const _: () = assert!(size_of::<Command>() == crate::SQE_SIZE);

impl Command {
    /// A zeroed command with `opcode` and command identifier `cid`.
    pub fn new(opcode: u8, cid: u16) -> Self {
        Self {
            cdw0: u32::from(opcode) | (u32::from(cid) << 16),
            ..Self::default()
        }
    }

    /// The opcode.
    pub fn opcode(&self) -> u8 {
        self.cdw0.to_le_bytes()[0]
    }

    /// The command identifier.
    pub fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }

    /// Replaces the command identifier.
    pub fn set_cid(&mut self, cid: u16) {
        self.cdw0 = (self.cdw0 & 0xffff) | (u32::from(cid) << 16);
    }

    /// The fused-operation field (0: normal).
    pub fn fuse(&self) -> u8 {
        ((self.cdw0 >> 8) & 0x3) as u8
    }

    /// PRP or SGL for data transfer (0: PRPs).
    pub fn psdt(&self) -> u8 {
        ((self.cdw0 >> 14) & 0x3) as u8
    }

    /// The starting LBA of an NVM read, write, write zeroes or compare
    /// (dwords 10 and 11).
    pub fn slba(&self) -> u64 {
        u64::from(self.cdw10) | (u64::from(self.cdw11) << 32)
    }

    /// Sets the starting LBA (dwords 10 and 11).
    pub fn set_slba(&mut self, slba: u64) {
        self.cdw10 = slba as u32;
        self.cdw11 = (slba >> 32) as u32;
    }

    /// The 0's based number of logical blocks of an NVM I/O (dword 12
    /// bits 15:0): one less than the block count.
    pub fn nlb(&self) -> u16 {
        self.cdw12 as u16
    }
}

/// A 16-byte completion queue entry.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct Completion {
    /// Dword 0: command-specific result.
    pub result: u32,
    /// Dword 1: command-specific (reserved for most commands).
    pub dw1: u32,
    /// Submission queue head pointer, as the controller consumed it.
    pub sq_head: u16,
    /// Submission queue the command came from.
    pub sq_id: u16,
    /// Command identifier of the completed command.
    pub cid: u16,
    /// Phase tag (bit 0) and status field (bits 15:1).
    pub status: u16,
}

const _: () = assert!(size_of::<Completion>() == crate::CQE_SIZE);

impl Completion {
    /// The phase tag.
    pub fn phase(&self) -> bool {
        self.status & 1 != 0
    }

    /// The status field without the phase tag.
    pub fn status(&self) -> Status {
        Status::from_field(self.status >> 1)
    }
}

/// One range of a Dataset Management command's range list.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct DsmRange {
    /// Context attributes.
    pub attributes: u32,
    /// Length in logical blocks (not 0's based).
    pub nlb: u32,
    /// Starting LBA.
    pub slba: u64,
}

const _: () = assert!(size_of::<DsmRange>() == 16);

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    #[test]
    fn command_dword0_packs_opcode_and_cid() {
        let mut c = Command::new(0x02, 0xbeef);
        assert_eq!(c.as_bytes()[..4], [0x02, 0x00, 0xef, 0xbe]);
        c.set_cid(1);
        assert_eq!((c.opcode(), c.cid()), (0x02, 1));
        c.set_slba(0x1_2345_6789);
        assert_eq!(
            (c.cdw10, c.cdw11, c.slba()),
            (0x2345_6789, 1, 0x1_2345_6789)
        );
    }

    #[test]
    fn completion_fields_are_at_their_offsets() {
        let mut bytes = [0u8; 16];
        bytes[12..14].copy_from_slice(&9u16.to_le_bytes());
        bytes[14..16].copy_from_slice(&((0x0b << 1) | 1u16).to_le_bytes());
        let c = Completion::read_from_bytes(&bytes).unwrap();
        assert_eq!(c.cid, 9);
        assert!(c.phase());
        assert_eq!(c.status(), Status::INVALID_NAMESPACE);
    }
}
