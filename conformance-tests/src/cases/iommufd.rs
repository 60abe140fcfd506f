//! iommufd mode: the device cdev (`/dev/vfio/devices/vfioN`) bound to an
//! iommufd (`/dev/iommu`) and attached to an IOAS, as Linux 6.12's
//! `drivers/vfio/device_cdev.c` and `drivers/iommu/iommufd/` answer.
//!
//! Every case but the first runs in iommufd mode only (n/a elsewhere, on
//! both twins alike); the first runs in type1 mode on both kernels, where
//! it pins which kernels have the cdev and `/dev/iommu` at all.

use crate::{Env, Kernel, Mode, expect_error, fired};
use anyhow::{Context, Result, ensure};
use std::os::fd::AsFd;
use std::time::Duration;
use vfio_core::{
    Device, DmaFlags, DmaSpace, Errno, ErrorKind, Interrupt, Ioas, IommuFd, IovaRange, IrqIndex,
    VfioBackend,
};

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// The x86 interrupt (MSI) window, which the IOMMU reserves in every IOAS a
/// device is attached to.
const MSI_WINDOW: std::ops::RangeInclusive<u64> = 0xfee0_0000..=0xfeef_ffff;

fn iommufd_only<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(&[Mode::Iommufd], "an iommufd behaviour")
}

/// The kind the library gives `errno`, with the errno: what a refusal by
/// the kernel carries.
fn kernel_says(errno: Errno) -> (ErrorKind, Option<Errno>) {
    (ErrorKind::from_errno(errno), Some(errno))
}

/// Linux 6.1 has neither the VFIO device cdev nor `/dev/iommu` (both
/// NotFound, ENOENT); the 6.12 guest kernel has both, next to the group
/// and container the type1 mode uses.
pub fn cdev_and_iommufd_exist_on_6_12_only<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "which kernels have the cdev and /dev/iommu, asked beside the type1 path",
    )?;
    let edu = env.targets.edu;
    match env.kernel()? {
        Kernel::V6_1 => {
            let (kind, errno) = kernel_says(Errno::ENOENT);
            expect_error("open /dev/iommu", env.backend.open_iommufd(), kind, errno)?;
            expect_error(
                "open the edu's cdev",
                env.backend.open_device_cdev(&edu),
                kind,
                errno,
            )?;
        }
        Kernel::V6_12 => {
            env.backend.open_iommufd().context("/dev/iommu")?;
            env.backend
                .open_device_cdev(&edu)
                .context("the edu's cdev")?;
        }
    }
    Ok(())
}

/// A cdev not yet bound to an iommufd answers every ioctl but BIND with
/// EINVAL (`vfio_device_fops_unl_ioctl` checks `access_granted`).
pub fn a_cdev_answers_nothing_before_bind<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    iommufd_only(env)?;
    let device = env.backend.open_device_cdev(&env.targets.edu)?;
    let (kind, errno) = kernel_says(Errno::EINVAL);
    expect_error("device info before bind", device.info(), kind, errno)?;
    expect_error(
        "IRQ info before bind",
        device.irq_info(IrqIndex::MSI),
        kind,
        errno,
    )?;
    Ok(())
}

/// Binding a cdev to a file that is not an iommufd is EBADFD
/// (`iommufd_ctx_from_fd`), and leaves it unbound; binding it again once
/// bound is EINVAL ("one device cannot be bound twice").
pub fn binding_a_non_iommufd_is_ebadfd_and_binding_twice_is_invalid<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    let device = env.backend.open_device_cdev(&env.targets.edu)?;
    let not_iommufd = std::fs::File::open("/dev/null").context("/dev/null")?;
    let (kind, errno) = kernel_says(Errno::EBADFD);
    expect_error(
        "bind to /dev/null",
        device.bind_iommufd(not_iommufd.as_fd()),
        kind,
        errno,
    )?;
    let (kind, errno) = kernel_says(Errno::EINVAL);
    expect_error(
        "device info after the failed bind",
        device.info(),
        kind,
        errno,
    )?;
    let iommufd = env.backend.open_iommufd()?;
    device.bind_iommufd(iommufd.as_fd())?;
    expect_error(
        "second bind",
        device.bind_iommufd(iommufd.as_fd()),
        kind,
        errno,
    )?;
    device.info().context("device info once bound")?;
    Ok(())
}

/// Attaching a bound device to a page-table id that names no object is
/// ENOENT (`iommufd_get_object`); attached to an IOAS, it is given the id
/// of the HWPT the kernel allocates for it there, not the IOAS's.
pub fn attaching_a_bogus_page_table_id_is_not_found<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    iommufd_only(env)?;
    let device = env.backend.open_device_cdev(&env.targets.edu)?;
    let iommufd = env.backend.open_iommufd()?;
    device.bind_iommufd(iommufd.as_fd())?;
    let (kind, errno) = kernel_says(Errno::ENOENT);
    for id in [0, 0xdead, u32::MAX] {
        expect_error(
            format_args!("attach to page table {id:#x}"),
            device.attach_pt(id),
            kind,
            errno,
        )?;
    }
    // Attached to an IOAS, the device gets a page table the kernel makes
    // for it there (an automatic HWPT), whose id comes back: not the IOAS's.
    let ioas = iommufd.alloc_ioas()?;
    let id = device.attach_ioas(&ioas)?;
    ensure!(id != ioas.id(), "attached to {id}, the IOAS's own id");
    device.detach_pt()?;
    Ok(())
}

fn sorted_and_disjoint(ranges: &[IovaRange]) -> Result<()> {
    ensure!(!ranges.is_empty(), "no IOVA ranges");
    for r in ranges {
        ensure!(r.start <= r.end, "range {r:x?} ends before it starts");
    }
    for pair in ranges.windows(2) {
        ensure!(
            pair[0].end < pair[1].start,
            "ranges {:x?} and {:x?} are unsorted or overlap",
            pair[0],
            pair[1]
        );
    }
    Ok(())
}

/// An IOAS with no device attached has one IOVA range, the whole 64-bit
/// space, and no alignment (1: `iopt_init_table`); attaching the device
/// narrows it to sorted, disjoint ranges inside it that leave out the MSI
/// window (the IOMMU's reserved regions), aligned to VT-d's 4 KiB pages,
/// and detaching it gives back the whole space with no alignment.
pub fn iova_ranges_are_sorted_and_disjoint_and_attaching_narrows_them<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    let iommufd = env.backend.open_iommufd()?;
    let ioas = iommufd.alloc_ioas()?;
    let empty = ioas.iova_ranges()?;
    ensure!(
        empty
            == [IovaRange {
                start: 0,
                end: u64::MAX
            }],
        "an IOAS with no device: {empty:x?}"
    );
    ensure!(
        ioas.iova_alignment()? == 1,
        "alignment {:#x}",
        ioas.iova_alignment()?
    );
    let device = env.backend.open_device_cdev(&env.targets.edu)?;
    device.bind_iommufd(iommufd.as_fd())?;
    device.attach_ioas(&ioas)?;
    let attached = ioas.iova_ranges()?;
    sorted_and_disjoint(&attached)?;
    ensure!(attached != empty, "attaching the device reserved nothing");
    for r in &attached {
        ensure!(
            r.end < *MSI_WINDOW.start() || r.start > *MSI_WINDOW.end(),
            "range {r:x?} crosses the MSI window"
        );
    }
    ensure!(
        ioas.iova_alignment()? == 4096,
        "alignment with the device {:#x}",
        ioas.iova_alignment()?
    );
    device.detach_pt()?;
    let after = ioas.iova_ranges()?;
    ensure!(after == empty, "after detach: {after:x?}");
    ensure!(
        ioas.iova_alignment()? == 1,
        "alignment after detach {:#x}",
        ioas.iova_alignment()?
    );
    Ok(())
}

/// A map over an existing mapping is EEXIST; one whose last byte would
/// wrap past the top of the address space is EOVERFLOW (`iopt_check_iova`);
/// neither maps anything.
pub fn overlapping_maps_are_eexist_and_wrapping_maps_eoverflow<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    let _first = o.dma.map_dma(&mem, 0, 0x2000, 0x20_0000, RW)?;
    let (kind, errno) = kernel_says(Errno::EEXIST);
    expect_error(
        "overlapping map",
        o.dma.map_dma_raw(&mem, 0x1000, 0x2000, 0x20_1000, RW),
        kind,
        errno,
    )?;
    let (kind, errno) = kernel_says(Errno::EOVERFLOW);
    expect_error(
        "map wrapping past the top",
        o.dma
            .map_dma_raw(&mem, 0, 0x2000, 0xffff_ffff_ffff_f000, RW),
        kind,
        errno,
    )?;
    ensure!(
        o.ioas()?.unmap_all()? == 0x2000,
        "something besides the first mapping was mapped"
    );
    Ok(())
}

/// An unmap must cover whole areas: one that cuts an area, or that finds
/// nothing mapped, is ENOENT and unmaps nothing; an unmap over two whole
/// areas removes both and gives their total.
pub fn unmap_of_nothing_or_part_of_an_area_is_not_found<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    let o = env.open_edu()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    o.dma.map_dma_raw(&mem, 0, 0x2000, 0x50_0000, RW)?;
    o.dma.map_dma_raw(&mem, 0x2000, 0x1000, 0x50_2000, RW)?;
    let (kind, errno) = kernel_says(Errno::ENOENT);
    expect_error(
        "unmap of the second half of an area",
        o.dma.unmap_dma(0x50_1000, 0x1000),
        kind,
        errno,
    )?;
    expect_error(
        "unmap of the first half of an area",
        o.dma.unmap_dma(0x50_0000, 0x1000),
        kind,
        errno,
    )?;
    expect_error(
        "unmap where nothing is mapped",
        o.dma.unmap_dma(0x40_0000, 0x1000),
        kind,
        errno,
    )?;
    let n = o.dma.unmap_dma(0x50_0000, 0x3000)?;
    ensure!(n == 0x3000, "unmap of both areas returned {n:#x}");
    Ok(())
}

/// Unmapping the whole address space (IOVA 0, length `u64::MAX`) removes
/// every area and gives their total; with nothing mapped it succeeds with 0.
pub fn unmap_all_removes_every_area_and_then_succeeds_with_nothing<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    let o = env.open_edu()?;
    let ioas = o.ioas()?;
    let mem = env.backend.alloc_dma(0x3000)?;
    ioas.map_dma_raw(&mem, 0, 0x1000, 0x60_0000, RW)?;
    ioas.map_dma_raw(&mem, 0x1000, 0x2000, 0x1_0000_0000, RW)?;
    let n = ioas.unmap_all()?;
    ensure!(n == 0x3000, "unmap all returned {n:#x}");
    let n = ioas.unmap_all()?;
    ensure!(n == 0, "a second unmap all returned {n:#x}");
    ioas.map_dma_raw(&mem, 0, 0x1000, 0x60_0000, RW)
        .context("the IOVA maps again")?;
    Ok(())
}

/// An IOAS a device is attached to cannot be destroyed (EBUSY); once the
/// device detaches it can, and its id then names nothing (ENOENT).
pub fn destroying_an_ioas_in_use_is_busy_and_after_detach_succeeds<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    let o = env.open_edu()?;
    let (iommufd, id) = (o.iommufd()?, o.ioas()?.id());
    let (kind, errno) = kernel_says(Errno::EBUSY);
    expect_error(
        "destroy the attached IOAS",
        iommufd.destroy(id),
        kind,
        errno,
    )?;
    o.device.detach_pt()?;
    iommufd.destroy(id).context("destroy after detach")?;
    let (kind, errno) = kernel_says(Errno::ENOENT);
    expect_error("destroy it again", iommufd.destroy(id), kind, errno)?;
    Ok(())
}

/// A device is used through its group or through its cdev, never both:
/// opening the group while the cdev is bound is EBUSY
/// (`cdev_device_open_cnt`), and binding the cdev while the group is open
/// is EBUSY (`vfio_device_block_group`).
pub fn the_group_and_the_bound_cdev_exclude_each_other<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    iommufd_only(env)?;
    let edu = env.targets.edu;
    let number = env.group_of(&edu)?;
    let (kind, errno) = kernel_says(Errno::EBUSY);
    {
        let _o = env.open_edu()?;
        expect_error(
            "open the group while the cdev is bound",
            env.backend.open_group(number),
            kind,
            errno,
        )?;
    }
    let group = env
        .backend
        .open_group(number)
        .context("the group once the cdev is closed")?;
    let device = env.backend.open_device_cdev(&edu)?;
    let iommufd = env.backend.open_iommufd()?;
    expect_error(
        "bind the cdev while the group is open",
        device.bind_iommufd(iommufd.as_fd()),
        kind,
        errno,
    )?;
    drop(group);
    device
        .bind_iommufd(iommufd.as_fd())
        .context("bind once the group is closed")?;
    Ok(())
}

/// Through the cdev, eventfds bound to edu's MSI vector and to the NVMe's
/// MSI-X vectors read empty until a loopback trigger, which then reaches
/// exactly the triggered vector.
pub fn msi_and_msix_eventfds_read_empty_until_triggered<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    for (dev, index) in [
        (env.targets.edu, IrqIndex::MSI),
        (env.targets.nvme, IrqIndex::MSIX),
    ] {
        let o = env.open(&dev)?;
        let n = o.device.irq_info(index)?.count;
        ensure!(n > 0, "{dev}: no vectors at {index:?}");
        let irqs: Vec<B::Interrupt> = (0..n)
            .map(|_| env.backend.new_interrupt())
            .collect::<vfio_core::Result<_>>()?;
        let refs: Vec<&B::Interrupt> = irqs.iter().collect();
        o.device.enable_interrupts(index, &refs)?;
        ensure!(fired(&irqs)?.is_empty(), "{dev}: fired before a trigger");
        let last = n - 1;
        o.device.trigger_interrupts(index, last, 1)?;
        ensure!(
            irqs[last as usize]
                .wait(Some(Duration::from_secs(5)))?
                .is_some(),
            "{dev}: vector {last} did not fire"
        );
        ensure!(fired(&irqs)?.is_empty(), "{dev}: other vectors fired");
    }
    Ok(())
}

/// A map at an IOVA the kernel chooses lands inside the reported ranges, at
/// the IOAS's alignment, and unmaps with its size; the next one lands
/// elsewhere.
pub fn a_map_at_a_kernel_chosen_iova_lands_inside_the_reported_ranges<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    iommufd_only(env)?;
    let o = env.open_edu()?;
    let ioas = o.ioas()?;
    let ranges = ioas.iova_ranges()?;
    let align = ioas.iova_alignment()?;
    let mem = env.backend.alloc_dma(0x6000)?;
    let first = ioas.map_dma_anywhere(&mem, 0, 0x4000, RW)?;
    let second = ioas.map_dma_anywhere(&mem, 0x4000, 0x2000, RW)?;
    for m in [&first, &second] {
        let (iova, last) = (m.iova(), m.iova() + m.size() - 1);
        ensure!(
            ranges.iter().any(|r| iova >= r.start && last <= r.end),
            "{iova:#x}..={last:#x} outside {ranges:x?}"
        );
        ensure!(iova % align == 0, "{iova:#x} not aligned to {align:#x}");
    }
    let (a, b) = (first.iova(), second.iova());
    ensure!(
        a + 0x4000 <= b || b + 0x2000 <= a,
        "the mappings overlap: {a:#x} and {b:#x}"
    );
    ensure!(first.unmap()? == 0x4000, "unmap of the first");
    ensure!(second.unmap()? == 0x2000, "unmap of the second");
    Ok(())
}
