//! The backend-neutral core of a VFIO stack for userspace PCI drivers.
//!
//! A driver is written once, generic over [`VfioBackend`], and runs on the
//! real kernel (`vfio-linux`) or on a simulated device (`vfio-mock`) with the
//! same results and the same errors. This crate holds the trait family, the
//! shared types, the typed [`Error`], the host-path lookups and the
//! bounds-checked parsers for what the kernel and devices hand back. It makes
//! no VFIO calls of its own and contains no unsafe code.
//!
//! With the `tokio` feature, `AsyncInterrupt` awaits any backend's
//! interrupt on tokio's reactor.
//!
//! ```
//! use vfio_core::{Device, Group, MappedRegion, Result, VfioBackend, region};
//!
//! /// Reads a device's vendor ID from config space, on any backend.
//! fn vendor_id<B: VfioBackend>(group: &B::Group, name: &str) -> Result<u16> {
//!     let device = group.open_device(name)?;
//!     Ok(u16::from_le_bytes(device.read_config::<2>(0)?))
//! }
//! ```
//!
//! # `nix` in the public API
//!
//! Errors carry the kernel's errno as [`Errno`], which is `nix`'s type,
//! re-exported here: it is the one `nix` type in this crate's API (file
//! descriptors are `std`'s `BorrowedFd`), chosen so that an errno compares
//! and prints the same in driver code, in `nix` calls a driver makes itself,
//! and here. `nix` is therefore a public dependency: a release of this crate
//! that moves to an incompatible `nix` is a breaking release.
//!
//! # `zerocopy` in the public API
//!
//! [`DmaMemory::read_obj`] and [`DmaMemory::write_obj`] copy any type with
//! `zerocopy`'s `FromBytes`/`IntoBytes` (a descriptor or completion entry
//! a driver derives them for), so `zerocopy` 0.8 is a public dependency too.
//!
//! # Trait objects
//!
//! The traits are written for static dispatch (`B: VfioBackend`), and each
//! can also be used as a trait object where one fits: generic helper
//! methods are `where Self: Sized`.
#![deny(missing_docs)]

pub mod access;
#[cfg(feature = "tokio")]
mod async_interrupt;
mod backend;
pub mod clock;
mod dma;
mod dma_mapping;
mod error;
pub mod host;
mod info;
mod interrupt;
mod iommufd;
mod iova;
mod irq;
pub mod open;
pub mod parse;
mod pci_address;
pub mod retry;
pub mod uapi;
pub mod words;

#[cfg(feature = "tokio")]
pub use async_interrupt::AsyncInterrupt;
pub use backend::{Container, Device, DmaSpace, Group, GroupKeepAlive, MappedRegion, VfioBackend};
pub use clock::{Clock, SystemClock};
pub use dma::{DmaMemory, HUGE_PAGE_SIZE, HugePages};
pub use dma_mapping::{DmaMapping, OwnedDmaMapping, OwnedIoasMapping};
pub use error::{Error, ErrorKind, Operation, Result};
pub use host::HostPaths;
pub use info::{
    DeviceFlags, DeviceInfo, DmaFlags, Extension, GroupStatus, IommuInfo, IommuType, IovaRange,
    IrqFlags, IrqIndex, IrqInfo, RegionCap, RegionFlags, RegionInfo, SparseArea, region,
};
pub use interrupt::{EventFdInterrupt, Interrupt};
pub use iommufd::{Ioas, IommuFd};
pub use iova::{IovaAllocator, IovaLease, IovaOptions};
pub use irq::{IrqAction, IrqData, IrqTracker, check_eventfds};
/// The errno type errors carry, re-exported so users need not depend on `nix`.
pub use nix::errno::Errno;
pub use pci_address::{PciAddress, PciAddressError};
