//! A submission and completion queue pair: entries in DMA memory, command
//! identifiers tracked per slot, the controller's SQ head honoured for
//! flow control, phase tags, and every completion checked before it is
//! believed.

use crate::buffer::{Dma, DmaBuffer, PAGE_SIZE};
use crate::error::{CommandRef, NvmeError, Result, Violation};
use nvme_spec::{CQE_SIZE, Command, Completion, SQE_SIZE, regs};
use parking_lot::Mutex;
use std::time::{Duration, Instant};
use vfio_core::{DmaMemory, Interrupt, IovaAllocator, MappedRegion, VfioBackend};

/// The most commands a queue tracks at once: a command identifier is the
/// slot (low byte) and the slot's generation (high byte).
pub const MAX_SLOTS: usize = 256;

/// How long an interrupt wait sleeps before it looks at the queue again,
/// in case another thread consumed the interrupt that carried this
/// command's completion.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// A command the driver submitted, to wait for with
/// [`Nvme::wait`](crate::Nvme::wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a submitted command is waited for, or its slot stays taken"]
pub struct Ticket {
    command: CommandRef,
    epoch: u32,
}

impl Ticket {
    /// The command: queue, identifier, opcode.
    pub fn command(&self) -> CommandRef {
        self.command
    }
}

/// What a command's slot page carries: each slot has a page of its own,
/// used for the command's PRP list or for a small data transfer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Page<'a> {
    /// Nothing.
    Unused,
    /// A PRP list: written to the page, PRP2 pointed at it.
    PrpList(&'a [u64]),
    /// Data to the controller: written to the page, PRP1 pointed at it.
    DataIn(&'a [u8]),
    /// Data from the controller: PRP1 pointed at the page, read back by
    /// [`Queue::wait`] before the slot is freed.
    DataOut,
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Free {
        generation: u8,
    },
    InFlight {
        generation: u8,
        /// Its waiter gave up: a late completion frees the slot.
        abandoned: bool,
    },
    Done {
        generation: u8,
        completion: Completion,
    },
}

#[derive(Debug)]
struct State {
    /// The next SQ entry the driver fills.
    tail: u16,
    /// The SQ head the controller last reported.
    head: u16,
    /// The next CQ entry to look at, and the phase tag it has when new.
    cq_head: u16,
    phase: bool,
    slots: Vec<Slot>,
    /// The violation that made the queue unusable.
    broken: Option<Violation>,
    /// Bumped by every controller reset: tickets of an older epoch are lost.
    epoch: u32,
}

impl State {
    fn new(slots: usize, epoch: u32, generations: impl Iterator<Item = u8>) -> Self {
        Self {
            tail: 0,
            head: 0,
            cq_head: 0,
            phase: true,
            slots: generations
                .take(slots)
                .map(|generation| Slot::Free { generation })
                .collect(),
            broken: None,
            epoch,
        }
    }
}

/// A queue pair with the same identifier for its SQ and CQ.
#[derive(Debug)]
pub(crate) struct Queue<B: VfioBackend> {
    qid: u16,
    entries: u16,
    memory: DmaBuffer<B>,
    cq_offset: usize,
    /// The device addresses of the SQ and the CQ, each contiguous.
    sq_address: u64,
    cq_address: u64,
    page_offset: usize,
    sq_doorbell: u64,
    cq_doorbell: u64,
    state: Mutex<State>,
}

impl<B: VfioBackend> Queue<B> {
    /// Orders the reads of DMA memory that follow after the completion
    /// just taken (as the slot page's read does).
    pub(crate) fn rmb(&self) {
        self.memory.memory().rmb();
    }

    /// A queue pair of `entries` entries (2 to 65536) in new DMA memory.
    pub(crate) fn new(
        backend: &B,
        dma: &Dma<B>,
        iovas: &IovaAllocator,
        qid: u16,
        entries: u16,
        dstrd: u8,
    ) -> Result<Self> {
        let slots = usize::from(entries - 1).min(MAX_SLOTS);
        let sq_bytes = (usize::from(entries) * SQE_SIZE).next_multiple_of(PAGE_SIZE);
        let cq_bytes = (usize::from(entries) * CQE_SIZE).next_multiple_of(PAGE_SIZE);
        let memory = DmaBuffer::new(backend, dma, iovas, sq_bytes + cq_bytes + slots * PAGE_SIZE)?;
        let sq_address = memory.contiguous(0, sq_bytes)?;
        let cq_address = memory.contiguous(sq_bytes, cq_bytes)?;
        Ok(Self {
            sq_address,
            cq_address,
            qid,
            entries,
            memory,
            cq_offset: sq_bytes,
            page_offset: sq_bytes + cq_bytes,
            sq_doorbell: regs::sq_tail_doorbell(qid, dstrd),
            cq_doorbell: regs::cq_head_doorbell(qid, dstrd),
            state: Mutex::new(State::new(slots, 0, std::iter::repeat(0))),
        })
    }

    pub(crate) fn qid(&self) -> u16 {
        self.qid
    }

    pub(crate) fn entries(&self) -> u16 {
        self.entries
    }

    pub(crate) fn sq_iova(&self) -> u64 {
        self.sq_address
    }

    pub(crate) fn cq_iova(&self) -> u64 {
        self.cq_address
    }

    fn page(&self, slot: usize) -> usize {
        self.page_offset + slot * PAGE_SIZE
    }

    /// Forgets every command (the controller was reset: nothing in flight
    /// survives) and zeroes the queues. Generations carry on, so a
    /// completion from before never matches a command from after.
    pub(crate) fn reset(&self) -> Result<()> {
        let mut s = self.state.lock();
        self.memory.zero()?;
        let generations: Vec<u8> = s
            .slots
            .iter()
            .map(|slot| match *slot {
                Slot::Free { generation }
                | Slot::InFlight { generation, .. }
                | Slot::Done { generation, .. } => generation,
            })
            .collect();
        *s = State::new(
            generations.len(),
            s.epoch.wrapping_add(1),
            generations.into_iter(),
        );
        Ok(())
    }

    /// Puts `command` in the queue with a fresh identifier and rings the
    /// doorbell.
    pub(crate) fn submit(
        &self,
        bar0: &B::Region,
        mut command: Command,
        page: Page<'_>,
    ) -> Result<Ticket> {
        let mut s = self.state.lock();
        if let Some(violation) = s.broken {
            return Err(NvmeError::QueueBroken {
                qid: self.qid,
                violation,
            });
        }
        if (s.tail + 1) % self.entries == s.head {
            drop(s);
            self.reap(bar0)?;
            s = self.state.lock();
            if (s.tail + 1) % self.entries == s.head {
                return Err(NvmeError::QueueFull(self.qid));
            }
        }
        let (slot, generation) = s
            .slots
            .iter()
            .enumerate()
            .find_map(|(i, slot)| match *slot {
                Slot::Free { generation } => Some((i, generation.wrapping_add(1))),
                _ => None,
            })
            .ok_or(NvmeError::QueueFull(self.qid))?;
        let cid = (u16::from(generation) << 8) | slot as u16;
        command.set_cid(cid);
        let mem = self.memory.memory();
        let page_iova = self.memory.device_address(self.page(slot));
        match page {
            Page::Unused => {}
            Page::PrpList(list) => {
                for (i, entry) in list.iter().enumerate() {
                    mem.write_u64(self.page(slot) + 8 * i, *entry)?;
                }
                command.prp2 = page_iova;
            }
            Page::DataIn(data) => {
                mem.write_at(self.page(slot), data)?;
                command.prp1 = page_iova;
            }
            Page::DataOut => {
                mem.write_at(self.page(slot), &[0; PAGE_SIZE])?;
                command.prp1 = page_iova;
            }
        }
        mem.write_obj(usize::from(s.tail) * SQE_SIZE, &command)?;
        s.slots[slot] = Slot::InFlight {
            generation,
            abandoned: false,
        };
        s.tail = (s.tail + 1) % self.entries;
        // The entry (and its PRP list) reach memory before the doorbell.
        mem.wmb();
        bar0.write_u32(self.sq_doorbell, u32::from(s.tail))?;
        Ok(Ticket {
            command: CommandRef {
                qid: self.qid,
                cid,
                opcode: command.opcode(),
            },
            epoch: s.epoch,
        })
    }

    /// Takes every new completion off the queue, checking each, and rings
    /// the CQ head doorbell for what it took.
    pub(crate) fn reap(&self, bar0: &B::Region) -> Result<()> {
        let mut s = self.state.lock();
        if s.broken.is_some() {
            return Ok(());
        }
        let mem = self.memory.memory();
        let start = s.cq_head;
        let mut outcome = Ok(());
        loop {
            let at = self.cq_offset + usize::from(s.cq_head) * CQE_SIZE;
            // Dword 3 holds the phase tag; what the controller wrote with it
            // is read only after it (dma_rmb).
            let dw3 = mem.load_acquire_u32(at + 12)?;
            if (dw3 >> 16) & 1 != u32::from(s.phase) {
                break;
            }
            let cqe: Completion = mem.read_obj(at)?;
            s.cq_head += 1;
            if s.cq_head == self.entries {
                s.cq_head = 0;
                s.phase = !s.phase;
            }
            if let Err(violation) = self.accept(&mut s, cqe) {
                s.broken = Some(violation);
                outcome = Err(NvmeError::Protocol {
                    qid: self.qid,
                    violation,
                });
                break;
            }
        }
        if s.cq_head != start {
            bar0.write_u32(self.cq_doorbell, u32::from(s.cq_head))?;
        }
        outcome
    }

    /// Checks one completion and hands it to its command's slot.
    fn accept(&self, s: &mut State, cqe: Completion) -> std::result::Result<(), Violation> {
        if cqe.sq_id != self.qid {
            return Err(Violation::WrongSqId { sq_id: cqe.sq_id });
        }
        if cqe.sq_head >= self.entries {
            return Err(Violation::SqHeadOutOfRange {
                sq_head: cqe.sq_head,
                entries: self.entries,
            });
        }
        let ahead = |to: u16| (to + self.entries - s.head) % self.entries;
        if ahead(cqe.sq_head) > ahead(s.tail) {
            return Err(Violation::SqHeadNotConsumed {
                sq_head: cqe.sq_head,
                head: s.head,
                tail: s.tail,
            });
        }
        let cid = cqe.cid;
        let (index, generation) = (usize::from(cid & 0xff), (cid >> 8) as u8);
        let slot = s
            .slots
            .get_mut(index)
            .ok_or(Violation::UnknownCid { cid })?;
        match *slot {
            Slot::InFlight {
                generation: g,
                abandoned,
                ..
            } if g == generation => {
                *slot = if abandoned {
                    Slot::Free { generation }
                } else {
                    Slot::Done {
                        generation,
                        completion: cqe,
                    }
                };
            }
            Slot::Done { generation: g, .. } | Slot::Free { generation: g } if g == generation => {
                return Err(Violation::DuplicateCid { cid });
            }
            _ => return Err(Violation::UnknownCid { cid }),
        }
        s.head = cqe.sq_head;
        Ok(())
    }

    /// The completion of `ticket` if it has arrived, freeing its slot (and
    /// the slot page's contents, for [`Page::DataOut`]).
    fn take(&self, ticket: &Ticket, page_out: bool) -> Result<Option<(Completion, Vec<u8>)>> {
        let mut s = self.state.lock();
        if s.epoch != ticket.epoch {
            return Err(NvmeError::Reset(ticket.command));
        }
        let index = usize::from(ticket.command.cid & 0xff);
        let generation = (ticket.command.cid >> 8) as u8;
        match s.slots.get(index).copied() {
            Some(Slot::Done {
                generation: g,
                completion,
            }) if g == generation => {
                let mut data = Vec::new();
                if page_out {
                    // The completion says the controller has written the page.
                    let mem = self.memory.memory();
                    mem.rmb();
                    data = vec![0; PAGE_SIZE];
                    mem.read_at(self.page(index), &mut data)?;
                }
                s.slots[index] = Slot::Free { generation };
                Ok(Some((completion, data)))
            }
            Some(Slot::InFlight { generation: g, .. }) if g == generation => match s.broken {
                Some(violation) => Err(NvmeError::QueueBroken {
                    qid: self.qid,
                    violation,
                }),
                None => Ok(None),
            },
            _ => Err(NvmeError::InvalidRequest(format!(
                "{} is not in flight",
                ticket.command
            ))),
        }
    }

    /// Gives up on `ticket`: its slot is freed when (if ever) the
    /// controller completes it, and not reused before.
    pub(crate) fn abandon(&self, ticket: &Ticket) {
        let mut s = self.state.lock();
        if s.epoch != ticket.epoch {
            return;
        }
        let index = usize::from(ticket.command.cid & 0xff);
        if let Some(Slot::InFlight { abandoned, .. }) = s.slots.get_mut(index) {
            *abandoned = true;
        }
    }

    /// Waits up to `timeout` for `ticket`'s completion: polling the queue,
    /// or sleeping on `irq` between looks.
    pub(crate) fn wait(
        &self,
        bar0: &B::Region,
        ticket: &Ticket,
        irq: Option<&B::Interrupt>,
        timeout: Duration,
        page_out: bool,
    ) -> Result<(Completion, Vec<u8>)> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            self.reap(bar0)?;
            if let Some(done) = self.take(ticket, page_out)? {
                return Ok(done);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                self.abandon(ticket);
                return Err(NvmeError::Timeout {
                    command: ticket.command,
                    timeout,
                });
            }
            match irq {
                Some(irq) => {
                    irq.wait(Some(left.map_or(WAIT_SLICE, |l| l.min(WAIT_SLICE))))?;
                }
                None => std::thread::yield_now(),
            }
        }
    }

    /// [`take`](Self::take) after a reap, for a waiter that sleeps elsewhere
    /// (the async path).
    #[cfg(feature = "tokio")]
    pub(crate) fn poll(
        &self,
        bar0: &B::Region,
        ticket: &Ticket,
        page_out: bool,
    ) -> Result<Option<(Completion, Vec<u8>)>> {
        self.reap(bar0)?;
        self.take(ticket, page_out)
    }
}
