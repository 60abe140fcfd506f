//! Command opcodes.

/// Admin command set opcodes.
pub mod admin {
    /// Delete I/O Submission Queue.
    pub const DELETE_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_SQ: u8 = 0x01;
    /// Get Log Page.
    pub const GET_LOG_PAGE: u8 = 0x02;
    /// Delete I/O Completion Queue.
    pub const DELETE_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Abort.
    pub const ABORT: u8 = 0x08;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Get Features.
    pub const GET_FEATURES: u8 = 0x0a;
    /// Asynchronous Event Request.
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    /// Namespace Management.
    pub const NS_MANAGEMENT: u8 = 0x0d;
    /// Firmware Commit.
    pub const FIRMWARE_COMMIT: u8 = 0x10;
    /// Firmware Image Download.
    pub const FIRMWARE_DOWNLOAD: u8 = 0x11;
    /// Namespace Attachment.
    pub const NS_ATTACHMENT: u8 = 0x15;
    /// Keep Alive.
    pub const KEEP_ALIVE: u8 = 0x18;
    /// Doorbell Buffer Config.
    pub const DOORBELL_BUFFER_CONFIG: u8 = 0x7c;
    /// Format NVM.
    pub const FORMAT_NVM: u8 = 0x80;

    /// The specification's name of admin opcode `opcode`.
    pub const fn name(opcode: u8) -> Option<&'static str> {
        Some(match opcode {
            DELETE_SQ => "Delete I/O Submission Queue",
            CREATE_SQ => "Create I/O Submission Queue",
            GET_LOG_PAGE => "Get Log Page",
            DELETE_CQ => "Delete I/O Completion Queue",
            CREATE_CQ => "Create I/O Completion Queue",
            IDENTIFY => "Identify",
            ABORT => "Abort",
            SET_FEATURES => "Set Features",
            GET_FEATURES => "Get Features",
            ASYNC_EVENT_REQUEST => "Asynchronous Event Request",
            NS_MANAGEMENT => "Namespace Management",
            FIRMWARE_COMMIT => "Firmware Commit",
            FIRMWARE_DOWNLOAD => "Firmware Image Download",
            NS_ATTACHMENT => "Namespace Attachment",
            KEEP_ALIVE => "Keep Alive",
            DOORBELL_BUFFER_CONFIG => "Doorbell Buffer Config",
            FORMAT_NVM => "Format NVM",
            _ => return None,
        })
    }
}

/// NVM command set opcodes.
pub mod nvm {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Write Uncorrectable.
    pub const WRITE_UNCORRECTABLE: u8 = 0x04;
    /// Compare.
    pub const COMPARE: u8 = 0x05;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management.
    pub const DATASET_MANAGEMENT: u8 = 0x09;
    /// Verify.
    pub const VERIFY: u8 = 0x0c;
    /// Copy.
    pub const COPY: u8 = 0x19;

    /// The specification's name of NVM opcode `opcode`.
    pub const fn name(opcode: u8) -> Option<&'static str> {
        Some(match opcode {
            FLUSH => "Flush",
            WRITE => "Write",
            READ => "Read",
            WRITE_UNCORRECTABLE => "Write Uncorrectable",
            COMPARE => "Compare",
            WRITE_ZEROES => "Write Zeroes",
            DATASET_MANAGEMENT => "Dataset Management",
            VERIFY => "Verify",
            COPY => "Copy",
            _ => return None,
        })
    }
}

/// Feature identifiers for Get and Set Features (dword 10 bits 7:0).
pub mod feature {
    /// Arbitration.
    pub const ARBITRATION: u8 = 0x01;
    /// Power Management.
    pub const POWER_MANAGEMENT: u8 = 0x02;
    /// Temperature Threshold.
    pub const TEMPERATURE_THRESHOLD: u8 = 0x04;
    /// Error Recovery.
    pub const ERROR_RECOVERY: u8 = 0x05;
    /// Volatile Write Cache.
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    /// Number of Queues: dword 11 (and the result) hold the 0's based
    /// submission queue count in bits 15:0 and completion queue count in 31:16.
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    /// Interrupt Coalescing: aggregation threshold (bits 7:0, 0's based)
    /// and time (bits 15:8, in 100 µs units).
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    /// Interrupt Vector Configuration.
    pub const INTERRUPT_VECTOR_CONFIG: u8 = 0x09;
    /// Write Atomicity Normal.
    pub const WRITE_ATOMICITY: u8 = 0x0a;
    /// Asynchronous Event Configuration.
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
    /// Timestamp.
    pub const TIMESTAMP: u8 = 0x0e;
}

#[cfg(test)]
mod tests {
    #[test]
    fn opcode_names_are_the_specifications() {
        assert_eq!(super::admin::name(0x06), Some("Identify"));
        assert_eq!(
            super::admin::name(0x01),
            Some("Create I/O Submission Queue")
        );
        assert_eq!(super::nvm::name(0x02), Some("Read"));
        assert_eq!(super::nvm::name(0x09), Some("Dataset Management"));
        assert_eq!(super::nvm::name(0x7f), None);
    }
}

/// Log page identifiers for Get Log Page (dword 10 bits 7:0).
pub mod log_page {
    /// Error Information (64-byte entries).
    pub const ERROR_INFORMATION: u8 = 0x01;
    /// SMART / Health Information (512 bytes).
    pub const SMART_HEALTH: u8 = 0x02;
    /// Firmware Slot Information (512 bytes).
    pub const FIRMWARE_SLOT: u8 = 0x03;
    /// Changed Namespace List.
    pub const CHANGED_NAMESPACES: u8 = 0x04;
    /// Commands Supported and Effects.
    pub const COMMAND_EFFECTS: u8 = 0x05;
}
