//! What can go wrong driving an NVMe controller.

use nvme_spec::Status;
use std::fmt;
use std::time::Duration;

/// A command as the driver submitted it: which queue, which identifier,
/// which opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandRef {
    /// The submission queue (0: admin).
    pub qid: u16,
    /// The command identifier the driver gave it.
    pub cid: u16,
    /// The opcode.
    pub opcode: u8,
}

impl fmt::Display for CommandRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (set, name) = if self.qid == 0 {
            ("admin", nvme_spec::opcode::admin::name(self.opcode))
        } else {
            ("I/O", nvme_spec::opcode::nvm::name(self.opcode))
        };
        match name {
            Some(n) => write!(f, "{set} {n} (opcode {:#04x}", self.opcode)?,
            None => write!(f, "{set} opcode {:#04x}", self.opcode)?,
        }
        write!(f, ", cid {:#06x}, queue {})", self.cid, self.qid)
    }
}

/// How a controller broke the queue protocol. The driver never completes a
/// request from such a completion; the queue is unusable afterwards (a
/// controller reset makes it usable again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Violation {
    /// A completion names a command identifier the driver never gave out,
    /// or one whose command is not in flight.
    UnknownCid {
        /// The identifier in the completion.
        cid: u16,
    },
    /// A second completion for a command already completed.
    DuplicateCid {
        /// The identifier in the completion.
        cid: u16,
    },
    /// The SQ head pointer is not an entry of the queue.
    SqHeadOutOfRange {
        /// What the completion says.
        sq_head: u16,
        /// The queue's size.
        entries: u16,
    },
    /// The SQ head pointer moved back, or past what was submitted.
    SqHeadNotConsumed {
        /// What the completion says.
        sq_head: u16,
        /// The head before it.
        head: u16,
        /// The driver's tail.
        tail: u16,
    },
    /// The completion names another submission queue.
    WrongSqId {
        /// What the completion says.
        sq_id: u16,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownCid { cid } => write!(f, "completion for unknown command id {cid:#06x}"),
            Self::DuplicateCid { cid } => {
                write!(f, "second completion for command id {cid:#06x}")
            }
            Self::SqHeadOutOfRange { sq_head, entries } => {
                write!(f, "SQ head {sq_head} is outside the {entries}-entry queue")
            }
            Self::SqHeadNotConsumed {
                sq_head,
                head,
                tail,
            } => write!(
                f,
                "SQ head {sq_head} is not between the previous head {head} and the tail {tail}"
            ),
            Self::WrongSqId { sq_id } => write!(f, "completion names submission queue {sq_id}"),
        }
    }
}

/// What was wrong with what the controller identified itself as.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentifyProblem {
    /// MDTS gives a transfer size that does not fit the driver's arithmetic.
    Mdts(u8),
    /// The required submission entry size is over 64 bytes, or the maximum under it.
    Sqes(u8),
    /// The required completion entry size is over 16 bytes, or the maximum under it.
    Cqes(u8),
    /// The controller has no namespaces (NN is 0).
    NoNamespaces,
    /// The namespace asked for is above NN.
    NamespaceAboveNn {
        /// The namespace.
        nsid: u32,
        /// NN.
        nn: u32,
    },
    /// The namespace has no blocks (NSZE 0), or a capacity above its size.
    NamespaceSize {
        /// NSZE.
        nsze: u64,
        /// NCAP.
        ncap: u64,
    },
    /// FLBAS picks a format past NLBAF.
    FormatIndex {
        /// The index FLBAS picks.
        index: usize,
        /// NLBAF (0's based).
        nlbaf: u8,
    },
    /// The LBA format in use has a block size the driver cannot use (LBADS
    /// not 9..=16) or carries metadata.
    LbaFormat {
        /// LBADS.
        lbads: u8,
        /// Metadata bytes per block.
        metadata: u16,
    },
    /// A logical block is larger than the longest transfer (MDTS).
    BlockExceedsTransfer {
        /// The block size.
        block: u32,
        /// The longest transfer.
        max_transfer: usize,
    },
    /// Set Features (Number of Queues) granted no I/O queue.
    NoQueuesGranted(u32),
}

impl fmt::Display for IdentifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mdts(m) => write!(f, "MDTS {m} is beyond any transfer size"),
            Self::Sqes(s) => write!(f, "SQES {s:#04x} does not allow 64-byte entries"),
            Self::Cqes(c) => write!(f, "CQES {c:#04x} does not allow 16-byte entries"),
            Self::NoNamespaces => f.write_str("NN is 0: no namespaces"),
            Self::NamespaceAboveNn { nsid, nn } => {
                write!(f, "namespace {nsid} is above NN {nn}")
            }
            Self::NamespaceSize { nsze, ncap } => {
                write!(f, "namespace size {nsze} blocks, capacity {ncap}")
            }
            Self::FormatIndex { index, nlbaf } => {
                write!(f, "FLBAS picks LBA format {index}, past NLBAF {nlbaf}")
            }
            Self::LbaFormat { lbads, metadata } => write!(
                f,
                "LBA format with LBADS {lbads} and {metadata} metadata bytes is unsupported"
            ),
            Self::BlockExceedsTransfer {
                block,
                max_transfer,
            } => write!(
                f,
                "{block}-byte blocks exceed the longest transfer, {max_transfer} bytes"
            ),
            Self::NoQueuesGranted(result) => {
                write!(f, "Number of Queues granted {result:#010x}: no I/O queue")
            }
        }
    }
}

/// The broad class of an [`NvmeError`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A VFIO call failed.
    Vfio,
    /// The controller completed a command with an error status.
    Status,
    /// Something did not happen in time.
    Timeout,
    /// The controller is in a state the driver cannot use.
    Controller,
    /// The controller broke the queue protocol.
    Protocol,
    /// The caller asked for something the driver or controller cannot do.
    Invalid,
    /// The command was lost to a controller reset.
    Reset,
}

/// What can go wrong driving an NVMe controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NvmeError {
    /// A VFIO call failed.
    #[error(transparent)]
    Vfio(#[from] vfio_core::Error),
    /// The controller completed the command with an error status.
    #[error("{command} failed: {status}{}", if status.dnr() { ", do not retry" } else { "" })]
    Command {
        /// The command.
        command: CommandRef,
        /// The completion's status.
        status: Status,
        /// The completion's dword 0.
        result: u32,
    },
    /// No completion arrived in time. The command stays accounted for: its
    /// identifier and buffers are not reused until the controller completes
    /// it or is reset.
    #[error("{command}: no completion within {timeout:?}")]
    Timeout {
        /// The command.
        command: CommandRef,
        /// How long the driver waited.
        timeout: Duration,
    },
    /// CSTS.RDY did not reach `ready` within CAP.TO.
    #[error(
        "CSTS.RDY did not become {} within CAP.TO {to} ({} ms); CSTS {csts:#x}",
        u8::from(*ready),
        u64::from(*to) * 500
    )]
    ReadyTimeout {
        /// The state waited for.
        ready: bool,
        /// CAP.TO, in 500 ms units.
        to: u8,
        /// The last CSTS read.
        csts: u32,
    },
    /// The controller reports a fatal error (CSTS.CFS).
    #[error("controller fatal status (CSTS {csts:#x})")]
    ControllerFatal {
        /// CSTS.
        csts: u32,
    },
    /// A register read all ones: the device has gone from the bus.
    #[error("register {0:#x} reads all ones: the device is gone")]
    DeviceGone(u64),
    /// The controller lacks something the driver needs.
    #[error("the controller does not support {0}")]
    Unsupported(&'static str),
    /// Identify or Set Features returned something unusable.
    #[error("{0}")]
    Identify(IdentifyProblem),
    /// The controller broke the queue protocol on queue `qid`.
    #[error("queue {qid}: {violation}")]
    Protocol {
        /// The queue.
        qid: u16,
        /// What it did.
        violation: Violation,
    },
    /// The queue is unusable since an earlier protocol violation.
    #[error("queue {qid} is unusable since the controller broke the protocol: {violation}")]
    QueueBroken {
        /// The queue.
        qid: u16,
        /// The violation that broke it.
        violation: Violation,
    },
    /// The queue has no free entry or command identifier.
    #[error("queue {0} is full")]
    QueueFull(u16),
    /// No such I/O queue.
    #[error("no I/O queue {0}")]
    NoSuchQueue(u16),
    /// A request the driver refuses before the controller sees it.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The command was in flight when the controller was reset.
    #[error("{0} was lost to a controller reset")]
    Reset(CommandRef),
}

impl NvmeError {
    /// The class of the error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Vfio(_) => ErrorKind::Vfio,
            Self::Command { .. } => ErrorKind::Status,
            Self::Timeout { .. } | Self::ReadyTimeout { .. } => ErrorKind::Timeout,
            Self::ControllerFatal { .. }
            | Self::DeviceGone(_)
            | Self::Unsupported(_)
            | Self::Identify(_) => ErrorKind::Controller,
            Self::Protocol { .. } | Self::QueueBroken { .. } => ErrorKind::Protocol,
            Self::QueueFull(_) | Self::NoSuchQueue(_) | Self::InvalidRequest(_) => {
                ErrorKind::Invalid
            }
            Self::Reset(_) => ErrorKind::Reset,
        }
    }

    /// The NVMe status of a failed command.
    pub fn status(&self) -> Option<Status> {
        match self {
            Self::Command { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The command the error is about, if it is about one.
    pub fn command(&self) -> Option<CommandRef> {
        match self {
            Self::Command { command, .. }
            | Self::Timeout { command, .. }
            | Self::Reset(command) => Some(*command),
            _ => None,
        }
    }
}

/// The driver's result type.
pub type Result<T, E = NvmeError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_error_names_the_command_and_the_status() {
        let e = NvmeError::Command {
            command: CommandRef {
                qid: 1,
                cid: 0x0103,
                opcode: nvme_spec::opcode::nvm::READ,
            },
            status: Status::LBA_OUT_OF_RANGE.with_dnr(),
            result: 0,
        };
        assert_eq!(
            e.to_string(),
            "I/O Read (opcode 0x02, cid 0x0103, queue 1) failed: LBA out of range (sct 0, sc 0x80), \
             do not retry"
        );
        assert_eq!(e.kind(), ErrorKind::Status);
        assert_eq!(e.status(), Some(Status::LBA_OUT_OF_RANGE.with_dnr()));
    }

    #[test]
    fn the_ready_timeout_carries_the_cap_to_figure() {
        let e = NvmeError::ReadyTimeout {
            ready: true,
            to: 15,
            csts: 0,
        };
        assert_eq!(
            e.to_string(),
            "CSTS.RDY did not become 1 within CAP.TO 15 (7500 ms); CSTS 0x0"
        );
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
}
