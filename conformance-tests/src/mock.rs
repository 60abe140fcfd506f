//! The simulated side: a mock host shaped like the QEMU guest.
//!
//! The mock's own machinery (planned faults, the ENODEV retry on its virtual
//! clock, hot-unplug) is no kernel behaviour, so it is tested in vfio-mock's
//! own tests (`vfio-mock/tests/fault_injection.rs`), not in this suite.

use crate::Env;
use anyhow::Result;
use std::time::Duration;
use vfio_core::open::Mode;
use vfio_mock::{KernelVersion, MockBackend, profiles};

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
/// no-IOMMU guest ([`profiles::qemu_guest_noiommu`]) for no-IOMMU mode.
pub fn env_in(kernel: KernelVersion, mode: Mode) -> Result<Env<MockBackend>> {
    let builder = match mode {
        Mode::NoIommu => profiles::qemu_guest_noiommu(),
        _ => profiles::qemu_guest(),
    };
    let host = builder
        .kernel(kernel)
        .iommu_address_bits(crate::cases::uapi::guest_address_bits(Some(kernel)))
        .build()?;
    Ok(Env::new(host.backend())
        .with_host(std::sync::Arc::new(MockHostControl(host)))
        .with_kernel(Some(kernel))
        .with_mode(mode))
}

/// A fresh mock host imitating `kernel`'s vfio-pci with one device, replayed
/// from `profile` at `address` (alone in the group its source names, or
/// group 1; no-IOMMU group 0 in no-IOMMU mode), and an environment opening devices in `mode`: where the
/// device-agnostic cases ([`generic`](crate::generic)) run on a captured
/// profile. Pass the kernel the profile was captured on
/// ([`vfio_mock::profile_kernel`]): its IRQ flags are that kernel's.
pub fn env_for_profile(
    profile: &vfio_profile::DeviceProfile,
    address: vfio_core::PciAddress,
    kernel: KernelVersion,
    mode: Mode,
) -> Result<Env<MockBackend>> {
    let builder = vfio_mock::MockHost::builder()
        .cpus(2)
        .kernel(kernel)
        .iommu_address_bits(crate::cases::uapi::guest_address_bits(Some(kernel)));
    let builder = match mode {
        Mode::NoIommu => builder
            .noiommu_mode(vfio_mock::NoIommuMode::Enabled)
            .noiommu_device(
                address,
                0,
                vfio_mock::PciDeviceBuilder::from_profile(profile),
            ),
        _ => builder.profiled_device(address, profile.source.iommu_group.unwrap_or(1), profile),
    };
    let host = builder.build()?;
    Ok(Env::new(host.backend())
        .with_host(std::sync::Arc::new(MockHostControl(host)))
        .with_kernel(Some(kernel))
        .with_mode(mode))
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

/// A case only the mock runs.
pub type MockOnly = crate::OnlyCase<MockBackend>;

const NO_SPARSE_ON_X86: &str = "no x86 vfio-pci device reports a sparse-mmap capability \
     (vfio-pci there reports the MSI-X table mappable), so only a simulated one can";

/// Every mock-only case.
pub fn only_cases() -> Vec<MockOnly> {
    vec![MockOnly {
        case: crate::Case::new(
            stringify!(a_sparse_bar_maps_only_its_areas_on_a_host_that_reports_them),
            |_: &Env<MockBackend>| a_sparse_bar_maps_only_its_areas_on_a_host_that_reports_them(),
        ),
        why: NO_SPARSE_ON_X86,
    }]
}

/// Every case this backend runs: the shared suite, then the mock-only cases.
pub fn suite() -> Vec<crate::Case<MockBackend>> {
    crate::suite_with(only_cases())
}

/// Each of the mock-only cases' name and why only this backend runs it.
pub fn only_reasons() -> Vec<(String, String)> {
    crate::only_reasons_of(only_cases())
}

/// [`a_sparse_bar_maps_only_its_areas`](crate::cases::uapi::a_sparse_bar_maps_only_its_areas)
/// on a host of its own whose device's 16 KiB BAR0 reports two sparse
/// areas, its first 8 KiB and its last 4 KiB (a BAR whose MSI-X table, in
/// the third page, may not be mapped). Mock-only: no x86 vfio-pci device
/// reports a sparse-mmap capability.
pub fn a_sparse_bar_maps_only_its_areas_on_a_host_that_reports_them() -> Result<()> {
    use vfio_core::SparseArea;
    let at = vfio_core::PciAddress::new(0, 0, 4, 0).expect("valid address");
    let device = vfio_mock::PciDeviceBuilder::new(0x1b36, 0x0010)
        .bar(0, vfio_mock::BarSpec::memory64(0x4000))
        .sparse_mmap(
            0,
            &[
                SparseArea {
                    offset: 0,
                    size: 0x2000,
                },
                SparseArea {
                    offset: 0x3000,
                    size: 0x1000,
                },
            ],
        );
    let host = vfio_mock::MockHost::builder()
        .device(at, 1, device)
        .build()?;
    let targets = crate::Targets {
        edu: at,
        nvme: at,
        ..crate::Targets::default()
    };
    let env = Env::new(host.backend()).with_targets(targets);
    crate::cases::uapi::a_sparse_bar_maps_only_its_areas(&env)
}
