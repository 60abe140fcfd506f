//! Opening a device in any of the three ways Linux offers, for a driver that
//! runs in all of them.
//!
//! - [`Mode::Type1`]: the device's IOMMU group (`/dev/vfio/N`) in a legacy
//!   container (`/dev/vfio/vfio`) set to Type1v2.
//! - [`Mode::Iommufd`]: the device's cdev (`/dev/vfio/devices/vfioN`,
//!   Linux 6.6 and later) bound to an iommufd (`/dev/iommu`, Linux 6.2
//!   and later) and attached to a new IOAS.
//! - [`Mode::NoIommu`]: the device's no-IOMMU group
//!   (`/dev/vfio/noiommu-N`) in a container set to the no-IOMMU driver,
//!   on a host without an IOMMU that loaded vfio with
//!   `enable_unsafe_noiommu_mode=1`. Nothing translates the device's DMA:
//!   it is given physical addresses.
//!
//! [`open_device`] returns the device with its [`DmaContext`], which maps
//! DMA memory the same way in every mode ([`DmaSpace`]); a driver that
//! takes the addresses it gives its device from its mappings
//! ([`DmaMapping::device_address`](crate::DmaMapping::device_address))
//! runs unchanged in all three.
//!
//! ```
//! use vfio_core::open::{Mode, open_device};
//! use vfio_core::{Device, DmaFlags, DmaSpace, PciAddress, Result, VfioBackend};
//!
//! fn ring<B: VfioBackend>(backend: &B, address: &PciAddress, mode: Mode) -> Result<u64> {
//!     let opened = open_device(backend, address, mode)?;
//!     let memory = backend.alloc_dma(4096)?;
//!     let iovas = opened.dma.iova_allocator(Default::default())?;
//!     let ring = opened.dma.map_dma_in(&iovas, &memory, 0, 4096, DmaFlags::READ | DmaFlags::WRITE)?;
//!     ring.device_address(0)
//! }
//! ```
//!
//! A step that fails leaves nothing behind: what the earlier steps opened
//! is closed again (dropping a group detaches it from its container, and
//! closing a cdev unbinds it), and the error is the failed step's.

use crate::backend::{Container, Device, DmaSpace, Group, VfioBackend};
use crate::clock::SystemClock;
use crate::error::{Error, ErrorKind, Operation, Result};
use crate::info::{DmaFlags, IommuType, IovaRange};
use crate::iommufd::IommuFd;
use crate::pci_address::PciAddress;
use std::fmt;
use std::os::fd::AsFd;

/// How a device is opened and whose IOMMU context its DMA goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// The group and a legacy container with Type1v2.
    Type1,
    /// The device cdev bound to an iommufd, attached to its own IOAS.
    Iommufd,
    /// The no-IOMMU group and a container with the no-IOMMU driver.
    NoIommu,
}

impl Mode {
    /// Every mode, in the order above.
    pub const ALL: [Mode; 3] = [Mode::Type1, Mode::Iommufd, Mode::NoIommu];

    /// The mode's short name: `type1`, `iommufd` or `noiommu`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Type1 => "type1",
            Mode::Iommufd => "iommufd",
            Mode::NoIommu => "noiommu",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                Error::new(Operation::Parse, ErrorKind::InvalidArgument)
                    .with_target(s)
                    .with_detail("expected type1, iommufd or noiommu")
            })
    }
}

/// The IOMMU context of a device opened by [`open_device`], with what keeps
/// it: a group in a container, or an iommufd with an IOAS.
///
/// Fields drop in declaration order, after the device (see [`OpenDevice`]).
#[derive(Debug)]
pub enum DmaContext<B: VfioBackend> {
    /// A group attached to a container (Type1v2, or no-IOMMU).
    Container {
        /// The device's group.
        group: B::Group,
        /// The container the group is attached to.
        container: B::Container,
    },
    /// An IOAS of an iommufd the device is bound to and attached to.
    Ioas {
        /// The IOAS the device is attached to.
        ioas: B::Ioas,
        /// The iommufd the device is bound to.
        iommufd: B::IommuFd,
    },
}

impl<B: VfioBackend> DmaContext<B> {
    /// The mode this context was opened in.
    pub fn mode(&self) -> Mode {
        match self {
            DmaContext::Container { container, .. } if !container.translates() => Mode::NoIommu,
            DmaContext::Container { .. } => Mode::Type1,
            DmaContext::Ioas { .. } => Mode::Iommufd,
        }
    }

    /// The group, in the container modes.
    pub fn group(&self) -> Option<&B::Group> {
        match self {
            DmaContext::Container { group, .. } => Some(group),
            DmaContext::Ioas { .. } => None,
        }
    }

    /// The container, in the container modes.
    pub fn container(&self) -> Option<&B::Container> {
        match self {
            DmaContext::Container { container, .. } => Some(container),
            DmaContext::Ioas { .. } => None,
        }
    }

    /// The IOAS, in iommufd mode.
    pub fn ioas(&self) -> Option<&B::Ioas> {
        match self {
            DmaContext::Ioas { ioas, .. } => Some(ioas),
            DmaContext::Container { .. } => None,
        }
    }

    /// The iommufd, in iommufd mode.
    pub fn iommufd(&self) -> Option<&B::IommuFd> {
        match self {
            DmaContext::Ioas { iommufd, .. } => Some(iommufd),
            DmaContext::Container { .. } => None,
        }
    }

    fn space(&self) -> &dyn DmaSpace<B> {
        match self {
            DmaContext::Container { container, .. } => container,
            DmaContext::Ioas { ioas, .. } => ioas,
        }
    }
}

impl<B: VfioBackend> DmaSpace<B> for DmaContext<B> {
    fn translates(&self) -> bool {
        self.space().translates()
    }

    fn iova_ranges(&self) -> Result<Vec<IovaRange>> {
        self.space().iova_ranges()
    }

    fn iova_page_sizes(&self) -> Result<u64> {
        self.space().iova_page_sizes()
    }

    fn map_dma_raw(
        &self,
        memory: &B::DmaMemory,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<()> {
        self.space().map_dma_raw(memory, offset, size, iova, flags)
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        self.space().unmap_dma(iova, size)
    }

    fn unmap_all(&self) -> Result<u64> {
        self.space().unmap_all()
    }
}

/// A device opened by [`open_device`], with its IOMMU context. The device
/// is dropped first, then the context: a cdev is unbound before its IOAS is
/// destroyed, and a group's device closed before the group leaves its
/// container.
#[derive(Debug)]
pub struct OpenDevice<B: VfioBackend> {
    /// The open device.
    pub device: B::Device,
    /// Its IOMMU context.
    pub dma: DmaContext<B>,
}

/// Opens `address` in `mode`: see the [module documentation](self).
///
/// In the group modes the device is opened with one retry of an ENODEV
/// ([`retry::open_device_with_retry`](crate::retry::open_device_with_retry)),
/// which Linux 6.1 answers for a moment after a device is bound.
pub fn open_device<B: VfioBackend>(
    backend: &B,
    address: &PciAddress,
    mode: Mode,
) -> Result<OpenDevice<B>> {
    match mode {
        Mode::Type1 | Mode::NoIommu => {
            let number = backend.host_paths().iommu_group(address)?;
            let (group, iommu) = if mode == Mode::Type1 {
                (backend.open_group(number)?, IommuType::Type1v2)
            } else {
                (backend.open_noiommu_group(number)?, IommuType::NoIommu)
            };
            let container = backend.open_container()?;
            group.set_container(&container)?;
            container.set_iommu(iommu)?;
            let device = crate::retry::open_device_with_retry::<B>(
                &group,
                &address.to_string(),
                &SystemClock,
            )?;
            Ok(OpenDevice {
                device,
                dma: DmaContext::Container { group, container },
            })
        }
        Mode::Iommufd => {
            let device = backend.open_device_cdev(address)?;
            let iommufd = backend.open_iommufd()?;
            device.bind_iommufd(iommufd.as_fd())?;
            let ioas = iommufd.alloc_ioas()?;
            device.attach_ioas(&ioas)?;
            Ok(OpenDevice {
                device,
                dma: DmaContext::Ioas { ioas, iommufd },
            })
        }
    }
}
