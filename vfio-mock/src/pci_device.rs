//! One simulated PCI function on the host, with the per-device state
//! vfio-pci keeps: config space, BAR memory and model, interrupts, open
//! count, and the IOMMU its DMA goes through.

use crate::bar::BarMemory;
use crate::builder::{BarKind, DeviceSpec, PciDeviceBuilder};
use crate::config_space::{ConfigSpace, reg};
use crate::container::{ContainerSlot, Dma};
use crate::fault::Faults;
use crate::fault_log::{self, FaultAccess, FaultLog, IommuFault};
use crate::iommu::Access;
use crate::iommufd::DomainSlot;
use crate::irq::{Enabled, IrqEnv, IrqState, NUM_IRQS};
use crate::model::{Delivery, DeviceContext, DeviceModel, DmaFault, Irq};
use crate::procfs::ProcInterrupts;
use crate::scheduler::{Scheduler, Work, Worker};
use nix::errno::Errno;
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering};
use vfio_core::{
    DeviceFlags, DeviceInfo, IrqAction, IrqData, IrqFlags, IrqIndex, IrqInfo, PciAddress,
    RegionCap, RegionFlags, RegionInfo, region,
};

/// vfio-pci's fixed region count (`VFIO_PCI_NUM_REGIONS`: BAR0-5, ROM, config, VGA).
pub(crate) const NUM_REGIONS: u32 = 9;

/// The file offset of region `index` (`VFIO_PCI_INDEX_TO_OFFSET`).
pub(crate) fn region_offset(index: u32) -> u64 {
    u64::from(index) << 40
}

/// The driver a device is bound to on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    /// vfio-pci: the device can be opened through its group.
    VfioPci,
    /// Another driver (e.g. `nvme`) that uses the DMA API: the device's
    /// group is not viable while it is bound.
    Other(String),
    /// No driver: does not stop the group being viable, but the device
    /// cannot be opened.
    None,
}

impl Driver {
    /// The driver's name in sysfs, if bound.
    pub(crate) fn name(&self) -> Option<&str> {
        match self {
            Self::VfioPci => Some("vfio-pci"),
            Self::Other(n) => Some(n),
            Self::None => None,
        }
    }
}

/// A simulated PCI function.
#[derive(Debug)]
pub(crate) struct PciDevice {
    pub address: PciAddress,
    pub driver: Driver,
    pub intx_irq: u32,
    spec: DeviceSpec,
    config: Mutex<ConfigSpace>,
    /// Config space as it was when the first fd was opened, put back when
    /// the last one closes (vfio-pci's saved state, restored on release).
    saved_config: Mutex<Option<ConfigSpace>>,
    /// `msi_qmax`: the log2 of the MSI vectors last enabled by ioctl, which
    /// caps the queue size the user can write into Message Control.
    msi_qmax: AtomicU8,
    /// A copy of the command register, read on every BAR access.
    command: AtomicU16,
    /// Shared with the regions mapped from them (their lock-free fast path).
    bars: [Option<Arc<BarMemory>>; 6],
    rom: Option<BarMemory>,
    model: Option<Box<dyn DeviceModel>>,
    irqs: Mutex<IrqState>,
    open_fds: Mutex<Opens>,
    /// Signalled when the last device fd (or mapping) is closed.
    released: parking_lot::Condvar,
    /// Removal has begun (`vfio_unregister_group_dev`): the device is
    /// removed once released.
    unregistering: AtomicBool,
    /// What completes the removal, run at the last close.
    on_released: Mutex<Option<Completion>>,
    removed: AtomicBool,
    pub procfs: Arc<ProcInterrupts>,
    pub container: ContainerSlot,
    /// The IOAS its group is attached to through an iommufd, if any.
    pub domain: DomainSlot,
    pub faults: Arc<Faults>,
    /// The host's DMA remapping fault records.
    pub fault_log: Arc<FaultLog>,
    /// The host IOMMU's last IOVA: a DMA past it faults as beyond the
    /// address width.
    pub iommu_last_iova: u64,
    /// What the host's kernel does with MSI and MSI-X vectors.
    pub irq_kernel: crate::irq::IrqKernel,
    /// The host's timers and deferred-work count.
    pub scheduler: Arc<Scheduler>,
    /// The thread deferred work runs on.
    worker: Worker,
    /// Bumped by a function reset and a removal: older work is dropped.
    epoch: AtomicU64,
    /// The `Arc` this device lives in, for handlers that run later.
    me: std::sync::OnceLock<std::sync::Weak<PciDevice>>,
}

impl PciDevice {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        address: PciAddress,
        driver: Driver,
        mut builder: PciDeviceBuilder,
        spec: DeviceSpec,
        procfs: Arc<ProcInterrupts>,
        container: ContainerSlot,
        domain: DomainSlot,
        faults: Arc<Faults>,
        fault_log: Arc<FaultLog>,
        scheduler: Arc<Scheduler>,
    ) -> Self {
        let mut bars: [Option<Arc<BarMemory>>; 6] = Default::default();
        for (slot, bar) in bars.iter_mut().zip(spec.bars.iter()) {
            *slot = bar.map(|b| Arc::new(BarMemory::new(b.size)));
        }
        let rom = (spec.rom_size != 0).then(|| BarMemory::new(spec.rom_size));
        if let Some(replay) = &spec.replay {
            crate::profile::fill_bars(&bars, replay, spec.msix.as_ref().map(|(_, m)| m));
        }
        // The IO-APIC pin the line is routed to: GSI 16-23, rotated by slot
        // as the q35 PIRQ routing does (the exact number is the mock's choice).
        let intx_irq =
            16 + (u32::from(address.device()) + u32::from(spec.interrupt_pin.max(1)) - 1) % 8;
        Self {
            address,
            driver,
            intx_irq,
            config: Mutex::new(spec.config.clone()),
            saved_config: Mutex::new(None),
            msi_qmax: AtomicU8::new(0),
            command: AtomicU16::new(0),
            bars,
            rom,
            model: builder.model.take(),
            spec,
            irqs: Mutex::new(IrqState::default()),
            open_fds: Mutex::new(Opens::default()),
            released: parking_lot::Condvar::new(),
            unregistering: AtomicBool::new(false),
            on_released: Mutex::new(None),
            removed: AtomicBool::new(false),
            procfs,
            container,
            domain,
            faults,
            fault_log,
            iommu_last_iova: crate::iommu::IommuGeometry::default().last_iova(),
            irq_kernel: crate::irq::IrqKernel::default(),
            scheduler,
            worker: Worker::default(),
            epoch: AtomicU64::new(0),
            me: std::sync::OnceLock::new(),
        }
    }

    /// Puts the device in its `Arc` (once, when the host is built).
    pub(crate) fn into_arc(self) -> Arc<Self> {
        let device = Arc::new(self);
        let _ = device.me.set(Arc::downgrade(&device));
        device
    }

    /// The INTx unmask eventfd was signalled (see [`crate::virqfd`]).
    pub(crate) fn unmask_intx_from_eventfd(&self, stopped: &std::sync::atomic::AtomicBool) {
        self.irqs.lock().unmask_from_eventfd(stopped);
    }

    /// The device's current work epoch (see [`crate::scheduler`]).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Ends the current epoch: deferred work and timers not yet run are dropped.
    fn new_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(me) = self.me.get() {
            self.scheduler.cancel(me);
        }
    }

    /// Runs `work` on the device's worker thread.
    pub(crate) fn defer(&self, work: Work) {
        if let Some(me) = self.me.get() {
            self.worker.defer(me, &self.scheduler, self.epoch(), work);
        }
    }

    /// Runs `work` once the host's virtual time has moved `after` on.
    pub(crate) fn schedule(&self, after: std::time::Duration, work: Work) {
        if let Some(me) = self.me.get() {
            self.scheduler
                .schedule(me.clone(), self.epoch(), after, work);
        }
    }

    #[inline]
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Whether removal has begun (it completes once the device is released).
    pub(crate) fn is_unregistering(&self) -> bool {
        self.unregistering.load(Ordering::Acquire)
    }

    /// The config space bytes (for sysfs `config`).
    pub(crate) fn config_bytes(&self) -> Vec<u8> {
        self.config.lock().bytes().to_vec()
    }

    pub(crate) fn ids(&self) -> (u16, u16, u16, u16, u32, u8) {
        let c = self.config.lock();
        let class = u32::from_le_bytes([
            c.u8_at(reg::CLASS_PROG),
            c.u8_at(reg::CLASS_PROG + 1),
            c.u8_at(reg::CLASS_PROG + 2),
            0,
        ]);
        (
            c.u16_at(reg::VENDOR_ID),
            c.u16_at(reg::DEVICE_ID),
            c.u16_at(reg::SUBSYSTEM_VENDOR_ID),
            c.u16_at(reg::SUBSYSTEM_ID),
            class,
            c.u8_at(reg::REVISION),
        )
    }

    // ---- info ioctls ----

    /// `VFIO_DEVICE_GET_INFO`.
    pub(crate) fn info(&self) -> DeviceInfo {
        if let Some(replay) = &self.spec.replay {
            return replay.device;
        }
        let mut flags = DeviceFlags::PCI;
        if self.spec.can_reset {
            flags = flags | DeviceFlags::RESET;
        }
        DeviceInfo {
            flags,
            num_regions: NUM_REGIONS,
            num_irqs: NUM_IRQS,
        }
    }

    /// Vectors per IRQ index (`vfio_pci_get_irq_count`).
    pub(crate) fn irq_counts(&self) -> [u32; NUM_IRQS as usize] {
        if let Some(replay) = &self.spec.replay {
            return replay.irq_counts();
        }
        [
            u32::from(self.spec.interrupt_pin != 0),
            self.spec.msi.map_or(0, |(_, m)| m.vectors),
            self.spec.msix.map_or(0, |(_, m)| u32::from(m.table_size)),
            u32::from(self.spec.is_pcie),
            1,
        ]
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`: ERR exists only on PCI Express devices.
    /// Every index but INTx is `NORESIZE`, except the MSI-X index of a
    /// device with MSI-X when the kernel can allocate vectors dynamically
    /// (`dynamic_msix`: `vdev->has_dyn_msix`).
    pub(crate) fn irq_info(&self, index: IrqIndex, dynamic_msix: bool) -> Result<IrqInfo, Errno> {
        if let Some(replay) = &self.spec.replay {
            return replay
                .irqs
                .get(index.0 as usize)
                .cloned()
                .unwrap_or(Err(Errno::EINVAL));
        }
        if index.0 >= NUM_IRQS || (index == IrqIndex::ERR && !self.spec.is_pcie) {
            return Err(Errno::EINVAL);
        }
        let flags = if index == IrqIndex::INTX {
            IrqFlags::EVENTFD | IrqFlags::MASKABLE | IrqFlags::AUTOMASKED
        } else if index == IrqIndex::MSIX && dynamic_msix && self.spec.msix.is_some() {
            IrqFlags::EVENTFD
        } else {
            IrqFlags::EVENTFD | IrqFlags::NORESIZE
        };
        Ok(IrqInfo {
            index,
            flags,
            count: self
                .irq_counts()
                .get(index.0 as usize)
                .copied()
                .unwrap_or(0),
        })
    }

    /// The size of region `index` (0 for regions the device lacks).
    pub(crate) fn region_size(&self, index: u32) -> Option<u64> {
        match index {
            0..=5 => Some(
                self.bars
                    .get(index as usize)
                    .and_then(Option::as_deref)
                    .map_or(0, BarMemory::len),
            ),
            region::ROM => Some(self.spec.rom_size),
            region::CONFIG => Some(self.spec.config.len() as u64),
            region::VGA => Some(0),
            _ => None,
        }
    }

    /// `VFIO_DEVICE_GET_REGION_INFO`.
    pub(crate) fn region_info(&self, index: u32) -> Result<RegionInfo, Errno> {
        let offset = region_offset(index);
        if let Some(replay) = &self.spec.replay {
            let mut info = replay
                .regions
                .get(index as usize)
                .cloned()
                .unwrap_or(Err(Errno::EINVAL))?;
            info.offset = offset;
            return Ok(info);
        }
        let absent = |index| RegionInfo {
            index,
            flags: RegionFlags::EMPTY,
            size: 0,
            offset,
            caps: Vec::new(),
        };
        match index {
            0..=5 => {
                let Some(bar) = self.spec.bars.get(index as usize).copied().flatten() else {
                    return Ok(absent(index));
                };
                let mut info = RegionInfo {
                    index,
                    flags: RegionFlags::READ | RegionFlags::WRITE,
                    size: bar.size,
                    offset,
                    caps: Vec::new(),
                };
                // vfio_pci_probe_mmaps: memory BARs of at least a page.
                // Not checked in the guest, which has no sub-page BAR on a
                // vfio-pci device: 6.1 may also mmap page-aligned sub-page BARs.
                if bar.kind != BarKind::Io && bar.mmappable && bar.size >= 4096 {
                    info.flags = info.flags | RegionFlags::MMAP;
                    // Since 4.16 the MSI-X table may be mmapped; the BAR says so.
                    if self
                        .spec
                        .msix
                        .is_some_and(|(_, m)| u32::from(m.table_bar) == index)
                    {
                        info.flags = info.flags | RegionFlags::CAPS;
                        info.caps.push(RegionCap::MsixMappable);
                    }
                    if let Some((_, areas)) = self.spec.sparse.iter().find(|(b, _)| *b == index) {
                        info.flags = info.flags | RegionFlags::CAPS;
                        info.caps.retain(|c| *c != RegionCap::MsixMappable);
                        info.caps.push(RegionCap::SparseMmap(areas.clone()));
                    }
                }
                Ok(info)
            }
            region::ROM if self.spec.rom_size != 0 => Ok(RegionInfo {
                index,
                flags: RegionFlags::READ,
                size: self.spec.rom_size,
                offset,
                caps: Vec::new(),
            }),
            region::ROM => Ok(absent(index)),
            region::CONFIG => Ok(RegionInfo {
                index,
                flags: RegionFlags::READ | RegionFlags::WRITE,
                size: self.spec.config.len() as u64,
                offset,
                caps: Vec::new(),
            }),
            // The VGA region exists only on VGA devices; for others 6.1
            // answers EINVAL ("if (!vdev->has_vga) return -EINVAL").
            _ => Err(Errno::EINVAL),
        }
    }

    // ---- BAR access ----

    pub(crate) fn bar(&self, bar: u32) -> Option<&BarMemory> {
        self.bars.get(bar as usize).and_then(Option::as_deref)
    }

    #[inline]
    pub(crate) fn plain_read(&self, bar: u32, offset: u64, width: u8) -> u64 {
        self.bar(bar).map_or(0, |b| b.read(offset, width))
    }

    #[inline]
    pub(crate) fn plain_write(&self, bar: u32, offset: u64, width: u8, value: u64) {
        if let Some(b) = self.bar(bar) {
            b.write(offset, width, value);
        }
    }

    /// True when `bar` is an I/O BAR.
    fn is_io_bar(&self, bar: u32) -> bool {
        self.spec
            .bars
            .get(bar as usize)
            .copied()
            .flatten()
            .is_some_and(|b| b.kind == BarKind::Io)
    }

    /// True when the command register lets the BAR decode.
    pub(crate) fn decodes(&self, bar: u32) -> bool {
        self.command() & self.decode_bit(bar) != 0
    }

    /// The command register bit that lets `bar` decode: I/O or Memory Space.
    pub(crate) fn decode_bit(&self, bar: u32) -> u16 {
        if self.is_io_bar(bar) {
            reg::COMMAND_IO
        } else {
            reg::COMMAND_MEMORY
        }
    }

    /// The command register as BAR accesses see it (one atomic load).
    #[inline]
    pub(crate) fn command(&self) -> u16 {
        self.command.load(Ordering::Acquire)
    }

    /// `bar`'s memory, shared, for a mapped region's fast path.
    pub(crate) fn bar_memory(&self, bar: u32) -> Option<Arc<BarMemory>> {
        self.bars.get(bar as usize).and_then(Option::clone)
    }

    /// The byte ranges of `bar`, as (start, length), that no model ever
    /// claims: the whole BAR for a device without a model, else the MSI-X
    /// table and the PBA where they are in `bar` (see
    /// [`in_msix_structures`](Self::in_msix_structures)); empty ranges
    /// are (0, 0).
    pub(crate) fn plain_ranges(&self, bar: u32) -> [(u64, u64); 2] {
        if self.model.is_none() {
            return [(0, u64::MAX), (0, 0)];
        }
        let Some((_, m)) = &self.spec.msix else {
            return [(0, 0); 2];
        };
        let n = u64::from(m.table_size);
        let table = (u32::from(m.table_bar) == bar).then(|| (u64::from(m.table_offset), n * 16));
        let pba =
            (u32::from(m.pba_bar) == bar).then(|| (u64::from(m.pba_offset), n.div_ceil(64) * 8));
        [table.unwrap_or((0, 0)), pba.unwrap_or((0, 0))]
    }

    /// True when `offset` of `bar` is in the MSI-X table or the PBA: the
    /// mock's (the standard structure the kernel programs), never the model's.
    #[inline]
    fn in_msix_structures(&self, bar: u32, offset: u64) -> bool {
        let Some((_, m)) = &self.spec.msix else {
            return false;
        };
        let table = u64::from(m.table_offset);
        let pba = u64::from(m.pba_offset);
        let n = u64::from(m.table_size);
        (u32::from(m.table_bar) == bar && offset >= table && offset < table + n * 16)
            || (u32::from(m.pba_bar) == bar && offset >= pba && offset < pba + n.div_ceil(64) * 8)
    }

    /// A device register read: the model first (outside the MSI-X table
    /// and PBA), then plain memory.
    #[inline]
    pub(crate) fn mmio_read(&self, bar: u32, offset: u64, width: u8) -> u64 {
        if let Some(model) = self
            .model
            .as_ref()
            .filter(|_| !self.in_msix_structures(bar, offset))
        {
            if let Some(v) = model.read(&DeviceContext { device: self }, bar, offset, width) {
                return v;
            }
        }
        self.plain_read(bar, offset, width)
    }

    /// A device register write: the model first (outside the MSI-X table
    /// and PBA), then plain memory.
    #[inline]
    pub(crate) fn mmio_write(&self, bar: u32, offset: u64, width: u8, value: u64) {
        if let Some(model) = self
            .model
            .as_ref()
            .filter(|_| !self.in_msix_structures(bar, offset))
        {
            if model.write(&DeviceContext { device: self }, bar, offset, width, value) {
                return;
            }
        }
        self.plain_write(bar, offset, width, value);
    }

    /// The MSI-X table's byte range in `bar`, which `read`/`write` on the
    /// device file do not reach (`msix_offset`, `msix_size`).
    fn msix_hole(&self, bar: u32) -> (u64, u64) {
        match self.spec.msix {
            Some((_, m)) if u32::from(m.table_bar) == bar => {
                let start = u64::from(m.table_offset);
                (start, start + u64::from(m.table_size) * 16)
            }
            _ => (0, 0),
        }
    }

    /// `vfio_pci_bar_rw` / `do_io_rw`: the access is cut at the BAR's end,
    /// split into aligned 4-, 2- and 1-byte pieces, and the MSI-X table is
    /// skipped (reads of it give 0xff, writes are dropped). A memory BAR
    /// with memory decoding off is EIO.
    fn bar_rw(&self, bar: u32, pos: u64, buf: Rw<'_>) -> Result<usize, Errno> {
        let end = self.bar(bar).map_or(0, BarMemory::len);
        if pos >= end {
            return Err(Errno::EINVAL);
        }
        if !self.decodes(bar) && !self.is_io_bar(bar) {
            return Err(Errno::EIO);
        }
        let count = usize::try_from(end - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (x_start, x_end) = self.msix_hole(bar);
        let mut done = 0usize;
        let mut buf = buf;
        while done < count {
            let off = pos + done as u64;
            let left = count - done;
            let fillable = if off < x_start {
                left.min(usize::try_from(x_start - off).unwrap_or(usize::MAX))
            } else if off >= x_end {
                left
            } else {
                0
            };
            let width: u8 = if fillable >= 4 && off % 4 == 0 {
                4
            } else if fillable >= 2 && off % 2 == 0 {
                2
            } else if fillable >= 1 {
                1
            } else {
                let filled = left.min(usize::try_from(x_end - off).unwrap_or(usize::MAX));
                if let Rw::Read(b) = &mut buf {
                    if let Some(d) = b.get_mut(done..done + filled) {
                        d.fill(0xff);
                    }
                }
                done += filled;
                continue;
            };
            let w = usize::from(width);
            match &mut buf {
                Rw::Read(b) => {
                    let v = self.mmio_read(bar, off, width).to_le_bytes();
                    if let (Some(d), Some(s)) = (b.get_mut(done..done + w), v.get(..w)) {
                        d.copy_from_slice(s);
                    }
                }
                Rw::Write(b) => {
                    let mut v = [0u8; 8];
                    if let (Some(d), Some(s)) = (v.get_mut(..w), b.get(done..done + w)) {
                        d.copy_from_slice(s);
                    }
                    self.mmio_write(bar, off, width, u64::from_le_bytes(v));
                }
            }
            done += w;
        }
        Ok(count)
    }

    /// The device file's read path, after the caller checked `offset < size`.
    pub(crate) fn read_region(
        &self,
        index: u32,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, Errno> {
        match index {
            0..=5 => self.bar_rw(index, offset, Rw::Read(buf)),
            region::ROM => {
                let rom = self.rom.as_ref().ok_or(Errno::EINVAL)?;
                let count = usize::try_from(rom.len().saturating_sub(offset))
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                for (i, b) in buf.iter_mut().take(count).enumerate() {
                    *b = rom.read(offset + i as u64, 1) as u8;
                }
                Ok(count)
            }
            region::CONFIG => {
                let at = {
                    let c = self.config.lock();
                    let at = config_range(c.len(), offset, buf.len())?;
                    c.read(at, buf);
                    at
                };
                // The model's bytes, asked with no lock held.
                if let (Some(model), Some(owned)) = (&self.model, self.model_part(at, buf.len())) {
                    let ctx = DeviceContext { device: self };
                    for (off, width) in pieces(owned) {
                        let w = usize::from(width);
                        if let Some(v) = model.config_read(&ctx, off as u16, width) {
                            if let Some(d) = buf.get_mut(off - at..off - at + w) {
                                d.copy_from_slice(&v.to_le_bytes()[..w]);
                            }
                        }
                    }
                }
                Ok(buf.len())
            }
            _ => Err(Errno::EINVAL),
        }
    }

    /// The part of `[at, at + len)` the model owns, if any.
    fn model_part(&self, at: usize, len: usize) -> Option<std::ops::Range<usize>> {
        let owned = self.spec.model_config.as_ref()?;
        let part = owned.start.max(at)..owned.end.min(at.saturating_add(len));
        (part.start < part.end).then_some(part)
    }

    /// The device file's write path, after the caller checked `offset < size`.
    pub(crate) fn write_region(
        &self,
        index: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, Errno> {
        match index {
            0..=5 => self.bar_rw(index, offset, Rw::Write(data)),
            region::CONFIG => {
                let at = config_range(self.spec.config.len(), offset, data.len())?;
                let Some(owned) = self
                    .model_part(at, data.len())
                    .filter(|_| self.model.is_some())
                else {
                    self.write_config_bytes(at, data);
                    return Ok(data.len());
                };
                let (head, rest) = data.split_at(owned.start - at);
                let (mine, tail) = rest.split_at(owned.end - owned.start);
                if !head.is_empty() {
                    self.write_config_bytes(at, head);
                }
                if let Some(model) = &self.model {
                    // With no lock held.
                    let ctx = DeviceContext { device: self };
                    for (off, width) in pieces(owned.clone()) {
                        let i = off - owned.start;
                        let mut v = [0u8; 4];
                        if let (Some(d), Some(s)) = (
                            v.get_mut(..usize::from(width)),
                            mine.get(i..i + usize::from(width)),
                        ) {
                            d.copy_from_slice(s);
                        }
                        model.config_write(&ctx, off as u16, width, u32::from_le_bytes(v));
                    }
                }
                if !tail.is_empty() {
                    self.write_config_bytes(owned.end, tail);
                }
                Ok(data.len())
            }
            // The ROM is read-only.
            _ => Err(Errno::EINVAL),
        }
    }

    /// Writes config bytes the mock owns, through the write masks, with
    /// the MSI fix-up and the command register's copy.
    fn write_config_bytes(&self, at: usize, data: &[u8]) {
        let msi_on = self.irq_mode() == Enabled::Msi;
        let mut c = self.config.lock();
        c.write(at, data);
        if let Some((cap, _)) = self.spec.msi {
            // As vfio_msi_config_write tests it: a write that ends
            // where Message Control starts counts too.
            let flags = cap + 2;
            if at <= flags && at + data.len() >= flags {
                self.fix_msi_flags(&mut c, flags, msi_on);
            }
        }
        self.command
            .store(c.u16_at(reg::COMMAND), Ordering::Release);
    }

    /// `vfio_msi_config_write`'s fix-up of a written MSI Message Control:
    /// Enable only sticks while MSI is enabled by ioctl, and the queue size
    /// is capped at `msi_qmax` (`msi_control_enable_sticks_only_while_msi_is_enabled`).
    fn fix_msi_flags(&self, c: &mut ConfigSpace, at: usize, msi_on: bool) {
        const ENABLE: u16 = 0x0001;
        const QSIZE: u16 = 0x0070;
        let mut flags = c.u16_at(at);
        if !msi_on {
            flags &= !ENABLE;
        }
        let qmax = u16::from(self.msi_qmax.load(Ordering::Relaxed));
        if (flags & QSIZE) >> 4 > qmax {
            flags = (flags & !QSIZE) | (qmax << 4);
        }
        c.set_u16(at, flags);
    }

    // ---- interrupts ----

    fn irq_env(&self) -> IrqEnv<'_> {
        IrqEnv {
            address: &self.address,
            counts: self.irq_counts(),
            intx_irq: self.intx_irq,
            procfs: &self.procfs,
            device: self.me.get().cloned().unwrap_or_default(),
            kernel: self.irq_kernel,
        }
    }

    pub(crate) fn irq_mode(&self) -> Enabled {
        self.irqs.lock().enabled()
    }

    /// `VFIO_DEVICE_SET_IRQS`. The second result is the fake
    /// `/proc/interrupts` being rewritten.
    pub(crate) fn set_irqs(
        &self,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> (Result<(), Errno>, std::io::Result<()>) {
        let env = self.irq_env();
        let mut irqs = self.irqs.lock();
        let was = irqs.enabled();
        let count = data.count();
        let r = irqs.set_irqs(&env, index, action, start, data);
        let mode = irqs.enabled();
        drop(irqs);
        if mode == Enabled::Msi && was != Enabled::Msi {
            // fls(nvec * 2 - 1) - 1: the log2 of nvec, rounded up.
            let nvec = (start as usize).saturating_add(count).max(1);
            let qmax = usize::BITS - (nvec - 1).leading_zeros();
            self.msi_qmax.store(qmax as u8, Ordering::Relaxed);
        }
        self.show_enable_bits(mode);
        r
    }

    /// Mirrors the enabled mode in the MSI-X Enable bit, as the PCI core
    /// sets it when vfio-pci allocates vectors. vfio-pci does not virtualize
    /// MSI-X, so the user sees the device's bit; MSI's Message Control is
    /// virtual and the ioctls leave what the user reads alone
    /// (`msi_control_enable_sticks_only_while_msi_is_enabled`).
    fn show_enable_bits(&self, mode: Enabled) {
        let Some((at, _)) = self.spec.msix else {
            return;
        };
        let mut c = self.config.lock();
        let control = c.u16_at(at + 2);
        let on = mode == Enabled::Msix;
        c.set_u16(
            at + 2,
            if on {
                control | 0x8000
            } else {
                control & !0x8000
            },
        );
    }

    pub(crate) fn raise(&self, irq: Irq) -> Delivery {
        if self.is_removed() {
            return Delivery::NotBound;
        }
        // An MSI or MSI-X message is a memory write by the device: without
        // Bus Master Enable it is never sent. INTx is a wire and needs none.
        let message = matches!(irq, Irq::Msi(_) | Irq::Msix(_));
        if message && self.command.load(Ordering::Acquire) & reg::COMMAND_MASTER == 0 {
            return Delivery::BusMasterDisabled;
        }
        let env = self.irq_env();
        let (delivery, _written) = self.irqs.lock().raise(&env, irq);
        delivery
    }

    pub(crate) fn lower_intx(&self) {
        self.irqs.lock().lower_intx();
    }

    // ---- DMA ----

    pub(crate) fn dma(&self, iova: u64, access: Access<'_>) -> Result<(), DmaFault> {
        if self.is_removed() {
            return Err(DmaFault::Removed);
        }
        if self.command.load(Ordering::Acquire) & reg::COMMAND_MASTER == 0 {
            return Err(DmaFault::BusMasterDisabled);
        }
        let direction = match access {
            Access::Read(_) => FaultAccess::Read,
            Access::Write(_) => FaultAccess::Write,
        };
        let container = self.container.lock().clone();
        let last_iova = self.iommu_last_iova;
        let outcome = match container {
            Some(container) => match container.dma(iova, access)? {
                Dma::Translated(outcome) => outcome,
                Dma::Physical(outcome) => {
                    // No IOMMU: nothing records the stray bytes.
                    return match outcome.refused.first() {
                        None => Ok(()),
                        Some(first) => Err(DmaFault::NoMemory {
                            address: first.iova,
                            completed: outcome.done,
                        }),
                    };
                }
            },
            None => {
                // A device bound to an iommufd DMAs through the IOAS its
                // group is attached to; detached, it is blocked.
                // Unconfirmed: VT-d may log a fault for a blocked DMA; the
                // mock records none.
                let ioas = self.domain.lock().clone().ok_or(DmaFault::NoIommu)?;
                ioas.dma(iova, access)
            }
        };
        let Some(first) = outcome.refused.first().copied() else {
            return Ok(());
        };
        // One record per refused run, at the page of its first byte: the
        // address VT-d's fault recording register holds.
        for run in &outcome.refused {
            let reason = if run.iova > last_iova {
                fault_log::REASON_BEYOND_MGAW
            } else if direction == FaultAccess::Write {
                fault_log::REASON_NO_WRITE
            } else {
                fault_log::REASON_NO_READ
            };
            self.fault_log.record(IommuFault {
                requester: self.address,
                page: run.iova & !0xfff,
                access: direction,
                reason,
            });
        }
        let (iova, completed) = (first.iova, outcome.done);
        Err(if first.mapped {
            DmaFault::Permission { iova, completed }
        } else {
            DmaFault::Unmapped { iova, completed }
        })
    }

    // ---- lifecycle ----

    /// Puts BAR memory and the model back to power-on state.
    fn reset_function(&self) {
        self.new_epoch();
        for bar in self.bars.iter().flatten() {
            bar.clear();
        }
        if let Some(replay) = &self.spec.replay {
            // A profiled device's power-on BARs hold what was captured.
            crate::profile::fill_bars(&self.bars, replay, self.spec.msix.as_ref().map(|(_, m)| m));
        }
        if let Some(m) = &self.model {
            m.reset();
        }
        self.irqs.lock().lower_intx();
    }

    /// A secondary bus reset of the bus the device is on: whatever its
    /// reset method, the device returns to power-on as a function reset
    /// leaves it (the PCI core saves and restores config space around it).
    pub(crate) fn bus_reset(&self) {
        self.reset_function();
    }

    /// `VFIO_DEVICE_RESET`: EINVAL unless the device has a reset method.
    /// The PCI core saves and restores config space around the reset, and
    /// vfio-pci keeps the interrupt setup, so only the device's internal
    /// state (BAR memory, the model) returns to power-on.
    pub(crate) fn reset(&self) -> Result<(), Errno> {
        if !self.spec.can_reset {
            return Err(Errno::EINVAL);
        }
        self.reset_function();
        Ok(())
    }

    /// A device fd is opened. The first open is `vfio_pci_core_enable`:
    /// memory and I/O decoding turn on for the BARs present, a device that
    /// can reset is reset, and config space is saved for the last close.
    pub(crate) fn open_fd(&self) {
        let mut fds = self.open_fds.lock();
        self.open_locked(&mut fds);
    }

    /// `vfio_df_open` for a cdev: opens the device only if nothing has it
    /// open (the cdev path allows one open); false otherwise.
    pub(crate) fn open_fd_exclusive(&self) -> bool {
        let mut fds = self.open_fds.lock();
        if fds.fds != 0 {
            return false;
        }
        self.open_locked(&mut fds);
        true
    }

    /// Whether the device is open (`open_count` is not 0).
    pub(crate) fn is_open(&self) -> bool {
        self.open_fds.lock().fds > 0
    }

    /// A reference that keeps a removal from completing without opening
    /// the device: an open cdev file not yet bound
    /// (`vfio_device_try_get_registration`).
    pub(crate) fn hold(&self) {
        self.open_fds.lock().holds += 1;
    }

    /// Drops a [`hold`](Self::hold); the last reference completes a removal.
    pub(crate) fn release_hold(&self) {
        let mut fds = self.open_fds.lock();
        fds.holds = fds.holds.saturating_sub(1);
        if !fds.idle() {
            return;
        }
        drop(fds);
        self.complete_release();
    }

    fn open_locked(&self, fds: &mut Opens) {
        fds.fds += 1;
        if fds.fds > 1 {
            return;
        }
        if self.spec.can_reset {
            self.reset_function();
        }
        let mut bits = 0;
        for bar in self.spec.bars.iter().flatten() {
            bits |= if bar.kind == BarKind::Io {
                reg::COMMAND_IO
            } else {
                reg::COMMAND_MEMORY
            };
        }
        let mut c = self.config.lock();
        let command = c.u16_at(reg::COMMAND) | bits;
        c.set_u16(reg::COMMAND, command);
        self.command.store(command, Ordering::Release);
        *self.saved_config.lock() = Some(c.clone());
    }

    /// A device fd is closed. The last close is `vfio_pci_core_disable`:
    /// interrupts are disabled (vectors leave /proc/interrupts), ERR and
    /// REQ eventfds released, a device that can reset is reset, and config
    /// space is put back as the first open saved it, so every open starts
    /// from the same bytes (`config_space_is_restored_when_the_device_is_closed`).
    pub(crate) fn close_fd(&self) {
        let mut fds = self.open_fds.lock();
        fds.fds = fds.fds.saturating_sub(1);
        if fds.fds > 0 {
            return;
        }
        self.disable_on_last_close();
        if !fds.idle() {
            return;
        }
        drop(fds);
        self.complete_release();
    }

    /// Nothing holds the device any more: a removal under way completes.
    fn complete_release(&self) {
        let complete = self.on_released.lock().take();
        if let Some(Completion(complete)) = complete {
            complete();
        }
        self.released.notify_all();
    }

    /// `vfio_pci_core_disable`, at the last close.
    fn disable_on_last_close(&self) {
        let env = self.irq_env();
        let _written = self.irqs.lock().release(&env);
        self.show_enable_bits(Enabled::None);
        if self.spec.can_reset {
            self.reset_function();
        }
        let mut c = self.config.lock();
        if let Some(saved) = self.saved_config.lock().take() {
            *c = saved;
        }
        self.command
            .store(c.u16_at(reg::COMMAND), Ordering::Release);
    }

    /// Begins removal, as writing the device's sysfs `remove` does
    /// (`vfio_unregister_group_dev`): the REQ eventfd (if bound) asks the
    /// user to release it, and `complete`
    /// runs once every fd and mapping of it is closed (at once if none is
    /// open). Until then the device works as before. False if removal had
    /// already begun.
    pub(crate) fn begin_removal(&self, complete: Box<dyn FnOnce() + Send>) -> bool {
        if self.unregistering.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.request_release();
        let fds = self.open_fds.lock();
        if fds.idle() {
            drop(fds);
            complete();
            self.released.notify_all();
        } else {
            *self.on_released.lock() = Some(Completion(complete));
        }
        true
    }

    /// Signals the REQ eventfd if one is bound (`vfio_pci_core_request`).
    pub(crate) fn request_release(&self) {
        self.irqs.lock().request_release();
    }

    /// Waits until no fd or mapping of the device is open, up to `timeout`:
    /// true if released.
    pub(crate) fn wait_released(&self, timeout: std::time::Duration) -> bool {
        let mut fds = self.open_fds.lock();
        if !fds.idle() {
            self.released
                .wait_while_for(&mut fds, |n| !n.idle(), timeout);
        }
        fds.idle()
    }

    /// The device is gone: interrupts torn down, every later call on a
    /// handle of it fails.
    pub(crate) fn finish_removal(&self) {
        self.removed.store(true, Ordering::Release);
        self.new_epoch();
        let env = self.irq_env();
        let _written = self.irqs.lock().unplug(&env);
    }
}

/// What keeps a device from being released.
#[derive(Debug, Default)]
struct Opens {
    /// Opens of the device (`open_count`): group device fds and bound cdevs.
    fds: u32,
    /// Cdev files not bound.
    holds: u32,
}

impl Opens {
    fn idle(&self) -> bool {
        self.fds == 0 && self.holds == 0
    }
}

/// What completes a removal once the device is released.
struct Completion(Box<dyn FnOnce() + Send>);

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}

/// `vfio_config_do_rw`'s bounds check: an access that does not lie wholly
/// inside config space fails with EFAULT (it is not cut short, unlike BARs).
fn config_range(len: usize, offset: u64, count: usize) -> Result<usize, Errno> {
    let at = usize::try_from(offset).map_err(|_| Errno::EFAULT)?;
    match at.checked_add(count) {
        Some(end) if end <= len => Ok(at),
        _ => Err(Errno::EFAULT),
    }
}

/// `range` cut into naturally aligned 4-, 2- and 1-byte pieces:
/// (offset, width).
fn pieces(range: std::ops::Range<usize>) -> impl Iterator<Item = (usize, u8)> {
    let mut at = range.start;
    std::iter::from_fn(move || {
        let left = range.end.checked_sub(at).filter(|&l| l > 0)?;
        let width: u8 = if left >= 4 && at % 4 == 0 {
            4
        } else if left >= 2 && at % 2 == 0 {
            2
        } else {
            1
        };
        let piece = (at, width);
        at += usize::from(width);
        Some(piece)
    })
}

/// The buffer of a read or a write through the device file.
enum Rw<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

impl Rw<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Read(b) => b.len(),
            Self::Write(b) => b.len(),
        }
    }
}
