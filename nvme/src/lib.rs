//! A userspace NVMe driver, written once and generic over [`VfioBackend`](vfio_core::VfioBackend):
//! the same code drives QEMU's NVMe controller through the kernel's
//! vfio-pci and a simulated controller in tests.
//!
//! What it does, in the order a controller sees it:
//!
//! - **Bring-up** ([`Nvme::new`]): BAR0 mapped, bus mastering and MSI-X on
//!   (vector 0 for the admin queue, vector `i` for I/O queue `i`), the
//!   controller disabled (waiting for CSTS.RDY to clear), admin queues in
//!   DMA memory (AQA, ASQ, ACQ), CC with 4 KiB pages and 64/16-byte
//!   entries, CSTS.RDY awaited for CAP.TO ([`NvmeError::ReadyTimeout`]
//!   carries the figure; CSTS.CFS is [`NvmeError::ControllerFatal`]).
//! - **Identify** controller and namespace, checked before use: MDTS,
//!   SQES/CQES, NN, a namespace with blocks and a usable LBA format
//!   ([`NvmeError::Identify`] names what is wrong).
//! - **Queues**: Set Features (Number of Queues), then each I/O queue pair
//!   created on its own vector. Every command gets a tracked identifier;
//!   every completion is checked (queue, SQ head, identifier) before it
//!   completes anything, and a controller that breaks the protocol gets a
//!   typed [`Violation`], never a wrong request completed. The SQ head from
//!   completions frees submission entries; phase tags say what is new.
//! - **I/O**: read, write (from caller buffers with PRP1, PRP2 or a PRP
//!   list, or through a per-queue bounce buffer), flush, write zeroes and
//!   deallocate, polled or interrupt-driven ([`CompletionMode`]), with
//!   timeouts; with the `tokio` feature, `AsyncNvme` awaits completions
//!   on the queues' vectors.
//! - [`Nvme::submit_raw`]: any command, malformed ones included, still with
//!   a tracked identifier, for what the driver has no method for.
//!
//! All DMA memory (queues, PRP list pages, buffers) is mapped at IOVAs the
//! driver's [`vfio_core::IovaAllocator`] picks, from [`IOVA_BASE`] up with a
//! guard page after each mapping, and unmapped when dropped; dropping the
//! driver disables the controller first.
//!
//! On the simulated host's NVMe (`vfio_mock::profiles::qemu_guest()`):
//!
//! ```
//! use std::sync::Arc;
//! use vfio_core::{Container, Group, IommuType, VfioBackend};
//! use vfio_mock::profiles;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = profiles::qemu_guest().build()?;
//! let backend = host.backend();
//! let group = backend.open_group(profiles::QEMU_GUEST_GROUPS.1)?;
//! let container = Arc::new(backend.open_container()?);
//! group.set_container(&container)?;
//! container.set_iommu(IommuType::Type1v2)?;
//! let device = group.open_device(&profiles::nvme_address().to_string())?;
//!
//! let nvme = nvme::Nvme::new(&backend, device, container, nvme::Options::default())?;
//! let block = nvme.namespace().block_size as usize;
//! let data = vec![0x5a; 2 * block];
//! nvme.write(1, 0, &data)?;
//! let mut back = vec![0; data.len()];
//! nvme.read(1, 0, &mut back)?;
//! assert_eq!(back, data);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
mod asynchronous;
mod buffer;
mod controller;
mod error;
mod identify;
mod io;
mod prp;
mod queue;

#[cfg(feature = "tokio")]
pub use asynchronous::AsyncNvme;
pub use buffer::{Dma, DmaBuffer, PAGE_SIZE};
pub use controller::{ADMIN_ENTRIES, CompletionMode, IOVA_BASE, Nvme, Options};
pub use error::{CommandRef, ErrorKind, IdentifyProblem, NvmeError, Result, Violation};
pub use identify::Namespace;
pub use io::MAX_DSM_RANGES;
pub use prp::PRP_LIST_ENTRIES;
pub use queue::{MAX_SLOTS, Ticket};
