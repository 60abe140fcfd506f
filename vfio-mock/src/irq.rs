//! `VFIO_DEVICE_SET_IRQS` and interrupt delivery, as Linux 6.1's and 6.12's
//! vfio-pci (`vfio_pci_intrs.c`) do them.
//!
//! One interrupt mode is active at a time (none, INTx, MSI or MSI-X). MSI and
//! MSI-X vectors get a Linux irq each when the index is enabled; binding an
//! eventfd to a vector is `request_irq`, which names the action in
//! `/proc/interrupts`. ERR and REQ are single eventfds with no irq.
//!
//! Where the releases differ ([`IrqKernel`]): 6.1 bounds every MSI and
//! MSI-X call by the vectors enabled (`vdev->num_ctx`); 6.12 keeps its
//! contexts in an xarray with no such bound and, with `has_dyn_msix`,
//! allocates an MSI-X vector past them when one is bound there. 6.1 puts
//! every device's vectors in the x86 `PCI-MSI` domain; 6.12 gives each
//! device a domain of its own, named after it.

use crate::model::{Delivery, Irq};
use crate::pci_device::PciDevice;
use crate::procfs::{Edit, ProcInterrupts};
use crate::trigger::Trigger;
use crate::virqfd::Virqfd;
use nix::errno::Errno;
use std::collections::BTreeMap;
use std::sync::Weak;
use vfio_core::{IrqAction, IrqData, IrqIndex, PciAddress};

/// vfio-pci's number of IRQ indexes (`VFIO_PCI_NUM_IRQS`).
pub(crate) const NUM_IRQS: u32 = 5;

/// What `set_irqs` needs to know about the device.
#[derive(Debug)]
pub(crate) struct IrqEnv<'a> {
    /// The device, for action names and MSI hwirq numbers.
    pub address: &'a PciAddress,
    /// Vectors per index, as `vfio_pci_get_irq_count` reports them.
    pub counts: [u32; NUM_IRQS as usize],
    /// The device's INTx line (a fixed IO-APIC irq).
    pub intx_irq: u32,
    /// The irq table.
    pub procfs: &'a ProcInterrupts,
    /// The device itself, for handlers that run later (the INTx unmask eventfd).
    pub device: Weak<PciDevice>,
    /// What the host's kernel does with MSI and MSI-X vectors.
    pub kernel: IrqKernel,
}

/// What the host's kernel does with MSI and MSI-X vectors, where Linux 6.1
/// and 6.12 differ. The default is 6.1 on a host with an IOMMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IrqKernel {
    /// 6.12's `vfio_msi_set_block` with `vdev->has_dyn_msix` (true on the
    /// x86 guest): no bound on the vectors enabled, and binding an MSI-X
    /// vector past them allocates it (`vfio_msi_alloc_irq`); unbinding or
    /// triggering a vector with no context does nothing. Without it, as
    /// on 6.1, any call past the enabled vectors is EINVAL.
    pub dynamic_msix: bool,
    /// Each device has its own MSI domain (6.12): a vector's chip is
    /// `PCI-MSI-<device>` or `PCI-MSIX-<device>` and its hwirq the vector.
    /// Otherwise (6.1) every vector is in the one `PCI-MSI` domain, its
    /// hwirq made from the requester id.
    pub per_device_msi_domain: bool,
    /// Interrupts are remapped (VT-d): the chips' names start with `IR-`.
    pub remapped: bool,
}

impl Default for IrqKernel {
    fn default() -> Self {
        Self {
            dynamic_msix: false,
            per_device_msi_domain: false,
            remapped: true,
        }
    }
}

impl IrqKernel {
    /// The chip and `<hwirq>-<handler>` columns of vector `vector` of the
    /// MSI (or, with `msix`, MSI-X) index of `address`.
    fn msi_columns(self, address: &PciAddress, msix: bool, vector: u32) -> (String, String) {
        let ir = if self.remapped { "IR-" } else { "" };
        if self.per_device_msi_domain {
            let kind = if msix { "MSIX" } else { "MSI" };
            (
                format!("{ir}PCI-{kind}-{address}"),
                format!("{vector}-edge"),
            )
        } else {
            (format!("{ir}PCI-MSI"), msi_hwirq(address, vector))
        }
    }
}

/// The vectors of an enabled MSI or MSI-X index that have a Linux irq, by
/// vector number.
type Vectors = BTreeMap<u32, Vector>;

/// One MSI or MSI-X vector: its Linux irq and the eventfd bound to it.
#[derive(Debug)]
struct Vector {
    irq: u32,
    trigger: Option<Trigger>,
}

/// The INTx context.
#[derive(Debug)]
struct Intx {
    trigger: Option<Trigger>,
    masked: bool,
    /// The unmask eventfd (`ACTION_UNMASK | DATA_EVENTFD`): signalling it
    /// unmasks, as the unmask ioctl does.
    unmask: Option<Virqfd>,
}

/// The enabled interrupt mode (`vdev->irq_type`).
#[derive(Debug, Default)]
enum Mode {
    #[default]
    None,
    Intx(Intx),
    Msi(Vectors),
    Msix(Vectors),
}

/// A device's interrupt state.
#[derive(Debug, Default)]
pub(crate) struct IrqState {
    mode: Mode,
    /// The device's INTx line is asserted (level-triggered).
    level: bool,
    err: Option<Trigger>,
    req: Option<Trigger>,
}

/// Which interrupt mode is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enabled {
    None,
    Intx,
    Msi,
    Msix,
}

impl IrqState {
    /// The enabled mode.
    pub(crate) fn enabled(&self) -> Enabled {
        match self.mode {
            Mode::None => Enabled::None,
            Mode::Intx(_) => Enabled::Intx,
            Mode::Msi(_) => Enabled::Msi,
            Mode::Msix(_) => Enabled::Msix,
        }
    }

    /// `VFIO_DEVICE_SET_IRQS`, validated as `vfio_set_irqs_validate_and_prepare`
    /// and dispatched as `vfio_pci_set_irqs_ioctl`.
    pub(crate) fn set_irqs(
        &mut self,
        env: &IrqEnv<'_>,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> (Result<(), Errno>, std::io::Result<()>) {
        env.procfs
            .edit(|p| self.set_irqs_locked(env, p, index, action, start, data))
    }

    fn set_irqs_locked(
        &mut self,
        env: &IrqEnv<'_>,
        p: &mut Edit<'_>,
        index: IrqIndex,
        action: IrqAction,
        start: u32,
        data: IrqData<'_>,
    ) -> Result<(), Errno> {
        let count = u32::try_from(data.count()).map_err(|_| Errno::EINVAL)?;
        // vfio_set_irqs_validate_and_prepare: index, overflow, then the range
        // against the index's vector count (so any call on an index with
        // no vectors is EINVAL).
        if index.0 >= NUM_IRQS || count >= u32::MAX - start {
            return Err(Errno::EINVAL);
        }
        let max = env.counts.get(index.0 as usize).copied().unwrap_or(0);
        if start >= max || start + count > max {
            return Err(Errno::EINVAL);
        }
        // vfio_pci_set_irqs_ioctl: actions with no handler are ENOTTY.
        match (index, action) {
            (IrqIndex::INTX, IrqAction::Mask) => self.intx_mask(start, count, data),
            (IrqIndex::INTX, IrqAction::Unmask) => self.intx_unmask(env, start, count, data),
            (IrqIndex::INTX, IrqAction::Trigger) => self.intx_trigger(env, p, start, count, data),
            (IrqIndex::MSI | IrqIndex::MSIX, IrqAction::Trigger) => {
                self.msi_trigger(env, p, index == IrqIndex::MSIX, start, count, data)
            }
            // "XXX Need masking support exported": MSI/MSI-X mask and unmask.
            (IrqIndex::MSI | IrqIndex::MSIX, _) => Err(Errno::ENOTTY),
            (IrqIndex::ERR, IrqAction::Trigger) => {
                single_trigger(&mut self.err, start, count, data)
            }
            (IrqIndex::REQ, IrqAction::Trigger) => {
                single_trigger(&mut self.req, start, count, data)
            }
            _ => Err(Errno::ENOTTY),
        }
    }

    // ---- INTx (vfio_pci_set_intx_*) ----

    fn intx_mask(&mut self, start: u32, count: u32, data: IrqData<'_>) -> Result<(), Errno> {
        let Mode::Intx(intx) = &mut self.mode else {
            return Err(Errno::EINVAL);
        };
        if start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match data {
            IrqData::None { .. } => intx.masked = true,
            IrqData::Bool(b) => {
                if b.first() == Some(&true) {
                    intx.masked = true;
                }
            }
            // 6.1: "XXX implement me".
            IrqData::Eventfds(_) => return Err(Errno::ENOTTY),
        }
        Ok(())
    }

    fn intx_unmask(
        &mut self,
        env: &IrqEnv<'_>,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<(), Errno> {
        if !matches!(self.mode, Mode::Intx(_)) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        match data {
            IrqData::None { .. } => self.unmask_intx(),
            IrqData::Bool(b) => {
                if b.first() == Some(&true) {
                    self.unmask_intx();
                }
            }
            // vfio_virqfd_enable for a real fd, vfio_virqfd_disable for -1.
            IrqData::Eventfds(fds) => {
                let virqfd = match fds.first().copied().flatten() {
                    Some(fd) => {
                        let device = env.device.clone();
                        Some(Virqfd::new(
                            fd,
                            Box::new(move |stopped| {
                                if let Some(d) = device.upgrade() {
                                    d.unmask_intx_from_eventfd(stopped);
                                }
                            }),
                        )?)
                    }
                    None => None,
                };
                if let Mode::Intx(intx) = &mut self.mode {
                    intx.unmask = virqfd;
                }
            }
        }
        Ok(())
    }

    /// What the unmask eventfd's handler does (`vfio_pci_intx_unmask_handler`),
    /// unless the eventfd was unbound (`stopped`) before it ran.
    pub(crate) fn unmask_from_eventfd(&mut self, stopped: &std::sync::atomic::AtomicBool) {
        if !stopped.load(std::sync::atomic::Ordering::Acquire) {
            self.unmask_intx();
        }
    }

    /// Acts on a signal of the unmask eventfd that its thread has not taken
    /// yet, so that the device sees it before doing anything of its own.
    fn drain_unmask(&mut self) {
        let pending = match &self.mode {
            Mode::Intx(Intx {
                unmask: Some(v), ..
            }) => v.drain(),
            _ => false,
        };
        if pending {
            self.unmask_intx();
        }
    }

    /// `vfio_pci_intx_unmask`: if the line is still asserted the interrupt
    /// stays masked and the eventfd is signalled again (no new hardware
    /// interrupt, so no count in /proc/interrupts); otherwise it unmasks.
    fn unmask_intx(&mut self) {
        let level = self.level;
        if let Mode::Intx(intx) = &mut self.mode {
            if intx.masked {
                if level {
                    if let Some(t) = &intx.trigger {
                        t.signal();
                    }
                } else {
                    intx.masked = false;
                }
            }
        }
    }

    /// `vfio_pci_set_intx_trigger` with the persistent INTx handler that
    /// 6.1 stable carries (backport of "vfio/pci: Create persistent INTx
    /// handler"): the irq is requested, and named in /proc/interrupts, from
    /// enable to disable; binding an eventfd only swaps the trigger, and fd
    /// -1 leaves INTx enabled with no trigger.
    fn intx_trigger(
        &mut self,
        env: &IrqEnv<'_>,
        p: &mut Edit<'_>,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<(), Errno> {
        let is_intx = matches!(self.mode, Mode::Intx(_));
        if is_intx && count == 0 && matches!(data, IrqData::None { .. }) {
            self.disable(env.intx_irq, p);
            return Ok(());
        }
        if !(is_intx || matches!(self.mode, Mode::None)) || start != 0 || count != 1 {
            return Err(Errno::EINVAL);
        }
        if let IrqData::Eventfds(fds) = data {
            // The fd is looked up before anything changes.
            let trigger = fds
                .first()
                .copied()
                .flatten()
                .map(Trigger::from_fd)
                .transpose()?;
            match &mut self.mode {
                Mode::Intx(intx) => intx.trigger = trigger,
                _ => {
                    // vfio_intx_enable: unmasked, irq requested (which needs a
                    // CPU vector, as any request_irq does).
                    p.request(env.intx_irq, format!("vfio-intx({})", env.address))?;
                    self.mode = Mode::Intx(Intx {
                        trigger,
                        masked: false,
                        unmask: None,
                    });
                    // A line already asserted interrupts as soon as the irq is requested.
                    self.service_intx(env, p);
                }
            }
            return Ok(());
        }
        let Mode::Intx(intx) = &self.mode else {
            return Err(Errno::EINVAL);
        };
        // Loopback: vfio_send_intx_eventfd, no hardware interrupt.
        let fire = match data {
            IrqData::Bool(b) => b.first() == Some(&true),
            _ => true,
        };
        if fire {
            if let Some(t) = &intx.trigger {
                t.signal();
            }
        }
        Ok(())
    }

    /// Takes the INTx interrupt if the line is asserted and INTx is enabled
    /// and unmasked: `vfio_intx_handler` runs (counted in /proc/interrupts),
    /// masks it, and signals the trigger if one is bound.
    fn service_intx(&mut self, env: &IrqEnv<'_>, p: &mut Edit<'_>) -> Delivery {
        let level = self.level;
        let Mode::Intx(intx) = &mut self.mode else {
            return Delivery::NotBound;
        };
        if intx.masked {
            return Delivery::Masked;
        }
        if !level {
            return Delivery::NotBound;
        }
        intx.masked = true;
        p.fire(env.intx_irq);
        match &intx.trigger {
            Some(t) => {
                t.signal();
                Delivery::Signalled
            }
            None => Delivery::NotBound,
        }
    }

    // ---- MSI / MSI-X (vfio_pci_set_msi_trigger) ----

    fn msi_trigger(
        &mut self,
        env: &IrqEnv<'_>,
        p: &mut Edit<'_>,
        msix: bool,
        start: u32,
        count: u32,
        data: IrqData<'_>,
    ) -> Result<(), Errno> {
        let this = if msix { Enabled::Msix } else { Enabled::Msi };
        let enabled = self.enabled();
        if enabled == this && count == 0 && matches!(data, IrqData::None { .. }) {
            self.disable(env.intx_irq, p);
            return Ok(());
        }
        if !(enabled == this || enabled == Enabled::None) {
            return Err(Errno::EINVAL);
        }
        if let IrqData::Eventfds(fds) = data {
            if enabled == this {
                return self.set_block(env, p, msix, start, fds);
            }
            // vfio_msi_enable(start + count): allocating zero vectors fails
            // in pci_alloc_irq_vectors with ERANGE.
            let nvec = start + count;
            if nvec == 0 {
                return Err(Errno::ERANGE);
            }
            let vectors = (0..nvec)
                .map(|v| (v, alloc_vector(env, p, msix, v)))
                .collect();
            self.mode = if msix {
                Mode::Msix(vectors)
            } else {
                Mode::Msi(vectors)
            };
            let r = self.set_block(env, p, msix, start, fds);
            if r.is_err() {
                self.disable(env.intx_irq, p);
            }
            return r;
        }
        let vectors = match &self.mode {
            Mode::Msi(v) | Mode::Msix(v) if enabled == this => v,
            _ => return Err(Errno::EINVAL),
        };
        // 6.1: the range must lie within the vectors enabled (all of which
        // have an irq there, so they are the map's length).
        if !env.kernel.dynamic_msix && start as usize + count as usize > vectors.len() {
            return Err(Errno::EINVAL);
        }
        // Loopback: eventfd_signal on the bound vectors, no hardware
        // interrupt (so no count in /proc/interrupts), nothing unbound.
        for (&i, v) in vectors.range(start..start.saturating_add(count)) {
            let fire = match data {
                IrqData::Bool(b) => b.get((i - start) as usize) == Some(&true),
                _ => true,
            };
            if let (true, Some(t)) = (fire, &v.trigger) {
                t.signal();
            }
        }
        Ok(())
    }

    /// `vfio_msi_set_block`: binds `fds` to vectors from `start`; on the
    /// first failure unbinds every vector from `start` up to and including
    /// the one that failed, and returns the error.
    fn set_block(
        &mut self,
        env: &IrqEnv<'_>,
        p: &mut Edit<'_>,
        msix: bool,
        start: u32,
        fds: &[Option<std::os::fd::BorrowedFd<'_>>],
    ) -> Result<(), Errno> {
        let (Mode::Msi(vectors) | Mode::Msix(vectors)) = &mut self.mode else {
            return Err(Errno::EINVAL);
        };
        // 6.1 bounds the block by the vectors enabled; 6.12 does not (the
        // index's vector count was checked before).
        if !env.kernel.dynamic_msix
            && (start as usize >= vectors.len() || start as usize + fds.len() > vectors.len())
        {
            return Err(Errno::EINVAL);
        }
        let name = if msix { "vfio-msix" } else { "vfio-msi" };
        let mut failed = None;
        for (vector, fd) in (start..).zip(fds.iter()) {
            if let Err(e) = set_vector_signal(env, p, vectors, msix, vector, *fd, || {
                format!("{name}[{vector}]({})", env.address)
            }) {
                failed = Some((vector, e));
                break;
            }
        }
        let Some((at, e)) = failed else {
            return Ok(());
        };
        for vector in start..=at {
            let _ = set_vector_signal(env, p, vectors, msix, vector, None, String::new);
        }
        Err(e)
    }

    /// Disables whatever mode is enabled (`vfio_intx_disable` /
    /// `vfio_msi_disable`): every trigger dropped, MSI irqs freed.
    fn disable(&mut self, intx_irq: u32, p: &mut Edit<'_>) {
        match std::mem::take(&mut self.mode) {
            Mode::None => {}
            Mode::Intx(_) => p.release(intx_irq),
            Mode::Msi(vectors) | Mode::Msix(vectors) => {
                for v in vectors.into_values() {
                    p.free(v.irq);
                }
            }
        }
    }

    /// What closing the last device fd does (`vfio_pci_core_disable` and
    /// `close_device`): the enabled mode is disabled and the ERR and REQ
    /// eventfds are released.
    pub(crate) fn release(&mut self, env: &IrqEnv<'_>) -> std::io::Result<()> {
        let (_, written) = env.procfs.edit(|p| self.disable(env.intx_irq, p));
        self.err = None;
        self.req = None;
        written
    }

    /// Disables interrupts after a hot-unplug: like a release, and the
    /// device's INTx line drops.
    pub(crate) fn unplug(&mut self, env: &IrqEnv<'_>) -> std::io::Result<()> {
        self.level = false;
        self.release(env)
    }

    /// Signals the REQ eventfd, as the kernel does to ask the user to
    /// release a device that is going away. True if one was bound.
    pub(crate) fn request_release(&self) -> bool {
        match &self.req {
            Some(t) => {
                t.signal();
                true
            }
            None => false,
        }
    }

    /// The device raises `irq` (a hardware interrupt): counted in
    /// /proc/interrupts and signalled if an eventfd is bound. For INTx this
    /// asserts the line (level-triggered) until [`lower_intx`](Self::lower_intx).
    pub(crate) fn raise(&mut self, env: &IrqEnv<'_>, irq: Irq) -> (Delivery, std::io::Result<()>) {
        self.drain_unmask();
        let (Irq::Msi(v) | Irq::Msix(v)) = irq else {
            return env.procfs.edit(|p| {
                self.level = true;
                self.service_intx(env, p)
            });
        };
        let want = if matches!(irq, Irq::Msix(_)) {
            Enabled::Msix
        } else {
            Enabled::Msi
        };
        if self.enabled() != want {
            return (Delivery::NotBound, Ok(()));
        }
        let (Mode::Msi(vectors) | Mode::Msix(vectors)) = &self.mode else {
            return (Delivery::NotBound, Ok(()));
        };
        match vectors.get(&v) {
            Some(Vector {
                irq,
                trigger: Some(t),
            }) => {
                // Counted (and in the file) before the eventfd is
                // signalled, as the kernel counts the irq before its
                // handler runs: a driver woken by the signal reads the count.
                let counted = env.procfs.fire(*irq);
                t.signal();
                (Delivery::Signalled, counted)
            }
            _ => (Delivery::NotBound, Ok(())),
        }
    }

    /// The device deasserts its INTx line.
    pub(crate) fn lower_intx(&mut self) {
        self.level = false;
    }
}

/// A fresh Linux irq for vector `vector`, with the chip and hwirq the
/// kernel's MSI domain gives it.
fn alloc_vector(env: &IrqEnv<'_>, p: &mut Edit<'_>, msix: bool, vector: u32) -> Vector {
    let (chip, hwirq) = env.kernel.msi_columns(env.address, msix, vector);
    Vector {
        irq: p.alloc(&chip, hwirq),
        trigger: None,
    }
}

/// `vfio_msi_set_vector_signal`: frees the vector's irq action and trigger,
/// then for a real fd takes a reference to it and requests the irq. A
/// vector with no irq is allocated one on demand for MSI-X with
/// [`IrqKernel::dynamic_msix`] (`pci_msix_alloc_irq_at`; it stays
/// allocated until the index is disabled) and is EINVAL otherwise
/// (`pci_irq_vector`), unless the fd is -1, which then does nothing.
fn set_vector_signal(
    env: &IrqEnv<'_>,
    p: &mut Edit<'_>,
    vectors: &mut Vectors,
    msix: bool,
    vector: u32,
    fd: Option<std::os::fd::BorrowedFd<'_>>,
    name: impl FnOnce() -> String,
) -> Result<(), Errno> {
    if let Some(v) = vectors.get_mut(&vector) {
        if v.trigger.take().is_some() {
            p.release(v.irq);
        }
    }
    let Some(fd) = fd else {
        return Ok(());
    };
    let v = match vectors.entry(vector) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(e) => {
            if !(msix && env.kernel.dynamic_msix) {
                return Err(Errno::EINVAL);
            }
            e.insert(alloc_vector(env, p, msix, vector))
        }
    };
    let trigger = Trigger::from_fd(fd)?;
    // request_irq: fails with ENOSPC when the CPUs have no vector left.
    p.request(v.irq, name())?;
    v.trigger = Some(trigger);
    Ok(())
}

/// `vfio_pci_set_ctx_trigger_single` (ERR and REQ).
fn single_trigger(
    slot: &mut Option<Trigger>,
    start: u32,
    count: u32,
    data: IrqData<'_>,
) -> Result<(), Errno> {
    if start != 0 || count > 1 {
        return Err(Errno::EINVAL);
    }
    match data {
        IrqData::None { .. } => {
            let Some(t) = slot else {
                return Err(Errno::EINVAL);
            };
            if count > 0 {
                t.signal();
            } else {
                *slot = None;
            }
            Ok(())
        }
        IrqData::Bool(b) => {
            if count == 0 {
                return Err(Errno::EINVAL);
            }
            if let (Some(true), Some(t)) = (b.first(), slot.as_ref()) {
                t.signal();
            }
            Ok(())
        }
        IrqData::Eventfds(fds) => {
            if count == 0 {
                return Err(Errno::EINVAL);
            }
            match fds.first().copied().flatten() {
                None => *slot = None,
                Some(fd) => *slot = Some(Trigger::from_fd(fd)?),
            }
            Ok(())
        }
    }
}

/// The hwirq x86's PCI/MSI irq domain gives a vector in 6.1
/// (`pci_msi_domain_calc_hwirq`: index | requester id << 11 | domain << 27),
/// printed with its `edge` handler.
fn msi_hwirq(address: &PciAddress, vector: u32) -> String {
    let devfn = (u64::from(address.device()) << 3) | u64::from(address.function());
    let rid = (u64::from(address.bus()) << 8) | devfn;
    let hwirq =
        u64::from(vector) | (rid << 11) | ((u64::from(address.domain()) & 0xffff_ffff) << 27);
    format!("{hwirq}-edge")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_columns_follow_the_kernels_msi_domains() {
        let nvme: PciAddress = "0000:00:03.0".parse().unwrap();
        let edu: PciAddress = "0000:00:02.0".parse().unwrap();
        let v6_1 = IrqKernel::default();
        assert_eq!(
            v6_1.msi_columns(&nvme, true, 2),
            ("IR-PCI-MSI".into(), "49154-edge".into())
        );
        assert_eq!(
            v6_1.msi_columns(&edu, false, 0),
            ("IR-PCI-MSI".into(), "32768-edge".into())
        );
        let v6_12 = IrqKernel {
            dynamic_msix: true,
            per_device_msi_domain: true,
            remapped: true,
        };
        assert_eq!(
            v6_12.msi_columns(&nvme, true, 2),
            ("IR-PCI-MSIX-0000:00:03.0".into(), "2-edge".into())
        );
        let noiommu = IrqKernel {
            remapped: false,
            ..v6_12
        };
        assert_eq!(
            noiommu.msi_columns(&edu, false, 0),
            ("PCI-MSI-0000:00:02.0".into(), "0-edge".into())
        );
    }
}
