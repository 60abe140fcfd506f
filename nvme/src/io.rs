//! NVM commands: read, write, flush, write zeroes, deallocate.

use crate::buffer::{DmaBuffer, PAGE_SIZE};
use crate::controller::Nvme;
use crate::error::{NvmeError, Result};
use crate::prp::prps_by_page;
use crate::queue::{Page, Ticket};
use nvme_spec::identify::{ONCS_DSM, ONCS_WRITE_ZEROES};
use nvme_spec::opcode::nvm;
use nvme_spec::{Command, Completion, DsmRange};
use vfio_core::{DmaMemory, VfioBackend};
use zerocopy::IntoBytes;

/// Dataset Management attribute: deallocate the ranges (dword 11 bit 2).
const DSM_DEALLOCATE: u32 = 1 << 2;

/// The most ranges one Dataset Management command carries.
pub const MAX_DSM_RANGES: usize = 256;

impl<B: VfioBackend> Nvme<B> {
    /// The block count of `len` bytes, checked against the block size and
    /// the longest transfer.
    fn blocks_of(&self, len: usize) -> Result<u32> {
        let bs = self.namespace.block_size as usize;
        if len == 0 || len % bs != 0 {
            return Err(NvmeError::InvalidRequest(format!(
                "{len} bytes is not a whole number of {bs}-byte blocks"
            )));
        }
        if len > self.max_transfer {
            return Err(NvmeError::InvalidRequest(format!(
                "{len} bytes exceed the longest transfer, {} bytes",
                self.max_transfer
            )));
        }
        Ok((len / bs) as u32)
    }

    /// The command for a read or write of `len` bytes at `offset` of
    /// `buf`, to or from `slba`, and the PRP list it needs (empty when PRP1
    /// and PRP2 suffice).
    pub(crate) fn transfer_command(
        &self,
        qid: u16,
        opcode: u8,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<(Command, Vec<u64>)> {
        self.io_queue(qid)?;
        let blocks = self.blocks_of(len)?;
        if offset % 4 != 0 || offset.checked_add(len).is_none_or(|end| end > buf.len()) {
            return Err(NvmeError::InvalidRequest(format!(
                "{len} bytes at offset {offset} of a {}-byte buffer (dword-aligned offsets only)",
                buf.len()
            )));
        }
        let first_page = offset - offset % PAGE_SIZE;
        let next = |i: u64| buf.device_address(first_page + PAGE_SIZE * (i as usize + 1));
        let p = prps_by_page(buf.device_address(offset), len, next).ok_or_else(|| {
            NvmeError::InvalidRequest(format!("{len} bytes need more than one PRP list"))
        })?;
        let mut c = Command::new(opcode, 0);
        c.nsid = self.namespace.nsid;
        c.prp1 = p.prp1;
        c.prp2 = p.prp2.unwrap_or(0);
        c.set_slba(slba);
        c.cdw12 = blocks - 1;
        Ok((c, p.list))
    }

    /// A read or write, submitted and waited for.
    fn transfer(
        &self,
        qid: u16,
        opcode: u8,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        // Written data reaches memory before the doorbell: the queue's wmb()
        // before it covers the buffer too.
        let ticket = self.submit_transfer(qid, opcode, slba, buf, offset, len)?;
        self.finish(&ticket).map(drop)
    }

    /// Submits a read or write of `len` bytes at `offset` of `buf` without
    /// waiting for it.
    pub(crate) fn submit_transfer(
        &self,
        qid: u16,
        opcode: u8,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<Ticket> {
        let (c, list) = self.transfer_command(qid, opcode, slba, buf, offset, len)?;
        let page = if list.is_empty() {
            Page::Unused
        } else {
            Page::PrpList(&list)
        };
        self.queue(qid)?.submit(&self.bar0, c, page)
    }

    /// [`read_dma`](Self::read_dma) without waiting: the read is on queue
    /// `qid` when this returns, and [`finish`](Self::finish) waits for it.
    /// Keeping several in flight (up to the queue's depth less one) is how
    /// a caller reaches a queue depth above 1. `buf` must stay mapped, and
    /// its bytes at `offset..offset + len` unread, until then.
    pub fn submit_read_dma(
        &self,
        qid: u16,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<Ticket> {
        self.submit_transfer(qid, nvm::READ, slba, buf, offset, len)
    }

    /// [`write_dma`](Self::write_dma) without waiting; see
    /// [`submit_read_dma`](Self::submit_read_dma).
    pub fn submit_write_dma(
        &self,
        qid: u16,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<Ticket> {
        self.submit_transfer(qid, nvm::WRITE, slba, buf, offset, len)
    }

    /// Waits for a command of [`submit_read_dma`](Self::submit_read_dma),
    /// [`submit_write_dma`](Self::submit_write_dma) or
    /// [`submit_raw`](Self::submit_raw) as the completion mode says, and
    /// turns an error status into [`NvmeError::Command`]. After a read, the
    /// data is in the buffer and reads of it come after the completion.
    pub fn finish(&self, ticket: &Ticket) -> Result<Completion> {
        let cqe = self.wait(ticket)?;
        crate::controller::check(ticket.command(), &cqe)?;
        if ticket.command().opcode == nvm::READ {
            self.queue(ticket.command().qid)?.rmb();
        }
        Ok(cqe)
    }

    /// Reads `len` bytes (whole blocks) from `slba` into `buf` at `offset`
    /// (dword-aligned), through queue `qid`: PRP1, PRP2 or a PRP list
    /// point into the buffer. Whether the blocks lie inside the namespace
    /// is the controller's to judge (LBA Out of Range).
    pub fn read_dma(
        &self,
        qid: u16,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        self.transfer(qid, nvm::READ, slba, buf, offset, len)
    }

    /// Writes `len` bytes (whole blocks) from `buf` at `offset` to `slba`,
    /// through queue `qid`.
    pub fn write_dma(
        &self,
        qid: u16,
        slba: u64,
        buf: &DmaBuffer<B>,
        offset: usize,
        len: usize,
    ) -> Result<()> {
        self.transfer(qid, nvm::WRITE, slba, buf, offset, len)
    }

    /// Queue `qid`'s bounce buffer, locked, and the largest whole number of
    /// blocks it holds, in bytes.
    fn bounce(&self, qid: u16) -> Result<(parking_lot::MutexGuard<'_, DmaBuffer<B>>, usize)> {
        let bounce = self.io_queue(qid)?.bounce.lock();
        let bs = self.namespace.block_size as usize;
        let piece = bounce.len() - bounce.len() % bs;
        if piece == 0 {
            return Err(NvmeError::InvalidRequest(format!(
                "{bs}-byte blocks do not fit the {}-byte bounce buffer",
                bounce.len()
            )));
        }
        Ok((bounce, piece))
    }

    /// The LBA `len` bytes after `lba`.
    fn after(&self, lba: u64, len: usize) -> u64 {
        lba + (len / self.namespace.block_size as usize) as u64
    }

    /// Reads `out.len()` bytes (whole blocks) from `slba` through queue
    /// `qid`'s bounce buffer, in pieces of at most its size.
    pub fn read(&self, qid: u16, slba: u64, out: &mut [u8]) -> Result<()> {
        let (bounce, piece) = self.bounce(qid)?;
        let mut lba = slba;
        for chunk in out.chunks_mut(piece) {
            self.read_dma(qid, lba, &bounce, 0, chunk.len())?;
            bounce.memory().read_at(0, chunk)?;
            lba = self.after(lba, chunk.len());
        }
        Ok(())
    }

    /// Writes `data` (whole blocks) to `slba` through queue `qid`'s bounce
    /// buffer, in pieces of at most its size.
    pub fn write(&self, qid: u16, slba: u64, data: &[u8]) -> Result<()> {
        let (bounce, piece) = self.bounce(qid)?;
        let mut lba = slba;
        for chunk in data.chunks(piece) {
            self.blocks_of(chunk.len())?;
            bounce.memory().write_at(0, chunk)?;
            self.write_dma(qid, lba, &bounce, 0, chunk.len())?;
            lba = self.after(lba, chunk.len());
        }
        Ok(())
    }

    /// Flush: the namespace's volatile write cache reaches media.
    pub fn flush(&self, qid: u16) -> Result<()> {
        self.io_queue(qid)?;
        let mut c = Command::new(nvm::FLUSH, 0);
        c.nsid = self.namespace.nsid;
        self.execute(qid, c, Page::Unused).map(drop)
    }

    /// Write Zeroes of `blocks` blocks (1 to 65536) from `slba`. Needs
    /// ONCS bit 3.
    pub fn write_zeroes(&self, qid: u16, slba: u64, blocks: u32) -> Result<()> {
        self.io_queue(qid)?;
        if self.identify_controller().oncs & ONCS_WRITE_ZEROES == 0 {
            return Err(NvmeError::Unsupported("Write Zeroes (ONCS bit 3)"));
        }
        if !(1..=65536).contains(&blocks) {
            return Err(NvmeError::InvalidRequest(format!(
                "write zeroes of {blocks} blocks (1 to 65536)"
            )));
        }
        let mut c = Command::new(nvm::WRITE_ZEROES, 0);
        c.nsid = self.namespace.nsid;
        c.set_slba(slba);
        c.cdw12 = blocks - 1;
        self.execute(qid, c, Page::Unused).map(drop)
    }

    /// Dataset Management with the deallocate attribute for `ranges`
    /// (starting LBA, block count), 1 to 256 of them. Needs ONCS bit 2.
    pub fn deallocate(&self, qid: u16, ranges: &[(u64, u32)]) -> Result<()> {
        self.io_queue(qid)?;
        if self.identify_controller().oncs & ONCS_DSM == 0 {
            return Err(NvmeError::Unsupported("Dataset Management (ONCS bit 2)"));
        }
        if ranges.is_empty() || ranges.len() > MAX_DSM_RANGES {
            return Err(NvmeError::InvalidRequest(format!(
                "deallocate of {} ranges (1 to {MAX_DSM_RANGES})",
                ranges.len()
            )));
        }
        let mut list = Vec::with_capacity(PAGE_SIZE);
        for &(slba, nlb) in ranges {
            let r = DsmRange {
                attributes: 0,
                nlb,
                slba,
            };
            list.extend_from_slice(r.as_bytes());
        }
        let mut c = Command::new(nvm::DATASET_MANAGEMENT, 0);
        c.nsid = self.namespace.nsid;
        c.cdw10 = ranges.len() as u32 - 1;
        c.cdw11 = DSM_DEALLOCATE;
        self.execute(qid, c, Page::DataIn(&list)).map(drop)
    }

    pub(crate) fn io_queue(&self, qid: u16) -> Result<&crate::controller::IoQueue<B>> {
        qid.checked_sub(1)
            .and_then(|i| self.io.get(usize::from(i)))
            .ok_or(NvmeError::NoSuchQueue(qid))
    }
}
