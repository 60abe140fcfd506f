//! Device DMA the IOMMU refuses, driven through edu's DMA engine: what the
//! device moves, what it does not, and the fault records the host keeps.

use crate::{Env, IommuFaultRecord, not_applicable};
use anyhow::{Context, Result, bail, ensure};
use edu::DMA_BUFFER as EDU_BUFFER;
use edu::regs::{DMA_CMD, DMA_COUNT, DMA_DST, DMA_SRC};
use std::time::{Duration, Instant};
use vfio_core::{Device, DmaFlags, DmaMemory, DmaSpace, MappedRegion, VfioBackend, region};

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// edu's DMA command bits (its registers and buffer are the edu driver's).
const CMD_RUN: u32 = 1;
const CMD_TO_RAM: u32 = 2;

/// VT-d fault reasons: a write or a read through an entry that lacks the
/// permission (an unmapped IOVA has none).
const REASON_NO_WRITE: u8 = 0x05;
const REASON_NO_READ: u8 = 0x06;

/// How long a fault record may take to reach the host's log.
const FAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one edu DMA of `count` bytes between `iova` and offset `at` of the
/// device's buffer (`to_ram`: device to memory) and waits for the engine to
/// finish, polling the command register (no interrupt is asked for).
pub(crate) fn edu_dma<R: MappedRegion>(
    bar0: &R,
    iova: u64,
    at: u64,
    count: u64,
    to_ram: bool,
) -> Result<()> {
    let (src, dst) = if to_ram {
        (EDU_BUFFER + at, iova)
    } else {
        (iova, EDU_BUFFER + at)
    };
    bar0.write_u64(DMA_SRC, src)?;
    bar0.write_u64(DMA_DST, dst)?;
    bar0.write_u64(DMA_COUNT, count)?;
    let dir = if to_ram { CMD_TO_RAM } else { 0 };
    bar0.write_u32(DMA_CMD, CMD_RUN | dir)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while bar0.read_u32(DMA_CMD)? & CMD_RUN != 0 {
        ensure!(Instant::now() < deadline, "the DMA did not finish in 10 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// The host's fault records so far, or n/a where the suite may not read them.
fn faults<B: VfioBackend>(env: &Env<B>) -> Result<Vec<IommuFaultRecord>> {
    env.host
        .iommu_faults()
        .map_err(|e| not_applicable(format!("{e:#}")))
}

/// Waits until the records added after the first `before` include `want`,
/// and checks that it is the only one: with QEMU's VT-d each refused DMA
/// reached the guest's log as one record.
///
/// The kernel rate-limits its fault messages; every faulting DMA of the
/// suite is made after [`HostControl::pace_fault`](crate::HostControl::pace_fault),
/// so that each record is printed.
fn wait_for_fault<B: VfioBackend>(
    env: &Env<B>,
    before: usize,
    want: IommuFaultRecord,
) -> Result<Vec<IommuFaultRecord>> {
    let start = Instant::now();
    loop {
        let all = env.host.iommu_faults()?;
        let new = all.get(before..).unwrap_or_default().to_vec();
        if new.contains(&want) {
            ensure!(new == [want], "more records than the one fault: {new:?}");
            return Ok(new);
        }
        if start.elapsed() > FAULT_TIMEOUT {
            bail!("no fault record {want:?} within {FAULT_TIMEOUT:?}; new records: {new:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens edu with bus mastering on and its BAR0 mapped.
fn edu_with_dma<B: VfioBackend>(env: &Env<B>) -> Result<(crate::Opened<B>, B::Region)> {
    env.only_in(
        &[crate::Mode::Type1, crate::Mode::Iommufd],
        "an IOMMU fault; no-IOMMU mode has no IOMMU to fault",
    )?;
    let o = env.open_edu()?;
    o.device.set_bus_master(true)?;
    let bar0 = o.device.map_region(region::BAR0)?;
    Ok((o, bar0))
}

/// A DMA write to an IOVA whose mapping was unmapped moves nothing and is
/// refused by the IOMMU: the host logs one fault naming the device, the
/// page, the direction and the reason (0x05: the entry has no write
/// permission), and memory keeps what it had.
pub fn dma_through_an_unmapped_iova_faults_and_the_host_logs_it<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let before = faults(env)?.len();
    let (o, bar0) = edu_with_dma(env)?;
    let edu = env.targets.edu;
    let mem = env.backend.alloc_dma(0x2000)?;
    let iova = 0x90_0000;
    let marker = vec![0xa5u8; 0x2000];
    mem.write_at(0, &marker)?;
    let mapping = o.dma.map_dma(&mem, 0, 0x2000, iova, RW)?;
    ensure!(mapping.unmap()? == 0x2000, "unmap");
    env.host.pace_fault();
    edu_dma(&bar0, iova, 0, 64, true)?;
    let written = IommuFaultRecord {
        requester: edu,
        page: iova,
        write: true,
        reason: REASON_NO_WRITE,
    };
    wait_for_fault(env, before, written)?;
    let mut back = vec![0u8; 0x2000];
    mem.read_at(0, &mut back)?;
    ensure!(back == marker, "memory changed behind an unmapped IOVA");
    Ok(())
}

/// A pattern that differs from its neighbours at every offset.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ seed)
        .collect::<Vec<u8>>()
}

/// edu's DMA across the end of a mapping moves the mapped part and is
/// refused for the rest, as one fault at the first unmapped page. A write
/// to memory lands up to the mapping's end and stops there; a read from
/// memory fills the device's buffer with the mapped bytes and leaves zeros
/// where the IOMMU refused (what the device was given for them, seen by
/// writing the buffer back through a whole mapping).
pub fn dma_across_the_end_of_a_mapping_moves_the_mapped_part_and_faults_the_rest<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    faults(env)?;
    let (o, bar0) = edu_with_dma(env)?;
    let edu = env.targets.edu;
    let mem = env.backend.alloc_dma(0x2000)?;
    let iova = 0xa0_0000;
    let unmapped = vec![0xeeu8; 0x1000];
    mem.write_at(0x1000, &unmapped)?;
    // Only the first page is mapped.
    let _mapped = o.dma.map_dma(&mem, 0, 0x1000, iova, RW)?;

    // Device to memory: 2 KiB from the buffer to the last 1 KiB of the mapping.
    let p = pattern(0x800, 0x11);
    mem.write_at(0, &p)?;
    edu_dma(&bar0, iova, 0, 0x800, false)?;
    mem.write_at(0, &[0u8; 0x1000])?;
    let before = env.host.iommu_faults()?.len();
    env.host.pace_fault();
    edu_dma(&bar0, iova + 0xc00, 0, 0x800, true)?;
    wait_for_fault(
        env,
        before,
        IommuFaultRecord {
            requester: edu,
            page: iova + 0x1000,
            write: true,
            reason: REASON_NO_WRITE,
        },
    )?;
    let mut got = vec![0u8; 0x2000];
    mem.read_at(0, &mut got)?;
    ensure!(
        got[0xc00..0x1000] == p[..0x400],
        "the mapped part was not written"
    );
    ensure!(
        got[..0xc00].iter().all(|&b| b == 0),
        "written before the target"
    );
    ensure!(got[0x1000..] == unmapped[..], "written past the mapping");

    // Memory to device: fill the buffer with a known byte, then read 2 KiB
    // from the last 1 KiB of the mapping on.
    mem.write_at(0, &[0x5au8; 0x1000])?;
    edu_dma(&bar0, iova, 0, 0x800, false)?;
    let q = pattern(0x1000, 0x33);
    mem.write_at(0, &q)?;
    let before = env.host.iommu_faults()?.len();
    env.host.pace_fault();
    edu_dma(&bar0, iova + 0xc00, 0, 0x800, false)?;
    wait_for_fault(
        env,
        before,
        IommuFaultRecord {
            requester: edu,
            page: iova + 0x1000,
            write: false,
            reason: REASON_NO_READ,
        },
    )?;
    // What the buffer holds: 2 KiB written back to the start of the mapping.
    mem.write_at(0, &[0u8; 0x1000])?;
    edu_dma(&bar0, iova, 0, 0x800, true)?;
    let mut buffer = vec![0u8; 0x800];
    mem.read_at(0, &mut buffer)?;
    ensure!(
        buffer[..0x400] == q[0xc00..],
        "the mapped part was not read: {:02x?}",
        &buffer[..16]
    );
    let tail = &buffer[0x400..];
    if tail.iter().any(|&b| b != 0) {
        let first = tail
            .iter()
            .position(|&b| b != 0)
            .context("a non-zero byte")?;
        bail!(
            "the refused part of the read is not zero: byte {first:#x} of it is {:#04x} \
             (0x5a: left as it was)",
            tail[first]
        );
    }
    Ok(())
}

/// A device write through a mapping the container made read-only (the
/// device may read it, not write it) moves nothing: the IOMMU refuses it
/// with one fault of reason 0x05 at the page, and memory keeps what it
/// had. A read through the same mapping is allowed and moves the bytes.
///
/// The write comes first: in the guest, a write made after a read through
/// the same mapping left no fault record (QEMU's VT-d checks the
/// permission when it walks the page table, not on a translation it has
/// cached), where hardware records one. The mock records one in both
/// orders; only this order is checked on the kernel.
pub fn dma_write_through_a_read_only_mapping_faults_and_moves_nothing<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    faults(env)?;
    let (o, bar0) = edu_with_dma(env)?;
    let mem = env.backend.alloc_dma(0x1000)?;
    let iova = 0xb0_0000;
    let p = pattern(0x1000, 0x77);
    mem.write_at(0, &p)?;
    let _mapping = o.dma.map_dma(&mem, 0, 0x1000, iova, DmaFlags::READ)?;

    // Refused: device to memory through the read-only mapping.
    let before = env.host.iommu_faults()?.len();
    env.host.pace_fault();
    edu_dma(&bar0, iova + 0x400, 0, 0x100, true)?;
    wait_for_fault(
        env,
        before,
        IommuFaultRecord {
            requester: env.targets.edu,
            page: iova,
            write: true,
            reason: REASON_NO_WRITE,
        },
    )?;
    let mut got = vec![0u8; 0x1000];
    mem.read_at(0, &mut got)?;
    ensure!(got == p, "memory behind a read-only mapping changed");

    // Allowed: memory to device, then the buffer back through a second,
    // writable mapping of the same memory.
    edu_dma(&bar0, iova, 0, 0x100, false)?;
    let _writable = o.dma.map_dma(&mem, 0, 0x1000, iova + 0x1_0000, RW)?;
    mem.write_at(0x800, &[0u8; 0x100])?;
    edu_dma(&bar0, iova + 0x1_0000 + 0x800, 0, 0x100, true)?;
    let mut back = vec![0u8; 0x100];
    mem.read_at(0x800, &mut back)?;
    ensure!(
        back == p[..0x100],
        "the read through the read-only mapping moved other bytes"
    );
    Ok(())
}
