//! The simulated side: a mock host shaped like the QEMU guest.
//!
//! The mock's own machinery (planned faults, the ENODEV retry on its virtual
//! clock, hot-unplug) is no kernel behaviour, so it is tested in vfio-mock's
//! own tests (`vfio-mock/tests/fault_injection.rs`), not in this suite.

use crate::Env;
use anyhow::Result;
use std::time::Duration;
use vfio_core::open::Mode;
use vfio_mock::{KernelVersion, MockBackend, NoIommuMode, profiles};

/// Every kernel the mock is judged against, each by the guest booting it.
pub const KERNELS: [KernelVersion; 2] = [KernelVersion::V6_1, KernelVersion::V6_12];

/// The modes the suite runs in on `kernel`: type1 on both; iommufd and
/// no-IOMMU on Linux 6.12, whose guest kernel has iommufd, the device cdev
/// and no-IOMMU mode built in (Linux 6.1 has none of them).
pub fn modes(kernel: KernelVersion) -> &'static [Mode] {
    match kernel {
        KernelVersion::V6_1 => &[Mode::Type1],
        _ => &[Mode::Type1, Mode::Iommufd, Mode::NoIommu],
    }
}

/// A fresh mock host with the guest's topology, imitating Linux 6.1: `edu`
/// at 00:02.0 and NVMe at 00:03.0, each in its own group, both bound to
/// vfio-pci.
pub fn env() -> Result<Env<MockBackend>> {
    env_on(KernelVersion::V6_1)
}

/// [`env()`], imitating `kernel`'s vfio-pci.
pub fn env_on(kernel: KernelVersion) -> Result<Env<MockBackend>> {
    env_in(kernel, Mode::Type1)
}

/// A fresh mock host imitating `kernel`'s vfio-pci in the guest that runs
/// `mode`, with an environment opening devices in `mode`: the IOMMU guest
/// ([`profiles::qemu_guest`], which on Linux 6.12 offers the container, the
/// device cdevs and `/dev/iommu` together) for type1 and iommufd, the
/// no-IOMMU guest ([`noiommu_guest`]) for no-IOMMU mode.
pub fn env_in(kernel: KernelVersion, mode: Mode) -> Result<Env<MockBackend>> {
    let builder = match mode {
        Mode::NoIommu => noiommu_guest(),
        _ => profiles::qemu_guest(),
    };
    let host = builder.kernel(kernel).build()?;
    Ok(Env::new(host.backend())
        .with_host(std::sync::Arc::new(MockHostControl(host)))
        .with_kernel(Some(kernel))
        .with_mode(mode))
}

/// The guest booted without an IOMMU and with vfio's
/// `enable_unsafe_noiommu_mode=1`: the same PCI devices at the same
/// addresses (so the firmware places the BARs where it does in the IOMMU
/// guest), each vfio-pci device in a no-IOMMU group numbered in the order
/// the guest binds them: `edu` `noiommu-0`, NVMe `noiommu-1`, the `edu`
/// behind the bridge `noiommu-2` and the 2048-vector NVMe `noiommu-3`. The
/// watchdog, on its own driver, is in no group there and is left out.
pub fn noiommu_guest() -> vfio_mock::MockHostBuilder {
    let seabios = |device: vfio_mock::PciDeviceBuilder, bar0: u64| {
        device
            .command(0x0103)
            .interrupt_line(11)
            .bar_address(0, bar0)
    };
    vfio_mock::MockHost::builder()
        .cpus(2)
        .noiommu_mode(NoIommuMode::Enabled)
        .noiommu_device(
            profiles::edu_address(),
            0,
            seabios(profiles::edu(), profiles::EDU_BAR0_ADDRESS),
        )
        .noiommu_device(
            profiles::nvme_address(),
            1,
            seabios(profiles::nvme(), profiles::NVME_BAR0_ADDRESS),
        )
        .noiommu_device(profiles::shared_edu_address(), 2, profiles::edu())
        .noiommu_device(
            profiles::big_nvme_address(),
            3,
            profiles::NvmeConfig::new("vfio0002")
                .msix_vectors(2048)
                .build(),
        )
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
