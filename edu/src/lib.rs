//! A userspace driver for QEMU's `edu` educational PCI device, written once
//! and generic over [`VfioBackend`]: the same code drives the real device
//! through vfio-pci and the simulated one in tests.
//!
//! It uses what a real driver uses: a mapped BAR for registers, an MSI vector
//! bound to an eventfd for completion interrupts, and DMA through the IOMMU.
//! The register map is QEMU's (`docs/specs/edu.rst`).
//!
//! ```no_run
//! # fn demo<B: vfio_core::VfioBackend>(backend: &B, group: &B::Group, container: &B::Container)
//! # -> Result<(), edu::EduError> {
//! use vfio_core::Group;
//! let device = group.open_device("0000:00:02.0")?;
//! let mut edu = edu::Edu::<B>::new(backend, device)?;
//! assert_eq!(edu.factorial(5)?, 120);
//! let echoed = edu.dma_round_trip(backend, container, b"hello, device")?;
//! assert_eq!(echoed, b"hello, device");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::time::Duration;
use vfio_core::{
    Device, DmaFlags, DmaMemory, DmaSpace, Interrupt, IovaOptions, IrqIndex, MappedRegion,
    VfioBackend, region,
};

/// `edu` register offsets in BAR0.
pub mod regs {
    /// Identification, `0xRRrr00ed` (major, minor version).
    pub const ID: u64 = 0x00;
    /// Liveness check: reads the bitwise inverse of the last write.
    pub const LIVENESS: u64 = 0x04;
    /// Factorial: write n to start, read n! when done.
    pub const FACTORIAL: u64 = 0x08;
    /// Status: bit 0 computing (read-only), bit 7 interrupt when the factorial is done.
    pub const STATUS: u64 = 0x20;
    /// Interrupt status (read-only).
    pub const IRQ_STATUS: u64 = 0x24;
    /// Interrupt raise (write-only): ORs the value into the interrupt status.
    pub const IRQ_RAISE: u64 = 0x60;
    /// Interrupt acknowledge (write-only): clears the written bits.
    pub const IRQ_ACK: u64 = 0x64;
    /// DMA source address.
    pub const DMA_SRC: u64 = 0x80;
    /// DMA destination address.
    pub const DMA_DST: u64 = 0x88;
    /// DMA transfer count in bytes.
    pub const DMA_COUNT: u64 = 0x90;
    /// DMA command: bit 0 start, bit 1 direction (1: device to RAM), bit 2 interrupt when done.
    pub const DMA_CMD: u64 = 0x98;
}

/// The identification value of edu version 1.0.
pub const EDU_ID: u32 = 0x0100_00ed;
/// Status bit: a factorial is being computed.
pub const STATUS_COMPUTING: u32 = 0x01;
/// Status bit: raise an interrupt when the factorial is done.
pub const STATUS_IRQ_ON_DONE: u32 = 0x80;
/// Interrupt status bit the factorial completion raises.
pub const IRQ_FACTORIAL: u32 = 0x001;
/// Interrupt status bit a DMA completion raises.
pub const IRQ_DMA: u32 = 0x100;
/// Where the device's internal DMA buffer sits in its address space.
pub const DMA_BUFFER: u64 = 0x4_0000;
/// Size of that buffer.
pub const DMA_BUFFER_LEN: usize = 4096;
/// The longest transfer the device accepts. QEMU's edu (7.2) checks that a
/// transfer ends strictly before the end of its buffer, and treats a transfer
/// reaching the last byte as a hardware error that stops the machine.
pub const DMA_MAX_TRANSFER: usize = DMA_BUFFER_LEN - 1;
/// Where the driver maps its DMA memory: the first fit of the
/// [`IovaAllocator`](vfio_core::IovaAllocator), confined to `DMA_IOVA..=DMA_IOVA_LAST`, that each
/// [`Edu::dma_round_trip`] builds.
pub const DMA_IOVA: u64 = 0x10_0000;
/// The highest IOVA the driver maps: edu masks DMA addresses to 28 bits by
/// default, so IOVAs must stay below 256 MiB.
pub const DMA_IOVA_LAST: u64 = (1 << 28) - 1;

const CMD_START: u64 = 0x1;
const CMD_TO_RAM: u64 = 0x2;
const CMD_IRQ: u64 = 0x4;

/// How long to wait for a completion interrupt.
pub const COMPLETION_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong driving `edu`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EduError {
    /// A VFIO call failed.
    #[error(transparent)]
    Vfio(#[from] vfio_core::Error),
    /// The device is not an `edu` (or not a version this driver knows).
    #[error("identification register reads {0:#010x}, not an edu device")]
    NotEdu(u32),
    /// The liveness register did not invert a write.
    #[error("liveness check failed: wrote {wrote:#x}, read {read:#x}")]
    NotAlive {
        /// What was written.
        wrote: u32,
        /// What came back.
        read: u32,
    },
    /// No completion interrupt arrived in time.
    #[error("no {0} interrupt within {COMPLETION_TIMEOUT:?}")]
    Timeout(&'static str),
    /// The interrupt status did not show the expected cause.
    #[error("interrupt status {status:#x} lacks {expected:#x}")]
    WrongInterrupt {
        /// The status read.
        status: u32,
        /// The bit expected.
        expected: u32,
    },
    /// A register read all ones: what a PCI read returns once the device has
    /// gone from the bus (surprise removal, a dead link).
    #[error("register {0:#x} reads all ones: the device is gone")]
    DeviceGone(u64),
    /// A DMA transfer longer than the device accepts was asked for.
    #[error("{0} bytes exceed the device's longest DMA transfer ({DMA_MAX_TRANSFER} bytes)")]
    TooLong(usize),
}

/// A driven `edu` device.
#[derive(Debug)]
pub struct Edu<B: VfioBackend> {
    bar0: B::Region,
    irq: B::Interrupt,
    /// Signalled by vfio-pci when the device is being removed (its sysfs
    /// `remove`, or a hot-unplug request): the driver should let go.
    req: B::Interrupt,
    device: B::Device,
}

impl<B: VfioBackend> Edu<B> {
    /// Takes over an opened `edu`: maps BAR0, checks identification and
    /// liveness, enables bus mastering (for DMA and MSI), binds MSI vector 0
    /// to a new interrupt and binds the device-request (REQ) interrupt.
    pub fn new(backend: &B, device: B::Device) -> Result<Self, EduError> {
        let bar0 = device.map_region(region::BAR0)?;
        let id = bar0.read_u32(regs::ID)?;
        if id != EDU_ID {
            return Err(EduError::NotEdu(id));
        }
        let probe = 0x5a5a_0f0f;
        bar0.write_u32(regs::LIVENESS, probe)?;
        let read = bar0.read_u32(regs::LIVENESS)?;
        if read != !probe {
            return Err(EduError::NotAlive { wrote: probe, read });
        }
        device.set_bus_master(true)?;
        let irq = backend.new_interrupt()?;
        device.enable_interrupts(IrqIndex::MSI, &[&irq])?;
        let req = backend.new_interrupt()?;
        device.bind_interrupt(IrqIndex::REQ, 0, &req)?;
        Ok(Self {
            bar0,
            irq,
            req,
            device,
        })
    }

    /// True if the kernel has asked for the device back since the last call.
    ///
    /// On Linux, removing a device (its sysfs `remove`, or an unplug
    /// request) signals the REQ interrupt and then waits, with the device
    /// still working, until every handle and mapping of it is closed: a
    /// driver that sees this should finish what it is doing and drop the
    /// [`Edu`]. The wait never ends on its own, so a driver that never looks
    /// blocks the removal. The REQ eventfd is also [`AsFd`](std::os::fd::AsFd)
    /// for a reactor: [`Edu::release_request`].
    pub fn release_requested(&self) -> Result<bool, EduError> {
        Ok(self.req.try_consume()?.is_some())
    }

    /// The interrupt vfio-pci signals to ask for the device back.
    pub fn release_request(&self) -> &B::Interrupt {
        &self.req
    }

    /// The device handle.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Waits for the completion interrupt and acknowledges `cause`.
    fn complete(&self, what: &'static str, cause: u32) -> Result<(), EduError> {
        self.irq
            .wait(Some(COMPLETION_TIMEOUT))?
            .ok_or(EduError::Timeout(what))?;
        let status = self.read(regs::IRQ_STATUS)?;
        self.bar0.write_u32(regs::IRQ_ACK, status)?;
        if status & cause == 0 {
            return Err(EduError::WrongInterrupt {
                status,
                expected: cause,
            });
        }
        Ok(())
    }

    /// Computes `n!` on the device (32-bit, wrapping like the device does),
    /// waiting for its completion interrupt. Takes `&mut self`: the device
    /// computes one factorial at a time and raises one interrupt for it, so
    /// two threads sharing the device would take each other's results.
    pub fn factorial(&mut self, n: u32) -> Result<u32, EduError> {
        self.bar0.write_u32(regs::STATUS, STATUS_IRQ_ON_DONE)?;
        self.bar0.write_u32(regs::FACTORIAL, n)?;
        self.complete("factorial", IRQ_FACTORIAL)?;
        // n! mod 2^32 is 1 or even, never all ones.
        self.read(regs::FACTORIAL)
    }

    /// Reads a register, treating all ones as the device having gone away.
    fn read(&self, reg: u64) -> Result<u32, EduError> {
        match self.bar0.read_u32(reg)? {
            u32::MAX => Err(EduError::DeviceGone(reg)),
            value => Ok(value),
        }
    }

    /// Runs one DMA transfer and waits for its completion interrupt.
    fn transfer(&self, src: u64, dst: u64, len: usize, to_ram: bool) -> Result<(), EduError> {
        self.bar0.write_u64(regs::DMA_SRC, src)?;
        self.bar0.write_u64(regs::DMA_DST, dst)?;
        self.bar0.write_u64(regs::DMA_COUNT, len as u64)?;
        let dir = if to_ram { CMD_TO_RAM } else { 0 };
        self.bar0
            .write_u64(regs::DMA_CMD, CMD_START | CMD_IRQ | dir)?;
        self.complete("DMA", IRQ_DMA)
    }

    /// Copies `data` into the device's buffer by DMA and back into a second
    /// page of host memory, and returns what came back. Maps two pages of
    /// its own DMA memory in `space` (a container, an IOAS, or the context
    /// [`vfio_core::open::open_device`] gives) for the duration, at the
    /// IOVA a new allocator over the space's ranges, confined to
    /// [`DMA_IOVA`]`..=`[`DMA_IOVA_LAST`], picks first ([`DMA_IOVA`]), and
    /// unmaps them before returning; a failed unmap is returned once the
    /// transfer has succeeded. In no-IOMMU mode the device is given each
    /// page's physical address instead
    /// ([`DmaMapping::device_address`](vfio_core::DmaMapping::device_address)).
    /// Takes `&mut self`: the device has one DMA engine and one buffer,
    /// which a second caller would overwrite.
    pub fn dma_round_trip<S: DmaSpace<B>>(
        &mut self,
        backend: &B,
        space: &S,
        data: &[u8],
    ) -> Result<Vec<u8>, EduError> {
        if data.len() > DMA_MAX_TRANSFER {
            return Err(EduError::TooLong(data.len()));
        }
        let page = DMA_BUFFER_LEN;
        let iovas = space.iova_allocator(IovaOptions {
            window: DMA_IOVA..=DMA_IOVA_LAST,
            ..IovaOptions::default()
        })?;
        let mem = backend.alloc_dma(2 * page)?;
        let mapping = space.map_dma_in(
            &iovas,
            &mem,
            0,
            (2 * page) as u64,
            DmaFlags::READ | DmaFlags::WRITE,
        )?;
        let result = (|| -> Result<Vec<u8>, EduError> {
            let (to_device, from_device) = (
                mapping.device_address(0)?,
                mapping.device_address(page as u64)?,
            );
            mem.write_at(0, data)?;
            // The data must reach memory before the command register
            // starts the device reading it (Linux's wmb() before writel()).
            mem.wmb();
            self.transfer(to_device, DMA_BUFFER, data.len(), false)?;
            self.transfer(DMA_BUFFER, from_device, data.len(), true)?;
            // The completion interrupt says the device has written the
            // page: read it only after that (rmb()).
            mem.rmb();
            let mut back = vec![0u8; data.len()];
            mem.read_at(page, &mut back)?;
            Ok(back)
        })();
        let unmapped = mapping.unmap();
        let back = result?;
        unmapped?;
        Ok(back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfio_core::{Container, Group, IommuType};
    use vfio_mock::profiles;

    fn edu(host: &vfio_mock::MockHost) -> (Edu<vfio_mock::MockBackend>, vfio_mock::MockContainer) {
        let backend = host.backend();
        let group = backend.open_group(profiles::QEMU_GUEST_GROUPS.0).unwrap();
        let container = backend.open_container().unwrap();
        group.set_container(&container).unwrap();
        container.set_iommu(IommuType::Type1v2).unwrap();
        let device = group
            .open_device(&profiles::edu_address().to_string())
            .unwrap();
        (Edu::new(&backend, device).unwrap(), container)
    }

    #[test]
    fn computes_factorials_and_moves_data_on_the_simulated_device() {
        let host = profiles::qemu_guest().build().unwrap();
        let (mut edu, container) = edu(&host);
        assert_eq!(edu.factorial(10).unwrap(), 3_628_800);
        let back = edu
            .dma_round_trip(&host.backend(), &container, b"round trip")
            .unwrap();
        assert_eq!(back, b"round trip");
        host.done().unwrap();
    }

    #[test]
    fn refuses_a_transfer_the_device_would_reject() {
        let host = profiles::qemu_guest().build().unwrap();
        let (mut edu, container) = edu(&host);
        let e = edu
            .dma_round_trip(&host.backend(), &container, &[0; DMA_BUFFER_LEN])
            .unwrap_err();
        assert!(matches!(e, EduError::TooLong(4096)), "{e}");
    }

    #[test]
    fn a_removal_request_is_seen_and_the_removal_waits_for_the_driver() {
        let host = profiles::qemu_guest().build().unwrap();
        let (mut edu, _container) = edu(&host);
        assert!(!edu.release_requested().unwrap());
        let removal = host.remove_device(profiles::edu_address()).unwrap();
        assert!(edu.release_requested().unwrap());
        // Still working until the driver lets go; the removal waits for it.
        assert_eq!(edu.factorial(5).unwrap(), 120);
        assert!(!removal.wait(std::time::Duration::from_millis(10)));
        drop(edu);
        assert!(removal.wait(std::time::Duration::from_secs(5)));
    }
}
