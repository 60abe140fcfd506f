//! The controller: bring-up and reset, the admin queue, Identify, the
//! number of queues, and the I/O queue pairs with a vector each.

use crate::buffer::{Dma, DmaBuffer};
use crate::error::{CommandRef, IdentifyProblem, NvmeError, Result};
use crate::identify::{self, Namespace};
use crate::queue::{Page, Queue, Ticket};
use nvme_spec::identify::{CNS_CONTROLLER, CNS_NAMESPACE, IdentifyController, IdentifyNamespace};
use nvme_spec::opcode::{admin, feature};
use nvme_spec::regs::{self, Cap, cc, csts};
use nvme_spec::{Command, Completion};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfio_core::{
    Device, DmaSpace, IovaAllocator, IovaOptions, IrqIndex, MappedRegion, VfioBackend, region,
};
use zerocopy::{FromBytes, FromZeros};

/// Entries of the admin queues.
pub const ADMIN_ENTRIES: u16 = 32;

/// The lowest IOVA the driver maps: nothing at or near address 0, so a
/// zeroed pointer a controller follows faults.
pub const IOVA_BASE: u64 = 0x10_0000;

/// How the driver learns that a command has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CompletionMode {
    /// Looks at the completion queue until the entry appears.
    Polled,
    /// Sleeps on the queue's MSI-X vector between looks.
    #[default]
    Interrupt,
}

/// How the driver sets the controller up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// I/O queue pairs to ask for (Set Features, Number of Queues); the
    /// controller may grant fewer, and each needs an MSI-X vector of its own
    /// besides the admin queue's vector 0.
    pub io_queues: u16,
    /// Entries of each I/O queue (capped by CAP.MQES).
    pub queue_depth: u16,
    /// The namespace to do I/O to.
    pub nsid: u32,
    /// How long an admin command may take.
    pub admin_timeout: Duration,
    /// How long an I/O command may take.
    pub io_timeout: Duration,
    /// Polled or interrupt-driven completions.
    pub completion: CompletionMode,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            io_queues: 2,
            queue_depth: 64,
            nsid: 1,
            admin_timeout: Duration::from_secs(5),
            io_timeout: Duration::from_secs(5),
            completion: CompletionMode::Interrupt,
        }
    }
}

/// An I/O queue pair and the bounce buffer of its slice-based calls.
#[derive(Debug)]
pub(crate) struct IoQueue<B: VfioBackend> {
    pub(crate) queue: Queue<B>,
    pub(crate) bounce: Mutex<DmaBuffer<B>>,
}

/// A driven NVMe controller.
///
/// Every method takes `&self` and may be called from several threads:
/// each queue has its own lock, held only while entries are written or
/// taken. [`reset`](Self::reset) takes `&mut self`.
///
/// Dropping it disables the controller (CC.EN = 0, waiting up to CAP.TO
/// for it to stop) before any of its memory is unmapped.
#[derive(Debug)]
pub struct Nvme<B: VfioBackend> {
    pub(crate) bar0: B::Region,
    cap: Cap,
    version: u32,
    pub(crate) options: Options,
    pub(crate) admin: Queue<B>,
    pub(crate) io: Vec<IoQueue<B>>,
    /// Vector `i` serves queue `i` (0: admin).
    pub(crate) irqs: Vec<Arc<B::Interrupt>>,
    controller: Box<IdentifyController>,
    namespace_data: Box<IdentifyNamespace>,
    pub(crate) namespace: Namespace,
    pub(crate) max_transfer: usize,
    granted_queues: u32,
    pub(crate) iovas: IovaAllocator,
    pub(crate) dma: Dma<B>,
    device: B::Device,
}

impl<B: VfioBackend> Nvme<B> {
    /// Takes over an opened NVMe controller whose DMA goes through `dma`
    /// (the container its group is attached to, the IOAS its cdev is
    /// attached to, or the [`DmaContext`](vfio_core::open::DmaContext)
    /// [`open_device`](vfio_core::open::open_device) gave): maps BAR0, enables bus mastering and MSI-X (one vector
    /// for the admin queue and one per I/O queue), resets and enables the
    /// controller, identifies it and the namespace, sets the number of
    /// queues and creates the I/O queue pairs.
    pub fn new(backend: &B, device: B::Device, dma: Dma<B>, options: Options) -> Result<Self> {
        let bar0 = device.map_region(region::BAR0)?;
        let cap = Cap(bar0.read_u64(regs::CAP)?);
        if cap.0 == u64::MAX {
            return Err(NvmeError::DeviceGone(regs::CAP));
        }
        let version = bar0.read_u32(regs::VS)?;
        if cap.css() & 1 == 0 {
            return Err(NvmeError::Unsupported("the NVM command set (CAP.CSS)"));
        }
        if cap.mpsmin() != 0 {
            return Err(NvmeError::Unsupported("4 KiB memory pages (CAP.MPSMIN)"));
        }
        if options.io_queues == 0 {
            return Err(NvmeError::InvalidRequest("no I/O queues asked for".into()));
        }
        let vectors = device.irq_info(IrqIndex::MSIX)?.count;
        if vectors < 2 {
            return Err(NvmeError::Unsupported("two MSI-X vectors"));
        }
        let wanted = u32::from(options.io_queues).min(vectors - 1);
        let iovas = dma.iova_allocator(IovaOptions {
            guard_pages: 1,
            window: IOVA_BASE..=u64::MAX,
        })?;
        let admin = Queue::new(backend, &dma, &iovas, 0, ADMIN_ENTRIES, cap.dstrd())?;
        let irqs = (0..=wanted)
            .map(|_| backend.new_interrupt().map(Arc::new))
            .collect::<vfio_core::Result<Vec<_>>>()?;
        device.set_bus_master(true)?;
        let bound: Vec<&B::Interrupt> = irqs.iter().map(|i| &**i).collect();
        device.enable_interrupts(IrqIndex::MSIX, &bound)?;
        let mut nvme = Self {
            bar0,
            cap,
            version,
            options,
            admin,
            io: Vec::new(),
            irqs,
            controller: Box::new(IdentifyController::new_zeroed()),
            namespace_data: Box::new(IdentifyNamespace::new_zeroed()),
            namespace: Namespace {
                nsid: 0,
                blocks: 0,
                capacity: 0,
                block_size: 0,
                format_index: 0,
                dlfeat: 0,
            },
            max_transfer: 0,
            granted_queues: 0,
            iovas,
            dma,
            device,
        };
        nvme.enable()?;
        nvme.identify()?;
        let granted = nvme.set_queue_count(wanted)?;
        for qid in 1..=granted as u16 {
            let entries = nvme
                .options
                .queue_depth
                .clamp(2, 4096)
                .min(cap.mqes().saturating_add(1).max(2));
            let queue = Queue::new(backend, &nvme.dma, &nvme.iovas, qid, entries, cap.dstrd())?;
            let bounce = DmaBuffer::new(
                backend,
                &nvme.dma,
                &nvme.iovas,
                nvme.max_transfer.min(BOUNCE_MAX),
            )?;
            nvme.io.push(IoQueue {
                queue,
                bounce: Mutex::new(bounce),
            });
        }
        nvme.create_io_queues()?;
        Ok(nvme)
    }

    /// CAP.
    pub fn cap(&self) -> Cap {
        self.cap
    }

    /// VS: the NVMe version the controller implements.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The options the driver was set up with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Switches between polled and interrupt-driven completions.
    pub fn set_completion_mode(&mut self, mode: CompletionMode) {
        self.options.completion = mode;
    }

    /// The Identify Controller structure, as the controller returned it.
    pub fn identify_controller(&self) -> &IdentifyController {
        &self.controller
    }

    /// The Identify Namespace structure of the namespace in use.
    pub fn identify_namespace(&self) -> &IdentifyNamespace {
        &self.namespace_data
    }

    /// The namespace in use.
    pub fn namespace(&self) -> Namespace {
        self.namespace
    }

    /// The longest transfer one command moves: MDTS, capped to what one
    /// PRP list covers.
    pub fn max_transfer(&self) -> usize {
        self.max_transfer
    }

    /// The I/O queue pairs, numbered `1..=io_queue_count()`.
    pub fn io_queue_count(&self) -> u16 {
        self.io.len() as u16
    }

    /// The result of Set Features (Number of Queues): 0's based SQ count in
    /// bits 15:0 and CQ count in 31:16.
    pub fn queues_granted(&self) -> u32 {
        self.granted_queues
    }

    /// Entries of queue `qid` (0: admin).
    pub fn queue_entries(&self, qid: u16) -> Result<u16> {
        Ok(self.queue(qid)?.entries())
    }

    /// The interrupt bound to queue `qid`'s MSI-X vector (vector `qid`).
    pub fn interrupt(&self, qid: u16) -> Result<&B::Interrupt> {
        self.irqs
            .get(usize::from(qid))
            .map(|i| &**i)
            .ok_or(NvmeError::NoSuchQueue(qid))
    }

    /// The device.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// The IOMMU context the driver's memory is mapped in.
    pub fn dma(&self) -> &dyn DmaSpace<B> {
        &*self.dma
    }

    /// The IOVA allocator the driver maps its memory with (from
    /// [`IOVA_BASE`] up, one guard page after every mapping).
    pub fn iovas(&self) -> &IovaAllocator {
        &self.iovas
    }

    /// A new DMA buffer of `len` bytes (rounded up to pages) mapped for the
    /// controller, for [`read_dma`](Self::read_dma) and
    /// [`write_dma`](Self::write_dma).
    pub fn alloc_buffer(&self, backend: &B, len: usize) -> Result<DmaBuffer<B>> {
        DmaBuffer::new(backend, &self.dma, &self.iovas, len)
    }

    pub(crate) fn queue(&self, qid: u16) -> Result<&Queue<B>> {
        match qid {
            0 => Ok(&self.admin),
            q => self.io_queue(q).map(|io| &io.queue),
        }
    }

    pub(crate) fn timeout(&self, qid: u16) -> Duration {
        if qid == 0 {
            self.options.admin_timeout
        } else {
            self.options.io_timeout
        }
    }

    /// Submits `command` to queue `qid` (0: admin) as it is, except for its
    /// command identifier, which the driver replaces with one it tracks:
    /// the escape hatch for commands the driver has no method for, or that
    /// are meant to be wrong. Wait for it with [`wait`](Self::wait).
    pub fn submit_raw(&self, qid: u16, command: Command) -> Result<Ticket> {
        self.queue(qid)?.submit(&self.bar0, command, Page::Unused)
    }

    /// Waits for a submitted command and returns its completion whatever
    /// its status (a controller that breaks the protocol, or no completion
    /// in time, is still an error).
    pub fn wait(&self, ticket: &Ticket) -> Result<Completion> {
        Ok(self.wait_page(ticket, false)?.0)
    }

    /// [`submit_raw`](Self::submit_raw) and [`wait`](Self::wait).
    pub fn execute_raw(&self, qid: u16, command: Command) -> Result<Completion> {
        let ticket = self.submit_raw(qid, command)?;
        self.wait(&ticket)
    }

    pub(crate) fn wait_page(
        &self,
        ticket: &Ticket,
        page_out: bool,
    ) -> Result<(Completion, Vec<u8>)> {
        let qid = ticket.command().qid;
        let irq = match self.options.completion {
            CompletionMode::Polled => None,
            CompletionMode::Interrupt => self.irqs.get(usize::from(qid)).map(|i| &**i),
        };
        self.queue(qid)?
            .wait(&self.bar0, ticket, irq, self.timeout(qid), page_out)
    }

    /// Runs `command` on queue `qid` with its slot page used as `page` says,
    /// and turns an error status into [`NvmeError::Command`].
    pub(crate) fn execute(
        &self,
        qid: u16,
        command: Command,
        page: Page<'_>,
    ) -> Result<(Completion, Vec<u8>)> {
        let page_out = matches!(page, Page::DataOut);
        let ticket = self.queue(qid)?.submit(&self.bar0, command, page)?;
        let (cqe, data) = self.wait_page(&ticket, page_out)?;
        check(ticket.command(), &cqe)?;
        Ok((cqe, data))
    }

    /// Get Features `fid`: the completion's dword 0.
    pub fn get_features(&self, fid: u8) -> Result<u32> {
        let mut c = Command::new(admin::GET_FEATURES, 0);
        c.cdw10 = u32::from(fid);
        Ok(self.execute(0, c, Page::Unused)?.0.result)
    }

    /// Set Features `fid` with dword 11 `value`: the completion's dword 0.
    pub fn set_features(&self, fid: u8, value: u32) -> Result<u32> {
        let mut c = Command::new(admin::SET_FEATURES, 0);
        c.cdw10 = u32::from(fid);
        c.cdw11 = value;
        Ok(self.execute(0, c, Page::Unused)?.0.result)
    }

    /// Identify with `cns` for `nsid`: the 4096-byte structure.
    pub fn identify_raw(&self, cns: u32, nsid: u32) -> Result<Vec<u8>> {
        let mut c = Command::new(admin::IDENTIFY, 0);
        c.cdw10 = cns;
        c.nsid = nsid;
        Ok(self.execute(0, c, Page::DataOut)?.1)
    }

    fn read_csts(&self) -> Result<u32> {
        match self.bar0.read_u32(regs::CSTS)? {
            u32::MAX => Err(NvmeError::DeviceGone(regs::CSTS)),
            v => Ok(v),
        }
    }

    /// Waits up to CAP.TO for CSTS.RDY to read `ready`; while enabling, a
    /// controller fatal status ends the wait.
    fn wait_ready(&self, ready: bool) -> Result<()> {
        let to = self.cap.to();
        // CAP.TO 0 is read as its smallest step, 500 ms.
        let limit = Duration::from_millis(self.cap.timeout_ms().max(500));
        let start = Instant::now();
        loop {
            let status = self.read_csts()?;
            if ready && status & csts::CFS != 0 {
                return Err(NvmeError::ControllerFatal { csts: status });
            }
            if (status & csts::RDY != 0) == ready {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(NvmeError::ReadyTimeout {
                    ready,
                    to,
                    csts: status,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Clears CC.EN and waits for CSTS.RDY to clear: the controller drops
    /// every queue and stops all DMA.
    fn disable(&self) -> Result<()> {
        let cc = self.bar0.read_u32(regs::CC)?;
        if cc == u32::MAX {
            return Err(NvmeError::DeviceGone(regs::CC));
        }
        self.bar0.write_u32(regs::CC, cc & !cc::EN)?;
        self.wait_ready(false)
    }

    /// Disables the controller, points it at fresh admin queues and enables
    /// it with 4 KiB pages and 64/16-byte entries.
    fn enable(&self) -> Result<()> {
        self.disable()?;
        self.admin.reset()?;
        for io in &self.io {
            io.queue.reset()?;
        }
        self.bar0
            .write_u32(regs::AQA, regs::aqa(ADMIN_ENTRIES, ADMIN_ENTRIES))?;
        self.bar0.write_u64(regs::ASQ, self.admin.sq_iova())?;
        self.bar0.write_u64(regs::ACQ, self.admin.cq_iova())?;
        self.bar0.write_u32(regs::CC, cc::enabled(0))?;
        self.wait_ready(true)
    }

    fn identify(&mut self) -> Result<()> {
        let data = self.identify_raw(CNS_CONTROLLER, 0)?;
        let controller = IdentifyController::read_from_bytes(&data)
            .map_err(|_| NvmeError::InvalidRequest("short Identify data".into()))?;
        self.max_transfer = identify::check_controller(&controller, self.options.nsid)?;
        let data = self.identify_raw(CNS_NAMESPACE, self.options.nsid)?;
        let namespace = IdentifyNamespace::read_from_bytes(&data)
            .map_err(|_| NvmeError::InvalidRequest("short Identify data".into()))?;
        self.namespace = identify::check_namespace(&namespace, self.options.nsid)?;
        if self.namespace.block_size as usize > self.max_transfer {
            return Err(NvmeError::Identify(IdentifyProblem::BlockExceedsTransfer {
                block: self.namespace.block_size,
                max_transfer: self.max_transfer,
            }));
        }
        *self.controller = controller;
        *self.namespace_data = namespace;
        Ok(())
    }

    /// Set Features (Number of Queues) for `wanted` pairs: the pairs to use.
    fn set_queue_count(&mut self, wanted: u32) -> Result<u32> {
        let n = wanted - 1;
        let result = self.set_features(feature::NUMBER_OF_QUEUES, n | (n << 16))?;
        self.granted_queues = result;
        let granted = ((result & 0xffff) + 1).min((result >> 16) + 1);
        if result == u32::MAX {
            return Err(NvmeError::Identify(IdentifyProblem::NoQueuesGranted(
                result,
            )));
        }
        Ok(granted.min(wanted))
    }

    /// Creates each I/O completion queue (on its own vector) and its
    /// submission queue.
    fn create_io_queues(&self) -> Result<()> {
        for io in &self.io {
            let q = &io.queue;
            let size = u32::from(q.entries() - 1) << 16;
            let mut c = Command::new(admin::CREATE_CQ, 0);
            c.prp1 = q.cq_iova();
            c.cdw10 = size | u32::from(q.qid());
            // Interrupts enabled (bit 1), physically contiguous (bit 0).
            c.cdw11 = (u32::from(q.qid()) << 16) | 0b11;
            self.execute(0, c, Page::Unused)?;
            let mut c = Command::new(admin::CREATE_SQ, 0);
            c.prp1 = q.sq_iova();
            c.cdw10 = size | u32::from(q.qid());
            c.cdw11 = (u32::from(q.qid()) << 16) | 0b1;
            self.execute(0, c, Page::Unused)?;
        }
        Ok(())
    }

    /// Disables and re-enables the controller (a controller reset): every
    /// command in flight is lost (waiting for one is
    /// [`NvmeError::Reset`]), then the admin queue, the number of queues
    /// and the I/O queue pairs are set up again in the same memory.
    pub fn reset(&mut self) -> Result<()> {
        self.enable()?;
        let wanted = self.io.len() as u32;
        if wanted > 0 {
            let granted = self.set_queue_count(wanted)?;
            if granted < wanted {
                return Err(NvmeError::Identify(IdentifyProblem::NoQueuesGranted(
                    self.granted_queues,
                )));
            }
        }
        self.create_io_queues()
    }
}

/// The largest bounce buffer a queue keeps for the slice-based calls;
/// longer transfers go through it in pieces.
const BOUNCE_MAX: usize = 128 << 10;

/// An error status as [`NvmeError::Command`].
pub(crate) fn check(command: CommandRef, cqe: &Completion) -> Result<()> {
    let status = cqe.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(NvmeError::Command {
            command,
            status,
            result: cqe.result,
        })
    }
}

impl<B: VfioBackend> Drop for Nvme<B> {
    fn drop(&mut self) {
        // Stop the controller's DMA before the queues and buffers are
        // unmapped; nowhere to report a failure to.
        let _ = self.disable();
    }
}
