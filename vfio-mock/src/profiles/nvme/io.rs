//! I/O commands (`nvme_io_cmd` and the NVM command set's handlers):
//! Read, Write, Flush, Write Zeroes, Dataset Management, Compare, Verify.

use super::namespace::Namespace;
use super::{Ctrl, prp, reg, sgl};
use crate::model::DeviceContext;
use nvme_spec::opcode::nvm;
use nvme_spec::{Command, Status};

/// The drive's accounting that the SMART log reports (QEMU's block
/// statistics: only commands that reached the drive and succeeded count).
#[derive(Debug, Default)]
pub(super) struct Stats {
    /// Bytes read by Read, Compare and Verify.
    pub(super) bytes_read: u64,
    /// Bytes written by Write.
    pub(super) bytes_written: u64,
    /// Read, Compare and Verify commands.
    pub(super) reads: u64,
    /// Write commands.
    pub(super) writes: u64,
}

/// QEMU's MDTS (7): at most 2^7 memory pages per command.
pub(super) const MDTS: u8 = 7;
/// QEMU's Verify size limit (`vsl`, 7).
pub(super) const VSL: u8 = 7;
/// The highest namespace ID QEMU accepts (`NVME_MAX_NAMESPACES`).
pub(super) const MAX_NSID: u32 = 256;
/// The broadcast namespace ID.
pub(super) const BROADCAST: u32 = 0xffff_ffff;

/// `nvme_nsid_valid`.
pub(super) fn nsid_valid(nsid: u32) -> bool {
    nsid != 0 && (nsid == BROADCAST || nsid <= MAX_NSID)
}

/// Runs I/O command `cmd`: its status, its result dword, and whether QEMU
/// would have finished it in the block layer rather than at once. QEMU
/// answers a command it refuses while it walks the SQ, and one that reached
/// the drive when the drive's completion comes back; completions that come
/// back together are posted last-first (QEMU's completion bottom halves run
/// in reverse order of scheduling), so a batch of reads fetched together
/// completes in reverse.
pub(super) fn execute(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> (Status, u32, bool) {
    let status = run(c, ctx, cmd);
    let asynchronous = match cmd.opcode() {
        nvm::READ | nvm::WRITE | nvm::WRITE_ZEROES | nvm::FLUSH | nvm::VERIFY => {
            status == Status::SUCCESS
        }
        nvm::DATASET_MANAGEMENT => status == Status::SUCCESS && cmd.cdw11 & (1 << 2) != 0,
        nvm::COMPARE => status == Status::SUCCESS || status == Status::COMPARE_FAILURE,
        nvm::COPY => status == Status::INTERNAL_ERROR,
        _ => false,
    };
    (status, 0, asynchronous)
}

fn run(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let nsid = cmd.nsid;
    if !nsid_valid(nsid) {
        return Status::INVALID_NAMESPACE.with_dnr();
    }
    let opcode = cmd.opcode();
    // QEMU runs Flush before looking the namespace up or checking the
    // command set, so it flushes even with CC.CSS "admin only".
    if opcode == nvm::FLUSH {
        return if nsid == BROADCAST || nsid == 1 {
            Status::SUCCESS
        } else {
            // A valid NSID with no namespace: QEMU answers Invalid Field
            // where the specification asks for Invalid Namespace.
            Status::INVALID_FIELD.with_dnr()
        };
    }
    if nsid != 1 {
        // Same QEMU choice for every other command (the broadcast NSID
        // included).
        return Status::INVALID_FIELD.with_dnr();
    }
    let css = (c.regs.get32(reg::CC) >> 4) & 7;
    let supported = matches!(
        opcode,
        nvm::WRITE
            | nvm::READ
            | nvm::COMPARE
            | nvm::WRITE_ZEROES
            | nvm::DATASET_MANAGEMENT
            | nvm::VERIFY
            | nvm::COPY
    );
    if !supported || css == 7 {
        return Status::INVALID_OPCODE.with_dnr();
    }
    if cmd.fuse() != 0 {
        // No DNR: QEMU's choice.
        return Status::INVALID_FIELD;
    }
    match opcode {
        nvm::READ => read(c, ctx, cmd),
        nvm::WRITE => write(c, ctx, cmd),
        nvm::WRITE_ZEROES => write_zeroes(c, cmd),
        nvm::DATASET_MANAGEMENT => dsm(c, ctx, cmd),
        nvm::COMPARE => compare(c, ctx, cmd),
        nvm::VERIFY => verify(c, cmd),
        _ => copy(c, ctx, cmd),
    }
}

/// `nvme_check_mdts`: Invalid Field with DNR past MDTS pages.
pub(super) fn check_mdts(c: &Ctrl, len: u64) -> Result<(), Status> {
    if len > c.page << MDTS {
        Err(Status::INVALID_FIELD.with_dnr())
    } else {
        Ok(())
    }
}

/// `nvme_check_bounds`: LBA Out of Range with DNR.
fn check_bounds(c: &Ctrl, slba: u64, nlb: u64) -> Result<(u64, u64), Status> {
    c.ns.span(slba, nlb)
        .ok_or(Status::LBA_OUT_OF_RANGE.with_dnr())
}

/// `nvme_map_dptr`: PRPs for PSDT 0, an SGL for PSDT 1 and 2 (the metadata
/// pointer's form does not matter without metadata), Invalid Field for 3.
pub(super) fn map_dptr(
    c: &Ctrl,
    ctx: &DeviceContext<'_>,
    cmd: &Command,
    len: u64,
) -> Result<prp::Segments, Status> {
    match cmd.psdt() {
        0 => prp::map(ctx, c.page, cmd.prp1, cmd.prp2, len),
        1 | 2 => {
            let mut dptr = [0u8; 16];
            dptr[..8].copy_from_slice(&cmd.prp1.to_le_bytes());
            dptr[8..].copy_from_slice(&cmd.prp2.to_le_bytes());
            sgl::map(ctx, dptr, len)
        }
        _ => Err(Status::INVALID_FIELD),
    }
}

fn nlb(cmd: &Command) -> u64 {
    u64::from(cmd.nlb()) + 1
}

/// Read: MDTS, bounds, map, copy. Every refusal of `nvme_read` gets DNR
/// added, so a PRP list the controller cannot read is a Data Transfer Error
/// *with* DNR here, unlike for admin commands.
fn read(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let go = |c: &mut Ctrl| -> Result<(), Status> {
        let n = nlb(cmd);
        let len = n * c.ns.block_size;
        check_mdts(c, len)?;
        let (offset, len) = check_bounds(c, cmd.slba(), n)?;
        let segs = match cmd.psdt() {
            // PRPs into the buffer kept for them (reads are the hot path).
            0 => prp::map_into(
                ctx,
                c.page,
                cmd.prp1,
                cmd.prp2,
                len,
                std::mem::take(&mut c.segs_spare),
            )?,
            _ => map_dptr(c, ctx, cmd, len)?,
        };
        if !write_out_direct(c, ctx, offset, &segs) {
            let mut data = vec![0u8; len as usize];
            c.ns.read(offset, &mut data);
            prp::write_out(ctx, &segs, &data);
        }
        c.segs_spare = segs;
        Ok(())
    };
    match go(c) {
        Ok(()) => {
            let len = nlb(cmd) * c.ns.block_size;
            c.stats.reads += 1;
            c.stats.bytes_read += len;
            Status::SUCCESS
        }
        Err(s) => s.with_dnr(),
    }
}

/// Zeroes a segment of a chunk that was never written is copied from.
static ZEROES: [u8; 4096] = [0; 4096];

/// Copies the namespace's bytes from `offset` to the host through `segs`
/// straight from storage, when each segment's bytes lie in one chunk (as
/// page-aligned reads' do): the same DMA writes as [`prp::write_out`] of
/// the bytes read, without the copy in between. False, having written
/// nothing, when some segment crosses a chunk.
fn write_out_direct(c: &Ctrl, ctx: &DeviceContext<'_>, offset: u64, segs: &prp::Segments) -> bool {
    let mut at = offset;
    for &(_, n) in segs {
        if n > ZEROES.len() || !Namespace::in_one_chunk(at, n) {
            return false;
        }
        at += n as u64;
    }
    let mut at = offset;
    for &(iova, n) in segs {
        let bytes = c.ns.chunk_slice(at, n).unwrap_or(&ZEROES[..n]);
        // A refused part is dropped, as QEMU's DMA helpers drop it.
        let _ = ctx.dma_write(iova, bytes);
        at += n as u64;
    }
    true
}

/// Write: as Read, the other way.
fn write(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let n = nlb(cmd);
    let len = n * c.ns.block_size;
    let mapped = check_mdts(c, len)
        .and_then(|()| check_bounds(c, cmd.slba(), n))
        .and_then(|(offset, len)| Ok((offset, map_dptr(c, ctx, cmd, len)?)));
    match mapped {
        Ok((offset, segs)) => {
            let mut data = vec![0u8; len as usize];
            prp::read_in(ctx, &segs, &mut data);
            c.ns.write(offset, &data);
            c.stats.writes += 1;
            c.stats.bytes_written += len;
            Status::SUCCESS
        }
        Err(s) => s.with_dnr(),
    }
}

/// Write Zeroes: bounds only (no MDTS, no data pointer), then the blocks
/// read as zero. QEMU ignores DEAC and always lets the drive unmap.
fn write_zeroes(c: &mut Ctrl, cmd: &Command) -> Status {
    match check_bounds(c, cmd.slba(), nlb(cmd)) {
        Ok((offset, len)) => {
            c.ns.zero(offset, len);
            Status::SUCCESS
        }
        Err(s) => s.with_dnr(),
    }
}

/// Dataset Management: only the deallocate attribute does anything. QEMU
/// reads the ranges (refused bytes read as zero), then skips each range
/// that is out of bounds or longer than DMRSL instead of failing the
/// command, and discards the rest.
fn dsm(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    if cmd.cdw11 & (1 << 2) == 0 {
        return Status::SUCCESS;
    }
    let nr = u64::from(cmd.cdw10 & 0xff) + 1;
    let segs = match map_dptr(c, ctx, cmd, nr * 16) {
        Ok(s) => s,
        Err(s) => return s,
    };
    let mut raw = vec![0u8; (nr * 16) as usize];
    prp::read_in(ctx, &segs, &mut raw);
    let dmrsl = dmrsl(c.ns.block_size);
    for r in raw.chunks_exact(16) {
        let nlb = u64::from(u32::from_le_bytes([r[4], r[5], r[6], r[7]]));
        let slba = u64::from_le_bytes(r[8..16].try_into().unwrap_or_default());
        if nlb > u64::from(dmrsl) {
            continue;
        }
        if let Some((offset, len)) = c.ns.span(slba, nlb) {
            if c.ns.discard {
                c.ns.zero(offset, len);
            }
        }
    }
    Status::SUCCESS
}

/// QEMU's DMRSL: the largest request the block layer takes, in blocks.
pub(super) fn dmrsl(block_size: u64) -> u32 {
    const MAX_REQUEST_BYTES: u64 = (i32::MAX as u64 >> 9) << 9;
    (MAX_REQUEST_BYTES / block_size) as u32
}

/// Compare: MDTS and bounds without DNR added (unlike Read), then Compare
/// Failure (without DNR) if the host's data differ.
fn compare(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let n = nlb(cmd);
    let len = n * c.ns.block_size;
    let mapped = check_mdts(c, len)
        .and_then(|()| check_bounds(c, cmd.slba(), n))
        .and_then(|(offset, len)| Ok((offset, map_dptr(c, ctx, cmd, len)?)));
    match mapped {
        Ok((offset, segs)) => {
            let mut host = vec![0u8; len as usize];
            prp::read_in(ctx, &segs, &mut host);
            let mut ours = vec![0u8; len as usize];
            c.ns.read(offset, &mut ours);
            c.stats.reads += 1;
            c.stats.bytes_read += len;
            if host == ours {
                Status::SUCCESS
            } else {
                Status::COMPARE_FAILURE
            }
        }
        Err(s) => s,
    }
}

/// Verify: at most 2^VSL pages (Invalid Field with DNR), bounds; the data
/// are always intact.
fn verify(c: &mut Ctrl, cmd: &Command) -> Status {
    let n = nlb(cmd);
    let len = n * c.ns.block_size;
    if len > c.page << VSL {
        return Status::INVALID_FIELD.with_dnr();
    }
    match check_bounds(c, cmd.slba(), n) {
        Ok(_) => {
            c.stats.reads += 1;
            c.stats.bytes_read += len;
            Status::SUCCESS
        }
        Err(s) => s,
    }
}

/// Command Size Limit Exceeded.
const COMMAND_SIZE_LIMIT: Status = Status::new(1, 0x83);

/// Copy. The controller's own namespace has QEMU's zero MSSRL, MCL and
/// MSRC (those are `nvme-ns` properties), so every Copy fails: more than
/// one range with Command Size Limit Exceeded (DNR); one range, once read,
/// is over MSSRL too, but QEMU fails it from its asynchronous path, whose
/// error handler replaces the status with Internal Error (no DNR).
fn copy(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let nr = u64::from(cmd.cdw12 & 0xff) + 1;
    let format = (cmd.cdw12 >> 8) & 0xf;
    let (prinfor, prinfow) = ((cmd.cdw12 >> 12) & 0xf, (cmd.cdw12 >> 26) & 0xf);
    if c.ns.protection() != 0 && (prinfor & 0x8) != (prinfow & 0x8) {
        return Status::INVALID_FIELD.with_dnr();
    }
    // OCFS: formats 0 and 1.
    if format > 1 {
        return Status::INVALID_FIELD.with_dnr();
    }
    if nr > 1 {
        return COMMAND_SIZE_LIMIT.with_dnr();
    }
    // Format 0 is the one for the 16-bit guard QEMU's namespace uses.
    if format != 0 {
        return Status::INVALID_FORMAT.with_dnr();
    }
    let segs = match map_dptr(c, ctx, cmd, 32) {
        Ok(s) => s,
        Err(s) => return s,
    };
    let mut range = [0u8; 32];
    prp::read_in(ctx, &segs, &mut range);
    Status::INTERNAL_ERROR
}
