//! Registers with side effects: the [`DeviceModel`] hook and the
//! [`DeviceContext`] it acts through.

use crate::pci_device::PciDevice;
use std::fmt;
use vfio_core::PciAddress;

/// Behaviour behind a device's BARs.
///
/// Every BAR access, through a mapped region or `read_region` /
/// `write_region`, first asks the model, except in the MSI-X table and PBA,
/// which are the mock's; an access the model does not handle falls through
/// to plain memory. Accesses are naturally aligned and 1, 2, 4 or 8 bytes
/// wide (the `read_region` path splits longer ones into 4-, 2- and 1-byte
/// pieces, as vfio-pci does). The model must not panic on any offset or
/// value: the driver under test is the one choosing them.
///
/// # Locking rules
///
/// - While [`read`](Self::read), [`write`](Self::write),
///   [`config_read`](Self::config_read), [`config_write`](Self::config_write)
///   or work given to [`DeviceContext::defer`] or
///   [`DeviceContext::schedule`] runs, the mock holds none of its locks.
///   [`reset`](Self::reset) runs with only the device's open-count lock held
///   when it is vfio-pci's reset at open or last close (no lock for
///   `VFIO_DEVICE_RESET`); it gets no context, so it cannot reach the mock.
/// - So every [`DeviceContext`] method may be called from every callback and
///   from deferred and scheduled work; each takes and releases its locks
///   inside the call. The mock never calls the model from inside a
///   `DeviceContext` call ([`DeviceContext::bar_read`] is plain memory), so
///   a model is never re-entered on one thread by the mock.
/// - The model may be called from many threads at once (driver threads, the
///   device's worker, the thread advancing the clock), so it keeps its state
///   behind its own locks or atomics. It may hold its own lock while calling
///   the context, but must not block in a callback on work it deferred: that
///   work may be waiting for the same lock.
/// - [`MockHost::advance`](crate::MockHost::advance) and
///   [`MockHost::run_until_idle`](crate::MockHost::run_until_idle) do nothing
///   when called from device work.
pub trait DeviceModel: Send + Sync + fmt::Debug + 'static {
    /// A read of `width` bytes at `offset` of BAR `bar`: `Some(value)` if
    /// the model handles it, `None` to read plain memory.
    fn read(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8) -> Option<u64>;

    /// A write of the low `width` bytes of `value`: true if the model
    /// handled it, false to store it in plain memory.
    fn write(&self, ctx: &DeviceContext<'_>, bar: u32, offset: u64, width: u8, value: u64) -> bool;

    /// A config-space read of `width` bytes (1, 2 or 4, naturally aligned)
    /// at `offset` inside the range the model owns (the body of the
    /// capability [`PciDeviceBuilder::vendor_capability`](crate::PciDeviceBuilder::vendor_capability)
    /// reserves): `Some(value)`, or `None` to read the stored bytes. The
    /// standard header, the MSI and MSI-X capabilities and every other byte
    /// are the mock's, as vfio-pci virtualizes them, and never reach here.
    fn config_read(&self, ctx: &DeviceContext<'_>, offset: u16, width: u8) -> Option<u32> {
        let _ = (ctx, offset, width);
        None
    }

    /// A config-space write inside the range the model owns: true if the
    /// model handled it, false to drop it (the bytes are read-only).
    fn config_write(&self, ctx: &DeviceContext<'_>, offset: u16, width: u8, value: u32) -> bool {
        let _ = (ctx, offset, width, value);
        false
    }

    /// Returns the model to its power-on state (a device reset, or the
    /// reset vfio-pci does when the device is opened or released, for
    /// devices that can reset).
    fn reset(&self);
}

/// An interrupt the device raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Irq {
    /// Asserts the INTx line (level-triggered: it stays asserted until
    /// [`DeviceContext::lower_intx`]).
    Intx,
    /// MSI vector `n`.
    Msi(u32),
    /// MSI-X vector `n`.
    Msix(u32),
}

/// What became of a raised interrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The eventfd bound to the vector was signalled and the irq counted in
    /// `/proc/interrupts`.
    Signalled,
    /// INTx is masked (automasked after the last delivery, or masked by the
    /// user): it is held pending and fires when unmasked if still asserted.
    Masked,
    /// No eventfd is bound to that vector, or that interrupt type is not
    /// enabled: the interrupt is lost, as on hardware.
    NotBound,
    /// An MSI or MSI-X message with Bus Master Enable clear in the command
    /// register: the device cannot write the message, so it is lost (a
    /// loopback trigger through `SET_IRQS` is the kernel's and still fires).
    BusMasterDisabled,
}

/// Why a DMA by the device failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaFault {
    /// Bus Master Enable is clear in the command register, so the device
    /// cannot issue DMA at all.
    BusMasterDisabled,
    /// The device has no IOMMU context: its group has no container with an
    /// IOMMU type, or its cdev is not attached to a page table (blocked, as
    /// an iommufd-owned device is until attached). Every DMA is refused.
    NoIommu,
    /// In a no-IOMMU container, where the device is given physical
    /// addresses: no live DMA buffer of the host holds the physical address
    /// `address` (a driver gave the device an address past a page of a
    /// buffer, whose next page lies elsewhere, or one of a buffer it
    /// dropped). A real machine would read or overwrite whatever memory is
    /// there; the mock moves the bytes that lie in live buffers, drops the
    /// rest, and reports the first it dropped. Nothing is logged: there is
    /// no IOMMU to notice.
    NoMemory {
        /// The first physical address that lies in no buffer.
        address: u64,
        /// How many bytes of the access were transferred.
        completed: usize,
    },
    /// No mapping covers this IOVA (an IOMMU fault on real hardware). Every
    /// byte of the access that is mapped was still transferred, as
    /// hardware transfers each translated part of a DMA; the fault is in
    /// the host's [`iommu_faults`](crate::MockHost::iommu_faults).
    Unmapped {
        /// The first IOVA that is not mapped.
        iova: u64,
        /// How many bytes of the access were transferred.
        completed: usize,
    },
    /// The mapping covering this IOVA does not allow the access (READ for
    /// device reads, WRITE for device writes). As for
    /// [`Unmapped`](Self::Unmapped), the permitted bytes were transferred.
    Permission {
        /// The first IOVA the access was refused at.
        iova: u64,
        /// How many bytes of the access were transferred.
        completed: usize,
    },
    /// The device has been removed.
    Removed,
}

impl fmt::Display for DmaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BusMasterDisabled => f.write_str("bus mastering is disabled"),
            Self::NoIommu => f.write_str("the device has no IOMMU domain"),
            Self::NoMemory { address, completed } => write!(
                f,
                "physical address {address:#x} is in no DMA buffer ({completed} bytes transferred)"
            ),
            Self::Unmapped { iova, completed } => write!(
                f,
                "IOVA {iova:#x} is not mapped ({completed} bytes transferred)"
            ),
            Self::Permission { iova, completed } => write!(
                f,
                "the mapping at IOVA {iova:#x} does not permit this access \
                 ({completed} bytes transferred)"
            ),
            Self::Removed => f.write_str("the device has been removed"),
        }
    }
}

impl std::error::Error for DmaFault {}

/// What a [`DeviceModel`] may do to the rest of the simulated machine.
pub struct DeviceContext<'a> {
    pub(crate) device: &'a PciDevice,
}

impl fmt::Debug for DeviceContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceContext")
            .field("device", &self.device.address)
            .finish()
    }
}

impl DeviceContext<'_> {
    /// The device's PCI address.
    pub fn address(&self) -> PciAddress {
        self.device.address
    }

    /// Raises an interrupt: signals the eventfd bound to it (writing 1, as
    /// the kernel's handler does) and counts it in `/proc/interrupts`. INTx
    /// is level-triggered and automasked: see [`Delivery`].
    pub fn raise(&self, irq: Irq) -> Delivery {
        self.device.raise(irq)
    }

    /// Deasserts the INTx line.
    pub fn lower_intx(&self) {
        self.device.lower_intx();
    }

    /// True while the user has MSI enabled (`VFIO_DEVICE_SET_IRQS` on the
    /// MSI index), as the device sees the MSI Enable bit.
    pub fn msi_enabled(&self) -> bool {
        self.device.irq_mode() == crate::irq::Enabled::Msi
    }

    /// True while the user has MSI-X enabled.
    pub fn msix_enabled(&self) -> bool {
        self.device.irq_mode() == crate::irq::Enabled::Msix
    }

    /// Reads guest memory at `iova` through the IOMMU (the container's
    /// DMA mappings, or those of the IOAS the device is attached to; in a
    /// no-IOMMU container `iova` is a physical address). On a fault the
    /// mapped bytes are read all the same and the bytes of `buf` the IOMMU
    /// refused are left as they were.
    pub fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaFault> {
        self.device.dma(iova, crate::iommu::Access::Read(buf))
    }

    /// Writes guest memory at `iova` through the IOMMU. On a fault the
    /// mapped bytes are written all the same, the rest dropped.
    pub fn dma_write(&self, iova: u64, data: &[u8]) -> Result<(), DmaFault> {
        self.device.dma(iova, crate::iommu::Access::Write(data))
    }

    /// Runs `work` on the device's own thread, after this call returns: the
    /// device finishing a command on its own time. Jobs of one device run
    /// one at a time, in the order deferred, with a context like this one
    /// (they may DMA, raise interrupts, defer and schedule more). Work
    /// pending when the device is reset or removed, or when the host is
    /// dropped, never runs; see the [crate docs](crate) for the rules.
    pub fn defer(&self, work: impl FnOnce(&DeviceContext<'_>) + Send + 'static) {
        self.device.defer(Box::new(work));
    }

    /// Runs `work` once the host's virtual time has moved `after` past
    /// [`now`](Self::now): on the thread that calls
    /// [`MockHost::advance`](crate::MockHost::advance) or
    /// [`MockHost::run_until_idle`](crate::MockHost::run_until_idle), with
    /// the clock at the deadline. A test decides when a slow device
    /// finishes, and in which order two do.
    pub fn schedule(
        &self,
        after: std::time::Duration,
        work: impl FnOnce(&DeviceContext<'_>) + Send + 'static,
    ) {
        self.device.schedule(after, Box::new(work));
    }

    /// The device's work epoch: it changes when the device's pending work is
    /// dropped (a reset, the reset at open and last close, a removal).
    pub(crate) fn epoch(&self) -> u64 {
        self.device.epoch()
    }

    /// The host's virtual time ([`MockHost::clock`](crate::MockHost::clock)).
    pub fn now(&self) -> std::time::Duration {
        self.device.scheduler.now()
    }

    /// Reads the plain memory of BAR `bar` (what a read the model does not
    /// handle would return); 0 when the access does not fit.
    pub fn bar_read(&self, bar: u32, offset: u64, width: u8) -> u64 {
        self.device.plain_read(bar, offset, width)
    }

    /// Writes the plain memory of BAR `bar`; dropped when it does not fit.
    pub fn bar_write(&self, bar: u32, offset: u64, width: u8, value: u64) {
        self.device.plain_write(bar, offset, width, value);
    }
}
