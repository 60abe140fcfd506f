//! Admin commands (`nvme_admin_cmd` and its handlers): Identify, Get and
//! Set Features, Create and Delete I/O queues, Abort, Get Log Page and
//! Asynchronous Event Request.

use super::io::{self, BROADCAST, MAX_NSID, MDTS, nsid_valid};
use super::queues::{self, AER_ERROR, AER_NOTICE, AER_SMART, Cq, Sq, Todo};
use super::{Ctrl, IO_QUEUE_PAIRS, Shared, prp};
use crate::model::DeviceContext;
use nvme_spec::identify::IdentifyController;
use nvme_spec::log::{FirmwareSlotLog, SmartLog};
use nvme_spec::opcode::{admin, feature};
use nvme_spec::{Command, Status};
use std::sync::Arc;
use std::time::Duration;
use zerocopy::{FromZeros, IntoBytes};

/// QEMU's composite temperature, 323 K.
const TEMPERATURE: u16 = 0x143;
/// QEMU's warning temperature threshold (WCTEMP), 343 K.
const TEMPERATURE_WARNING: u16 = 0x157;
/// QEMU's critical temperature threshold (CCTEMP), 373 K.
const TEMPERATURE_CRITICAL: u16 = 0x175;
/// QEMU's Asynchronous Event Request Limit (`aerl`, 0's based).
const AERL: u8 = 3;
/// The firmware revision QEMU reports: its version, as Debian bookworm's
/// qemu-system-x86 1:7.2+dfsg-7+deb12u18 builds it.
const FIRMWARE_REVISION: &str = "7.2.22";
/// Host Behavior Support feature.
const HOST_BEHAVIOR_SUPPORT: u8 = 0x16;
/// I/O Command Set Profile feature.
const COMMAND_SET_PROFILE: u8 = 0x19;

/// Features the controller keeps across resets (QEMU's `features` and its
/// timestamp).
#[derive(Debug)]
pub(super) struct Features {
    temp_over: u16,
    temp_under: u16,
    async_config: u32,
    err_rec: u32,
    write_cache: bool,
    host_behavior: Box<[u8; 512]>,
    host_timestamp: u64,
    timestamp_set_at: Duration,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            temp_over: TEMPERATURE_WARNING,
            temp_under: 0,
            async_config: 0,
            err_rec: 0,
            write_cache: true,
            host_behavior: Box::new([0; 512]),
            host_timestamp: 0,
            timestamp_set_at: Duration::ZERO,
        }
    }
}

impl Features {
    /// `nvme_set_timestamp`.
    pub(super) fn set_timestamp(&mut self, ts: u64, now: Duration) {
        self.host_timestamp = ts;
        self.timestamp_set_at = now;
    }
}

/// What Set/Get Features know of a feature: supported, and its
/// capabilities (bit 0 saveable, 1 namespace-specific, 2 changeable).
fn feature_caps(fid: u8) -> Option<u32> {
    const CHANGE: u32 = 1 << 2;
    const NS: u32 = 1 << 1;
    Some(match fid {
        feature::ARBITRATION
        | feature::POWER_MANAGEMENT
        | feature::NUMBER_OF_QUEUES
        | feature::INTERRUPT_COALESCING
        | feature::INTERRUPT_VECTOR_CONFIG
        | feature::WRITE_ATOMICITY => {
            if fid == feature::NUMBER_OF_QUEUES {
                CHANGE
            } else {
                0
            }
        }
        feature::TEMPERATURE_THRESHOLD
        | feature::VOLATILE_WRITE_CACHE
        | feature::ASYNC_EVENT_CONFIG
        | feature::TIMESTAMP
        | HOST_BEHAVIOR_SUPPORT
        | COMMAND_SET_PROFILE => CHANGE,
        feature::ERROR_RECOVERY => CHANGE | NS,
        _ => return None,
    })
}

type Outcome = Option<(Status, u32)>;

fn done(status: Status) -> Outcome {
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
        admin::GET_LOG_PAGE => done(get_log(c, ctx, cmd, todo)),
        admin::DELETE_CQ => done(delete_cq(c, ctx, cmd)),
        admin::CREATE_CQ => done(create_cq(shared, c, ctx, cmd)),
        admin::IDENTIFY => done(identify(shared, c, ctx, cmd)),
        admin::ABORT => {
            // QEMU never aborts: result bit 0 set ("not aborted").
            let sqid = cmd.cdw10 & 0xffff;
            if queues::sq_exists(c, sqid) {
                Some((Status::SUCCESS, 1))
            } else {
                Some((Status::INVALID_FIELD.with_dnr(), 1))
            }
        }
        admin::SET_FEATURES => set_features(c, ctx, cmd, todo),
        admin::GET_FEATURES => get_features(c, ctx, cmd),
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
                queues::process_aers(c, todo);
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
fn c2h(c: &Ctrl, ctx: &DeviceContext<'_>, cmd: &Command, data: &[u8]) -> Status {
    match prp::map(ctx, c.page, cmd.prp1, cmd.prp2, data.len() as u64) {
        Ok(segs) => {
            prp::write_out(ctx, &segs, data);
            Status::SUCCESS
        }
        Err(s) => s,
    }
}

/// Reads `buf.len()` bytes from the command's data pointer (`nvme_h2c`).
fn h2c(c: &Ctrl, ctx: &DeviceContext<'_>, cmd: &Command, buf: &mut [u8]) -> Status {
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
    queues::irq_deassert(c, ctx, qid as u16);
    c.cqs[qid as usize] = None;
    Status::SUCCESS
}

/// The Identify Controller data QEMU 7.2 gives this controller.
fn identify_controller(shared: &Shared) -> IdentifyController {
    let mut id = IdentifyController::new_zeroed();
    id.vid = 0x1b36;
    id.ssvid = 0x1af4;
    pad(&mut id.sn, &shared.fixed.serial);
    pad(&mut id.mn, "QEMU NVMe Ctrl");
    pad(&mut id.fr, FIRMWARE_REVISION);
    id.rab = 6;
    id.ieee = [0x00, 0x54, 0x52];
    id.mdts = MDTS;
    id.cntlid = 0;
    id.ver = super::VS;
    id.oaes = 1 << 8;
    id.ctratt = 1 << 15;
    id.cntrltype = 1;
    // Namespace Management, Format NVM and Doorbell Buffer Config, as QEMU
    // advertises them (its Namespace Management opcode is not implemented).
    id.oacs = (1 << 3) | (1 << 1) | (1 << 8);
    id.acl = 3;
    id.aerl = AERL;
    // One slot, slot 1 read-only.
    id.frmw = (1 << 1) | 1;
    id.lpa = 0x7;
    id.wctemp = TEMPERATURE_WARNING;
    id.cctemp = TEMPERATURE_CRITICAL;
    id.sqes = 0x66;
    id.cqes = 0x44;
    id.nn = MAX_NSID;
    // Compare, DSM, Write Zeroes, Save/Select in features, Timestamp, Copy.
    id.oncs = 0x1 | 0x4 | 0x8 | 0x10 | 0x40 | 0x100;
    // A volatile write cache; Flush accepts the broadcast NSID.
    id.vwc = 0x1 | (3 << 1);
    id.ocfs = 0x3;
    id.sgls = 0x1;
    let nqn = format!("nqn.2019-08.org.qemu:{}", shared.fixed.serial);
    let n = nqn.len().min(id.subnqn.len() - 1);
    id.subnqn[..n].copy_from_slice(&nqn.as_bytes()[..n]);
    // Power state 0: 25 W, entry latency 16 us, exit latency 4 us.
    id.psd[0][0..2].copy_from_slice(&0x9c4u16.to_le_bytes());
    id.psd[0][4..8].copy_from_slice(&0x10u32.to_le_bytes());
    id.psd[0][8..12].copy_from_slice(&0x4u32.to_le_bytes());
    id
}

/// Space-padded ASCII, cut to the field (QEMU's `strpadcpy`).
fn pad(field: &mut [u8], text: &str) {
    field.fill(b' ');
    let n = text.len().min(field.len());
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

fn identify(shared: &Shared, c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Status {
    let cns = cmd.cdw10 & 0xff;
    let csi = cmd.cdw11 >> 24;
    let nsid = cmd.nsid;
    let mut page = vec![0u8; 4096];
    // Namespace-returning CNS values: a valid NSID with no namespace gets
    // a zeroed structure, success.
    let ns_check = |page: &mut Vec<u8>, fill: &dyn Fn(&mut Vec<u8>)| -> Result<(), Status> {
        if !nsid_valid(nsid) || nsid == BROADCAST {
            return Err(Status::INVALID_NAMESPACE.with_dnr());
        }
        if nsid == 1 {
            fill(page);
        }
        Ok(())
    };
    let status = match cns {
        // Namespace, active or allocated (there is no subsystem).
        0x00 | 0x11 => ns_check(&mut page, &|p| {
            p.copy_from_slice(c.ns.identify().as_bytes());
        }),
        0x01 => {
            page.copy_from_slice(identify_controller(shared).as_bytes());
            Ok(())
        }
        // Active / allocated namespace ID lists.
        0x02 | 0x10 => {
            if nsid >= BROADCAST - 1 {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else {
                if nsid < 1 {
                    page[0..4].copy_from_slice(&1u32.to_le_bytes());
                }
                Ok(())
            }
        }
        0x03 => {
            if !nsid_valid(nsid) || nsid == BROADCAST {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else if nsid != 1 {
                // QEMU: Invalid Field, where the specification asks for
                // Invalid Namespace.
                Err(Status::INVALID_FIELD.with_dnr())
            } else {
                // No UUID or EUI-64 (QEMU sets them only for nvme-ns
                // devices): the Command Set Identifier alone, NVM.
                page[0] = 0x04;
                page[1] = 0x01;
                Ok(())
            }
        }
        // I/O command set specific namespace (NVM: all zero here).
        0x05 | 0x1b => {
            if !nsid_valid(nsid) || nsid == BROADCAST {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else if nsid != 1 || csi == 0 {
                Ok(())
            } else {
                Err(Status::INVALID_FIELD.with_dnr())
            }
        }
        // I/O command set specific controller.
        0x06 => match csi {
            0 => {
                page[0] = io::VSL;
                page[4..8].copy_from_slice(&io::dmrsl(c.ns.block_size).to_le_bytes());
                Ok(())
            }
            2 => Ok(()),
            _ => Err(Status::INVALID_FIELD.with_dnr()),
        },
        // I/O command set specific active / allocated namespace lists.
        0x07 | 0x1a => {
            if nsid >= BROADCAST - 1 {
                Err(Status::INVALID_NAMESPACE.with_dnr())
            } else if csi != 0 && csi != 2 {
                Err(Status::INVALID_FIELD.with_dnr())
            } else {
                if nsid < 1 && csi == 0 {
                    page[0..4].copy_from_slice(&1u32.to_le_bytes());
                }
                Ok(())
            }
        }
        // Controller lists need a subsystem, which this controller lacks.
        0x12 | 0x13 => Err(Status::INVALID_FIELD.with_dnr()),
        // Primary controller capabilities.
        0x14 => {
            // CRT: queue and interrupt resources; VQPRT: 65 queues and
            // VIPRT: every vector, both private; granularity 1; nothing
            // flexible (no SR-IOV).
            page[4] = 0x3;
            page[42..44].copy_from_slice(&(IO_QUEUE_PAIRS as u16 + 1).to_le_bytes());
            page[46..48].copy_from_slice(&1u16.to_le_bytes());
            page[74..76].copy_from_slice(&shared.fixed.vectors.to_le_bytes());
            page[78..80].copy_from_slice(&1u16.to_le_bytes());
            Ok(())
        }
        // Secondary controller list: empty.
        0x15 => Ok(()),
        // I/O command set combinations: NVM and Zoned.
        0x1c => {
            page[0] = 0x1 | 0x4;
            Ok(())
        }
        _ => Err(Status::INVALID_FIELD.with_dnr()),
    };
    match status {
        Ok(()) => c2h(c, ctx, cmd, &page),
        Err(s) => s,
    }
}

fn get_features(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command) -> Outcome {
    let fid = (cmd.cdw10 & 0xff) as u8;
    let sel = (cmd.cdw10 >> 8) & 0x7;
    let dw11 = cmd.cdw11;
    let nsid = cmd.nsid;
    let Some(caps) = feature_caps(fid) else {
        return done(Status::INVALID_FIELD.with_dnr());
    };
    if caps & 2 != 0 {
        if !nsid_valid(nsid) || nsid == BROADCAST {
            return done(Status::INVALID_NAMESPACE.with_dnr());
        }
        if nsid != 1 {
            return done(Status::INVALID_FIELD.with_dnr());
        }
    }
    let current = match sel {
        0 => true,
        // Saved reads the defaults (nothing is saveable).
        1 | 2 => false,
        3 => return Some((Status::SUCCESS, caps)),
        // 4 to 7 are reserved; QEMU treats them as "current".
        _ => true,
    };
    let composite = (dw11 >> 16) & 0xf == 0;
    let thsel = (dw11 >> 20) & 0x3;
    if current {
        match fid {
            feature::TEMPERATURE_THRESHOLD => {
                if !composite {
                    return Some((Status::SUCCESS, 0));
                }
                return match thsel {
                    0 => Some((Status::SUCCESS, c.features.temp_over.into())),
                    1 => Some((Status::SUCCESS, c.features.temp_under.into())),
                    _ => done(Status::INVALID_FIELD.with_dnr()),
                };
            }
            feature::ERROR_RECOVERY => return Some((Status::SUCCESS, c.features.err_rec)),
            feature::VOLATILE_WRITE_CACHE => {
                return Some((Status::SUCCESS, u32::from(c.features.write_cache)));
            }
            feature::ASYNC_EVENT_CONFIG => {
                return Some((Status::SUCCESS, c.features.async_config));
            }
            feature::TIMESTAMP => {
                let elapsed = ctx.now().saturating_sub(c.features.timestamp_set_at);
                let ms = c
                    .features
                    .host_timestamp
                    .wrapping_add(elapsed.as_millis() as u64);
                let mut ts = ms & ((1 << 48) - 1);
                if c.features.host_timestamp != 0 {
                    ts |= 1 << 49;
                }
                return done(c2h(c, ctx, cmd, &ts.to_le_bytes()));
            }
            HOST_BEHAVIOR_SUPPORT => {
                let hbs = *c.features.host_behavior;
                return done(c2h(c, ctx, cmd, &hbs));
            }
            _ => {}
        }
    }
    let result = match fid {
        feature::TEMPERATURE_THRESHOLD if composite && thsel == 0 => TEMPERATURE_WARNING.into(),
        // Both counts are always the maximum, 64 I/O queues (0's based).
        feature::NUMBER_OF_QUEUES => (IO_QUEUE_PAIRS - 1) | ((IO_QUEUE_PAIRS - 1) << 16),
        feature::INTERRUPT_VECTOR_CONFIG => {
            let iv = dw11 & 0xffff;
            if iv > IO_QUEUE_PAIRS {
                return done(Status::INVALID_FIELD.with_dnr());
            }
            // Coalescing disable is reported for the admin CQ's vector, 0.
            if iv == 0 { iv | (1 << 16) } else { iv }
        }
        // Arbitration: no burst limit.
        feature::ARBITRATION => 0x7,
        _ => 0,
    };
    Some((Status::SUCCESS, result))
}

fn set_features(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command, todo: &mut Todo) -> Outcome {
    let fid = (cmd.cdw10 & 0xff) as u8;
    let save = cmd.cdw10 >> 31 != 0;
    let dw11 = cmd.cdw11;
    let nsid = cmd.nsid;
    let caps = feature_caps(fid);
    if save && caps.unwrap_or(0) & 1 == 0 {
        return done(Status::FEATURE_NOT_SAVEABLE.with_dnr());
    }
    let Some(caps) = caps else {
        return done(Status::INVALID_FIELD.with_dnr());
    };
    if caps & 2 != 0 {
        if nsid != BROADCAST {
            if !nsid_valid(nsid) {
                return done(Status::INVALID_NAMESPACE.with_dnr());
            }
            if nsid != 1 {
                return done(Status::INVALID_FIELD.with_dnr());
            }
        }
    } else if nsid != 0 && nsid != BROADCAST {
        if !nsid_valid(nsid) {
            return done(Status::INVALID_NAMESPACE.with_dnr());
        }
        return done(Status::FEATURE_NOT_NS_SPECIFIC.with_dnr());
    }
    if caps & 4 == 0 {
        return done(Status::FEATURE_NOT_CHANGEABLE.with_dnr());
    }
    match fid {
        feature::TEMPERATURE_THRESHOLD => {
            if (dw11 >> 16) & 0xf == 0 {
                match (dw11 >> 20) & 0x3 {
                    0 => c.features.temp_over = dw11 as u16,
                    1 => c.features.temp_under = dw11 as u16,
                    _ => return done(Status::INVALID_FIELD.with_dnr()),
                }
                if TEMPERATURE >= c.features.temp_over || TEMPERATURE <= c.features.temp_under {
                    // A SMART temperature event, if the host enabled it.
                    if c.features.async_config & (1 << 1) != 0 {
                        queues::enqueue_event(c, AER_SMART, 0x01, 0x02, todo);
                    }
                }
            }
        }
        // Error recovery is stored (the namespace supports DULBE), but
        // the check it enables is not modelled.
        feature::ERROR_RECOVERY => c.features.err_rec = dw11,
        feature::VOLATILE_WRITE_CACHE => c.features.write_cache = dw11 & 1 != 0,
        feature::NUMBER_OF_QUEUES => {
            if c.qs_created {
                return done(Status::COMMAND_SEQUENCE_ERROR.with_dnr());
            }
            if dw11 & 0xffff == 0xffff || dw11 >> 16 == 0xffff {
                return done(Status::INVALID_FIELD.with_dnr());
            }
            // Whatever was asked, the controller allocates its maximum.
            return Some((
                Status::SUCCESS,
                (IO_QUEUE_PAIRS - 1) | ((IO_QUEUE_PAIRS - 1) << 16),
            ));
        }
        feature::ASYNC_EVENT_CONFIG => c.features.async_config = dw11,
        feature::TIMESTAMP => {
            let mut ts = [0u8; 8];
            let s = h2c(c, ctx, cmd, &mut ts);
            if !s.is_success() {
                return done(s);
            }
            c.features.set_timestamp(u64::from_le_bytes(ts), ctx.now());
        }
        HOST_BEHAVIOR_SUPPORT => {
            let mut hbs = [0u8; 512];
            let s = h2c(c, ctx, cmd, &mut hbs);
            if s.is_success() {
                *c.features.host_behavior = hbs;
            }
            return done(s);
        }
        COMMAND_SET_PROFILE => {
            if dw11 & 0x1ff != 0 {
                return done(Status::COMMAND_SET_COMBINATION_REJECTED.with_dnr());
            }
        }
        _ => return done(Status::FEATURE_NOT_CHANGEABLE.with_dnr()),
    }
    done(Status::SUCCESS)
}

/// Get Log Page: offsets must be dword-aligned and the length within MDTS
/// (both Invalid Field with DNR); an offset past the page is Invalid Field.
fn get_log(c: &mut Ctrl, ctx: &DeviceContext<'_>, cmd: &Command, todo: &mut Todo) -> Status {
    let lid = (cmd.cdw10 & 0xff) as u8;
    let rae = cmd.cdw10 & (1 << 15) != 0;
    // QEMU computes the length in 32 bits: NUMD FFFFFFFFh wraps to 0 bytes
    // (and succeeds, transferring nothing).
    let numd = (cmd.cdw10 >> 16) | ((cmd.cdw11 & 0xffff) << 16);
    let len = u64::from(numd.wrapping_add(1) << 2);
    let off = u64::from(cmd.cdw12) | (u64::from(cmd.cdw13) << 32);
    if off % 4 != 0 {
        return Status::INVALID_FIELD.with_dnr();
    }
    if let Err(s) = io::check_mdts(c, len) {
        return s;
    }
    let page: Vec<u8> = match lid {
        0x01 => {
            if !rae {
                queues::clear_events(c, AER_ERROR, todo);
            }
            // QEMU keeps no errors: one zeroed entry, copied from its start
            // whatever the offset.
            if off >= 64 {
                return Status::INVALID_FIELD.with_dnr();
            }
            let n = (64 - off).min(len) as usize;
            return c2h(c, ctx, cmd, &vec![0u8; n]);
        }
        0x02 => {
            let nsid = cmd.nsid;
            if off >= 512 {
                return Status::INVALID_FIELD.with_dnr();
            }
            // NSID 0 is Invalid Namespace in QEMU 7.2; the specification
            // reads it as "the controller".
            if nsid != BROADCAST && nsid != 1 {
                return Status::INVALID_NAMESPACE.with_dnr();
            }
            let mut smart = SmartLog::new_zeroed();
            smart.temperature = TEMPERATURE.to_le_bytes();
            if TEMPERATURE >= c.features.temp_over || TEMPERATURE <= c.features.temp_under {
                smart.critical_warning |= 1 << 1;
            }
            let units = |bytes: u64| ((bytes >> 9).div_ceil(1000)).to_le_bytes();
            smart.data_units_read[..8].copy_from_slice(&units(c.stats.bytes_read));
            smart.data_units_written[..8].copy_from_slice(&units(c.stats.bytes_written));
            smart.host_read_commands[..8].copy_from_slice(&c.stats.reads.to_le_bytes());
            smart.host_write_commands[..8].copy_from_slice(&c.stats.writes.to_le_bytes());
            let hours = ctx.now().as_secs() / 3600;
            smart.power_on_hours[..8].copy_from_slice(&hours.to_le_bytes());
            if !rae {
                queues::clear_events(c, AER_SMART, todo);
            }
            smart.as_bytes().to_vec()
        }
        0x03 => {
            if off >= 512 {
                return Status::INVALID_FIELD.with_dnr();
            }
            let mut fw = FirmwareSlotLog::new_zeroed();
            fw.afi = 1;
            pad(&mut fw.frs[0], "1.0");
            fw.as_bytes().to_vec()
        }
        0x04 => {
            if off >= 4096 {
                return Status::INVALID_FIELD.with_dnr();
            }
            if !rae {
                queues::clear_events(c, AER_NOTICE, todo);
            }
            vec![0u8; 4096]
        }
        0x05 => {
            if off >= 4096 {
                return Status::INVALID_FIELD.with_dnr();
            }
            let mut log = vec![0u8; 4096];
            let mut set = |index: usize, v: u32| {
                log[index * 4..index * 4 + 4].copy_from_slice(&v.to_le_bytes());
            };
            for op in [
                0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0a, 0x0c, 0x1c, 0x7c,
            ] {
                set(op, 1);
            }
            set(0x15, 1 | (1 << 3));
            set(0x80, 1 | (1 << 1));
            let css = (c.regs.get32(super::reg::CC) >> 4) & 7;
            let csi = cmd.cdw14 >> 24;
            if css == 0 || (css == 6 && (csi == 0 || csi == 2)) {
                for (op, eff) in [
                    (0x00, 3),
                    (0x08, 3),
                    (0x01, 3),
                    (0x02, 1),
                    (0x09, 3),
                    (0x0c, 1),
                    (0x19, 3),
                    (0x05, 1),
                ] {
                    set(256 + op, eff);
                }
                if css == 6 && csi == 2 {
                    set(256 + 0x7d, 3);
                    set(256 + 0x79, 3);
                    set(256 + 0x7a, 1);
                }
            }
            log
        }
        _ => return Status::INVALID_FIELD.with_dnr(),
    };
    let from = off as usize;
    let n = (page.len() - from).min(len as usize);
    c2h(c, ctx, cmd, &page[from..from + n])
}
