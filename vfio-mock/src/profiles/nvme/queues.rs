//! Submission and completion queues, the doorbells and the controller's
//! fetch-and-complete loop (`nvme_process_db`, `nvme_process_sq`,
//! `nvme_post_cqes`).

use super::{CSTS_CFS, Ctrl, IO_QUEUE_PAIRS, Shared, admin, events, io, irq, reg};
use crate::model::DeviceContext;
use nvme_spec::{Command, Completion, Status};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use zerocopy::{FromBytes, IntoBytes};

/// A submission queue.
#[derive(Debug)]
pub(super) struct Sq {
    pub(super) base: u64,
    pub(super) size: u16,
    pub(super) head: u16,
    /// The tail; from a shadow doorbell it is whatever the host wrote.
    pub(super) tail: u32,
    pub(super) cqid: u16,
    pub(super) serial: u64,
    /// Shadow doorbell and event index addresses (Doorbell Buffer Config).
    pub(super) shadow: Option<(u64, u64)>,
    /// Requests not in flight: QEMU gives a queue as many as its size, and
    /// a fetched command holds one until its completion is posted.
    pub(super) free: u16,
    /// I/O commands fetched and waiting for the virtual clock.
    pub(super) inflight: VecDeque<(u64, Command)>,
    next_inflight: u64,
}

impl Sq {
    pub(super) fn new(base: u64, size: u16, cqid: u16, serial: u64) -> Self {
        Self {
            base,
            size,
            head: 0,
            tail: 0,
            cqid,
            serial,
            shadow: None,
            free: size,
            inflight: VecDeque::new(),
            next_inflight: 0,
        }
    }
}

/// A finished command waiting for a slot in its completion queue.
#[derive(Debug, Clone, Copy)]
pub(super) struct Done {
    pub(super) sqid: u16,
    pub(super) serial: u64,
    pub(super) cid: u16,
    pub(super) status: Status,
    pub(super) result: u32,
}

/// A completion queue.
#[derive(Debug)]
pub(super) struct Cq {
    pub(super) base: u64,
    pub(super) size: u16,
    /// The head; from a shadow doorbell it is whatever the host wrote.
    pub(super) head: u32,
    pub(super) tail: u16,
    pub(super) phase: bool,
    /// Shadow doorbell and event index addresses (Doorbell Buffer Config).
    pub(super) shadow: Option<(u64, u64)>,
    pub(super) irq_enabled: bool,
    pub(super) vector: u16,
    pub(super) pending: VecDeque<Done>,
}

impl Cq {
    pub(super) fn new(base: u64, size: u16, irq_enabled: bool, vector: u16) -> Self {
        Self {
            base,
            size,
            head: 0,
            tail: 0,
            phase: true,
            shadow: None,
            irq_enabled,
            vector,
            pending: VecDeque::new(),
        }
    }

    fn full(&self) -> bool {
        u32::from((self.tail + 1) % self.size) == self.head
    }
}

/// Work the controller does on its own time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Work {
    /// Fetch and run commands from this SQ.
    Sq(u16),
    /// Post this CQ's finished commands.
    Cq(u16),
}

/// Work to do before the controller is idle again, each item once (as a
/// QEMU bottom half scheduled twice runs once). The first few items are
/// kept inline: a doorbell or a job rarely makes more, and this is made
/// for every one of them.
#[derive(Debug, Default)]
pub(super) struct Todo {
    /// The first items, in order.
    inline: [Option<Work>; TODO_INLINE],
    /// Items after those, once the inline ones are all taken.
    more: VecDeque<Work>,
}

/// Items a [`Todo`] holds without allocating.
const TODO_INLINE: usize = 4;

impl Todo {
    pub(super) fn push(&mut self, w: Work) {
        if self.inline.contains(&Some(w)) || self.more.contains(&w) {
            return;
        }
        if self.more.is_empty() {
            if let Some(free) = self.inline.iter_mut().find(|i| i.is_none()) {
                *free = Some(w);
                return;
            }
        }
        self.more.push_back(w);
    }

    /// Takes the first item.
    fn pop_front(&mut self) -> Option<Work> {
        match self.inline.iter().position(Option::is_some) {
            Some(at) => {
                let w = self.inline[at].take();
                // Keep the inline items first-to-last from index 0.
                self.inline[at..].rotate_left(1);
                w
            }
            None => self.more.pop_front(),
        }
    }

    /// Puts `w` back in front.
    fn push_front(&mut self, w: Work) {
        let mut all: VecDeque<Work> = std::iter::once(w).collect();
        while let Some(x) = self.pop_front() {
            all.push_back(x);
        }
        self.more = all;
    }

    /// Adds `other`'s work after this one's.
    pub(super) fn extend(&mut self, mut other: Todo) {
        while let Some(w) = other.pop_front() {
            self.push(w);
        }
    }
}

/// Commands one job fetches at most before handing the rest of its work
/// to a new job, so a host that keeps the controller busy (a shadow
/// doorbell beyond its queue, say) never holds the lock for long.
const BUDGET: usize = 1024;

/// Runs `todo` and whatever it leads to with the lock held, then lets the
/// lock go and sends the MSI-X messages that work raised.
pub(super) fn run(
    shared: &Arc<Shared>,
    mut c: parking_lot::MutexGuard<'_, Ctrl>,
    ctx: &DeviceContext<'_>,
    todo: Todo,
) {
    run_locked(shared, &mut c, ctx, todo);
    let messages = std::mem::take(&mut c.msix_out);
    drop(c);
    for vector in messages {
        ctx.raise(crate::model::Irq::Msix(u32::from(vector)));
    }
}

/// Runs `todo` and whatever it leads to, with the lock held.
fn run_locked(shared: &Arc<Shared>, c: &mut Ctrl, ctx: &DeviceContext<'_>, mut todo: Todo) {
    let mut budget = BUDGET;
    while let Some(w) = todo.pop_front() {
        match w {
            Work::Sq(qid) => {
                if !process_sq(shared, c, ctx, qid, &mut todo, &mut budget) {
                    todo.push_front(w);
                    flush(shared, c, ctx, todo);
                    return;
                }
            }
            Work::Cq(qid) => post_cqes(c, ctx, qid, &mut todo),
        }
    }
}

/// Doorbell writes waiting for the controller to take them, in the order
/// they were written.
#[derive(Debug, Default)]
pub(super) struct Doorbells {
    /// The device epoch of the writes: they are dropped with the work the
    /// device had pending when it changes.
    epoch: u64,
    /// `(offset, value)` of each write.
    pub(super) writes: Vec<(u64, u32)>,
}

/// Runs `work` on the device's thread, unless the controller is reset first.
/// Doorbell writes waiting by then are taken too. Work already handed over
/// and not started yet is not handed over again: that job does it, with
/// whatever arrived meanwhile (as QEMU's bottom half, scheduled twice
/// before it runs, runs once).
pub(super) fn defer(shared: &Arc<Shared>, c: &mut Ctrl, ctx: &DeviceContext<'_>, work: Work) {
    let epoch = ctx.epoch();
    // Jobs of an older epoch were dropped unrun.
    c.handed.retain(|&(_, e)| e == epoch);
    if c.handed.contains(&(work, epoch)) {
        return;
    }
    c.handed.push((work, epoch));
    let generation = c.generation;
    let shared = shared.clone();
    ctx.defer(move |ctx| {
        let mut c = shared.ctrl.lock();
        let mut todo = Todo::default();
        if c.generation == generation {
            if let Some(at) = c.handed.iter().position(|&h| h == (work, epoch)) {
                c.handed.swap_remove(at);
            }
            todo.push(work);
        }
        todo.extend(take_doorbells(&shared, &mut c, ctx));
        run(&shared, c, ctx, todo);
    });
}

/// A doorbell write at `offset` (0x1000 and up).
///
/// A CQ head doorbell, and an SQ tail doorbell while the controller is
/// idle, take effect before the write returns, as QEMU's MMIO handler runs
/// them (a head doorbell can deassert INTx). An SQ tail doorbell that finds
/// the controller busy returns at once without waiting for it: the write
/// waits with any others the controller has not taken yet, the first of
/// them hands the device's thread a job that takes them all, and every
/// other register access takes them first, so a driver sees its own writes
/// in order. A busy controller so takes a burst of tail writes in one go,
/// as QEMU's SQ bottom half, scheduled again before it ran, runs once.
pub(super) fn ring(shared: &Arc<Shared>, ctx: &DeviceContext<'_>, offset: u64, value: u32) {
    // QEMU ignores misaligned doorbell writes.
    if offset % 4 != 0 {
        return;
    }
    let cq_head = ((offset - reg::DOORBELL_BASE) / 4) % 2 == 1;
    let locked = if cq_head {
        Some(shared.ctrl.lock())
    } else {
        shared.ctrl.try_lock()
    };
    if let Some(mut c) = locked {
        let mut todo = take_doorbells(shared, &mut c, ctx);
        doorbell(&mut c, ctx, offset, value, &mut todo);
        flush(shared, &mut c, ctx, todo);
        return;
    }
    let epoch = ctx.epoch();
    let first = {
        let mut d = shared.doorbells.lock();
        if d.epoch != epoch {
            // Left from before a reset, whose job was dropped.
            d.writes.clear();
            d.epoch = epoch;
        }
        d.writes.push((offset, value));
        shared.doorbells_waiting.store(true, Ordering::Release);
        d.writes.len() == 1
    };
    if first {
        let shared = shared.clone();
        ctx.defer(move |ctx| {
            let mut c = shared.ctrl.lock();
            let todo = take_doorbells(&shared, &mut c, ctx);
            run(&shared, c, ctx, todo);
        });
    }
}

/// Applies the doorbell writes waiting for the controller, in order: the
/// work they start.
pub(super) fn take_doorbells(shared: &Shared, c: &mut Ctrl, ctx: &DeviceContext<'_>) -> Todo {
    // Set (under the lock) with each write, before its writer hands over
    // the job that takes it or makes another register access.
    if !shared.doorbells_waiting.load(Ordering::Acquire) {
        return Todo::default();
    }
    let mut writes = std::mem::take(&mut c.doorbell_spare);
    {
        let mut d = shared.doorbells.lock();
        if d.epoch == ctx.epoch() {
            std::mem::swap(&mut writes, &mut d.writes);
        } else {
            d.writes.clear();
        }
        shared.doorbells_waiting.store(false, Ordering::Release);
    }
    let mut todo = Todo::default();
    for &(offset, value) in &writes {
        doorbell(c, ctx, offset, value, &mut todo);
    }
    writes.clear();
    c.doorbell_spare = writes;
    todo
}

/// The controller takes a doorbell write at `offset` (0x1000 and up,
/// 4-byte aligned). QEMU ignores a write to a queue that does not exist or
/// of a value beyond the queue's size, posting an error event for it if an
/// Asynchronous Event Request is outstanding.
fn doorbell(c: &mut Ctrl, ctx: &DeviceContext<'_>, offset: u64, value: u32, todo: &mut Todo) {
    let index = (offset - reg::DOORBELL_BASE) / 4;
    let qid = index / 2;
    let value = value as u16;
    if index % 2 == 1 {
        let Some(cq) = usize::try_from(qid)
            .ok()
            .and_then(|q| c.cqs.get_mut(q))
            .and_then(Option::as_mut)
        else {
            bad_doorbell(c, events::AER_INFO_INVALID_DB_REGISTER, todo);
            return;
        };
        if value >= cq.size {
            bad_doorbell(c, events::AER_INFO_INVALID_DB_VALUE, todo);
            return;
        }
        if cq.full() {
            todo.push(Work::Cq(qid as u16));
        }
        cq.head = value.into();
        if qid == 0 {
            if let Some((db, _)) = cq.shadow {
                let _ = ctx.dma_write(db, &cq.head.to_le_bytes());
            }
        }
        if u32::from(cq.tail) == cq.head {
            if cq.irq_enabled {
                c.cq_pending = c.cq_pending.wrapping_sub(1);
            }
            irq::irq_deassert(c, ctx, qid as u16);
        }
    } else {
        let Some(sq) = usize::try_from(qid)
            .ok()
            .and_then(|q| c.sqs.get_mut(q))
            .and_then(Option::as_mut)
        else {
            bad_doorbell(c, events::AER_INFO_INVALID_DB_REGISTER, todo);
            return;
        };
        if value >= sq.size {
            bad_doorbell(c, events::AER_INFO_INVALID_DB_VALUE, todo);
            return;
        }
        sq.tail = value.into();
        // QEMU mirrors admin doorbell writes into the shadow buffer, for
        // drivers that do not update it for the admin queue.
        if qid == 0 {
            if let Some((db, _)) = sq.shadow {
                let _ = ctx.dma_write(db, &sq.tail.to_le_bytes());
            }
        }
        todo.push(Work::Sq(qid as u16));
    }
}

/// Hands `todo` to the device's thread.
pub(super) fn flush(shared: &Arc<Shared>, c: &mut Ctrl, ctx: &DeviceContext<'_>, mut todo: Todo) {
    while let Some(w) = todo.pop_front() {
        defer(shared, c, ctx, w);
    }
}

fn bad_doorbell(c: &mut Ctrl, info: u8, todo: &mut Todo) {
    if !c.aer_reqs.is_empty() {
        events::enqueue_event(c, events::AER_ERROR, info, events::LOG_ERROR, todo);
    }
}

/// Fetches and runs commands while the SQ has some and requests to hold
/// them (`nvme_process_sq`). An SQ entry the controller cannot read sets
/// CSTS.CFS (QEMU writes CSTS as exactly CFS, clearing RDY).
/// False when it stopped with commands left because `budget` ran out.
fn process_sq(
    shared: &Arc<Shared>,
    c: &mut Ctrl,
    ctx: &DeviceContext<'_>,
    qid: u16,
    todo: &mut Todo,
    budget: &mut usize,
) -> bool {
    // The buffer is kept for its capacity (a walk that finds it taken,
    // which none does, starts an empty one).
    let mut drive = std::mem::take(&mut c.drive_spare);
    let done = fetch(shared, c, ctx, qid, todo, budget, &mut drive);
    // What went to the drive comes back after the walk, last first.
    for (serial, cid, status, result) in drive.drain(..).rev() {
        complete(c, qid, serial, cid, status, result, todo);
    }
    c.drive_spare = drive;
    done
}

/// The walk of `process_sq`: commands QEMU finishes in the block layer go
/// to `drive` instead of their CQ.
#[allow(clippy::too_many_arguments)]
fn fetch(
    shared: &Arc<Shared>,
    c: &mut Ctrl,
    ctx: &DeviceContext<'_>,
    qid: u16,
    todo: &mut Todo,
    budget: &mut usize,
    drive: &mut Vec<(u64, u16, Status, u32)>,
) -> bool {
    if let Some(sq) = c.sqs.get_mut(usize::from(qid)).and_then(Option::as_mut) {
        shadow_tail(ctx, sq);
    }
    loop {
        let Some(sq) = c.sqs.get_mut(usize::from(qid)).and_then(Option::as_mut) else {
            return true;
        };
        if u32::from(sq.head) == sq.tail || sq.free == 0 {
            return true;
        }
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let mut raw = [0u8; 64];
        if ctx
            .dma_read(
                sq.base
                    .wrapping_add(u64::from(sq.head) * nvme_spec::SQE_SIZE as u64),
                &mut raw,
            )
            .is_err()
        {
            c.regs.set32(reg::CSTS, CSTS_CFS);
            return true;
        }
        sq.head = (sq.head + 1) % sq.size;
        sq.free -= 1;
        let serial = sq.serial;
        if let Some((_, ei)) = sq.shadow {
            let _ = ctx.dma_write(ei, &sq.tail.to_le_bytes());
            shadow_tail(ctx, sq);
        }
        let cmd = Command::read_from_bytes(&raw).unwrap_or_default();
        if qid == 0 {
            if let Some((status, result)) = admin::execute(shared, c, ctx, &cmd, todo) {
                complete(c, 0, serial, cmd.cid(), status, result, todo);
            }
        } else if shared.fixed.latency.is_zero() {
            let (status, result, asynchronous) = io::execute(c, ctx, &cmd);
            if asynchronous {
                drive.push((serial, cmd.cid(), status, result));
            } else {
                complete(c, qid, serial, cmd.cid(), status, result, todo);
            }
        } else {
            let id = sq.next_inflight;
            sq.next_inflight += 1;
            sq.inflight.push_back((id, cmd));
            let generation = c.generation;
            let shared2 = shared.clone();
            ctx.schedule(shared.fixed.latency, move |ctx| {
                let mut c = shared2.lock(ctx);
                if c.generation != generation {
                    return;
                }
                let mut todo = Todo::default();
                finish_inflight(&mut c, ctx, qid, serial, Some(id), &mut todo);
                run(&shared2, c, ctx, todo);
            });
        }
    }
}

/// Takes an SQ's tail from its shadow doorbell, if it has one (an
/// unreadable shadow reads as 0).
fn shadow_tail(ctx: &DeviceContext<'_>, sq: &mut Sq) {
    if let Some((db, _)) = sq.shadow {
        let mut v = [0u8; 4];
        let _ = ctx.dma_read(db, &mut v);
        sq.tail = u32::from_le_bytes(v);
    }
}

/// Runs I/O commands of SQ `qid` (if it is still queue `serial`) that wait
/// for the clock: the one numbered `only`, or all of them.
pub(super) fn finish_inflight(
    c: &mut Ctrl,
    ctx: &DeviceContext<'_>,
    qid: u16,
    serial: u64,
    only: Option<u64>,
    todo: &mut Todo,
) {
    loop {
        let Some(sq) = c.sqs.get_mut(usize::from(qid)).and_then(Option::as_mut) else {
            return;
        };
        if sq.serial != serial {
            return;
        }
        let at = match only {
            Some(id) => sq.inflight.iter().position(|(i, _)| *i == id),
            None => (!sq.inflight.is_empty()).then_some(0),
        };
        let Some((_, cmd)) = at.and_then(|at| sq.inflight.remove(at)) else {
            return;
        };
        let (status, result, _) = io::execute(c, ctx, &cmd);
        complete(c, qid, serial, cmd.cid(), status, result, todo);
        if only.is_some() {
            return;
        }
    }
}

/// Queues a finished command's completion on its SQ's CQ.
pub(super) fn complete(
    c: &mut Ctrl,
    sqid: u16,
    serial: u64,
    cid: u16,
    status: Status,
    result: u32,
    todo: &mut Todo,
) {
    let Some(cqid) = c
        .sqs
        .get(usize::from(sqid))
        .and_then(Option::as_ref)
        .filter(|s| s.serial == serial)
        .map(|s| s.cqid)
    else {
        return;
    };
    if let Some(cq) = c.cqs.get_mut(usize::from(cqid)).and_then(Option::as_mut) {
        cq.pending.push_back(Done {
            sqid,
            serial,
            cid,
            status,
            result,
        });
        todo.push(Work::Cq(cqid));
    }
}

/// Writes finished commands into CQ `cqid` while it has room, then
/// interrupts if it holds entries the host has not consumed
/// (`nvme_post_cqes`). A CQ entry the controller cannot write sets CSTS.CFS.
pub(super) fn post_cqes(c: &mut Ctrl, ctx: &DeviceContext<'_>, cqid: u16, todo: &mut Todo) {
    let Ctrl {
        sqs,
        cqs,
        regs,
        cq_pending,
        ..
    } = c;
    let Some(cq) = cqs.get_mut(usize::from(cqid)).and_then(Option::as_mut) else {
        return;
    };
    let pending = cq.head != u32::from(cq.tail);
    while let Some(done) = cq.pending.front().copied() {
        if let Some((db, ei)) = cq.shadow {
            let _ = ctx.dma_write(ei, &cq.head.to_le_bytes());
            let mut v = [0u8; 4];
            let _ = ctx.dma_read(db, &mut v);
            cq.head = u32::from_le_bytes(v);
        }
        if cq.full() {
            break;
        }
        let sq = sqs
            .get_mut(usize::from(done.sqid))
            .and_then(Option::as_mut)
            .filter(|s| s.serial == done.serial);
        let sq_head = sq.as_ref().map_or(0, |s| s.head);
        let completion = Completion {
            result: done.result,
            dw1: 0,
            sq_head,
            sq_id: done.sqid,
            cid: done.cid,
            status: done.status.to_word(cq.phase),
        };
        let entry = completion.as_bytes();
        let at = cq
            .base
            .wrapping_add(u64::from(cq.tail) * nvme_spec::CQE_SIZE as u64);
        // The phase tag is in the last word: write it last.
        if ctx.dma_write(at, &entry[..12]).is_err()
            || ctx.dma_write(at.wrapping_add(12), &entry[12..]).is_err()
        {
            regs.set32(reg::CSTS, CSTS_CFS);
            break;
        }
        cq.pending.pop_front();
        cq.tail += 1;
        if cq.tail >= cq.size {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        if let Some(sq) = sq {
            let starved = sq.free == 0;
            sq.free += 1;
            if starved && u32::from(sq.head) != sq.tail {
                todo.push(Work::Sq(done.sqid));
            }
        }
    }
    if u32::from(cq.tail) != cq.head {
        if cq.irq_enabled && !pending {
            *cq_pending = cq_pending.wrapping_add(1);
        }
        irq::irq_assert(c, ctx, cqid);
    }
}

/// True if `qid` names an existing SQ (`nvme_check_sqid`).
pub(super) fn sq_exists(c: &Ctrl, qid: u32) -> bool {
    qid <= IO_QUEUE_PAIRS && c.sqs.get(qid as usize).is_some_and(Option::is_some)
}

/// True if `qid` names an existing CQ (`nvme_check_cqid`).
pub(super) fn cq_exists(c: &Ctrl, qid: u32) -> bool {
    qid <= IO_QUEUE_PAIRS && c.cqs.get(qid as usize).is_some_and(Option::is_some)
}

#[cfg(test)]
mod tests {
    use super::{TODO_INLINE, Todo, Work};

    fn drain(mut t: Todo) -> Vec<Work> {
        std::iter::from_fn(|| t.pop_front()).collect()
    }

    #[test]
    fn a_todo_keeps_first_in_first_out_order_past_its_inline_items() {
        let mut t = Todo::default();
        let n = TODO_INLINE as u16 * 3;
        for q in 0..n {
            t.push(Work::Sq(q));
            t.push(Work::Sq(q));
        }
        assert_eq!(t.pop_front(), Some(Work::Sq(0)));
        t.push(Work::Cq(0));
        t.push(Work::Sq(1));
        t.push_front(Work::Sq(0));
        let mut want: Vec<Work> = (0..n).map(Work::Sq).collect();
        want.push(Work::Cq(0));
        assert_eq!(drain(t), want);
    }

    #[test]
    fn a_todo_pushed_after_some_are_taken_keeps_its_order() {
        let mut t = Todo::default();
        t.push(Work::Sq(1));
        t.push(Work::Sq(2));
        assert_eq!(t.pop_front(), Some(Work::Sq(1)));
        t.push(Work::Cq(1));
        let mut other = Todo::default();
        other.push(Work::Cq(1));
        other.push(Work::Sq(3));
        t.extend(other);
        assert_eq!(drain(t), [Work::Sq(2), Work::Cq(1), Work::Sq(3)]);
    }
}
