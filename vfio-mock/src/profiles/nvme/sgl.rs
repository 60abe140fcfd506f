//! Scatter-gather lists for I/O commands' data (`nvme_map_sgl`): a Data
//! Block in the command, or (Last) Segments of descriptors in host memory.
//! Descriptors are read through the IOMMU; a segment the controller cannot
//! read is a Data Transfer Error. As for PRPs, the data themselves move
//! later and a refused part is dropped without failing the command.

use super::prp::Segments;
use crate::model::DeviceContext;
use nvme_spec::Status;

const DATA_BLOCK: u8 = 0x0;
const SEGMENT: u8 = 0x2;
const LAST_SEGMENT: u8 = 0x3;
/// Descriptors QEMU reads at a time (one 4 KiB chunk).
const CHUNK: u64 = 256;
/// QEMU's limit on the pieces a command maps (`IOV_MAX`): past it the
/// command fails with Internal Error and DNR.
const MAX_PIECES: usize = 1024;
/// Segments followed at most. QEMU follows a chain that loops back on
/// itself forever (its main loop hangs); the model stops and fails the
/// command with Invalid SGL Segment Descriptor instead.
const MAX_SEGMENTS: usize = 1 << 16;

#[derive(Debug, Clone, Copy)]
struct Descriptor {
    addr: u64,
    len: u32,
    kind: u8,
}

impl Descriptor {
    fn parse(raw: &[u8]) -> Self {
        let field = |r: std::ops::Range<usize>| raw.get(r).unwrap_or(&[]);
        Self {
            addr: u64::from_le_bytes(field(0..8).try_into().unwrap_or_default()),
            len: u32::from_le_bytes(field(8..12).try_into().unwrap_or_default()),
            kind: field(15..16).first().map_or(0xff, |t| t >> 4),
        }
    }
}

/// Maps `len` bytes described by the SGL descriptor in the command's data
/// pointer (`dptr`: PRP1 then PRP2, as 16 bytes).
pub(super) fn map(ctx: &DeviceContext<'_>, dptr: [u8; 16], len: u64) -> Result<Segments, Status> {
    let mut segs = Segments::new();
    let mut left = len;
    let first = Descriptor::parse(&dptr);
    if first.kind == DATA_BLOCK {
        map_data(&mut segs, &[first], &mut left)?;
    } else {
        let mut current = first;
        let mut addr = first.addr;
        let mut followed = 0usize;
        loop {
            if current.kind != SEGMENT && current.kind != LAST_SEGMENT {
                return Err(Status::INVALID_SGL_SEGMENT.with_dnr());
            }
            let seg_len = u64::from(current.len);
            if seg_len == 0 || seg_len % 16 != 0 {
                return Err(Status::INVALID_SGL_SEGMENT.with_dnr());
            }
            if u64::MAX - addr < seg_len {
                return Err(Status::SGL_DATA_LENGTH_INVALID.with_dnr());
            }
            followed += 1;
            if followed > MAX_SEGMENTS {
                return Err(Status::INVALID_SGL_SEGMENT.with_dnr());
            }
            let mut count = seg_len / 16;
            while count > CHUNK {
                let descs = read(ctx, addr, CHUNK)?;
                map_data(&mut segs, &descs, &mut left)?;
                count -= CHUNK;
                addr = addr.wrapping_add(CHUNK * 16);
            }
            let descs = read(ctx, addr, count)?;
            let Some(last) = descs.last().copied() else {
                return Err(Status::INVALID_SGL_SEGMENT.with_dnr());
            };
            if last.kind == DATA_BLOCK {
                map_data(&mut segs, &descs, &mut left)?;
                break;
            }
            // A segment that does not end in data must not be the last.
            if current.kind == LAST_SEGMENT {
                return Err(Status::INVALID_SGL_SEGMENT.with_dnr());
            }
            current = last;
            addr = last.addr;
            map_data(&mut segs, &descs[..descs.len() - 1], &mut left)?;
        }
    }
    if left != 0 {
        return Err(Status::SGL_DATA_LENGTH_INVALID.with_dnr());
    }
    Ok(segs)
}

fn read(ctx: &DeviceContext<'_>, addr: u64, count: u64) -> Result<Vec<Descriptor>, Status> {
    let mut raw = vec![0u8; (count * 16) as usize];
    ctx.dma_read(addr, &mut raw)
        .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
    Ok(raw.chunks_exact(16).map(Descriptor::parse).collect())
}

/// `nvme_map_sgl_data`: Data Blocks only; zero-length ones are skipped;
/// data beyond the transfer is an error (QEMU does not set the "excess
/// length" SGLS bit).
fn map_data(segs: &mut Segments, descs: &[Descriptor], left: &mut u64) -> Result<(), Status> {
    for d in descs {
        match d.kind {
            DATA_BLOCK => {}
            SEGMENT | LAST_SEGMENT => return Err(Status::INVALID_SGL_COUNT.with_dnr()),
            _ => return Err(Status::SGL_DESCRIPTOR_TYPE_INVALID.with_dnr()),
        }
        if d.len == 0 {
            continue;
        }
        if *left == 0 {
            return Err(Status::SGL_DATA_LENGTH_INVALID.with_dnr());
        }
        let n = (*left).min(u64::from(d.len));
        if u64::MAX - d.addr < u64::from(d.len) {
            return Err(Status::SGL_DATA_LENGTH_INVALID.with_dnr());
        }
        if segs.len() + 1 > MAX_PIECES {
            return Err(Status::INTERNAL_ERROR.with_dnr());
        }
        segs.push((d.addr, n as usize));
        *left -= n;
    }
    Ok(())
}
