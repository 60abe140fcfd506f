//! DMA mapping behaviours.

use crate::{Env, expect_error};
use anyhow::{Result, ensure};
use vfio_core::{Container, DmaFlags, Errno, ErrorKind, VfioBackend};

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// A mapping that overlaps an existing one already exists (EEXIST).
pub fn overlapping_dma_map_already_exists<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    let _first = o.container.map_dma(&mem, 0, 0x2000, 0x20_0000, RW)?;
    expect_error(
        "overlap",
        o.container.map_dma(&mem, 0x1000, 0x2000, 0x20_1000, RW),
        ErrorKind::AlreadyExists,
        Some(Errno::EEXIST),
    )?;
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
        expect_error(
            "bad map",
            o.container.map_dma(&mem, offset, size, iova, flags),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
    }
    Ok(())
}

/// Type1v2 refuses an unmap that would split a mapping.
pub fn unmap_splitting_a_mapping_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    let _mapping = o.container.map_dma(&mem, 0, 0x2000, 0x50_0000, RW)?;
    expect_error(
        "split",
        o.container.unmap_dma(0x50_1000, 0x1000),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// One unmap covering two whole mappings removes both and reports their sum.
pub fn unmap_covering_two_mappings_returns_both_sizes<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    let _low = o.container.map_dma(&mem, 0, 0x1000, 0x60_0000, RW)?;
    let _high = o.container.map_dma(&mem, 0x1000, 0x2000, 0x60_1000, RW)?;
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
    let _mapping = o.container.map_dma(&mem, 0, 0x1000, 0x70_0000, RW)?;
    let after = o.container.iommu_info()?.dma_avail;
    ensure!(
        before.is_some() && after == before.map(|b| b - 1),
        "before {before:?}, after {after:?}"
    );
    Ok(())
}

/// A mapping that would reach past its buffer is refused with EFAULT (what
/// the kernel answers where nothing is mapped after the buffer), and
/// nothing is mapped.
pub fn dma_map_past_the_buffer_faults<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    for (offset, size) in [(0x1000, 0x2000), (0x2000, 0x1000), (0, u64::MAX)] {
        expect_error(
            format_args!("map {size:#x} bytes at offset {offset:#x} of 0x2000"),
            o.container.map_dma(&mem, offset, size, 0x80_0000, RW),
            ErrorKind::BadAddress,
            Some(Errno::EFAULT),
        )?;
    }
    let n = o.container.unmap_dma(0x80_0000, 0x10_0000)?;
    ensure!(n == 0, "unmapped {n:#x}");
    Ok(())
}
