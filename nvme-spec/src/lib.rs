//! NVMe layouts from the NVM Express Base Specification (2.0) and the NVM
//! Command Set Specification, as plain data: controller registers and their
//! fields, the 64-byte submission entry, the 16-byte completion entry,
//! status codes, opcodes, and the Identify and log-page structures.
//!
//! This crate has no behaviour of its own. It is shared by the NVMe driver
//! (which builds commands and reads completions) and by the simulated
//! controller in `vfio-mock` (which does the reverse), so that a layout is
//! written once; whether either side *behaves* like a controller is judged
//! elsewhere, against QEMU's NVMe through the real kernel.
//!
//! Every structure is `#[repr(C)]` with its size checked at compile time,
//! and derives `zerocopy`'s traits so it can be copied in and out of DMA
//! memory without `unsafe`. Multi-byte fields are native integers, which
//! is the specification's little-endian order only on a little-endian CPU;
//! the crate refuses to build for a big-endian target rather than give
//! wrong values there.
//!
//! ```
//! use nvme_spec::{Command, Completion, Status, opcode};
//!
//! let mut cmd = Command::new(opcode::admin::IDENTIFY, 7);
//! cmd.prp1 = 0x1000;
//! cmd.cdw10 = nvme_spec::identify::CNS_CONTROLLER;
//! assert_eq!(cmd.opcode(), opcode::admin::IDENTIFY);
//! assert_eq!(cmd.cid(), 7);
//!
//! let cqe = Completion { cid: 7, status: 1, ..Completion::default() };
//! assert!(cqe.phase());
//! assert_eq!(cqe.status(), Status::SUCCESS);
//! ```
#![no_std]
#![deny(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("nvme-spec's layouts use native integers and need a little-endian target");

mod command;
pub mod identify;
pub mod log;
pub mod opcode;
pub mod regs;
mod status;

pub use command::{Command, Completion, DsmRange};
pub use status::{Status, StatusType};

/// Size of a submission queue entry in bytes (`CC.IOSQES` = 6).
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry in bytes (`CC.IOCQES` = 4).
pub const CQE_SIZE: usize = 16;
