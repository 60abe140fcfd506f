//! The container: an IOMMU context (`/dev/vfio/vfio`), as Linux 6.1's
//! `vfio_container.c` and `vfio_iommu_type1.c` run it.

use crate::host::{HostInner, MockBackend};
use crate::iommu::{self, Access, DmaMap, Outcome};
use crate::memory::{MockDmaMemory, PhysMemory};
use crate::model::DmaFault;
use nix::errno::Errno;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;
use vfio_core::access::check_range;
use vfio_core::{
    Container, DmaFlags, DmaMemory, DmaSpace, Error, Extension, IommuInfo, IommuType, IovaRange,
    Operation, Result,
};

/// Where a group (and its devices) find the container they are attached to.
pub(crate) type ContainerSlot = Arc<Mutex<Option<Arc<ContainerCore>>>>;

/// The kernel's `struct vfio_container`.
#[derive(Debug)]
pub(crate) struct ContainerCore {
    state: Mutex<ContainerState>,
    noiommu_mode: bool,
    /// The host's physical memory, which no-IOMMU devices reach.
    phys: Arc<PhysMemory>,
    /// The host's IOMMU geometry, which type1 reports and enforces.
    geometry: iommu::IommuGeometry,
}

#[derive(Debug, Default)]
struct ContainerState {
    iommu: Option<IommuType>,
    groups: BTreeSet<u32>,
    /// The attached groups are no-IOMMU groups.
    noiommu: bool,
    dma: DmaMap,
}

/// Type1's answer to `VFIO_CHECK_EXTENSION` (`vfio_iommu_type1_check_extension`).
fn type1_extension(extension: Extension, has_iommu: bool) -> u32 {
    match extension {
        // Checked in the guest (`extension_answers_match_type1`): 6.1 still
        // offers nesting, and offers UPDATE_VADDR only once an IOMMU is set.
        Extension::TYPE1_IOMMU
        | Extension::TYPE1V2_IOMMU
        | Extension::TYPE1_NESTING_IOMMU
        | Extension::UNMAP_ALL => 1,
        Extension::UPDATE_VADDR => u32::from(has_iommu),
        // Enforced cache coherency needs VT-d snoop control, which QEMU's
        // intel-iommu does not offer: 0 before and after (checked in the guest).
        _ => 0,
    }
}

impl ContainerCore {
    pub(crate) fn new(noiommu_mode: bool, phys: Arc<PhysMemory>) -> Self {
        Self {
            state: Mutex::new(ContainerState::default()),
            noiommu_mode,
            phys,
            geometry: iommu::IommuGeometry::default(),
        }
    }

    /// The same container on an IOMMU of `geometry`.
    pub(crate) fn with_geometry(mut self, geometry: iommu::IommuGeometry) -> Self {
        self.geometry = geometry;
        self
    }

    /// `vfio_container_attach_group`, the container's part: real and
    /// no-IOMMU groups cannot share a container (EPERM).
    pub(crate) fn attach(&self, group: u32, noiommu: bool) -> std::result::Result<(), Errno> {
        let mut s = self.state.lock();
        if !s.groups.is_empty() && s.noiommu != noiommu {
            return Err(Errno::EPERM);
        }
        s.groups.insert(group);
        s.noiommu = noiommu;
        Ok(())
    }

    /// `vfio_group_detach_container`, the container's part: when the last
    /// group leaves, the IOMMU driver is released with every mapping and
    /// the container is back to having no IOMMU type.
    pub(crate) fn detach(&self, group: u32) {
        let mut s = self.state.lock();
        s.groups.remove(&group);
        if s.groups.is_empty() {
            s.iommu = None;
            s.noiommu = false;
            s.dma = DmaMap::default();
        }
    }

    /// True once `VFIO_SET_IOMMU` chose the no-IOMMU driver.
    pub(crate) fn is_noiommu(&self) -> bool {
        self.state.lock().iommu == Some(IommuType::NoIommu)
    }

    /// True once `VFIO_SET_IOMMU` succeeded.
    pub(crate) fn has_iommu(&self) -> bool {
        self.state.lock().iommu.is_some()
    }

    /// A device's DMA through this container's IOMMU, or with the
    /// no-IOMMU driver straight to physical memory (the [`Dma`] says which).
    pub(crate) fn dma(&self, iova: u64, access: Access<'_>) -> std::result::Result<Dma, DmaFault> {
        let s = self.state.lock();
        match s.iommu {
            Some(IommuType::Type1 | IommuType::Type1v2) => {
                Ok(Dma::Translated(s.dma.access(iova, access)))
            }
            Some(IommuType::NoIommu) => {
                // Unconfirmed by nature: a real machine lets a stray DMA
                // reach whatever memory is there; the mock refuses it with
                // DmaFault::NoMemory.
                drop(s);
                Ok(Dma::Physical(self.phys.access(iova, access)))
            }
            _ => Err(DmaFault::NoIommu),
        }
    }

    fn check_extension(&self, extension: Extension) -> u32 {
        let s = self.state.lock();
        let noiommu_driver =
            |e: Extension| u32::from(self.noiommu_mode && e == Extension::NOIOMMU_IOMMU);
        match s.iommu {
            Some(IommuType::NoIommu) => noiommu_driver(extension),
            Some(_) => type1_extension(extension, true),
            // No driver yet: poll every registered driver that may serve
            // the attached groups (all of them while there are none).
            None => {
                let type1_allowed = s.groups.is_empty() || !self.noiommu_mode || !s.noiommu;
                let noiommu_allowed = s.groups.is_empty() || s.noiommu;
                let t = if type1_allowed {
                    type1_extension(extension, false)
                } else {
                    0
                };
                if t > 0 {
                    t
                } else if noiommu_allowed {
                    noiommu_driver(extension)
                } else {
                    0
                }
            }
        }
    }

    /// `vfio_ioctl_set_iommu`.
    fn set_iommu(&self, iommu: IommuType) -> std::result::Result<(), Errno> {
        let mut s = self.state.lock();
        if s.groups.is_empty() || s.iommu.is_some() {
            return Err(Errno::EINVAL);
        }
        let type1_allowed = !self.noiommu_mode || !s.noiommu;
        let noiommu_allowed = self.noiommu_mode && s.noiommu;
        match iommu {
            IommuType::Type1 | IommuType::Type1v2 if type1_allowed => {
                s.dma = DmaMap::with_geometry(iommu == IommuType::Type1v2, self.geometry.clone());
                s.iommu = Some(iommu);
                Ok(())
            }
            IommuType::NoIommu if noiommu_allowed => {
                s.iommu = Some(iommu);
                Ok(())
            }
            // No registered driver accepts the type.
            _ => Err(Errno::ENODEV),
        }
    }

    /// Runs an IOMMU ioctl on type1: EINVAL with no driver (the container's
    /// default answer), ENOTTY on the no-IOMMU driver.
    fn with_type1<T>(
        &self,
        f: impl FnOnce(&mut DmaMap) -> std::result::Result<T, Errno>,
    ) -> std::result::Result<T, Errno> {
        let mut s = self.state.lock();
        match s.iommu {
            None => Err(Errno::EINVAL),
            Some(IommuType::NoIommu) => Err(Errno::ENOTTY),
            Some(_) => f(&mut s.dma),
        }
    }
}

/// What a device's DMA through a container did.
#[derive(Debug)]
pub(crate) enum Dma {
    /// Through the IOMMU: the refused bytes are IOMMU faults.
    Translated(Outcome),
    /// To physical addresses (no-IOMMU): the refused bytes lie in no buffer.
    Physical(Outcome),
}

/// An open `/dev/vfio/vfio`.
#[derive(Debug)]
pub struct MockContainer {
    pub(crate) core: Arc<ContainerCore>,
    host: Arc<HostInner>,
}

impl MockContainer {
    pub(crate) fn new(host: Arc<HostInner>) -> Self {
        Self {
            core: Arc::new(
                ContainerCore::new(host.noiommu_mode, host.phys.clone())
                    .with_geometry(host.geometry.clone()),
            ),
            host,
        }
    }

    fn fault(&self, op: Operation) -> Result<()> {
        match self.host.faults.take(op) {
            Some(errno) => Err(Error::from_errno(op, errno)),
            None => Ok(()),
        }
    }
}

impl Container<MockBackend> for MockContainer {
    fn api_version(&self) -> Result<i32> {
        self.fault(Operation::ApiVersion)?;
        // VFIO_API_VERSION.
        Ok(0)
    }

    fn check_extension(&self, extension: Extension) -> Result<u32> {
        self.fault(Operation::CheckExtension)?;
        Ok(self.core.check_extension(extension))
    }

    fn set_iommu(&self, iommu: IommuType) -> Result<()> {
        self.fault(Operation::SetIommu)?;
        self.core.set_iommu(iommu).map_err(|e| {
            Error::from_errno(Operation::SetIommu, e).with_target(format_args!("{iommu:?}"))
        })
    }

    fn iommu_info(&self) -> Result<IommuInfo> {
        self.fault(Operation::IommuInfo)?;
        self.core
            .with_type1(|dma| {
                Ok(IommuInfo {
                    iova_pgsizes: self.core.geometry.page_sizes,
                    iova_ranges: Some(self.core.geometry.iova_ranges()),
                    dma_avail: Some(dma.avail()),
                })
            })
            .map_err(|e| Error::from_errno(Operation::IommuInfo, e))
    }
}

impl DmaSpace<MockBackend> for MockContainer {
    fn translates(&self) -> bool {
        !self.core.is_noiommu()
    }

    fn iova_ranges(&self) -> Result<Vec<IovaRange>> {
        Ok(self.iommu_info()?.iova_ranges.unwrap_or_default())
    }

    fn iova_page_sizes(&self) -> Result<u64> {
        Ok(self.iommu_info()?.iova_pgsizes)
    }

    fn map_dma_raw(
        &self,
        memory: &MockDmaMemory,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<()> {
        // The kernel pins whatever the process has at those addresses, and
        // answers EFAULT where nothing is mapped; a mapping never reaches
        // past its buffer here, and the refusal carries the kernel's errno.
        check_range(Operation::MapDma, memory.len() as u64, offset as u64, size).map_err(|e| {
            Error::from_errno(Operation::MapDma, Errno::EFAULT)
                .with_detail(e.detail().unwrap_or("past the buffer"))
        })?;
        self.fault(Operation::MapDma)?;
        let buffer = memory.buffer.clone();
        self.core
            .with_type1(|dma| dma.map(iova, size, buffer, offset, flags))
            .map_err(|e| {
                Error::from_errno(Operation::MapDma, e)
                    .with_target(format_args!("iova {iova:#x}+{size:#x}"))
            })
    }

    /// `VFIO_DMA_UNMAP_FLAG_ALL`, as `vfio_dma_do_unmap` takes it: every
    /// mapping goes, whatever IOVAs it has.
    fn unmap_all(&self) -> Result<u64> {
        self.fault(Operation::UnmapDma)?;
        self.core
            .with_type1(|dma| Ok(dma.unmap_all()))
            .map_err(|e| {
                Error::from_errno(Operation::UnmapDma, e).with_detail("VFIO_DMA_UNMAP_FLAG_ALL")
            })
    }

    fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        self.fault(Operation::UnmapDma)?;
        self.core
            .with_type1(|dma| dma.unmap(iova, size))
            .map_err(|e| {
                Error::from_errno(Operation::UnmapDma, e)
                    .with_target(format_args!("iova {iova:#x}+{size:#x}"))
            })
    }
}
