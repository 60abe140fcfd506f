//! Admin commands (`nvme_admin_cmd`): the dispatch and its common checks,
//! Create and Delete I/O queues, Abort, Asynchronous Event Request, Format
//! NVM, Doorbell Buffer Config, and what a controller without a subsystem
//! or SR-IOV answers to Namespace Attachment and Virtualization Management.
//! Identify, features and log pages have modules of their own.

use super::io::{BROADCAST, nsid_valid};
use super::queues::{self, Cq, Sq, Todo};
use super::{Ctrl, IO_QUEUE_PAIRS, Shared, events, features, identify, irq, log, prp};
use crate::model::DeviceContext;
use nvme_spec::opcode::admin;
use nvme_spec::{Command, Status};
use std::sync::Arc;

/// QEMU's composite temperature, 323 K.
pub(super) const TEMPERATURE: u16 = 0x143;
/// QEMU's warning temperature threshold (WCTEMP), 343 K.
pub(super) const TEMPERATURE_WARNING: u16 = 0x157;
/// QEMU's critical temperature threshold (CCTEMP), 373 K.
pub(super) const TEMPERATURE_CRITICAL: u16 = 0x175;
/// QEMU's Asynchronous Event Request Limit (`aerl`, 0's based).
pub(super) const AERL: u8 = 3;
/// The firmware revision QEMU reports: its version, as Debian bookworm's
/// qemu-system-x86 1:7.2+dfsg-7+deb12u18 builds it.
pub(super) const FIRMWARE_REVISION: &str = "7.2.22";

pub(super) type Outcome = Option<(Status, u32)>;

pub(super) fn done(status: Status) -> Outcome {
    Some((status, 0))
}

/// Runs admin command `cmd`: `Some((status, result))`, or `None` for an
/// Asynchronous Event Request the controller holds.
pub(super) fn execute(
    shared: &Arc<Shared>,
    c: &mut Ctrl,
    ctx: &DeviceContext<'_>,
    cmd: &Command,
    todo: &mut Todo,
) -> Outcome {
    let opcode = cmd.opcode();
    let supported = matches!(
        opcode,
        admin::DELETE_SQ
            | admin::CREATE_SQ
            | admin::GET_LOG_PAGE
            | admin::DELETE_CQ
            | admin::CREATE_CQ
            | admin::IDENTIFY
            | admin::ABORT
            | admin::SET_FEATURES
            | admin::GET_FEATURES
            | admin::ASYNC_EVENT_REQUEST
            | admin::NS_ATTACHMENT
            | VIRTUALIZATION_MANAGEMENT
            | admin::DOORBELL_BUFFER_CONFIG
            | admin::FORMAT_NVM
    );
    if !supported {
        // Namespace Management among them, though OACS advertises it.
        return done(Status::INVALID_OPCODE.with_dnr());
    }
    if cmd.psdt() != 0 {
        return done(Status::INVALID_FIELD.with_dnr());
    }
    if cmd.fuse() != 0 {
        return done(Status::INVALID_FIELD);
    }
    match opcode {
        admin::DELETE_SQ => done(delete_sq(c, ctx, cmd, todo)),
        admin::CREATE_SQ => done(create_sq(c, cmd)),
        admin::GET_LOG_PAGE => done(log::get_log(c, ctx, cmd, todo)),
        admin::DELETE_CQ => done(delete_cq(c, ctx, cmd)),
        admin::CREATE_CQ => done(create_cq(shared, c, ctx, cmd)),
        admin::IDENTIFY => done(identify::identify(shared, c, ctx, cmd)),
        admin::ABORT => {
            // QEMU never aborts: result bit 0 set ("not aborted").
            let sqid = cmd.cdw10 & 0xffff;
            if queues::sq_exists(c, sqid) {
                Some((Status::SUCCESS, 1))
            } else {
                Some((Status::INVALID_FIELD.with_dnr(), 1))
            }
        }
        admin::SET_FEATURES => features::set_features(c, ctx, cmd, todo),
        admin::GET_FEATURES => features::get_features(c, ctx, cmd),
        admin::NS_ATTACHMENT => {
            // Attachment needs a subsystem; this controller has none.
            if nsid_valid(cmd.nsid) {
                done(Status::INVALID_FIELD.with_dnr())
            } else {
                done(Status::INVALID_NAMESPACE.with_dnr())
            }
        }
        VIRTUALIZATION_MANAGEMENT => virt_mgmt(cmd),
        admin::DOORBELL_BUFFER_CONFIG => done(dbbuf_config(c, ctx, cmd)),
        admin::FORMAT_NVM => done(format(c, cmd)),
        _ => {
            // AERL is 0's based: AERL + 1 requests may be outstanding; the
            // one over the limit completes without DNR.
            if c.aer_reqs.len() > usize::from(AERL) {
                return done(Status::ASYNC_EVENT_LIMIT_EXCEEDED);
            }
            c.aer_reqs.push(cmd.cid());
            if !c.aer_queue.is_empty() {
                events::process_aers(c, todo);
            }
            None
        }
    }
}

/// Virtualization Management, opcode 1Ch.
const VIRTUALIZATION_MANAGEMENT: u8 = 0x1c;
/// Invalid Controller Identifier.
const INVALID_CONTROLLER_ID: Status = Status::new(1, 0x1f);
/// Invalid Number of Controller Resources.
const INVALID_RESOURCE_COUNT: Status = Status::new(1, 0x21);
/// Invalid Resource Identifier.
const INVALID_RESOURCE_ID: Status = Status::new(1, 0x22);

/// Virtualization Management on a controller without SR-IOV: no flexible
/// resources and no secondary controllers to act on.
fn virt_mgmt(cmd: &Command) -> Outcome {
    let act = cmd.cdw10 & 0xf;
    let rt = (cmd.cdw10 >> 8) & 0x7;
    let cntlid = cmd.cdw10 >> 16;
    let nr = cmd.cdw11 & 0xffff;
    if rt > 1 {
        return done(INVALID_RESOURCE_ID.with_dnr());
    }
    match act {
        // Primary controller flexible allocation: none to give.
        0x01 => {
            if cntlid != 0 {
                done(INVALID_CONTROLLER_ID.with_dnr())
            } else if nr > 0 {
                done(INVALID_RESOURCE_COUNT.with_dnr())
            } else {
                Some((Status::SUCCESS, 0))
            }
        }
        0x07..=0x09 => done(INVALID_CONTROLLER_ID.with_dnr()),
        _ => done(Status::INVALID_FIELD.with_dnr()),
    }
}

/// Doorbell Buffer Config: both buffers page-aligned (else Invalid Field
/// with DNR). From then on the controller takes SQ tails and CQ heads from
/// the shadow buffer and writes event indexes to the other, as QEMU does.
fn dbbuf_config(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let (dbs, eis) = (cmd.prp1, cmd.prp2);
    if dbs % c.page != 0 || eis % c.page != 0 {
        return Status::INVALID_FIELD.with_dnr();
    }
    c.dbbuf = Some((dbs, eis));
    for (i, sq) in c.sqs.iter_mut().enumerate() {
        if let Some(sq) = sq {
            let at = (i as u64) << 3;
            sq.shadow = Some((dbs.wrapping_add(at), eis.wrapping_add(at)));
            let _ = ctx.dma_write(dbs.wrapping_add(at), &sq.tail.to_le_bytes());
        }
    }
    for (i, cq) in c.cqs.iter_mut().enumerate() {
        if let Some(cq) = cq {
            let at = ((i as u64) << 3) + 4;
            cq.shadow = Some((dbs.wrapping_add(at), eis.wrapping_add(at)));
            let _ = ctx.dma_write(dbs.wrapping_add(at), &cq.head.to_le_bytes());
        }
    }
    Status::SUCCESS
}

/// Format NVM of NSID 1 (or all, with the broadcast NSID): the format must
/// exist and carry enough metadata for protection information; the blocks
/// all read zero afterwards. Metadata itself is not modelled.
fn format(c: &mut Ctrl, cmd: &Command) -> Status {
    let dw10 = cmd.cdw10;
    let mut lbaf = (dw10 & 0xf) as u8;
    let mset = ((dw10 >> 4) & 1) as u8;
    let pi = ((dw10 >> 5) & 0x7) as u8;
    let pil = ((dw10 >> 8) & 1) as u8;
    if c.features.host_behavior[2] != 0 {
        lbaf |= (((dw10 >> 12) & 0x3) as u8) << 4;
    }
    let nsid = cmd.nsid;
    if nsid != BROADCAST {
        if !nsid_valid(nsid) {
            return Status::INVALID_NAMESPACE.with_dnr();
        }
        if nsid != 1 {
            return Status::INVALID_FIELD.with_dnr();
        }
    }
    let index = usize::from(lbaf);
    if index >= c.ns.format_count() {
        return Status::INVALID_FORMAT.with_dnr();
    }
    // The 16-bit guard protection tuple is 8 bytes.
    if pi != 0 && c.ns.metadata_of(index) < 8 {
        return Status::INVALID_FORMAT.with_dnr();
    }
    if pi > 3 {
        return Status::INVALID_FIELD.with_dnr();
    }
    c.ns.format(lbaf, mset, pi, pil);
    Status::SUCCESS
}

/// Copies `data` to the command's data pointer (`nvme_c2h`): PRP errors
/// as `nvme_map_prp` gives them; a refused transfer still succeeds.
pub(super) fn c2h(c: &Ctrl, ctx: &DeviceContext<'_>, cmd: &Command, data: &[u8]) -> Status {
    match prp::map(ctx, c.page, cmd.prp1, cmd.prp2, data.len() as u64) {
        Ok(segs) => {
            prp::write_out(ctx, &segs, data);
            Status::SUCCESS
        }
        Err(s) => s,
    }
}

/// Reads `buf.len()` bytes from the command's data pointer (`nvme_h2c`).
pub(super) fn h2c(c: &Ctrl, ctx: &DeviceContext<'_>, cmd: &Command, buf: &mut [u8]) -> Status {
    match prp::map(ctx, c.page, cmd.prp1, cmd.prp2, buf.len() as u64) {
        Ok(segs) => {
            prp::read_in(ctx, &segs, buf);
            Status::SUCCESS
        }
        Err(s) => s,
    }
}

fn create_cq(shared: &Arc<Shared>, c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let cqid = cmd.cdw10 & 0xffff;
    let qsize = cmd.cdw10 >> 16;
    let flags = cmd.cdw11 & 0xffff;
    let vector = cmd.cdw11 >> 16;
    if cqid == 0 || cqid > IO_QUEUE_PAIRS || queues::cq_exists(c, cqid) {
        return Status::INVALID_QUEUE_ID.with_dnr();
    }
    if qsize == 0 || qsize > u32::from(super::CAP as u16) {
        return Status::INVALID_QUEUE_SIZE.with_dnr();
    }
    if cmd.prp1 % c.page != 0 {
        return Status::INVALID_PRP_OFFSET.with_dnr();
    }
    if !ctx.msix_enabled() && vector != 0 {
        return Status::INVALID_INTERRUPT_VECTOR.with_dnr();
    }
    if vector >= u32::from(shared.fixed.vectors) {
        return Status::INVALID_INTERRUPT_VECTOR.with_dnr();
    }
    if flags & 1 == 0 {
        // Physically contiguous queues only.
        return Status::INVALID_FIELD.with_dnr();
    }
    let mut cq = Cq::new(cmd.prp1, qsize as u16 + 1, flags & 2 != 0, vector as u16);
    cq.shadow = c.dbbuf.map(|(dbs, eis)| {
        (
            dbs.wrapping_add((u64::from(cqid) << 3) + 4),
            eis.wrapping_add((u64::from(cqid) << 3) + 4),
        )
    });
    c.cqs[cqid as usize] = Some(cq);
    c.qs_created = true;
    Status::SUCCESS
}

fn create_sq(c: &mut Ctrl, cmd: &Command) -> Status {
    let sqid = cmd.cdw10 & 0xffff;
    let qsize = cmd.cdw10 >> 16;
    let flags = cmd.cdw11 & 0xffff;
    let cqid = cmd.cdw11 >> 16;
    if cqid == 0 || !queues::cq_exists(c, cqid) {
        return Status::CQ_INVALID.with_dnr();
    }
    if sqid == 0 || sqid > IO_QUEUE_PAIRS || queues::sq_exists(c, sqid) {
        return Status::INVALID_QUEUE_ID.with_dnr();
    }
    if qsize == 0 || qsize > u32::from(super::CAP as u16) {
        return Status::INVALID_QUEUE_SIZE.with_dnr();
    }
    if cmd.prp1 % c.page != 0 {
        return Status::INVALID_PRP_OFFSET.with_dnr();
    }
    if flags & 1 == 0 {
        return Status::INVALID_FIELD.with_dnr();
    }
    let serial = c.take_serial();
    let mut sq = Sq::new(cmd.prp1, qsize as u16 + 1, cqid as u16, serial);
    sq.shadow = c.dbbuf.map(|(dbs, eis)| {
        (
            dbs.wrapping_add(u64::from(sqid) << 3),
            eis.wrapping_add(u64::from(sqid) << 3),
        )
    });
    c.sqs[sqid as usize] = Some(sq);
    Status::SUCCESS
}

/// Delete I/O SQ: commands in flight finish first and are posted if their
/// CQ has room; completions that do not fit are dropped with the queue.
fn delete_sq(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command, todo: &mut Todo) -> Status {
    let qid = cmd.cdw10 & 0xffff;
    if qid == 0 || !queues::sq_exists(c, qid) {
        return Status::INVALID_QUEUE_ID.with_dnr();
    }
    let qid = qid as u16;
    let Some((serial, cqid)) = c.sqs[usize::from(qid)].as_ref().map(|s| (s.serial, s.cqid)) else {
        return Status::INVALID_QUEUE_ID.with_dnr();
    };
    let mut local = Todo::default();
    queues::finish_inflight(c, ctx, qid, serial, None, &mut local);
    queues::post_cqes(c, ctx, cqid, &mut local);
    if let Some(cq) = c.cqs[usize::from(cqid)].as_mut() {
        cq.pending
            .retain(|d| !(d.sqid == qid && d.serial == serial));
    }
    c.sqs[usize::from(qid)] = None;
    // Posting may have freed requests other queues were waiting for.
    todo.extend(local);
    Status::SUCCESS
}

/// Delete I/O CQ: refused (without DNR) while an SQ uses it.
fn delete_cq(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let qid = cmd.cdw10 & 0xffff;
    if qid == 0 || !queues::cq_exists(c, qid) {
        return Status::CQ_INVALID.with_dnr();
    }
    if c.sqs.iter().flatten().any(|s| u32::from(s.cqid) == qid) {
        return Status::INVALID_QUEUE_DELETION;
    }
    let Some(cq) = c.cqs[qid as usize].as_ref() else {
        return Status::CQ_INVALID.with_dnr();
    };
    if cq.irq_enabled && u32::from(cq.tail) != cq.head {
        c.cq_pending = c.cq_pending.wrapping_sub(1);
    }
    irq::irq_deassert(c, ctx, qid as u16);
    c.cqs[qid as usize] = None;
    Status::SUCCESS
}

/// Space-padded ASCII, cut to the field (QEMU's `strpadcpy`).
pub(super) fn pad(field: &mut [u8], text: &str) {
    field.fill(b' ');
    let n = text.len().min(field.len());
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}
