//! What goes wrong reading, checking or capturing a profile.

/// A profile refused, or a capture that failed. Each variant names what is
/// wrong and, where it means something, the config-space offset or the
/// table index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The text is not JSON, or not a profile's shape.
    #[error("not a readable profile")]
    Json(#[source] serde_json::Error),
    /// The `format` field is missing or names another format.
    #[error(
        "not a device profile: format is {found:?}, expected {:?}",
        crate::FORMAT
    )]
    Format {
        /// The `format` found, if any.
        found: Option<String>,
    },
    /// The `version` field is missing or names a version this crate does not read.
    #[error("profile version {} is not supported: this library reads version {}", .found.as_deref().unwrap_or("(none)"), crate::VERSION)]
    Version {
        /// The `version` found, as JSON text, if any.
        found: Option<String>,
    },
    /// Config space is not 256 or 4096 bytes.
    #[error("config space is {len} bytes, not 256 or 4096")]
    ConfigLength {
        /// The length found.
        len: usize,
    },
    /// A per-byte mask does not have one byte per config byte.
    #[error("config mask `{mask}` is {len} bytes, config space {expected}")]
    MaskLength {
        /// `writable` or `probed`.
        mask: &'static str,
        /// Its length.
        len: usize,
        /// The config length.
        expected: usize,
    },
    /// A bit is marked writable that was not probed.
    #[error("config byte {offset:#x} has writable bits {bits:#04x} that were not probed")]
    WritableNotProbed {
        /// The config offset.
        offset: usize,
        /// The offending bits.
        bits: u8,
    },
    /// The standard capability list loops, leaves config space, or is misaligned.
    #[error("PCI capability list broken at {offset:#x}: {reason}")]
    CapabilityChain {
        /// The config offset of the pointer that is wrong.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// The extended capability list loops, leaves config space, or is misaligned.
    #[error("PCI Express extended capability list broken at {offset:#x}: {reason}")]
    ExtendedCapabilityChain {
        /// The config offset of the header whose next pointer is wrong.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A field disagrees with config space.
    #[error("{field} is {found:#x}, but config space has {config:#x}")]
    IdMismatch {
        /// The field of `ids`.
        field: &'static str,
        /// The profile's value.
        found: u32,
        /// Config space's value.
        config: u32,
    },
    /// The region table disagrees with the device info or itself.
    #[error("region table: {reason}")]
    RegionTable {
        /// What is wrong.
        reason: String,
    },
    /// The IRQ table disagrees with the device info or itself.
    #[error("IRQ table: {reason}")]
    IrqTable {
        /// What is wrong.
        reason: String,
    },
    /// A BAR entry disagrees with its region, config space or itself.
    #[error("BAR {index}: {reason}")]
    Bar {
        /// The BAR index.
        index: u32,
        /// What is wrong.
        reason: String,
    },
    /// Something the backend reported that this format cannot say.
    #[error("cannot be written in a profile: {what}")]
    Unrepresentable {
        /// What it was.
        what: String,
    },
    /// A host file the profile's source is read from could not be read.
    #[error("cannot read {path}")]
    Host {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A call to the device failed during capture; anything capture had
    /// changed was put back first.
    #[error("capture failed: {step}")]
    Device {
        /// What capture was doing.
        step: String,
        /// The backend's error.
        #[source]
        source: vfio_core::Error,
    },
    /// A config byte capture changed did not read back as it was after
    /// being restored.
    #[error("config byte {offset:#x} reads {found:#04x} after being restored to {expected:#04x}")]
    NotRestored {
        /// The config offset.
        offset: usize,
        /// The byte as it was.
        expected: u8,
        /// The byte as it reads now.
        found: u8,
    },
}
