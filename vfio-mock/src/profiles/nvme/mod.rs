//! QEMU 7.2's NVMe controller (`hw/nvme/ctrl.c`, `hw/nvme/ns.c`, with
//! the defaults of `-device nvme,serial=...,drive=...`) as vfio-pci presents
//! it, running the protocol: registers, admin and I/O queues, commands on a
//! sparse in-memory namespace, completions and interrupts.
//!
//! # What is modelled
//!
//! - Registers: CAP (MQES 0x7ff, CQR, TO 7.5 s, DSTRD 0,
//!   NVM + I/O command sets + admin only, MPS 4 to 64 KiB), VS 1.4, INTMS and
//!   INTMC, CC with enable (every check of `nvme_start_ctrl`; a refused
//!   enable sets CSTS.CFS) and shutdown (CSTS.SHST goes straight to
//!   complete), AQA/ASQ/ACQ, the doorbells at stride 4 from 0x1000.
//! - Queues: the admin pair from AQA/ASQ/ACQ at enable, up to 64 I/O pairs,
//!   phase tags, SQ head reporting, a CQ that is full holding completions
//!   until its head doorbell frees a slot, a queue never holding more
//!   commands in flight than its size, one interrupt vector per CQ (MSI-X
//!   vector IV when MSI-X is enabled, else INTx through QEMU's INTMS mask
//!   and pending-CQ count), no interrupt for a CQ created with IEN clear.
//! - Admin commands: Identify (CNS 00h, 01h, 02h, 03h, 05h, 06h, 07h, 10h,
//!   11h, 12h, 13h, 14h, 15h, 1Ah, 1Bh, 1Ch), Get/Set Features (every
//!   feature QEMU answers), Create/Delete I/O SQ and CQ, Abort, Get Log
//!   Page (error, SMART, firmware slot, changed namespaces, command
//!   effects), Asynchronous Event Request (events for invalid doorbell
//!   writes and the temperature threshold).
//! - Format NVM (the LBA format switches and every block reads zero),
//!   Doorbell Buffer Config (SQ tails and CQ heads taken from the shadow
//!   buffer, event indexes written), and QEMU's refusals of Namespace
//!   Attachment and Virtualization Management on a controller without a
//!   subsystem or SR-IOV.
//! - I/O commands: Read, Write, Flush, Write Zeroes, Dataset Management,
//!   Compare, Verify and Copy (which QEMU's own namespace always fails),
//!   over PRP1/PRP2 and (chained) PRP lists or SGLs
//!   (Data Block, Segment, Last Segment descriptors), through the simulated
//!   IOMMU ([`DeviceContext::dma_read`] and `dma_write`).
//! - Status codes and the DNR bit exactly as QEMU 7.2 sets them, including
//!   where that differs from the specification (each such place says so).
//! - Device time: a doorbell write returns at once; the controller fetches
//!   and runs commands on the device's worker thread
//!   ([`DeviceContext::defer`]) and, with [`NvmeConfig::latency`], finishes
//!   I/O commands on the host's virtual clock ([`DeviceContext::schedule`]),
//!   so completions come late, out of order across queues, and the
//!   interrupt before the driver polls. An SQ tail doorbell that finds the
//!   controller busy waits, without blocking the driver, for the device's
//!   thread to take it with any others (see `queues::ring`); work already
//!   handed to that thread is not handed over twice, and a CQ's finished
//!   commands are posted together under one interrupt, as QEMU's SQ and CQ
//!   bottom halves do. MSI-X messages are sent once the controller's lock
//!   is let go.
//! - Reset: CC.EN 1 to 0 and a function-level reset delete every queue,
//!   drop the outstanding asynchronous event requests and queued events,
//!   turn shadow doorbells off and clear CC (all of it), CSTS and the
//!   interrupt mask, keeping AQA, ASQ and ACQ (`nvme_ctrl_reset`). Features
//!   and the namespace's data survive.
//!
//! The facts come from QEMU 7.2's source as Debian bookworm ships it
//! (1:7.2+dfsg-7+deb12u18, QEMU 7.2.22, the guest's), and the answers are
//! checked against that QEMU itself: `tests/nvme_controller.rs` compares
//! Identify and log pages byte for byte, the status and result of 317
//! admin and I/O commands (and of 25 more under CC.CSS 7 and 6), and the
//! registers after each of 60 writes with what
//! `tests/fixtures/qemu-7.2-nvme/capture.py` recorded from it.
//!
//! # Where QEMU 7.2 differs from the specification (and the model follows QEMU)
//!
//! - A data buffer the IOMMU refuses does not fail the command: QEMU's DMA
//!   helpers drop the refused bytes (a device read of them yields zeroes)
//!   and the command succeeds. Only a PRP list, SQ entry or CQ entry the
//!   controller cannot reach is an error (Data Transfer Error, or CSTS.CFS
//!   for queue entries). Read, Write and the other data commands add DNR
//!   to every error, a Data Transfer Error included; admin commands do not.
//! - A valid NSID without a namespace (2 to 256) is Invalid Field in
//!   Command, not Invalid Namespace, for I/O commands, Flush and Identify's
//!   descriptor list; the SMART log refuses NSID 0 as Invalid Namespace.
//! - Clearing CC.EN clears all of CC; a shutdown notification reports
//!   "complete" at once and the queues keep working afterwards.
//! - Set Features Number of Queues always grants 64 and 64; Get Features
//!   with "saved" or "default" select reads QEMU's default table (0 for
//!   the write cache, which is on).
//! - A doorbell error event's information is 0 for "invalid doorbell
//!   register" and 1 for "invalid doorbell write value" (the
//!   specification's 1 and 2).
//! - I/O commands that reach the drive and come back together complete
//!   last first (a batch of reads fetched by one doorbell posts in reverse).
//! - Dataset Management skips ranges that are out of bounds or too long
//!   rather than failing; the deallocate is passed to the drive, which the
//!   guest's `-drive` ignores (see [`NvmeConfig::discard`]).
//! - Get Log Page computes its length in 32 bits: NUMD FFFFFFFFh is a
//!   successful transfer of nothing.
//! - Copy of one range on QEMU's own namespace (MSSRL 0) fails with
//!   Internal Error, no DNR, rather than Command Size Limit Exceeded.
//! - OACS advertises Namespace Management, which is Invalid Opcode.
//! - Pin-based interrupts keep QEMU's pending-CQ counter, which a head
//!   doorbell on an empty CQ can wrap; it survives resets, as QEMU's does.
//!
//! # What is not modelled
//!
//! Metadata and protection information (a format with metadata only
//! changes the geometry), the DULBE error-recovery check (the feature is
//! stored; which blocks QEMU sees as deallocated depends on the host file
//! system under the drive), the controller memory buffer and PMR, NVM
//! subsystem reset, QEMU's rule that a PRP pointing into the controller's
//! own BAR is a Data Transfer Error, and its single DMA bounce buffer.

mod admin;
mod events;
mod features;
mod identify;
mod io;
mod irq;
mod log;
mod namespace;
mod prp;
mod queues;
mod regs;
mod sgl;

use crate::builder::{BarSpec, PciDeviceBuilder};
use crate::model::{DeviceContext, DeviceModel};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// Size of BAR0: registers, doorbells, MSI-X table and PBA, rounded up to
/// a power of two (`nvme_bar_size` with 64 I/O queue pairs and 65 vectors).
pub const BAR0_SIZE: u64 = 16 << 10;
/// Offset of the MSI-X table in BAR0 (after the 4 KiB register block and
/// the doorbells, 4 KiB-aligned). Checked in the guest:
/// `nvme_config_space_matches_qemu_layout`.
pub const MSIX_TABLE_OFFSET: u32 = 0x2000;
/// Offset of the MSI-X pending-bit array in BAR0 (checked likewise).
pub const MSIX_PBA_OFFSET: u32 = 0x3000;
/// MSI-X vectors (`msix_qsize` default).
pub const MSIX_VECTORS: u16 = 65;

/// Controller Capabilities: MQES 0x7ff, CQR, TO 0xf (7.5 s), DSTRD 0,
/// CSS NVM + I/O command sets + admin-only, MPSMIN 0 (4 KiB), MPSMAX 4 (64 KiB).
pub const CAP: u64 = 0x7ff | (1 << 16) | (0xf << 24) | ((0x1 | 0x40 | 0x80) << 37) | (4 << 52);
/// Version: NVMe 1.4.
pub const VS: u32 = 0x0001_0400;

/// Register offsets: nvme-spec's, which the NVMe driver uses too.
pub use nvme_spec::regs as reg;

/// CC.EN.
pub use nvme_spec::regs::cc::EN as CC_EN;
/// CSTS.CFS (controller fatal status: the enable was refused).
pub use nvme_spec::regs::csts::CFS as CSTS_CFS;
/// CSTS.RDY.
pub use nvme_spec::regs::csts::RDY as CSTS_RDY;

/// The controller's settings: the drive behind its namespace, its serial
/// number, its MSI-X vectors and how long it takes. The defaults are the
/// project guest's controller at 00:03.0: `-device
/// nvme,serial=vfio0001,drive=nvm` on a 64 MiB raw image, 512-byte logical
/// blocks, 65 vectors, and commands finished on the device's own thread as
/// soon as it runs.
///
/// ```
/// use std::time::Duration;
/// use vfio_mock::profiles::nvme::NvmeConfig;
///
/// let device = NvmeConfig::new("vfio0003")
///     .namespace_bytes(1 << 30)
///     .block_size(4096)
///     .latency(Duration::from_micros(20))
///     .build();
/// # let _ = device;
/// ```
#[derive(Debug, Clone)]
pub struct NvmeConfig {
    serial: String,
    drive_bytes: u64,
    block_size: u32,
    vectors: u16,
    latency: Duration,
    discard: bool,
}

impl Default for NvmeConfig {
    fn default() -> Self {
        Self {
            serial: "vfio0001".into(),
            drive_bytes: 64 << 20,
            block_size: 512,
            vectors: MSIX_VECTORS,
            latency: Duration::ZERO,
            discard: false,
        }
    }
}

impl NvmeConfig {
    /// The defaults with serial number `serial` (QEMU's `serial=`; the
    /// Identify data keep its first 20 bytes, and the subsystem NQN is
    /// `nqn.2019-08.org.qemu:<serial>`).
    pub fn new(serial: &str) -> Self {
        Self {
            serial: serial.into(),
            ..Self::default()
        }
    }

    /// The drive's size in bytes: the namespace has `bytes / block_size`
    /// blocks, as QEMU rounds a drive down to whole blocks. Storage is
    /// sparse: only written blocks take memory.
    pub fn namespace_bytes(mut self, bytes: u64) -> Self {
        self.drive_bytes = bytes;
        self
    }

    /// The logical block size (QEMU's `logical_block_size`): a power of two
    /// from 512 bytes to 2 MiB, as QEMU accepts; other values are ignored.
    pub fn block_size(mut self, bytes: u32) -> Self {
        if bytes.is_power_of_two() && (512..=2 << 20).contains(&bytes) {
            self.block_size = bytes;
        }
        self
    }

    /// MSI-X vectors (QEMU's `msix_qsize`, 1 to 2048; other values are
    /// ignored). BAR0 is laid out for them as [`bar0_layout`] says.
    pub fn msix_vectors(mut self, vectors: u16) -> Self {
        if (1..=2048).contains(&vectors) {
            self.vectors = vectors;
        }
        self
    }

    /// Virtual time from fetching an I/O command to finishing it (0, the
    /// default: it finishes when the device's thread fetches it). A nonzero
    /// latency runs the command when the host's clock has moved that far
    /// ([`MockHost::advance`](crate::MockHost::advance)). Admin commands
    /// always finish when fetched.
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Whether a Dataset Management deallocate discards the blocks (they
    /// then read as zeroes). False by default: QEMU passes the discard to
    /// the drive, and `-drive` ignores discards unless `discard=unmap`.
    pub fn discard(mut self, discard: bool) -> Self {
        self.discard = discard;
        self
    }

    /// The controller as a PCI function (see [`nvme`]).
    pub fn build(self) -> PciDeviceBuilder {
        let vectors = self.vectors;
        let (size, table, pba) = bar0_layout(IO_QUEUE_PAIRS + 1, u32::from(vectors));
        PciDeviceBuilder::new(0x1b36, 0x0010)
            .subsystem(0x1af4, 0x1100)
            .class(0x010802)
            .revision(2)
            .interrupt_pin(1)
            .pm()
            .at(0x60)
            .pcie()
            .at(0x80)
            .bar(0, BarSpec::memory64(size))
            .msix(vectors, 0, table, 0, pba)
            .can_reset(true)
            .model(NvmeModel::with_config(self))
    }
}

/// What never changes after the controller is built.
#[derive(Debug)]
struct Fixed {
    serial: String,
    vectors: u16,
    latency: Duration,
}

/// The controller's state, behind one lock.
#[derive(Debug)]
struct Ctrl {
    regs: regs::Regs,
    /// Memory page size from CC.MPS at the last enable.
    page: u64,
    sqs: Vec<Option<queues::Sq>>,
    cqs: Vec<Option<queues::Cq>>,
    /// QEMU's `irq_status`: a bit per vector (pin-based interrupts).
    irq_status: u32,
    /// QEMU's `cq_pending`: CQs with entries the host has not consumed.
    cq_pending: u32,
    /// Whether this model holds INTx asserted.
    intx: bool,
    /// Command identifiers of the outstanding Asynchronous Event Requests.
    aer_reqs: Vec<u16>,
    /// Queued events: `(type, info, log page)`.
    aer_queue: std::collections::VecDeque<(u8, u8, u8)>,
    /// Event types reported and not yet cleared by reading their log.
    aer_mask: u8,
    /// An I/O CQ was created since the last reset (Set Features Number of
    /// Queues is then refused).
    qs_created: bool,
    features: features::Features,
    stats: io::Stats,
    ns: namespace::Namespace,
    /// Shadow doorbell and event index buffers (Doorbell Buffer Config).
    dbbuf: Option<(u64, u64)>,
    /// Counts controller resets: work queued before one is dropped.
    generation: u64,
    /// Numbers queues so work for a deleted queue is not run on a new one.
    next_serial: u64,
    /// An empty buffer for taking doorbell writes (kept for its capacity).
    doorbell_spare: Vec<(u64, u32)>,
    /// MSI-X vectors to signal once the lock is let go.
    msix_out: Vec<u16>,
    /// A buffer for a Read's PRP segments (kept for its capacity).
    segs_spare: prp::Segments,
    /// An empty buffer for the commands an SQ walk sends to the drive.
    drive_spare: Vec<(u64, u16, nvme_spec::Status, u32)>,
    /// Work handed to the device's thread whose job has not started, with
    /// the device epoch it was handed over in.
    handed: Vec<(queues::Work, u64)>,
}

impl Ctrl {
    fn new(config: &NvmeConfig) -> Self {
        Self {
            regs: regs::Regs::power_on(),
            page: 4096,
            sqs: (0..=IO_QUEUE_PAIRS).map(|_| None).collect(),
            cqs: (0..=IO_QUEUE_PAIRS).map(|_| None).collect(),
            irq_status: 0,
            cq_pending: 0,
            intx: false,
            aer_reqs: Vec::new(),
            aer_queue: std::collections::VecDeque::new(),
            aer_mask: 0,
            qs_created: false,
            features: features::Features::default(),
            stats: io::Stats::default(),
            ns: namespace::Namespace::new(config.drive_bytes, config.block_size, config.discard),
            dbbuf: None,
            generation: 0,
            next_serial: 1,
            doorbell_spare: Vec::new(),
            msix_out: Vec::new(),
            drive_spare: Vec::new(),
            segs_spare: Vec::new(),
            handed: Vec::new(),
        }
    }

    /// A number no queue has had.
    fn take_serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }

    /// `nvme_ctrl_reset`: every queue and outstanding event request gone,
    /// CC, CSTS, INTMS and INTMC clear. QEMU keeps its `irq_status` and
    /// `cq_pending` counters across it.
    fn reset(&mut self) {
        self.generation += 1;
        // The jobs handed over before are dropped when they run.
        self.handed.clear();
        self.sqs.iter_mut().for_each(|q| *q = None);
        self.cqs.iter_mut().for_each(|q| *q = None);
        self.aer_reqs.clear();
        self.aer_queue.clear();
        self.aer_mask = 0;
        self.qs_created = false;
        self.dbbuf = None;
        self.regs.set32(reg::CSTS, 0);
        self.regs.set32(reg::INTMS, 0);
        self.regs.set32(reg::INTMC, 0);
        self.regs.set32(reg::CC, 0);
    }
}

/// State shared by the model's clones and the work it defers.
#[derive(Debug)]
struct Shared {
    fixed: Fixed,
    ctrl: Mutex<Ctrl>,
    /// Doorbell writes the controller has not taken yet (see
    /// [`queues::ring`]).
    doorbells: Mutex<queues::Doorbells>,
    /// Whether `doorbells` holds writes (changed under its lock, read
    /// without it).
    doorbells_waiting: std::sync::atomic::AtomicBool,
}

impl Shared {
    /// The controller, locked, with the doorbell writes waiting for it
    /// applied first, in the order they were written (the work they start
    /// goes to the device's thread, as a doorbell's always does).
    fn lock(self: &Arc<Self>, ctx: &DeviceContext<'_>) -> parking_lot::MutexGuard<'_, Ctrl> {
        let mut c = self.ctrl.lock();
        let todo = queues::take_doorbells(self, &mut c, ctx);
        queues::flush(self, &mut c, ctx, todo);
        c
    }
}

/// The NVMe controller model. Clones share state.
#[derive(Debug, Clone)]
pub struct NvmeModel {
    shared: Arc<Shared>,
}

impl Default for NvmeModel {
    fn default() -> Self {
        Self::with_config(NvmeConfig::default())
    }
}

impl NvmeModel {
    /// A controller with the default settings at power-on (CC.EN and
    /// CSTS.RDY clear).
    pub fn new() -> Self {
        Self::default()
    }

    /// A controller with `config`'s settings at power-on.
    pub fn with_config(config: NvmeConfig) -> Self {
        let ctrl = Ctrl::new(&config);
        Self {
            shared: Arc::new(Shared {
                fixed: Fixed {
                    serial: config.serial,
                    vectors: config.vectors,
                    latency: config.latency,
                },
                ctrl: Mutex::new(ctrl),
                doorbells: Mutex::new(queues::Doorbells::default()),
                doorbells_waiting: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Bytes of memory the namespace's written blocks hold (storage is
    /// sparse: a never-written or zeroed 4 KiB chunk holds none).
    pub fn resident_bytes(&self) -> u64 {
        self.shared.ctrl.lock().ns.resident_bytes()
    }
}

impl DeviceModel for NvmeModel {
    fn read(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64> {
        if bar != 0 || offset >= u64::from(MSIX_TABLE_OFFSET) {
            return None;
        }
        // The doorbells and everything past the 4 KiB register block read 0.
        Some(self.shared.lock(ctx).regs.read(offset, width))
    }

    fn write(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8, value: u64) -> bool {
        if bar != 0 || offset >= u64::from(MSIX_TABLE_OFFSET) {
            return false;
        }
        // QEMU's smallest access is 2 bytes: a 1-byte write reaches the
        // controller as a 2-byte one with the upper byte zero.
        let width = width.max(2);
        let value = match width {
            8 => value,
            w => value & ((1u64 << (8 * u32::from(w.min(7)))) - 1),
        };
        if offset < regs::BLOCK {
            regs::write(&self.shared, ctx, offset, width, value);
        } else {
            queues::ring(&self.shared, ctx, offset, value as u32);
        }
        true
    }

    /// A function-level reset as QEMU 7.2's controller does it
    /// (`nvme_pci_reset`): `nvme_ctrl_reset`, so CC, CSTS and the interrupt
    /// mask clear and every queue goes, while AQA, ASQ and ACQ keep what was
    /// written (`nvme_reset_clears_cc_and_the_interrupt_mask_but_keeps_the_admin_queues`).
    /// The mock itself deasserts INTx and drops the device's pending work.
    fn reset(&self) {
        let mut c = self.shared.ctrl.lock();
        // Doorbell writes not taken yet die with the queues they were for.
        let mut d = self.shared.doorbells.lock();
        d.writes.clear();
        self.shared
            .doorbells_waiting
            .store(false, std::sync::atomic::Ordering::Release);
        drop(d);
        c.reset();
        c.intx = false;
    }
}

/// QEMU's NVMe controller as the guest has it: vendor 0x1b36 device
/// 0x0010, subsystem 0x1af4:0x1100, class 0x010802, revision 2, PCI
/// Express (4 KiB config space) with PM at 0x60, the PCIe capability at
/// 0x80 and MSI-X at 0x40 (list order MSI-X, PCIe, PM), BAR0 16 KiB 64-bit
/// non-prefetchable MMIO holding the registers, the MSI-X table and the
/// PBA, 65 MSI-X vectors, no MSI, INTA#, and FLR (vfio-pci can reset it:
/// `nvme_advertises_reset_and_resets`).
pub fn nvme() -> PciDeviceBuilder {
    NvmeConfig::default().build()
}

/// QEMU's NVMe controller with `vectors` MSI-X vectors (its `msix_qsize`,
/// 1 to 2048) and the default 64 I/O queue pairs: BAR0 laid out as QEMU's
/// `nvme_bar_size` does, see [`bar0_layout`]. The other settings are
/// [`NvmeConfig`]'s defaults.
pub fn nvme_with_vectors(vectors: u16) -> PciDeviceBuilder {
    NvmeConfig::default().msix_vectors(vectors).build()
}

/// QEMU's default number of I/O queue pairs (`max_ioqpairs`).
const IO_QUEUE_PAIRS: u32 = 64;

/// BAR0's size and the offsets of the MSI-X table and PBA for `queues`
/// queues (admin included) and `vectors` vectors, as QEMU 7.2's
/// `nvme_bar_size` computes them: the 4 KiB register block and two doorbells
/// per queue, rounded up to 4 KiB; the table (16 bytes a vector), rounded
/// up to 4 KiB; the PBA (a bit a vector, in 64-bit words); the whole rounded
/// up to a power of two.
pub fn bar0_layout(queues: u32, vectors: u32) -> (u64, u32, u32) {
    let align = |n: u32| n.next_multiple_of(4096);
    let table = align(4096 + 2 * queues * 4);
    let pba = align(table + 16 * vectors);
    let end = pba + vectors.next_multiple_of(64) / 8;
    (u64::from(end).next_power_of_two(), table, pba)
}

#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn the_default_layout_is_qemus() {
        assert_eq!(
            bar0_layout(IO_QUEUE_PAIRS + 1, u32::from(MSIX_VECTORS)),
            (BAR0_SIZE, MSIX_TABLE_OFFSET, MSIX_PBA_OFFSET)
        );
    }

    #[test]
    fn two_thousand_vectors_need_a_64_kib_bar() {
        assert_eq!(bar0_layout(65, 2048), (64 << 10, 0x2000, 0xa000));
    }
}
