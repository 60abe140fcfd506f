//! The commands, each generic over the backend so the mock and the kernel
//! share one code path.

pub mod access;
pub mod capture;
pub mod config;
pub mod info;
pub mod irq;
pub mod list;

use serde::Serialize;
use std::io::{self, Write};

/// A command's output: [`Serialize`] for `--json`, [`Report::human`] for text.
pub trait Report: Serialize {
    /// Writes the output as text.
    fn human(&self, out: &mut dyn Write) -> io::Result<()>;
}

/// The number of bytes of config space to read: the config region's size,
/// at most the 4096 bytes of PCI Express config space.
pub(crate) fn config_len(size: u64) -> usize {
    size.min(4096) as usize
}

/// Reads config space through the device's config region.
pub(crate) fn read_config<B: vfio_core::VfioBackend>(
    device: &B::Device,
) -> Result<Vec<u8>, vfio_core::Error> {
    use vfio_core::Device;
    let info = device.region_info(vfio_core::region::CONFIG)?;
    let mut bytes = vec![0u8; config_len(info.size)];
    vfio_core::access::read_exact::<B, _>(device, vfio_core::region::CONFIG, 0, &mut bytes)?;
    Ok(bytes)
}
