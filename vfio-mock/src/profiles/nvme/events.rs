//! Asynchronous events (`nvme_enqueue_event`, `nvme_process_aers`): queued
//! events complete outstanding Asynchronous Event Requests, one per event
//! type until the host reads that type's log page.

use super::Ctrl;
use super::queues::{Todo, complete};
use nvme_spec::Status;

/// Asynchronous event type "error status".
pub(super) const AER_ERROR: u8 = 0;
/// Asynchronous event type "SMART / health status".
pub(super) const AER_SMART: u8 = 1;
/// Asynchronous event type "notice".
pub(super) const AER_NOTICE: u8 = 2;
/// Error event information for a doorbell write to a queue that does not
/// exist. QEMU 7.2 numbers it 0 (the specification's 0 is "write to invalid
/// submission queue", and "invalid doorbell register" is 1).
pub(super) const AER_INFO_INVALID_DB_REGISTER: u8 = 0;
/// Error event information for a doorbell value beyond the queue: QEMU
/// numbers it 1 (the specification's "invalid doorbell write value" is 2).
pub(super) const AER_INFO_INVALID_DB_VALUE: u8 = 1;
/// Log page of error events (Error Information).
pub(super) const LOG_ERROR: u8 = 0x01;
/// How many events QEMU queues at most (`aer_max_queued`).
const AER_MAX_QUEUED: usize = 64;

/// Queues an asynchronous event (dropped when 64 are queued) and reports
/// what it can.
pub(super) fn enqueue_event(c: &mut Ctrl, kind: u8, info: u8, log: u8, todo: &mut Todo) {
    if c.aer_queue.len() >= AER_MAX_QUEUED {
        return;
    }
    c.aer_queue.push_back((kind, info, log));
    process_aers(c, todo);
}

/// Completes outstanding event requests with queued events whose type is
/// not masked (`nvme_process_aers`). QEMU completes the request submitted
/// last first.
pub(super) fn process_aers(c: &mut Ctrl, todo: &mut Todo) {
    let mut i = 0;
    while i < c.aer_queue.len() {
        if c.aer_reqs.is_empty() {
            break;
        }
        let (kind, info, log) = c.aer_queue[i];
        if c.aer_mask & (1 << (kind & 7)) != 0 {
            i += 1;
            continue;
        }
        c.aer_queue.remove(i);
        c.aer_mask |= 1 << (kind & 7);
        let Some(cid) = c.aer_reqs.pop() else {
            break;
        };
        let Some(serial) = c.sqs[0].as_ref().map(|s| s.serial) else {
            continue;
        };
        let result = u32::from(kind) | (u32::from(info) << 8) | (u32::from(log) << 16);
        complete(c, 0, serial, cid, Status::SUCCESS, result, todo);
    }
}

/// Clears an event type's mask (its log page was read) and reports the
/// events that were waiting for it.
pub(super) fn clear_events(c: &mut Ctrl, kind: u8, todo: &mut Todo) {
    c.aer_mask &= !(1 << kind);
    if !c.aer_queue.is_empty() {
        process_aers(c, todo);
    }
}
