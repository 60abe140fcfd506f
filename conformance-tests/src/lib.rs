//! One suite of VFIO behaviours, written once and generic over the backend.
//!
//! Each case is a function `fn(&Env<B>) -> anyhow::Result<()>` for any
//! `B: VfioBackend`, given a fresh environment by a backend factory. The same
//! cases run against the real kernel's vfio-pci (in a QEMU guest, or on a host
//! with devices bound to vfio-pci) and against the simulated backend, so the
//! simulation is held to what the kernel does.
#![deny(missing_docs)]

pub mod cases;
mod env;
pub mod guest;
pub mod mock;
pub mod report;

pub use env::{Env, Opened, Targets};

/// One conformance case.
pub struct Case<B: vfio_core::VfioBackend> {
    /// What the case proves, as a snake_case sentence.
    pub name: &'static str,
    /// The case body.
    pub run: fn(&Env<B>) -> anyhow::Result<()>,
}

impl<B: vfio_core::VfioBackend> std::fmt::Debug for Case<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}
