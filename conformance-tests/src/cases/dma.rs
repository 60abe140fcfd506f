//! DMA mapping behaviours.

use crate::{Env, expect_error};
use anyhow::{Result, ensure};
use vfio_core::{Container, DmaFlags, Errno, ErrorKind, VfioBackend};

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// A mapping that overlaps an existing one already exists (EEXIST).
pub fn overlapping_dma_map_already_exists<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    o.container.map_dma(&mem, 0, 0x2000, 0x20_0000, RW)?;
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
    o.container.map_dma(&mem, 0, 0x2000, 0x50_0000, RW)?;
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

/// edu's DMA engine as a ring-based driver uses DMA memory: typed stores
/// and a `zerocopy` object written by the CPU, `wmb` before the command
/// register starts the engine, the device copies them into its buffer and
/// back into a second page, `rmb` after the command register says done, and
/// typed loads read what the device wrote, little-endian. A host with no
/// hugetlb pages reserved gives base pages to `HugePages::Prefer`.
pub fn device_dma_round_trips_typed_values_between_barriers<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    use edu_driver::{DMA_BUFFER, regs};
    use vfio_core::{Device, DmaMemory, HugePages, MappedRegion, region};
    const IOVA: u64 = 0x60_0000;
    const START: u64 = 0x1;
    const TO_RAM: u64 = 0x2;

    let o = env.open_edu()?;
    o.device.set_bus_master(true)?;
    let bar0 = o.device.map_region(region::BAR0)?;
    let mem = env.backend.alloc_dma_with(0x2000, HugePages::Prefer)?;
    ensure!(
        (mem.page_size(), mem.len()) == (0x1000, 0x2000),
        "page size {:#x}, length {:#x}",
        mem.page_size(),
        mem.len()
    );
    o.container.map_dma(&mem, 0, 0x2000, IOVA, RW)?;
    mem.write_u64(0, 0x0102_0304_0506_0708)?;
    mem.write_u32(8, 0xdead_beef)?;
    mem.write_u16(12, 0xcafe)?;
    mem.write_u8(14, 0x5a)?;
    mem.write_obj(16, &[0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888])?;
    mem.store_release_u32(32, 1)?;
    let run = |src: u64, dst: u64, cmd: u64| -> Result<()> {
        bar0.write_u64(regs::DMA_SRC, src)?;
        bar0.write_u64(regs::DMA_DST, dst)?;
        bar0.write_u64(regs::DMA_COUNT, 36)?;
        mem.wmb();
        bar0.write_u64(regs::DMA_CMD, START | cmd)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while bar0.read_u64(regs::DMA_CMD)? & START != 0 {
            ensure!(std::time::Instant::now() < deadline, "DMA did not finish");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        mem.rmb();
        Ok(())
    };
    run(IOVA, DMA_BUFFER, 0)?;
    run(DMA_BUFFER, IOVA + 0x1000, TO_RAM)?;
    o.container.unmap_dma(IOVA, 0x2000)?;
    let back = 0x1000;
    ensure!(mem.read_u64(back)? == 0x0102_0304_0506_0708, "u64");
    ensure!(mem.read_u32(back + 8)? == 0xdead_beef, "u32");
    ensure!(mem.read_u16(back + 12)? == 0xcafe, "u16");
    ensure!(mem.read_u8(back + 14)? == 0x5a, "u8");
    let obj: [u64; 2] = mem.read_obj(back + 16)?;
    ensure!(
        obj == [0x1111_2222_3333_4444, 0x5555_6666_7777_8888],
        "{obj:x?}"
    );
    ensure!(mem.load_acquire_u32(back + 32)? == 1, "tag");
    ensure!(mem.read_u32(back + 36)? == 0, "past the transfer");
    let mut bytes = [0u8; 8];
    mem.read_at(back, &mut bytes)?;
    ensure!(
        bytes == [8, 7, 6, 5, 4, 3, 2, 1],
        "little-endian: {bytes:?}"
    );
    expect_error(
        "misaligned",
        mem.read_u32(back + 2),
        ErrorKind::Misaligned,
        None,
    )?;
    Ok(())
}
