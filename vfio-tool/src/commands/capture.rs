//! `vfio capture DEV -o FILE`: the device's profile, for the mock to replay.

use super::Report;
use crate::HostContext;
use crate::cli::ModeArg;
use crate::error::ToolError;
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;
use vfio_core::{PciAddress, VfioBackend};
use vfio_profile::{CaptureOptions, Source};

/// `vfio capture`'s output.
#[derive(Debug, Serialize)]
pub struct Captured {
    /// The device.
    pub address: String,
    /// The file written.
    pub file: String,
    /// Bytes of config space recorded.
    pub config_bytes: usize,
    /// Regions recorded.
    pub regions: usize,
    /// IRQ indexes recorded.
    pub irqs: usize,
    /// Whether the BARs' contents were recorded.
    pub bar_contents: bool,
}

/// Captures `address` with vfio-profile's `capture` and writes the profile
/// to `file`. The profile's `source` block is the replayed profile's when
/// `context` replays one of this address (so a replay captures back to the
/// same file), else this host's: `context`'s kernel release and the driver
/// sysfs names.
pub fn capture<B: VfioBackend>(
    backend: &B,
    address: &PciAddress,
    mode: Option<ModeArg>,
    context: &HostContext,
    file: &Path,
    bar_contents: bool,
) -> Result<Captured, ToolError> {
    let opened = crate::open::open(backend, address, mode)?;
    let replayed = context
        .replayed
        .as_ref()
        .map(|p| p.source.clone())
        .filter(|s| s.pci_address.parse().ok() == Some(*address));
    let source = match replayed {
        Some(source) => source,
        None => Source::of_device(backend.host_paths(), address, &context.kernel_release)
            .map_err(|e| ToolError::Capture(crate::error::chain(&e)))?,
    };
    let mut options = CaptureOptions::new(source);
    if bar_contents {
        options = options.with_bar_contents();
    }
    let profile = vfio_profile::capture::<B>(&opened.device, &options)
        .map_err(|e| ToolError::Capture(crate::error::chain(&e)))?;
    std::fs::write(file, profile.to_json()).map_err(|e| {
        ToolError::Output(io::Error::new(e.kind(), format!("{}: {e}", file.display())))
    })?;
    Ok(Captured {
        address: address.to_string(),
        file: file.display().to_string(),
        config_bytes: profile.config.bytes.len(),
        regions: profile.regions.len(),
        irqs: profile.irqs.len(),
        bar_contents,
    })
}

impl Report for Captured {
    fn human(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(
            out,
            "captured {} into {}: {} bytes of config space, {} regions, {} IRQ indexes{}",
            self.address,
            self.file,
            self.config_bytes,
            self.regions,
            self.irqs,
            if self.bar_contents {
                ", BAR contents"
            } else {
                ""
            }
        )
    }
}
