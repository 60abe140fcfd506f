//! Data pointers: PRP1/PRP2 and PRP lists (chained when a list page's last
//! entry points at the next), mapped as `nvme_map_prp` does, and the data
//! moved through the IOMMU.
//!
//! QEMU 7.2 checks the PRP entries' alignment and reads the PRP lists when
//! it maps a command; a list it cannot read is a Data Transfer Error. The
//! data themselves move later through QEMU's DMA helpers, which ignore an
//! IOMMU refusal: the mapped bytes move, the refused ones are dropped (a
//! device read of a refused page yields zeroes), and the command still
//! succeeds. The mock's IOMMU fault log records each refusal.

use crate::model::DeviceContext;
use nvme_spec::Status;

/// A mapped data buffer: `(iova, bytes)` runs in transfer order.
pub(super) type Segments = Vec<(u64, usize)>;

/// Maps `len` bytes described by `prp1` and `prp2` for pages of `page`
/// bytes. Errors are QEMU's: a misaligned list entry or PRP2 is Invalid PRP
/// Offset with DNR, an unreadable list a Data Transfer Error without it.
pub(super) fn map(
    ctx: &DeviceContext<'_>,
    page: u64,
    prp1: u64,
    prp2: u64,
    len: u64,
) -> Result<Segments, Status> {
    map_into(ctx, page, prp1, prp2, len, Segments::new())
}

/// [`map`], into `segs` (cleared first; passed in for its capacity).
pub(super) fn map_into(
    ctx: &DeviceContext<'_>,
    page: u64,
    prp1: u64,
    prp2: u64,
    len: u64,
    mut segs: Segments,
) -> Result<Segments, Status> {
    segs.clear();
    if len == 0 {
        return Ok(segs);
    }
    let first = len.min(page - prp1 % page);
    segs.push((prp1, first as usize));
    let mut left = len - first;
    if left == 0 {
        return Ok(segs);
    }
    if left <= page {
        if prp2 % page != 0 {
            return Err(Status::INVALID_PRP_OFFSET.with_dnr());
        }
        segs.push((prp2, left as usize));
        return Ok(segs);
    }
    let max_entries = page / 8;
    let mut nents = (page - prp2 % page) / 8;
    let mut list = read_list(ctx, prp2, nents.min(max_entries))?;
    let mut i = 0u64;
    while left != 0 {
        let mut entry = list.get(i as usize).copied().unwrap_or(0);
        if i == nents - 1 && left > page {
            if entry % page != 0 {
                return Err(Status::INVALID_PRP_OFFSET.with_dnr());
            }
            nents = left.div_ceil(page).min(max_entries);
            list = read_list(ctx, entry, nents)?;
            i = 0;
            entry = list.first().copied().unwrap_or(0);
        }
        if entry % page != 0 {
            return Err(Status::INVALID_PRP_OFFSET.with_dnr());
        }
        let n = left.min(page);
        segs.push((entry, n as usize));
        left -= n;
        i += 1;
    }
    Ok(segs)
}

fn read_list(ctx: &DeviceContext<'_>, at: u64, entries: u64) -> Result<Vec<u64>, Status> {
    let mut raw = vec![0u8; entries as usize * 8];
    ctx.dma_read(at, &mut raw)
        .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
    Ok(raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

/// Copies `data` to the host through `segs` (controller to host).
pub(super) fn write_out(ctx: &DeviceContext<'_>, segs: &Segments, data: &[u8]) {
    let mut at = 0usize;
    for &(iova, n) in segs {
        let Some(part) = data.get(at..at + n) else {
            return;
        };
        // A refused part is dropped, as QEMU's DMA helpers drop it.
        let _ = ctx.dma_write(iova, part);
        at += n;
    }
}

/// Fills `buf` from the host through `segs` (host to controller); refused
/// bytes read as zero.
pub(super) fn read_in(ctx: &DeviceContext<'_>, segs: &Segments, buf: &mut [u8]) {
    buf.fill(0);
    let mut at = 0usize;
    for &(iova, n) in segs {
        let Some(part) = buf.get_mut(at..at + n) else {
            return;
        };
        // The IOMMU leaves refused bytes as they were: zero.
        let _ = ctx.dma_read(iova, part);
        at += n;
    }
}
