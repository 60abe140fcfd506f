//! Awaiting completions on each queue's MSI-X vector with tokio (the
//! `tokio` feature): the same commands as the blocking methods, with the
//! same checks, the waiting done by vfio-core's [`AsyncInterrupt`].

use crate::buffer::DmaBuffer;
use crate::controller::{Nvme, check};
use crate::error::{NvmeError, Result};
use crate::queue::Ticket;
use nvme_spec::opcode::nvm;
use nvme_spec::{Command, Completion};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vfio_core::{AsyncInterrupt, DmaMemory, Interrupt, VfioBackend};

/// How long an await sleeps before it looks at the queue again, in case
/// another task consumed the interrupt that carried its completion.
const WAIT_SLICE: Duration = Duration::from_millis(10);

/// A queue's interrupt, shared between the driver (which bound it) and the
/// reactor.
#[derive(Debug)]
struct Shared<B: VfioBackend>(Arc<B::Interrupt>);

impl<B: VfioBackend> AsFd for Shared<B> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl<B: VfioBackend> Interrupt for Shared<B> {
    fn wait(&self, timeout: Option<Duration>) -> vfio_core::Result<Option<u64>> {
        self.0.wait(timeout)
    }
    fn try_consume(&self) -> vfio_core::Result<Option<u64>> {
        self.0.try_consume()
    }
}

/// A controller's queues with their interrupts registered on the current
/// tokio runtime: commands whose completions are awaited.
///
/// ```no_run
/// # async fn demo<B: vfio_core::VfioBackend>(nvme: &nvme::Nvme<B>, backend: &B) -> nvme::Result<()> {
/// let queues = nvme::AsyncNvme::new(nvme)?;
/// let buf = nvme.alloc_buffer(backend, 4096)?;
/// queues.read_dma(1, 0, &buf, 0, 4096).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct AsyncNvme<'a, B: VfioBackend> {
    nvme: &'a Nvme<B>,
    irqs: Vec<AsyncInterrupt<Shared<B>>>,
}

impl<'a, B: VfioBackend> AsyncNvme<'a, B> {
    /// Registers every queue's interrupt with the current runtime's reactor
    /// (call it inside a runtime with IO and time enabled).
    pub fn new(nvme: &'a Nvme<B>) -> Result<Self> {
        let irqs = nvme
            .irqs
            .iter()
            .map(|i| AsyncInterrupt::new(Shared::<B>(i.clone())))
            .collect::<vfio_core::Result<Vec<_>>>()?;
        Ok(Self { nvme, irqs })
    }

    /// Awaits `ticket`'s completion: looks at the queue, and awaits its
    /// vector between looks, for up to the queue's timeout.
    async fn wait_page(&self, ticket: &Ticket, page_out: bool) -> Result<(Completion, Vec<u8>)> {
        let qid = ticket.command().qid;
        let queue = self.nvme.queue(qid)?;
        let irq = self
            .irqs
            .get(usize::from(qid))
            .ok_or(NvmeError::NoSuchQueue(qid))?;
        let timeout = self.nvme.timeout(qid);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(done) = queue.poll(&self.nvme.bar0, ticket, page_out)? {
                return Ok(done);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                queue.abandon(ticket);
                return Err(NvmeError::Timeout {
                    command: ticket.command(),
                    timeout,
                });
            }
            if let Ok(fired) = tokio::time::timeout(left.min(WAIT_SLICE), irq.wait()).await {
                fired?;
            }
        }
    }

    /// [`Nvme::submit_raw`], then awaits the completion, whatever its status.
    pub async fn execute_raw(&self, qid: u16, command: Command) -> Result<Completion> {
        let ticket = self.nvme.submit_raw(qid, command)?;
        Ok(self.wait_page(&ticket, false).await?.0)
    }

    async fn transfer(
        &self,
        qid: u16,
        opcode: u8,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        let ticket = self
            .nvme
            .submit_transfer(qid, opcode, slba, buf, offset, len)?;
        let (cqe, _) = self.wait_page(&ticket, false).await?;
        check(ticket.command(), &cqe)?;
        if opcode == nvm::READ {
            buf.memory().rmb();
        }
        Ok(())
    }

    /// [`Nvme::read_dma`], awaited.
    pub async fn read_dma(
        &self,
        qid: u16,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        self.transfer(qid, nvm::READ, slba, buf, offset, len).await
    }

    /// [`Nvme::write_dma`], awaited.
    pub async fn write_dma(
        &self,
        qid: u16,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        self.transfer(qid, nvm::WRITE, slba, buf, offset, len).await
    }

    /// [`Nvme::flush`], awaited.
    pub async fn flush(&self, qid: u16) -> Result<()> {
        self.nvme.io_queue(qid)?;
        let mut c = Command::new(nvm::FLUSH, 0);
        c.nsid = self.nvme.namespace.nsid;
        let ticket = self.nvme.submit_raw(qid, c)?;
        let (cqe, _) = self.wait_page(&ticket, false).await?;
        check(ticket.command(), &cqe)
    }
}
