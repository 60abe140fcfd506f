//! `hostile_nvme`: the NVMe driver against a controller whose completions
//! lie.
//!
//! The controller is a small NVMe model written here, behind the mock's
//! [`DeviceModel`]: registers with the enable handshake, admin and I/O
//! queues in the driver's DMA memory, Identify, Set Features, queue
//! creation, and read, write, flush, write zeroes and deallocate against a
//! 64-block disk, all processed when the driver rings a doorbell. What it
//! posts back follows a script from the fuzzer, one [`Twist`] per command:
//! the honest completion, or none, one with another command identifier, a
//! second one, one with the wrong phase tag, an SQ head out of range or
//! backwards, another SQ identifier, a bogus status, a stale repeat, no
//! interrupt. The fuzzer may also bend what Identify and Set Features
//! return.
//!
//! Checked, whatever the script: the driver never panics and never hangs
//! (its command timeouts are 20 ms, and libFuzzer's `-timeout` catches a
//! hang), every call returns `Ok` or a typed [`NvmeError`], every queue
//! entry, PRP and data buffer the driver points the controller at is
//! mapped (the model's DMA through them never faults), a read that
//! succeeds returns exactly what the disk held, and the simulated host's
//! bookkeeping stays consistent. When the script told no lie, every call
//! must also succeed and every write read back.

use crate::mock;
use arbitrary::{Arbitrary, Unstructured};
use nvme::{CompletionMode, Nvme, NvmeError, Options};
use nvme_spec::identify::{CNS_CONTROLLER, CNS_NAMESPACE, IdentifyController, IdentifyNamespace};
use nvme_spec::opcode::{admin, feature, nvm};
use nvme_spec::{Command, Completion, DsmRange, Status};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use vfio_core::{Container, Group, IommuType, VfioBackend};
use vfio_mock::{
    DeviceContext, DeviceModel, Irq, MockBackend, MockContainer, MockGroup, MockHost, profiles,
};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

/// Blocks of the model's disk.
const DISK_BLOCKS: u64 = 64;
/// Its block size.
const BLOCK: usize = 512;
/// The page size the driver configures.
const PAGE: u64 = 4096;

/// What the controller does with one command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Twist {
    /// Completes it as a controller should.
    Honest,
    /// Processes it and never posts a completion.
    Silent,
    /// Posts its completion with this command identifier instead.
    WrongCid(u16),
    /// Posts its completion twice.
    Twice,
    /// Posts its completion with the phase tag of the previous pass.
    WrongPhase,
    /// Posts its completion with this SQ head.
    SqHead(u16),
    /// Posts its completion naming this submission queue.
    SqId(u16),
    /// Posts its completion with this status field (phase tag aside).
    Status(u16),
    /// Posts its completion, then the previous completion of the queue again.
    Stale,
    /// Posts its completion and raises no interrupt.
    NoInterrupt,
}

/// What Identify and Set Features return, when the fuzzer bends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub struct Bent {
    mdts: u8,
    sqes: u8,
    cqes: u8,
    nn: u32,
    nsze: u64,
    ncap: u64,
    flbas: u8,
    nlbaf: u8,
    lbaf0: u32,
    queues: u32,
}

#[derive(Debug, Clone, Copy)]
struct Sq {
    base: u64,
    entries: u16,
    head: u16,
    cqid: u16,
}

#[derive(Debug, Clone, Copy)]
struct Cq {
    base: u64,
    entries: u16,
    tail: u16,
    phase: bool,
    vector: Option<u32>,
    last: Option<Completion>,
}

#[derive(Debug)]
struct State {
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    sqs: HashMap<u16, Sq>,
    cqs: HashMap<u16, Cq>,
    disk: Vec<u8>,
}

/// The fuzzer's script: kept across the device resets vfio-pci does when
/// the device is opened and released.
#[derive(Debug, Default)]
struct Script {
    twists: VecDeque<Twist>,
    bent: Option<Bent>,
    lied: bool,
}

impl State {
    fn power_on() -> Self {
        Self {
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            sqs: HashMap::new(),
            cqs: HashMap::new(),
            disk: vec![0; DISK_BLOCKS as usize * BLOCK],
        }
    }
}

/// The controller model. Clones share state.
#[derive(Debug, Clone, Default)]
pub struct HostileNvme {
    state: Arc<Mutex<Option<State>>>,
    script: Arc<Mutex<Script>>,
}

/// CAP: MQES 0x7ff, CQR, TO 1 (500 ms), DSTRD 0, CSS NVM, MPSMIN 0.
const CAP: u64 = 0x7ff | (1 << 16) | (1 << 24) | (1 << 37) | (4 << 52);

/// A DMA on a pointer the driver gave: it must be mapped.
fn dma_read(ctx: &DeviceContext<'_>, iova: u64, buf: &mut [u8]) {
    if let Err(e) = ctx.dma_read(iova, buf) {
        panic!("the driver pointed the controller at {iova:#x}, which faults: {e:?}");
    }
}

fn dma_write(ctx: &DeviceContext<'_>, iova: u64, data: &[u8]) {
    if let Err(e) = ctx.dma_write(iova, data) {
        panic!("the driver pointed the controller at {iova:#x}, which faults: {e:?}");
    }
}

/// The (IOVA, length) segments PRP1 and PRP2 describe for `len` bytes.
fn segments(
    ctx: &DeviceContext<'_>,
    prp1: u64,
    prp2: u64,
    len: usize,
) -> Option<Vec<(u64, usize)>> {
    let first = (PAGE - prp1 % PAGE).min(len as u64) as usize;
    let mut out = vec![(prp1, first)];
    let mut rest = len - first;
    if rest == 0 {
        return Some(out);
    }
    if rest <= PAGE as usize {
        if !prp2.is_multiple_of(PAGE) {
            return None;
        }
        out.push((prp2, rest));
        return Some(out);
    }
    let entries = rest.div_ceil(PAGE as usize);
    if entries > 512 || !prp2.is_multiple_of(8) {
        return None;
    }
    let mut list = vec![0u8; entries * 8];
    dma_read(ctx, prp2, &mut list);
    for e in list.chunks_exact(8) {
        let page = u64::from_le_bytes(e.try_into().ok()?);
        if page % PAGE != 0 {
            return None;
        }
        let n = rest.min(PAGE as usize);
        out.push((page, n));
        rest -= n;
    }
    Some(out)
}

impl HostileNvme {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock();
        f(s.get_or_insert_with(State::power_on))
    }

    fn lied(&self) -> bool {
        self.script.lock().lied
    }

    /// Runs one command: its effect and its completion's result and status.
    fn execute(
        s: &mut State,
        bent: Option<Bent>,
        ctx: &DeviceContext<'_>,
        qid: u16,
        c: &Command,
    ) -> (u32, Status) {
        let ok = (0, Status::SUCCESS);
        if qid == 0 {
            return match c.opcode() {
                admin::IDENTIFY => {
                    let data = match c.cdw10 & 0xff {
                        CNS_CONTROLLER => {
                            let mut id = IdentifyController::new_zeroed();
                            id.vid = 0x1b36;
                            id.sqes = 0x66;
                            id.cqes = 0x44;
                            id.nn = 1;
                            id.mdts = 5;
                            id.oncs = 0x0c;
                            if let Some(b) = bent {
                                (id.mdts, id.sqes, id.cqes, id.nn) = (b.mdts, b.sqes, b.cqes, b.nn);
                            }
                            id.as_bytes().to_vec()
                        }
                        CNS_NAMESPACE if c.nsid == 1 => {
                            let mut ns = IdentifyNamespace::new_zeroed();
                            ns.nsze = DISK_BLOCKS;
                            ns.ncap = DISK_BLOCKS;
                            ns.lbaf[0] = 9 << 16;
                            if let Some(b) = bent {
                                (ns.nsze, ns.ncap, ns.flbas, ns.nlbaf) =
                                    (b.nsze, b.ncap, b.flbas, b.nlbaf);
                                ns.lbaf[0] = b.lbaf0;
                            }
                            ns.as_bytes().to_vec()
                        }
                        _ => return (0, Status::INVALID_NAMESPACE.with_dnr()),
                    };
                    match segments(ctx, c.prp1, c.prp2, data.len()) {
                        Some(segs) => {
                            let mut at = 0;
                            for (iova, n) in segs {
                                dma_write(ctx, iova, &data[at..at + n]);
                                at += n;
                            }
                            ok
                        }
                        None => (0, Status::INVALID_PRP_OFFSET.with_dnr()),
                    }
                }
                admin::SET_FEATURES | admin::GET_FEATURES
                    if c.cdw10 & 0xff == u32::from(feature::NUMBER_OF_QUEUES) =>
                {
                    (bent.map_or(0x003f_003f, |b| b.queues), Status::SUCCESS)
                }
                admin::CREATE_CQ => {
                    let id = c.cdw10 as u16;
                    let entries = (c.cdw10 >> 16) as u16;
                    if id == 0 || s.cqs.contains_key(&id) || entries == 0 {
                        return (0, Status::INVALID_QUEUE_ID.with_dnr());
                    }
                    let vector = (c.cdw11 & 2 != 0).then_some(c.cdw11 >> 16);
                    s.cqs.insert(
                        id,
                        Cq {
                            base: c.prp1,
                            entries: entries + 1,
                            tail: 0,
                            phase: true,
                            vector,
                            last: None,
                        },
                    );
                    ok
                }
                admin::CREATE_SQ => {
                    let id = c.cdw10 as u16;
                    let entries = (c.cdw10 >> 16) as u16;
                    let cqid = (c.cdw11 >> 16) as u16;
                    if id == 0 || s.sqs.contains_key(&id) || entries == 0 {
                        return (0, Status::INVALID_QUEUE_ID.with_dnr());
                    }
                    if !s.cqs.contains_key(&cqid) {
                        return (0, Status::CQ_INVALID.with_dnr());
                    }
                    s.sqs.insert(
                        id,
                        Sq {
                            base: c.prp1,
                            entries: entries + 1,
                            head: 0,
                            cqid,
                        },
                    );
                    ok
                }
                _ => (0, Status::INVALID_OPCODE.with_dnr()),
            };
        }
        if c.nsid != 1 {
            return (0, Status::INVALID_NAMESPACE.with_dnr());
        }
        let blocks = u64::from(c.nlb()) + 1;
        let range = || {
            let slba = c.slba();
            (slba
                .checked_add(blocks)
                .is_some_and(|end| end <= DISK_BLOCKS))
            .then(|| slba as usize * BLOCK..(slba + blocks) as usize * BLOCK)
        };
        match c.opcode() {
            nvm::FLUSH => ok,
            op @ (nvm::READ | nvm::WRITE) => {
                let Some(r) = range() else {
                    return (0, Status::LBA_OUT_OF_RANGE.with_dnr());
                };
                let Some(segs) = segments(ctx, c.prp1, c.prp2, r.len()) else {
                    return (0, Status::INVALID_PRP_OFFSET.with_dnr());
                };
                let mut at = r.start;
                for (iova, n) in segs {
                    if op == nvm::READ {
                        dma_write(ctx, iova, &s.disk[at..at + n]);
                    } else {
                        dma_read(ctx, iova, &mut s.disk[at..at + n]);
                    }
                    at += n;
                }
                ok
            }
            nvm::WRITE_ZEROES => match range() {
                Some(r) => {
                    s.disk[r].fill(0);
                    ok
                }
                None => (0, Status::LBA_OUT_OF_RANGE.with_dnr()),
            },
            nvm::DATASET_MANAGEMENT => {
                let n = (c.cdw10 & 0xff) as usize + 1;
                let mut list = vec![0u8; n * 16];
                dma_read(ctx, c.prp1, &mut list);
                for r in list.chunks_exact(16) {
                    if let Ok(r) = DsmRange::read_from_bytes(r) {
                        let end = r.slba.saturating_add(u64::from(r.nlb)).min(DISK_BLOCKS);
                        if r.slba < end {
                            s.disk[r.slba as usize * BLOCK..end as usize * BLOCK].fill(0);
                        }
                    }
                }
                ok
            }
            _ => (0, Status::INVALID_OPCODE.with_dnr()),
        }
    }

    /// Posts `cqe` on completion queue `cqid` with its current phase tag
    /// (flipped for a lie), and raises its vector unless told not to.
    fn post(
        s: &mut State,
        ctx: &DeviceContext<'_>,
        cqid: u16,
        mut cqe: Completion,
        wrong_phase: bool,
        irq: bool,
    ) {
        let Some(cq) = s.cqs.get_mut(&cqid) else {
            return;
        };
        let phase = cq.phase != wrong_phase;
        cqe.status = (cqe.status & !1) | u16::from(phase);
        dma_write(ctx, cq.base + u64::from(cq.tail) * 16, cqe.as_bytes());
        cq.last = Some(cqe);
        cq.tail += 1;
        if cq.tail == cq.entries {
            cq.tail = 0;
            cq.phase = !cq.phase;
        }
        if let (true, Some(v), true) = (irq, cq.vector, ctx.msix_enabled()) {
            let _ = ctx.raise(Irq::Msix(v));
        }
    }

    /// The SQ tail doorbell of `qid` was rung with `tail`: every new entry
    /// is processed and completed as the script says.
    fn ring(s: &mut State, script: &mut Script, ctx: &DeviceContext<'_>, qid: u16, tail: u16) {
        loop {
            let Some(sq) = s.sqs.get_mut(&qid) else {
                return;
            };
            if tail >= sq.entries || sq.head == tail {
                return;
            }
            let mut bytes = [0u8; 64];
            dma_read(ctx, sq.base + u64::from(sq.head) * 64, &mut bytes);
            sq.head = (sq.head + 1) % sq.entries;
            let (head, cqid, entries) = (sq.head, sq.cqid, sq.entries);
            let Ok(c) = Command::read_from_bytes(&bytes) else {
                return;
            };
            let (result, status) = Self::execute(s, script.bent, ctx, qid, &c);
            let twist = script.twists.pop_front().unwrap_or(Twist::Honest);
            script.lied |= twist != Twist::Honest;
            let mut cqe = Completion {
                result,
                dw1: 0,
                sq_head: head,
                sq_id: qid,
                cid: c.cid(),
                status: status.to_word(false),
            };
            let previous = s.cqs.get(&cqid).and_then(|cq| cq.last);
            match twist {
                Twist::Honest => Self::post(s, ctx, cqid, cqe, false, true),
                Twist::Silent => {}
                Twist::WrongCid(cid) => {
                    cqe.cid = cid;
                    Self::post(s, ctx, cqid, cqe, false, true);
                }
                Twist::Twice => {
                    Self::post(s, ctx, cqid, cqe, false, true);
                    Self::post(s, ctx, cqid, cqe, false, true);
                }
                Twist::WrongPhase => Self::post(s, ctx, cqid, cqe, true, true),
                Twist::SqHead(h) => {
                    cqe.sq_head = h % entries.saturating_mul(2).max(1);
                    Self::post(s, ctx, cqid, cqe, false, true);
                }
                Twist::SqId(id) => {
                    cqe.sq_id = id;
                    Self::post(s, ctx, cqid, cqe, false, true);
                }
                Twist::Status(field) => {
                    cqe.status = field << 1;
                    Self::post(s, ctx, cqid, cqe, false, true);
                }
                Twist::Stale => {
                    Self::post(s, ctx, cqid, cqe, false, true);
                    if let Some(p) = previous {
                        Self::post(s, ctx, cqid, p, false, true);
                    }
                }
                Twist::NoInterrupt => Self::post(s, ctx, cqid, cqe, false, false),
            }
        }
    }
}

impl DeviceModel for HostileNvme {
    fn read(&self, _ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
        if bar != 0 || offset >= 0x2000 {
            return None;
        }
        let value = self.with(|s| match offset {
            0x00 => CAP,
            0x04 => CAP >> 32,
            0x08 => 0x0001_0400,
            0x14 => u64::from(s.cc),
            0x1c => u64::from(s.csts),
            0x24 => u64::from(s.aqa),
            0x28 => s.asq,
            0x30 => s.acq,
            _ => 0,
        });
        Some(match width {
            8 => value,
            w => value & ((1u64 << (8 * u32::from(w))) - 1),
        })
    }

    fn write(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8, value: u64) -> bool {
        if bar != 0 || offset >= 0x2000 {
            return false;
        }
        let mut script = self.script.lock();
        self.with(|s| match offset {
            0x14 => {
                let v = value as u32;
                if v & 1 != 0 && s.cc & 1 == 0 {
                    s.sqs.clear();
                    s.cqs.clear();
                    let entries = |bits: u32| (bits & 0xfff) as u16 + 1;
                    s.sqs.insert(
                        0,
                        Sq {
                            base: s.asq,
                            entries: entries(s.aqa),
                            head: 0,
                            cqid: 0,
                        },
                    );
                    s.cqs.insert(
                        0,
                        Cq {
                            base: s.acq,
                            entries: entries(s.aqa >> 16),
                            tail: 0,
                            phase: true,
                            vector: Some(0),
                            last: None,
                        },
                    );
                    s.csts = 1;
                } else if v & 1 == 0 {
                    s.sqs.clear();
                    s.cqs.clear();
                    s.csts = 0;
                }
                s.cc = v;
            }
            0x24 => s.aqa = value as u32,
            0x28 if width == 8 => s.asq = value,
            0x30 if width == 8 => s.acq = value,
            o if o >= 0x1000 && (o - 0x1000) % 8 == 0 => {
                Self::ring(s, &mut script, ctx, ((o - 0x1000) / 8) as u16, value as u16);
            }
            _ => {}
        });
        true
    }

    fn reset(&self) {
        *self.state.lock() = None;
    }
}

/// One driver call.
#[derive(Debug, Clone, Copy)]
enum Op {
    Write {
        qid: u8,
        lba: u8,
        blocks: u8,
        seed: u8,
    },
    WriteDma {
        qid: u8,
        lba: u8,
        blocks: u8,
        offset: u8,
        seed: u8,
    },
    Read {
        qid: u8,
        lba: u8,
        blocks: u8,
    },
    Flush {
        qid: u8,
    },
    WriteZeroes {
        qid: u8,
        lba: u8,
        blocks: u8,
    },
    Deallocate {
        qid: u8,
        lba: u8,
        blocks: u8,
    },
    Reset,
}

/// The input, decoded from bytes laid out so that seeds are easy to write
/// by hand: a flags byte (bit 0: polled completions, bit 1: bent Identify
/// and Set Features, whose fields follow as the fuzzer's `Arbitrary`
/// bytes); an op count (at most 24) and 6 bytes per op (kind, then its
/// fields); then 3 bytes per twist to the end (kind, then a
/// little-endian `u16`). The driver's bring-up takes the first 7 twists
/// (Identify twice, Set Features, two queue pairs created).
#[derive(Debug)]
struct Run {
    polled: bool,
    bent: Option<Bent>,
    ops: Vec<Op>,
    twists: Vec<Twist>,
}

/// Size of [`Bent`] in the input.
const BENT_BYTES: usize = 33;

impl Run {
    fn decode(data: &[u8]) -> Option<Self> {
        let (&flags, mut rest) = data.split_first()?;
        let bent = if flags & 2 != 0 {
            let (b, r) = rest.split_at_checked(BENT_BYTES)?;
            rest = r;
            Some(Bent::arbitrary(&mut Unstructured::new(b)).ok()?)
        } else {
            None
        };
        let (&count, mut rest) = rest.split_first()?;
        let mut ops = Vec::new();
        for _ in 0..count.min(24) {
            let (op, r) = rest.split_at_checked(6)?;
            rest = r;
            let [kind, a, b, c, d, e] = [op[0], op[1], op[2], op[3], op[4], op[5]];
            ops.push(match kind % 7 {
                0 => Op::Write {
                    qid: a,
                    lba: b,
                    blocks: c,
                    seed: d,
                },
                1 => Op::WriteDma {
                    qid: a,
                    lba: b,
                    blocks: c,
                    offset: d,
                    seed: e,
                },
                2 => Op::Read {
                    qid: a,
                    lba: b,
                    blocks: c,
                },
                3 => Op::Flush { qid: a },
                4 => Op::WriteZeroes {
                    qid: a,
                    lba: b,
                    blocks: c,
                },
                5 => Op::Deallocate {
                    qid: a,
                    lba: b,
                    blocks: c,
                },
                _ => Op::Reset,
            });
        }
        let twists = rest
            .chunks_exact(3)
            .map(|t| {
                let v = u16::from_le_bytes([t[1], t[2]]);
                match t[0] % 10 {
                    0 => Twist::Honest,
                    1 => Twist::Silent,
                    2 => Twist::WrongCid(v),
                    3 => Twist::Twice,
                    4 => Twist::WrongPhase,
                    5 => Twist::SqHead(v),
                    6 => Twist::SqId(v),
                    7 => Twist::Status(v),
                    8 => Twist::Stale,
                    _ => Twist::NoInterrupt,
                }
            })
            .collect();
        Some(Self {
            polled: flags & 1 != 0,
            bent,
            ops,
            twists,
        })
    }
}

/// A host with the hostile controller at [`mock::address`], its group
/// attached to a type1v2 container the driver holds a share of. Fields
/// drop in order: the group before the host.
struct Fixture {
    group: MockGroup,
    container: Arc<MockContainer>,
    backend: MockBackend,
    host: MockHost,
    model: HostileNvme,
}

thread_local! {
    static FIXTURE: Fixture = {
        let model = HostileNvme::default();
        let host = MockHost::builder()
            .cpus(2)
            .device(mock::address(), mock::GROUP, profiles::nvme().model(model.clone()))
            .build()
            .expect("building a one-device host");
        let backend = host.backend();
        let container = Arc::new(backend.open_container().expect("opening the container"));
        let group = backend.open_group(mock::GROUP).expect("opening the group");
        group.set_container(&container).expect("attaching the group");
        container.set_iommu(IommuType::Type1v2).expect("setting the IOMMU type");
        Fixture { group, container, backend, host, model }
    };
}

/// Brings the driver up (polled) on the hostile controller with `twists`
/// for its first commands, honest after them, and returns what bring-up
/// gave: the way a test pins the error one lie must produce.
pub fn bring_up_with(twists: &[Twist]) -> Result<(), NvmeError> {
    FIXTURE.with(|f| {
        let device = f
            .group
            .open_device(&mock::address().to_string())
            .expect("opening the device");
        *f.model.script.lock() = Script {
            twists: twists.iter().copied().collect(),
            bent: None,
            lied: false,
        };
        let options = Options {
            io_queues: 2,
            queue_depth: 8,
            admin_timeout: Duration::from_millis(20),
            io_timeout: Duration::from_millis(20),
            completion: CompletionMode::Polled,
            ..Options::default()
        };
        let result = Nvme::new(&f.backend, device, f.container.clone(), options).map(drop);
        check_host(f);
        result
    })
}

/// The target.
pub fn hostile_nvme(data: &[u8]) {
    let Some(run) = Run::decode(data) else {
        return;
    };
    FIXTURE.with(|f| drive(f, &run));
}

fn drive(f: &Fixture, run: &Run) {
    let backend: &MockBackend = &f.backend;
    let options = Options {
        io_queues: 2,
        queue_depth: 8,
        admin_timeout: Duration::from_millis(20),
        io_timeout: Duration::from_millis(20),
        completion: if run.polled {
            CompletionMode::Polled
        } else {
            CompletionMode::Interrupt
        },
        ..Options::default()
    };
    let device = f
        .group
        .open_device(&mock::address().to_string())
        .expect("opening the device");
    // Opening the device reset the model (vfio-pci resets it): the script
    // goes in after.
    *f.model.script.lock() = Script {
        twists: run.twists.iter().copied().collect(),
        bent: run.bent,
        lied: run.bent.is_some(),
    };
    let result = Nvme::new(backend, device, f.container.clone(), options);
    let lied = || f.model.lied();
    let mut nvme = match result {
        Ok(nvme) => nvme,
        Err(e) => {
            assert!(lied(), "an honest controller failed to start: {e}");
            check_host(f);
            return;
        }
    };
    for op in run.ops.iter().take(24) {
        let outcome = apply(&mut nvme, backend, f, *op);
        if let Err(e) = outcome {
            assert!(lied(), "{op:?} failed on an honest controller: {e}");
        }
    }
    drop(nvme);
    check_host(f);
}

fn apply(
    nvme: &mut Nvme<MockBackend>,
    backend: &MockBackend,
    f: &Fixture,
    op: Op,
) -> Result<(), NvmeError> {
    let q = |qid: u8| u16::from(qid % 3);
    let blocks = |b: u8| usize::from(b % 24) + 1;
    let disk = |lba: u64, len: usize| {
        f.model.with(|s| {
            let start = (lba as usize * BLOCK).min(s.disk.len());
            let end = (start + len).min(s.disk.len());
            s.disk[start..end].to_vec()
        })
    };
    let in_range = |lba: u64, n: usize| lba + n as u64 <= DISK_BLOCKS;
    match op {
        Op::Write {
            qid,
            lba,
            blocks: b,
            seed,
        } => {
            let (lba, n) = (u64::from(lba % 72), blocks(b));
            let data: Vec<u8> = (0..n * BLOCK)
                .map(|i| (i as u8).wrapping_mul(seed | 1))
                .collect();
            match nvme.write(q(qid), lba, &data) {
                Ok(()) => {
                    if !f.model.lied() {
                        assert!(in_range(lba, n), "a write past the end succeeded");
                        assert_eq!(
                            disk(lba, data.len()),
                            data,
                            "a write did not reach the disk"
                        );
                    }
                    Ok(())
                }
                Err(e)
                    if !in_range(lba, n)
                        && e.status() == Some(Status::LBA_OUT_OF_RANGE.with_dnr()) =>
                {
                    Ok(())
                }
                Err(NvmeError::NoSuchQueue(0)) if q(qid) == 0 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Op::WriteDma {
            qid,
            lba,
            blocks: b,
            offset,
            seed,
        } => {
            let (lba, n) = (u64::from(lba % 64), blocks(b));
            let offset = usize::from(offset) * 4;
            let len = n * BLOCK;
            let buf = nvme.alloc_buffer(backend, offset + len)?;
            let data: Vec<u8> = (0..len).map(|i| (i as u8) ^ seed).collect();
            vfio_core::DmaMemory::write_at(buf.memory(), offset, &data).expect("buffer write");
            match nvme.write_dma(q(qid), lba, &buf, offset, len) {
                Err(NvmeError::NoSuchQueue(0)) if q(qid) == 0 => Ok(()),
                Err(NvmeError::InvalidRequest(_)) => Ok(()),
                Err(e)
                    if !in_range(lba, n)
                        && e.status() == Some(Status::LBA_OUT_OF_RANGE.with_dnr()) =>
                {
                    Ok(())
                }
                Err(e) => Err(e),
                Ok(()) => {
                    if !f.model.lied() {
                        assert_eq!(disk(lba, len), data, "a PRP write did not reach the disk");
                    }
                    Ok(())
                }
            }
        }
        Op::Read {
            qid,
            lba,
            blocks: b,
        } => {
            let (lba, n) = (u64::from(lba % 72), blocks(b));
            let mut out = vec![0xee; n * BLOCK];
            let before = disk(lba, out.len());
            match nvme.read(q(qid), lba, &mut out) {
                Ok(()) => {
                    // Whatever the script: the controller moved the disk's
                    // bytes before it completed anything.
                    if in_range(lba, n) {
                        assert_eq!(out, before, "a successful read returned other bytes");
                    } else {
                        assert!(f.model.lied(), "a read past the end succeeded");
                    }
                    Ok(())
                }
                Err(e)
                    if !in_range(lba, n)
                        && e.status() == Some(Status::LBA_OUT_OF_RANGE.with_dnr()) =>
                {
                    Ok(())
                }
                Err(NvmeError::NoSuchQueue(0)) if q(qid) == 0 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Op::Flush { qid } => match nvme.flush(q(qid)) {
            Err(NvmeError::NoSuchQueue(0)) if q(qid) == 0 => Ok(()),
            other => other,
        },
        Op::WriteZeroes {
            qid,
            lba,
            blocks: b,
        } => {
            let (lba, n) = (u64::from(lba % 64), blocks(b));
            match nvme.write_zeroes(q(qid), lba, n as u32) {
                Err(NvmeError::NoSuchQueue(0)) if q(qid) == 0 => Ok(()),
                Err(e)
                    if !in_range(lba, n)
                        && e.status() == Some(Status::LBA_OUT_OF_RANGE.with_dnr()) =>
                {
                    Ok(())
                }
                other => other,
            }
        }
        Op::Deallocate {
            qid,
            lba,
            blocks: b,
        } => match nvme.deallocate(q(qid), &[(u64::from(lba % 64), u32::from(b % 8) + 1)]) {
            Err(NvmeError::NoSuchQueue(0)) if q(qid) == 0 => Ok(()),
            other => other,
        },
        Op::Reset => nvme.reset(),
    }
}

fn check_host(f: &Fixture) {
    if let Err(e) = f.host.done() {
        panic!("the mock's bookkeeping after the run: {e}");
    }
}
