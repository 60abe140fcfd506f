//! Completion status: the status code type, the status code, and the More
//! and Do Not Retry bits.

use core::fmt;

/// The status code type (SCT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusType {
    /// Generic command status (0).
    Generic,
    /// Command specific status (1).
    CommandSpecific,
    /// Media and data integrity errors (2).
    MediaError,
    /// Path related status (3).
    Path,
    /// Vendor specific (7), or a reserved type (4 to 6), with its value.
    Other(u8),
}

impl StatusType {
    /// The type from its 3-bit value.
    pub fn from_bits(bits: u8) -> Self {
        match bits & 0x7 {
            0 => Self::Generic,
            1 => Self::CommandSpecific,
            2 => Self::MediaError,
            3 => Self::Path,
            other => Self::Other(other),
        }
    }

    /// The 3-bit value.
    pub fn bits(self) -> u8 {
        match self {
            Self::Generic => 0,
            Self::CommandSpecific => 1,
            Self::MediaError => 2,
            Self::Path => 3,
            Self::Other(b) => b & 0x7,
        }
    }
}

/// A completion's status field (bits 15:1 of the completion's last word,
/// without the phase tag): SC in bits 7:0, SCT in 10:8, CRD in 12:11,
/// More in 13 and Do Not Retry in 14.
///
/// Equality compares the whole field, so `Status::INVALID_OPCODE` differs
/// from the same code with DNR set; compare [`Status::code`] to ignore the
/// retry hints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Status(u16);

impl Status {
    /// A status from the 15-bit field.
    pub const fn from_field(field: u16) -> Self {
        Self(field & 0x7fff)
    }

    /// A status of type `sct` with code `sc`, More and DNR clear.
    pub const fn new(sct: u8, sc: u8) -> Self {
        Self(((sct as u16 & 0x7) << 8) | sc as u16)
    }

    /// The 15-bit field.
    pub const fn field(self) -> u16 {
        self.0
    }

    /// The status code (SC).
    pub const fn sc(self) -> u8 {
        self.0 as u8
    }

    /// The status code type.
    pub fn sct(self) -> StatusType {
        StatusType::from_bits((self.0 >> 8) as u8)
    }

    /// Type and code only: the status with CRD, More and DNR cleared.
    pub const fn code(self) -> Self {
        Self(self.0 & 0x7ff)
    }

    /// Do Not Retry.
    pub const fn dnr(self) -> bool {
        self.0 & (1 << 14) != 0
    }

    /// More: the Error Information log page has more about this command.
    pub const fn more(self) -> bool {
        self.0 & (1 << 13) != 0
    }

    /// The same status with DNR set.
    pub const fn with_dnr(self) -> Self {
        Self(self.0 | (1 << 14))
    }

    /// True for a successful completion (type and code both zero).
    pub const fn is_success(self) -> bool {
        self.0 & 0x7ff == 0
    }

    /// The completion entry's status word for this status and phase tag.
    pub const fn to_word(self, phase: bool) -> u16 {
        (self.0 << 1) | phase as u16
    }

    /// Successful completion.
    pub const SUCCESS: Self = Self::new(0, 0x00);
    /// Invalid command opcode.
    pub const INVALID_OPCODE: Self = Self::new(0, 0x01);
    /// Invalid field in command.
    pub const INVALID_FIELD: Self = Self::new(0, 0x02);
    /// Command identifier conflict.
    pub const CID_CONFLICT: Self = Self::new(0, 0x03);
    /// Data transfer error.
    pub const DATA_TRANSFER_ERROR: Self = Self::new(0, 0x04);
    /// Commands aborted due to power loss notification.
    pub const ABORTED_POWER_LOSS: Self = Self::new(0, 0x05);
    /// Internal error.
    pub const INTERNAL_ERROR: Self = Self::new(0, 0x06);
    /// Command abort requested.
    pub const ABORT_REQUESTED: Self = Self::new(0, 0x07);
    /// Command aborted due to SQ deletion.
    pub const ABORTED_SQ_DELETION: Self = Self::new(0, 0x08);
    /// Command aborted due to failed fused command.
    pub const ABORTED_FAILED_FUSE: Self = Self::new(0, 0x09);
    /// Command aborted due to missing fused command.
    pub const ABORTED_MISSING_FUSE: Self = Self::new(0, 0x0a);
    /// Invalid namespace or format.
    pub const INVALID_NAMESPACE: Self = Self::new(0, 0x0b);
    /// Command sequence error.
    pub const COMMAND_SEQUENCE_ERROR: Self = Self::new(0, 0x0c);
    /// Invalid SGL segment descriptor.
    pub const INVALID_SGL_SEGMENT: Self = Self::new(0, 0x0d);
    /// Invalid number of SGL descriptors.
    pub const INVALID_SGL_COUNT: Self = Self::new(0, 0x0e);
    /// Data SGL length invalid.
    pub const SGL_DATA_LENGTH_INVALID: Self = Self::new(0, 0x0f);
    /// Metadata SGL length invalid.
    pub const SGL_METADATA_LENGTH_INVALID: Self = Self::new(0, 0x10);
    /// SGL descriptor type invalid.
    pub const SGL_DESCRIPTOR_TYPE_INVALID: Self = Self::new(0, 0x11);
    /// Invalid use of controller memory buffer.
    pub const INVALID_CMB_USE: Self = Self::new(0, 0x12);
    /// PRP offset invalid.
    pub const INVALID_PRP_OFFSET: Self = Self::new(0, 0x13);
    /// Atomic write unit exceeded.
    pub const ATOMIC_WRITE_UNIT_EXCEEDED: Self = Self::new(0, 0x14);
    /// Operation denied.
    pub const OPERATION_DENIED: Self = Self::new(0, 0x15);
    /// SGL offset invalid.
    pub const SGL_OFFSET_INVALID: Self = Self::new(0, 0x16);
    /// I/O command set combination rejected (Set Features, Command Set Profile).
    pub const COMMAND_SET_COMBINATION_REJECTED: Self = Self::new(0, 0x2b);
    /// Invalid command set.
    pub const INVALID_COMMAND_SET: Self = Self::new(0, 0x2c);
    /// LBA out of range.
    pub const LBA_OUT_OF_RANGE: Self = Self::new(0, 0x80);
    /// Capacity exceeded.
    pub const CAPACITY_EXCEEDED: Self = Self::new(0, 0x81);
    /// Namespace not ready.
    pub const NAMESPACE_NOT_READY: Self = Self::new(0, 0x82);

    /// Completion queue invalid (Create I/O SQ naming a CQ that does not exist).
    pub const CQ_INVALID: Self = Self::new(1, 0x00);
    /// Invalid queue identifier.
    pub const INVALID_QUEUE_ID: Self = Self::new(1, 0x01);
    /// Invalid queue size.
    pub const INVALID_QUEUE_SIZE: Self = Self::new(1, 0x02);
    /// Abort command limit exceeded.
    pub const ABORT_LIMIT_EXCEEDED: Self = Self::new(1, 0x03);
    /// Asynchronous event request limit exceeded.
    pub const ASYNC_EVENT_LIMIT_EXCEEDED: Self = Self::new(1, 0x05);
    /// Invalid firmware slot.
    pub const INVALID_FIRMWARE_SLOT: Self = Self::new(1, 0x06);
    /// Invalid firmware image.
    pub const INVALID_FIRMWARE_IMAGE: Self = Self::new(1, 0x07);
    /// Invalid interrupt vector.
    pub const INVALID_INTERRUPT_VECTOR: Self = Self::new(1, 0x08);
    /// Invalid log page.
    pub const INVALID_LOG_PAGE: Self = Self::new(1, 0x09);
    /// Invalid format.
    pub const INVALID_FORMAT: Self = Self::new(1, 0x0a);
    /// Invalid queue deletion (deleting a CQ that an SQ still uses).
    pub const INVALID_QUEUE_DELETION: Self = Self::new(1, 0x0c);
    /// Feature identifier not saveable.
    pub const FEATURE_NOT_SAVEABLE: Self = Self::new(1, 0x0d);
    /// Feature not changeable.
    pub const FEATURE_NOT_CHANGEABLE: Self = Self::new(1, 0x0e);
    /// Feature not namespace specific.
    pub const FEATURE_NOT_NS_SPECIFIC: Self = Self::new(1, 0x0f);
    /// Conflicting attributes (an NVM command's type-specific code 0x80).
    pub const CONFLICTING_ATTRIBUTES: Self = Self::new(1, 0x80);
    /// Invalid protection information.
    pub const INVALID_PROTECTION_INFO: Self = Self::new(1, 0x81);
    /// Attempted write to read-only range.
    pub const WRITE_TO_READ_ONLY: Self = Self::new(1, 0x82);

    /// Write fault.
    pub const WRITE_FAULT: Self = Self::new(2, 0x80);
    /// Unrecovered read error.
    pub const UNRECOVERED_READ_ERROR: Self = Self::new(2, 0x81);
    /// Compare failure: the data differ from the namespace's.
    pub const COMPARE_FAILURE: Self = Self::new(2, 0x85);
    /// Access denied.
    pub const ACCESS_DENIED: Self = Self::new(2, 0x86);
    /// Deallocated or unwritten logical block.
    pub const DEALLOCATED_OR_UNWRITTEN: Self = Self::new(2, 0x87);

    /// The specification's name for a known type and code, without the
    /// retry hints.
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|(s, _)| *s == self.code())
            .map(|(_, n)| *n)
    }
}

const NAMES: &[(Status, &str)] = &[
    (Status::SUCCESS, "successful completion"),
    (Status::INVALID_OPCODE, "invalid command opcode"),
    (Status::INVALID_FIELD, "invalid field in command"),
    (Status::CID_CONFLICT, "command identifier conflict"),
    (Status::DATA_TRANSFER_ERROR, "data transfer error"),
    (
        Status::ABORTED_POWER_LOSS,
        "aborted: power loss notification",
    ),
    (Status::INTERNAL_ERROR, "internal error"),
    (
        Status::COMMAND_SET_COMBINATION_REJECTED,
        "I/O command set combination rejected",
    ),
    (Status::COMPARE_FAILURE, "compare failure"),
    (Status::ABORT_REQUESTED, "command abort requested"),
    (
        Status::ABORTED_SQ_DELETION,
        "aborted: submission queue deleted",
    ),
    (Status::ABORTED_FAILED_FUSE, "aborted: failed fused command"),
    (
        Status::ABORTED_MISSING_FUSE,
        "aborted: missing fused command",
    ),
    (Status::INVALID_NAMESPACE, "invalid namespace or format"),
    (Status::COMMAND_SEQUENCE_ERROR, "command sequence error"),
    (
        Status::INVALID_SGL_SEGMENT,
        "invalid SGL segment descriptor",
    ),
    (
        Status::INVALID_SGL_COUNT,
        "invalid number of SGL descriptors",
    ),
    (Status::SGL_DATA_LENGTH_INVALID, "data SGL length invalid"),
    (
        Status::SGL_METADATA_LENGTH_INVALID,
        "metadata SGL length invalid",
    ),
    (
        Status::SGL_DESCRIPTOR_TYPE_INVALID,
        "SGL descriptor type invalid",
    ),
    (
        Status::INVALID_CMB_USE,
        "invalid use of controller memory buffer",
    ),
    (Status::INVALID_PRP_OFFSET, "PRP offset invalid"),
    (
        Status::ATOMIC_WRITE_UNIT_EXCEEDED,
        "atomic write unit exceeded",
    ),
    (Status::OPERATION_DENIED, "operation denied"),
    (Status::SGL_OFFSET_INVALID, "SGL offset invalid"),
    (Status::INVALID_COMMAND_SET, "invalid command set"),
    (Status::LBA_OUT_OF_RANGE, "LBA out of range"),
    (Status::CAPACITY_EXCEEDED, "capacity exceeded"),
    (Status::NAMESPACE_NOT_READY, "namespace not ready"),
    (Status::CQ_INVALID, "completion queue invalid"),
    (Status::INVALID_QUEUE_ID, "invalid queue identifier"),
    (Status::INVALID_QUEUE_SIZE, "invalid queue size"),
    (Status::ABORT_LIMIT_EXCEEDED, "abort command limit exceeded"),
    (
        Status::ASYNC_EVENT_LIMIT_EXCEEDED,
        "asynchronous event request limit exceeded",
    ),
    (Status::INVALID_FIRMWARE_SLOT, "invalid firmware slot"),
    (Status::INVALID_FIRMWARE_IMAGE, "invalid firmware image"),
    (Status::INVALID_INTERRUPT_VECTOR, "invalid interrupt vector"),
    (Status::INVALID_LOG_PAGE, "invalid log page"),
    (Status::INVALID_FORMAT, "invalid format"),
    (Status::INVALID_QUEUE_DELETION, "invalid queue deletion"),
    (
        Status::FEATURE_NOT_SAVEABLE,
        "feature identifier not saveable",
    ),
    (Status::FEATURE_NOT_CHANGEABLE, "feature not changeable"),
    (
        Status::FEATURE_NOT_NS_SPECIFIC,
        "feature not namespace specific",
    ),
    (Status::CONFLICTING_ATTRIBUTES, "conflicting attributes"),
    (
        Status::INVALID_PROTECTION_INFO,
        "invalid protection information",
    ),
    (
        Status::WRITE_TO_READ_ONLY,
        "attempted write to read-only range",
    ),
    (Status::WRITE_FAULT, "write fault"),
    (Status::UNRECOVERED_READ_ERROR, "unrecovered read error"),
    (Status::ACCESS_DENIED, "access denied"),
    (
        Status::DEALLOCATED_OR_UNWRITTEN,
        "deallocated or unwritten logical block",
    ),
];

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Status(sct {}, sc {:#04x}", self.sct().bits(), self.sc())?;
        if self.dnr() {
            f.write_str(", dnr")?;
        }
        if self.more() {
            f.write_str(", more")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(
                f,
                "{name} (sct {}, sc {:#04x})",
                self.sct().bits(),
                self.sc()
            ),
            None => write!(f, "status sct {}, sc {:#04x}", self.sct().bits(), self.sc()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_bits_are_where_the_specification_puts_them() {
        let s = Status::INVALID_QUEUE_ID.with_dnr();
        assert_eq!(s.field(), (1 << 14) | (1 << 8) | 0x01);
        assert_eq!(s.to_word(true), (s.field() << 1) | 1);
        assert_eq!(s.sct(), StatusType::CommandSpecific);
        assert_eq!(s.sc(), 0x01);
        assert!(s.dnr() && !s.more());
        assert_eq!(s.code(), Status::INVALID_QUEUE_ID);
        assert_eq!(s.code().name(), Some("invalid queue identifier"));
        assert!(!s.is_success() && Status::SUCCESS.with_dnr().is_success());
    }
}
