//! DMA mapping behaviours.

use crate::cases::dma_fault::edu_dma;
use crate::{Env, Mode, expect_error};
use anyhow::{Context, Result, ensure};
use std::sync::Arc;
use vfio_core::{
    Container, DmaFlags, DmaMemory, DmaSpace, Errno, ErrorKind, IovaAllocator, IovaOptions,
    IovaRange, VfioBackend,
};

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// A mapping that overlaps an existing one already exists (EEXIST).
pub fn overlapping_dma_map_already_exists<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1, Mode::Iommufd],
        "an IOMMU mapping behaviour; a no-IOMMU container maps nothing",
    )?;
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    let _first = o.dma.map_dma(&mem, 0, 0x2000, 0x20_0000, RW)?;
    expect_error(
        "overlap",
        o.dma.map_dma(&mem, 0x1000, 0x2000, 0x20_1000, RW),
        ErrorKind::AlreadyExists,
        Some(Errno::EEXIST),
    )?;
    Ok(())
}

/// Unmapping a range with no mapping succeeds and unmaps nothing.
pub fn unmap_of_an_unmapped_range_unmaps_nothing<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1], "Type1 unmaps nothing and succeeds; an IOAS answers ENOENT (iommufd::unmap_of_nothing_or_part_of_an_area_is_not_found)")?;
    let o = env.open_edu()?;
    let n = o.dma.unmap_dma(0x40_0000, 0x1000)?;
    ensure!(n == 0, "unmapped {n}");
    Ok(())
}

/// IOVA, size and address must be page aligned, the size non-zero, and at
/// least one of read and write given.
pub fn misaligned_empty_or_permissionless_maps_are_invalid<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(
        &[Mode::Type1, Mode::Iommufd],
        "an IOMMU mapping behaviour; a no-IOMMU container maps nothing",
    )?;
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
            o.dma.map_dma(&mem, offset, size, iova, flags),
            ErrorKind::InvalidArgument,
            Some(Errno::EINVAL),
        )?;
    }
    Ok(())
}

/// Type1v2 refuses an unmap that would split a mapping.
pub fn unmap_splitting_a_mapping_is_invalid<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1], "Type1 answers EINVAL; an IOAS answers ENOENT (iommufd::unmap_of_nothing_or_part_of_an_area_is_not_found)")?;
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    let _mapping = o.dma.map_dma(&mem, 0, 0x2000, 0x50_0000, RW)?;
    expect_error(
        "split",
        o.dma.unmap_dma(0x50_1000, 0x1000),
        ErrorKind::InvalidArgument,
        Some(Errno::EINVAL),
    )?;
    Ok(())
}

/// One unmap covering two whole mappings removes both and reports their sum.
pub fn unmap_covering_two_mappings_returns_both_sizes<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "the final unmap of nothing succeeds on Type1 only",
    )?;
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    let _low = o.dma.map_dma(&mem, 0, 0x1000, 0x60_0000, RW)?;
    let _high = o.dma.map_dma(&mem, 0x1000, 0x2000, 0x60_1000, RW)?;
    let n = o.dma.unmap_dma(0x60_0000, 0x10_0000)?;
    ensure!(n == 0x3000, "unmapped {n:#x}");
    ensure!(o.dma.unmap_dma(0x60_0000, 0x3000)? == 0, "still mapped");
    Ok(())
}

/// Each mapping lowers the DMA-mappings-available count by one.
pub fn dma_avail_counts_down_per_mapping<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Type1], "a Type1 container's DMA-available count")?;
    let o = env.open_edu()?;
    let before = o.type1()?.iommu_info()?.dma_avail;
    let mem = env.backend.alloc_dma(0x1000)?;
    let _mapping = o.dma.map_dma(&mem, 0, 0x1000, 0x70_0000, RW)?;
    let after = o.type1()?.iommu_info()?.dma_avail;
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
    env.only_in(
        &[Mode::Type1, Mode::Iommufd],
        "an IOMMU mapping behaviour; a no-IOMMU container maps nothing",
    )?;
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    for (offset, size) in [(0x1000, 0x2000), (0x2000, 0x1000), (0, u64::MAX)] {
        expect_error(
            format_args!("map {size:#x} bytes at offset {offset:#x} of 0x2000"),
            o.dma.map_dma(&mem, offset, size, 0x80_0000, RW),
            ErrorKind::BadAddress,
            Some(Errno::EFAULT),
        )?;
    }
    // Nothing is mapped there: Type1 unmaps nothing, an IOAS says ENOENT.
    if env.mode == Mode::Iommufd {
        expect_error(
            "unmap after the refused maps",
            o.dma.unmap_dma(0x80_0000, 0x10_0000),
            ErrorKind::NotFound,
            Some(Errno::ENOENT),
        )?;
    } else {
        let n = o.dma.unmap_dma(0x80_0000, 0x10_0000)?;
        ensure!(n == 0, "unmapped {n:#x}");
    }
    Ok(())
}

/// Dropping a mapping unmaps it: the mappings-available count comes back
/// and the same IOVA maps again. An explicit unmap returns the kernel's
/// byte count, and a mapping holding its memory by `Arc` keeps it mapped
/// after the caller's handle is gone.
pub fn a_dropped_mapping_is_unmapped_and_its_iova_maps_again<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(&[Mode::Type1], "a Type1 container's DMA-available count")?;
    let o = env.open_edu()?;
    let avail = || -> Result<u32> {
        o.type1()?
            .iommu_info()?
            .dma_avail
            .context("no DMA-available count")
    };
    let before = avail()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    let mapping = o.dma.map_dma(&mem, 0, 0x2000, 0x90_0000, RW)?;
    ensure!(avail()? == before - 1, "mapped: {} of {before}", avail()?);
    drop(mapping);
    ensure!(avail()? == before, "dropped: {} of {before}", avail()?);
    let again = o.dma.map_dma(&mem, 0, 0x2000, 0x90_0000, RW)?;
    let n = again.unmap()?;
    ensure!(n == 0x2000, "unmap returned {n:#x}");
    let n = o.dma.unmap_dma(0x90_0000, 0x2000)?;
    ensure!(n == 0, "{n:#x} bytes still mapped after unmap");
    let shared = Arc::new(env.backend.alloc_dma(0x1000)?);
    let owned = o
        .dma
        .map_dma(Arc::clone(&shared), 0, 0x1000, 0x90_0000, RW)?;
    drop(shared);
    owned.memory().write_at(0, b"still here")?;
    ensure!(avail()? == before - 1, "owned: {} of {before}", avail()?);
    drop(owned);
    ensure!(
        avail()? == before,
        "owned, dropped: {} of {before}",
        avail()?
    );
    Ok(())
}

/// True if `[iova, iova + size)` lies inside one of `ranges`.
fn inside(ranges: &[IovaRange], iova: u64, size: u64) -> bool {
    let last = iova.saturating_add(size - 1);
    ranges.iter().any(|r| iova >= r.start && last <= r.end)
}

/// Mappings at IOVAs an allocator over the reported ranges chose, with a
/// guard page between them, land inside those ranges, a 2 MiB one on a
/// 2 MiB boundary, and the kernel accepts each.
pub fn allocated_mappings_land_inside_the_reported_ranges_aligned_and_guarded<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(&[Mode::Type1], "a Type1 container's IOMMU info")?;
    let o = env.open_edu()?;
    let info = o.type1()?.iommu_info()?;
    let ranges = info.iova_ranges.clone().context("no IOVA ranges")?;
    let page = info.iova_pgsizes & info.iova_pgsizes.wrapping_neg();
    let options = IovaOptions {
        guard_pages: 1,
        ..IovaOptions::default()
    };
    let iovas = IovaAllocator::new(&info, options)?;
    let sizes = [0x1000u64, 0x20_0000, 0x2000];
    let memory = sizes
        .iter()
        .map(|&size| env.backend.alloc_dma(size as usize))
        .collect::<vfio_core::Result<Vec<_>>>()?;
    let mappings = memory
        .iter()
        .zip(sizes)
        .map(|(mem, size)| o.dma.map_dma_in(&iovas, mem, 0, size, RW))
        .collect::<vfio_core::Result<Vec<_>>>()?;
    let mut spans: Vec<(u64, u64)> = mappings.iter().map(|m| (m.iova(), m.size())).collect();
    for &(iova, size) in &spans {
        ensure!(
            inside(&ranges, iova, size),
            "{iova:#x}+{size:#x} outside {ranges:x?}"
        );
    }
    ensure!(
        spans[1].0 % 0x20_0000 == 0,
        "2 MiB mapping at {:#x}",
        spans[1].0
    );
    spans.sort_unstable();
    for pair in spans.windows(2) {
        let ((a, a_size), (b, _)) = (pair[0], pair[1]);
        ensure!(
            a + a_size + page <= b,
            "no guard page between {a:#x}+{a_size:#x} and {b:#x}"
        );
    }
    let avail = o.type1()?.iommu_info()?.dma_avail;
    ensure!(
        avail == info.dma_avail.map(|n| n - 3),
        "{avail:?} available after 3 maps from {:?}",
        info.dma_avail
    );
    for m in mappings {
        let (iova, size) = (m.iova(), m.size());
        let n = m.unmap()?;
        ensure!(n == size, "unmap of {iova:#x}+{size:#x} returned {n:#x}");
    }
    Ok(())
}

/// A mapping larger than its memory is EFAULT, through the mapping API as
/// through the raw call, and nothing is mapped; an allocated IOVA of a
/// refused mapping is free again at once.
pub fn a_mapping_larger_than_its_memory_faults_and_frees_its_iova<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(&[Mode::Type1], "a Type1 container's IOMMU info")?;
    let o = env.open_edu()?;
    let info = o.type1()?.iommu_info()?;
    let mem = env.backend.alloc_dma(0x2000)?;
    expect_error(
        "map 0x3000 bytes of 0x2000",
        o.dma.map_dma(&mem, 0, 0x3000, 0xa0_0000, RW),
        ErrorKind::BadAddress,
        Some(Errno::EFAULT),
    )?;
    let options = IovaOptions {
        window: 0xa0_0000..=0xbf_ffff,
        ..IovaOptions::default()
    };
    let iovas = IovaAllocator::new(&info, options)?;
    expect_error(
        "map 0x3000 bytes of 0x2000 at an allocated IOVA",
        o.dma.map_dma_in(&iovas, &mem, 0x1000, 0x3000, RW),
        ErrorKind::BadAddress,
        Some(Errno::EFAULT),
    )?;
    ensure!(
        o.type1()?.iommu_info()?.dma_avail == info.dma_avail,
        "a refused map took a mapping"
    );
    let mapping = o.dma.map_dma_in(&iovas, &mem, 0, 0x2000, RW)?;
    ensure!(
        mapping.iova() == 0xa0_0000,
        "mapped at {:#x}, not at the refused mapping's IOVA",
        mapping.iova()
    );
    Ok(())
}

/// An allocator confined to a window across the interrupt (MSI) window
/// hands out the two 64 KiB pieces on either side of it, which the kernel
/// maps; then the space is exhausted (no space, no errno, no kernel call),
/// and dropping a mapping makes room at the same IOVA again.
pub fn iova_exhaustion_is_no_space_and_a_dropped_mapping_makes_room<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "a Type1 container's IOVA ranges around the MSI window",
    )?;
    let o = env.open_edu()?;
    let info = o.type1()?.iommu_info()?;
    let options = IovaOptions {
        window: 0xfedf_0000..=0xfef0_ffff,
        ..IovaOptions::default()
    };
    let iovas = IovaAllocator::new(&info, options)?;
    let mem = env.backend.alloc_dma(0x2_0000)?;
    let low = o.dma.map_dma_in(&iovas, &mem, 0, 0x1_0000, RW)?;
    let high = o.dma.map_dma_in(&iovas, &mem, 0x1_0000, 0x1_0000, RW)?;
    let msi = 0xfee0_0000..=0xfeef_ffff;
    for m in [&low, &high] {
        ensure!(
            !msi.contains(&m.iova()) && !msi.contains(&(m.iova() + m.size() - 1)),
            "mapped at {:#x} inside the MSI window",
            m.iova()
        );
    }
    ensure!(
        (low.iova(), high.iova()) == (0xfedf_0000, 0xfef0_0000),
        "mapped at {:#x} and {:#x}",
        low.iova(),
        high.iova()
    );
    expect_error(
        "a third mapping",
        o.dma.map_dma_in(&iovas, &mem, 0, 0x1000, RW),
        ErrorKind::NoSpace,
        None,
    )?;
    let at = low.iova();
    drop(low);
    let again = o.dma.map_dma_in(&iovas, &mem, 0, 0x1_0000, RW)?;
    ensure!(again.iova() == at, "mapped again at {:#x}", again.iova());
    drop(high);
    Ok(())
}

/// edu's DMA engine as a ring-based driver uses DMA memory: typed stores
/// and a `zerocopy` object written by the CPU, `wmb` before the command
/// register starts the engine, the device copies them into its buffer and
/// back into a second page, `rmb` after the command register says done, and
/// typed loads read what the device wrote, little-endian. A host with no
/// hugetlb pages reserved gives base pages to `HugePages::Prefer`. In
/// no-IOMMU mode the device is given each page's physical address.
pub fn device_dma_round_trips_typed_values_between_barriers<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    use vfio_core::{Device, DmaMemory, HugePages, region};
    const IOVA: u64 = 0x60_0000;

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
    // In no-IOMMU mode nothing is mapped and the device is given physical
    // addresses: each page's own, as the pages need not be contiguous.
    let mapping = o.dma.map_dma(&mem, 0, 0x2000, IOVA, RW)?;
    let (out, back_page) = (mapping.device_address(0)?, mapping.device_address(0x1000)?);
    mem.write_u64(0, 0x0102_0304_0506_0708)?;
    mem.write_u32(8, 0xdead_beef)?;
    mem.write_u16(12, 0xcafe)?;
    mem.write_u8(14, 0x5a)?;
    mem.write_obj(16, &[0x1111_2222_3333_4444u64, 0x5555_6666_7777_8888])?;
    mem.store_release_u32(32, 1)?;
    // wmb() before the command register starts the device reading, rmb()
    // after it says the device has written.
    mem.wmb();
    edu_dma(&bar0, out, 0, 36, false)?;
    edu_dma(&bar0, back_page, 0, 36, true)?;
    mem.rmb();
    ensure!(mapping.unmap()? == 0x2000, "unmap");
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

/// DMA memory in 2 MiB hugetlb pages, where the host has them reserved: with
/// none reserved, asking for them is ENOMEM; with two reserved, the memory
/// reports 2 MiB pages, an allocator maps it at a 2 MiB-aligned IOVA, and
/// edu's DMA engine reads and writes it (through the IOMMU, or in
/// no-IOMMU mode at its physical address).
pub fn huge_page_backed_dma_memory_is_mapped_and_used<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    use edu::{DMA_IOVA, DMA_IOVA_LAST};
    use vfio_core::{Device, DmaMemory, HUGE_PAGE_SIZE, HugePages, region};
    /// Gives the pages back when the case ends, however it ends.
    struct Unreserve(Arc<dyn crate::HostControl>);
    impl Drop for Unreserve {
        fn drop(&mut self) {
            let _ = self.0.reserve_huge_pages(0);
        }
    }
    let huge = HUGE_PAGE_SIZE;

    if env.host.reserve_huge_pages(0).is_err() {
        return Err(crate::not_applicable(
            "this host's hugetlb pool is not the suite's to change",
        ));
    }
    let _unreserve = Unreserve(env.host.clone());
    expect_error(
        "2 MiB pages with none reserved",
        env.backend.alloc_dma_with(huge, HugePages::Require),
        ErrorKind::NoSpace,
        Some(Errno::ENOMEM),
    )?;
    let reserved = env.host.reserve_huge_pages(2)?;
    ensure!(reserved == 2, "{reserved} hugetlb pages reserved, not 2");
    let mem = env.backend.alloc_dma_with(huge, HugePages::Require)?;
    ensure!(
        (mem.page_size(), mem.len()) == (huge, huge),
        "page size {:#x}, length {:#x}",
        mem.page_size(),
        mem.len()
    );

    let o = env.open_edu()?;
    o.device.set_bus_master(true)?;
    let bar0 = o.device.map_region(region::BAR0)?;
    // An IOVA edu reaches through the IOMMU, or in no-IOMMU mode (where
    // nothing is mapped) the physical address of the 2 MiB page.
    let mapping = if o.dma.translates() {
        let iovas = o.dma.iova_allocator(IovaOptions {
            window: DMA_IOVA..=DMA_IOVA_LAST,
            ..IovaOptions::default()
        })?;
        o.dma.map_dma_in(&iovas, &mem, 0, huge as u64, RW)?
    } else {
        o.dma.map_dma(&mem, 0, huge as u64, 0, RW)?
    };
    let iova = mapping.device_address(0)?;
    ensure!(iova % huge as u64 == 0, "mapped at {iova:#x}");
    let pattern: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(7)).collect();
    mem.write_at(0x1000, &pattern)?;
    // Into the device from the first 4 KiB page's worth, back out 1 MiB in.
    mem.wmb();
    edu_dma(&bar0, iova + 0x1000, 0, pattern.len() as u64, false)?;
    edu_dma(&bar0, iova + 0x10_0000, 0, pattern.len() as u64, true)?;
    mem.rmb();
    let mut back = vec![0u8; pattern.len()];
    mem.read_at(0x10_0000, &mut back)?;
    ensure!(
        back == pattern,
        "the round trip through huge pages changed the data"
    );
    ensure!(mapping.unmap()? == huge as u64, "unmap");
    Ok(())
}
