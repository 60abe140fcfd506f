//! Controller registers in BAR0: offsets and field accessors.

/// Controller Capabilities (64-bit, read-only).
pub const CAP: u64 = 0x00;
/// Version.
pub const VS: u64 = 0x08;
/// Interrupt Mask Set (write 1 to mask a vector; pin-based and MSI only).
pub const INTMS: u64 = 0x0c;
/// Interrupt Mask Clear.
pub const INTMC: u64 = 0x10;
/// Controller Configuration.
pub const CC: u64 = 0x14;
/// Controller Status.
pub const CSTS: u64 = 0x1c;
/// NVM Subsystem Reset (write `NSSR_RESET` to reset, where CAP.NSSRS).
pub const NSSR: u64 = 0x20;
/// Admin Queue Attributes.
pub const AQA: u64 = 0x24;
/// Admin Submission Queue Base Address (64-bit).
pub const ASQ: u64 = 0x28;
/// Admin Completion Queue Base Address (64-bit).
pub const ACQ: u64 = 0x30;
/// Controller Memory Buffer Location.
pub const CMBLOC: u64 = 0x38;
/// Controller Memory Buffer Size.
pub const CMBSZ: u64 = 0x3c;
/// The first doorbell: the admin submission queue's tail.
pub const DOORBELL_BASE: u64 = 0x1000;
/// The value of NSSR that requests a subsystem reset ("NVMe").
pub const NSSR_RESET: u32 = 0x4e56_4d65;

/// Offset of the submission queue tail doorbell of queue `qid`, with a
/// doorbell stride of `4 << dstrd` bytes.
pub const fn sq_tail_doorbell(qid: u16, dstrd: u8) -> u64 {
    DOORBELL_BASE + (2 * qid as u64) * (4 << dstrd)
}

/// Offset of the completion queue head doorbell of queue `qid`.
pub const fn cq_head_doorbell(qid: u16, dstrd: u8) -> u64 {
    DOORBELL_BASE + (2 * qid as u64 + 1) * (4 << dstrd)
}

/// Controller Capabilities, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Maximum Queue Entries Supported, 0's based (bits 15:0).
    pub const fn mqes(self) -> u16 {
        self.0 as u16
    }
    /// Contiguous Queues Required (bit 16).
    pub const fn cqr(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// Arbitration Mechanism Supported (bits 18:17).
    pub const fn ams(self) -> u8 {
        ((self.0 >> 17) & 0x3) as u8
    }
    /// Timeout: the worst-case time to wait for CSTS.RDY to change, in
    /// 500 ms units (bits 31:24).
    pub const fn to(self) -> u8 {
        (self.0 >> 24) as u8
    }
    /// The timeout in milliseconds.
    pub const fn timeout_ms(self) -> u64 {
        self.to() as u64 * 500
    }
    /// Doorbell Stride: doorbells are `4 << dstrd` bytes apart (bits 35:32).
    pub const fn dstrd(self) -> u8 {
        ((self.0 >> 32) & 0xf) as u8
    }
    /// NVM Subsystem Reset Supported (bit 36).
    pub const fn nssrs(self) -> bool {
        self.0 & (1 << 36) != 0
    }
    /// Command Sets Supported (bits 44:37): bit 0 NVM, bit 6 I/O command
    /// sets, bit 7 admin only.
    pub const fn css(self) -> u8 {
        (self.0 >> 37) as u8
    }
    /// Memory Page Size Minimum: `4096 << mpsmin` bytes (bits 51:48).
    pub const fn mpsmin(self) -> u8 {
        ((self.0 >> 48) & 0xf) as u8
    }
    /// Memory Page Size Maximum: `4096 << mpsmax` bytes (bits 55:52).
    pub const fn mpsmax(self) -> u8 {
        ((self.0 >> 52) & 0xf) as u8
    }
    /// Controller Memory Buffer Supported (bit 57).
    pub const fn cmbs(self) -> bool {
        self.0 & (1 << 57) != 0
    }
}

/// Controller Configuration fields.
pub mod cc {
    /// Enable (bit 0).
    pub const EN: u32 = 1;
    /// I/O Command Set Selected (bits 6:4): 0 NVM, 6 all supported sets,
    /// 7 admin only.
    pub const CSS_SHIFT: u32 = 4;
    /// Memory Page Size (bits 10:7): `4096 << mps` bytes.
    pub const MPS_SHIFT: u32 = 7;
    /// Arbitration Mechanism Selected (bits 13:11).
    pub const AMS_SHIFT: u32 = 11;
    /// Shutdown Notification (bits 15:14).
    pub const SHN_SHIFT: u32 = 14;
    /// Shutdown Notification: none.
    pub const SHN_NONE: u32 = 0;
    /// Shutdown Notification: normal shutdown.
    pub const SHN_NORMAL: u32 = 1;
    /// Shutdown Notification: abrupt shutdown.
    pub const SHN_ABRUPT: u32 = 2;
    /// I/O Submission Queue Entry Size, log2 (bits 19:16).
    pub const IOSQES_SHIFT: u32 = 16;
    /// I/O Completion Queue Entry Size, log2 (bits 23:20).
    pub const IOCQES_SHIFT: u32 = 20;

    /// A CC value: enabled, NVM command set, page size `4096 << mps`,
    /// round robin, 64-byte SQ and 16-byte CQ entries.
    pub const fn enabled(mps: u8) -> u32 {
        EN | ((mps as u32 & 0xf) << MPS_SHIFT) | (6 << IOSQES_SHIFT) | (4 << IOCQES_SHIFT)
    }
}

/// Controller Status fields.
pub mod csts {
    /// Ready (bit 0).
    pub const RDY: u32 = 1;
    /// Controller Fatal Status (bit 1).
    pub const CFS: u32 = 1 << 1;
    /// Shutdown Status (bits 3:2).
    pub const SHST_SHIFT: u32 = 2;
    /// Shutdown Status mask.
    pub const SHST_MASK: u32 = 0x3 << SHST_SHIFT;
    /// Shutdown Status: normal operation.
    pub const SHST_NORMAL: u32 = 0;
    /// Shutdown Status: shutdown processing occurring.
    pub const SHST_OCCURRING: u32 = 1 << SHST_SHIFT;
    /// Shutdown Status: shutdown processing complete.
    pub const SHST_COMPLETE: u32 = 2 << SHST_SHIFT;
    /// NVM Subsystem Reset Occurred (bit 4).
    pub const NSSRO: u32 = 1 << 4;
    /// Processing Paused (bit 5).
    pub const PP: u32 = 1 << 5;
}

/// Admin Queue Attributes: both sizes 0's based.
pub const fn aqa(sq_entries: u16, cq_entries: u16) -> u32 {
    (sq_entries.saturating_sub(1) as u32 & 0xfff)
        | ((cq_entries.saturating_sub(1) as u32 & 0xfff) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbells_follow_the_stride() {
        assert_eq!(sq_tail_doorbell(0, 0), 0x1000);
        assert_eq!(cq_head_doorbell(0, 0), 0x1004);
        assert_eq!(sq_tail_doorbell(3, 0), 0x1018);
        assert_eq!(cq_head_doorbell(1, 2), 0x1000 + 3 * 16);
    }

    #[test]
    fn cap_fields_decode() {
        let cap = Cap(0x7ff | (1 << 16) | (0xf << 24) | (0x41 << 37) | (4 << 52));
        assert_eq!(
            (cap.mqes(), cap.cqr(), cap.to(), cap.dstrd()),
            (0x7ff, true, 15, 0)
        );
        assert_eq!(
            (cap.timeout_ms(), cap.css(), cap.mpsmin(), cap.mpsmax()),
            (7500, 0x41, 0, 4)
        );
        assert_eq!(cc::enabled(0), 0x0046_0001);
        assert_eq!(aqa(32, 32), (31 << 16) | 31);
    }
}
