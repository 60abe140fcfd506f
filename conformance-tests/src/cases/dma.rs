//! DMA mapping behaviours.

use crate::Env;
use anyhow::{Result, ensure};
use vfio_core::{Container, DmaFlags, VfioBackend};

/// A page mapped read/write at an IOVA unmaps with its size reported back.
pub fn dma_map_then_unmap_returns_the_size<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(4096)?;
    o.container
        .map_dma(&mem, 0, 4096, 0x10_0000, DmaFlags::READ | DmaFlags::WRITE)?;
    let n = o.container.unmap_dma(0x10_0000, 4096)?;
    ensure!(n == 4096, "unmapped {n} bytes");
    Ok(())
}
