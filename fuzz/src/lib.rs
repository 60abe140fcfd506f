//! Fuzz target bodies for the VFIO stack.
//!
//! Each target is a plain `pub fn name(data: &[u8])` that panics when a
//! property is violated, so it builds on stable and runs three ways: under
//! libFuzzer (`fuzz_targets/<name>.rs`, nightly, `--features libfuzzer`),
//! in the stable replay test over the committed corpus (`tests/replay.rs`),
//! and from any other harness that can call a function.
//!
//! The inputs are hostile on purpose: the kernel's info buffers, a device's
//! config space, `/proc/interrupts` and sysfs text are all things the parsers
//! must survive rather than trust.

pub mod dma_access;
pub mod hostile_device;
pub mod hostile_nvme;
pub mod mock;
pub mod pci_caps;
pub mod proc_interrupts;
pub mod register_access;
pub mod sysfs;
pub mod vfio_caps;

pub use dma_access::dma_access;
pub use hostile_device::hostile_device;
pub use hostile_nvme::hostile_nvme;
pub use pci_caps::pci_caps;
pub use proc_interrupts::proc_interrupts;
pub use register_access::register_access;
pub use sysfs::sysfs;
pub use vfio_caps::vfio_caps;

/// A target: the function a fuzz target or the replay test feeds bytes to.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz_targets/` and `corpus/` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("vfio_caps", vfio_caps),
    ("pci_caps", pci_caps),
    ("proc_interrupts", proc_interrupts),
    ("sysfs", sysfs),
    ("register_access", register_access),
    ("hostile_device", hostile_device),
    ("hostile_nvme", hostile_nvme),
    ("dma_access", dma_access),
];
