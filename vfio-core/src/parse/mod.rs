//! Bounds-checked parsers for the bytes and text the kernel and devices hand back.
//!
//! Every parser here treats its input as hostile: the kernel may be buggy or
//! replaced by a simulation, and a device's config space is whatever the
//! device says it is. Parsers never panic, never index without a bounds check,
//! use checked arithmetic on every offset, stop every walk after a fixed number
//! of steps, and report what they refused in a [`ParseError`].
//!
//! - [`vfio_caps`]: the capability chains of VFIO region and IOMMU info.
//! - [`pci_caps`]: PCI and PCI Express capability lists in config space.
//! - [`proc_interrupts`]: `/proc/interrupts`, to find the irq behind a vector.
//! - [`sysfs`]: small sysfs values (IOMMU group links, hex ids).

mod bytes;
pub mod pci_caps;
pub mod proc_interrupts;
pub mod sysfs;
pub mod vfio_caps;

/// Input that does not parse: what was being parsed, where, and why.
///
/// `Display` reads like "malformed VFIO capability chain: capability at 0x40
/// points back to 0x20: loop".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {what}: {reason}")]
pub struct ParseError {
    what: &'static str,
    offset: Option<u64>,
    reason: String,
}

impl ParseError {
    /// An error in `what` with no particular byte offset.
    pub(crate) fn new(what: &'static str, reason: impl Into<String>) -> Self {
        Self {
            what,
            offset: None,
            reason: reason.into(),
        }
    }

    /// An error in `what` found at byte `offset` of the input.
    pub(crate) fn at(what: &'static str, offset: u64, reason: impl Into<String>) -> Self {
        Self {
            what,
            offset: Some(offset),
            reason: reason.into(),
        }
    }

    /// What was being parsed, e.g. "VFIO capability chain".
    pub fn what(&self) -> &str {
        self.what
    }

    /// The byte offset in the input the error was found at, where that means something.
    pub fn offset(&self) -> Option<u64> {
        self.offset
    }

    /// Why the input was refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_what_and_why_and_keeps_the_offset() {
        let e = ParseError::at(
            "VFIO capability chain",
            0x40,
            "capability at 0x40 points back to 0x18: loop",
        );
        assert_eq!(
            e.to_string(),
            "malformed VFIO capability chain: capability at 0x40 points back to 0x18: loop"
        );
        assert_eq!(e.what(), "VFIO capability chain");
        assert_eq!(e.offset(), Some(0x40));
        assert_eq!(e.reason(), "capability at 0x40 points back to 0x18: loop");
        assert_eq!(ParseError::new("x", "y").offset(), None);
    }
}
