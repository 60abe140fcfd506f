//! The simulated side: a mock host shaped like the QEMU guest.
//!
//! The mock's own machinery (planned faults, the ENODEV retry on its virtual
//! clock, hot-unplug) is no kernel behaviour, so it is tested in vfio-mock's
//! own tests (`vfio-mock/tests/fault_injection.rs`), not in this suite.

use crate::Env;
use anyhow::Result;
use std::time::Duration;
use vfio_mock::{KernelVersion, MockBackend, profiles};

/// Every kernel the mock is judged against, each by the guest booting it.
pub const KERNELS: [KernelVersion; 2] = [KernelVersion::V6_1, KernelVersion::V6_12];

/// A fresh mock host with the guest's topology, imitating Linux 6.1: `edu`
/// at 00:02.0 and NVMe at 00:03.0, each in its own group, both bound to
/// vfio-pci.
pub fn env() -> Result<Env<MockBackend>> {
    env_on(KernelVersion::V6_1)
}

/// [`env()`], imitating `kernel`'s vfio-pci.
pub fn env_on(kernel: KernelVersion) -> Result<Env<MockBackend>> {
    let host = profiles::qemu_guest()
        .kernel(kernel)
        .iommu_address_bits(crate::cases::uapi::iommu_address_bits())
        .build()?;
    Ok(Env::new(host.backend())
        .with_host(std::sync::Arc::new(MockHostControl(host)))
        .with_kernel(Some(kernel)))
}

/// Device removal on the simulated host
/// ([`MockHost::remove_device`](vfio_mock::MockHost::remove_device)), and its
/// IOMMU fault log.
#[derive(Debug)]
pub struct MockHostControl(pub vfio_mock::MockHost);

impl crate::HostControl for MockHostControl {
    fn remove(&self, device: &vfio_core::PciAddress) -> Result<()> {
        let removal = self
            .0
            .remove_device(*device)
            .ok_or_else(|| anyhow::anyhow!("{device} is not there or already being removed"))?;
        // The kernel's writer waits as long as the user holds the device.
        removal.wait(Duration::MAX);
        Ok(())
    }

    /// Every case has a host of its own, so nothing needs bringing back.
    fn restore(&self, _device: &vfio_core::PciAddress) -> Result<()> {
        Ok(())
    }

    /// The host's fault log ([`MockHost::iommu_faults`](vfio_mock::MockHost::iommu_faults)).
    fn reserve_huge_pages(&self, pages: u64) -> Result<u64> {
        Ok(self.0.reserve_hugetlb_pages(pages))
    }

    fn iommu_faults(&self) -> Result<Vec<crate::host_control::IommuFaultRecord>> {
        Ok(self
            .0
            .iommu_faults()
            .into_iter()
            .map(|f| crate::host_control::IommuFaultRecord {
                requester: f.requester,
                page: f.page,
                write: f.access == vfio_mock::FaultAccess::Write,
                reason: f.reason,
            })
            .collect())
    }
}
