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

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// A mapping that overlaps an existing one already exists (EEXIST).
pub fn overlapping_dma_map_already_exists<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    o.container.map_dma(&mem, 0, 0x2000, 0x20_0000, RW)?;
    let e = o
        .container
        .map_dma(&mem, 0x1000, 0x2000, 0x20_1000, RW)
        .expect_err("overlap");
    ensure!(
        e.kind() == vfio_core::ErrorKind::AlreadyExists,
        "{e} ({:?})",
        e.errno()
    );
    Ok(())
}

/// Unmapping a range with no mapping succeeds and unmaps nothing.
pub fn unmap_of_an_unmapped_range_unmaps_nothing<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let n = o.container.unmap_dma(0x40_0000, 0x1000)?;
    ensure!(n == 0, "unmapped {n}");
    Ok(())
}

/// IOVA, size and address must be page aligned, the size non-zero, and at
/// least one of read and write given.
pub fn misaligned_empty_or_permissionless_maps_are_invalid<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    let cases: [(usize, u64, u64, DmaFlags); 4] = [
        (0, 0x1000, 0x30_0800, RW),
        (0, 0x800, 0x30_0000, RW),
        (0, 0, 0x30_0000, RW),
        (0, 0x1000, 0x30_0000, DmaFlags::EMPTY),
    ];
    for (offset, size, iova, flags) in cases {
        let e = o
            .container
            .map_dma(&mem, offset, size, iova, flags)
            .expect_err("bad map");
        ensure!(
            e.kind() == vfio_core::ErrorKind::InvalidArgument,
            "size {size:#x} iova {iova:#x} flags {flags:?}: {e} ({:?})",
            e.errno()
        );
    }
    Ok(())
}

/// Type1v2 refuses an unmap that would split a mapping.
pub fn unmap_splitting_a_mapping_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    o.container.map_dma(&mem, 0, 0x2000, 0x50_0000, RW)?;
    let e = o.container.unmap_dma(0x50_1000, 0x1000).expect_err("split");
    ensure!(
        e.kind() == vfio_core::ErrorKind::InvalidArgument,
        "{e} ({:?})",
        e.errno()
    );
    Ok(())
}

/// One unmap covering two whole mappings removes both and reports their sum.
pub fn unmap_covering_two_mappings_returns_both_sizes<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    o.container.map_dma(&mem, 0, 0x1000, 0x60_0000, RW)?;
    o.container.map_dma(&mem, 0x1000, 0x2000, 0x60_1000, RW)?;
    let n = o.container.unmap_dma(0x60_0000, 0x10_0000)?;
    ensure!(n == 0x3000, "unmapped {n:#x}");
    ensure!(
        o.container.unmap_dma(0x60_0000, 0x3000)? == 0,
        "still mapped"
    );
    Ok(())
}

/// Each mapping lowers the DMA-mappings-available count by one.
pub fn dma_avail_counts_down_per_mapping<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let before = o.container.iommu_info()?.dma_avail;
    let mem = env.backend.alloc_dma(0x1000)?;
    o.container.map_dma(&mem, 0, 0x1000, 0x70_0000, RW)?;
    let after = o.container.iommu_info()?.dma_avail;
    ensure!(
        before.is_some() && after == before.map(|b| b - 1),
        "before {before:?}, after {after:?}"
    );
    Ok(())
}
