//! Ready-made devices and the QEMU guest's topology, so one driver runs on
//! the mock and on the real devices in the project's QEMU guest.

pub mod edu;
pub mod nvme;

pub use edu::{EduModel, edu};
pub use nvme::{NvmeModel, nvme};

use crate::host::MockHostBuilder;
use vfio_core::PciAddress;

/// The IOMMU groups of the guest's devices, `(edu, nvme)`.
///
/// TODO-verify: the guest (q35, `-vga none`, intel-iommu) numbers groups in
/// probe order: host bridge 0, 00:02.0 1, 00:03.0 2; the xtask guest runner
/// prints the real numbers (`VFIO_GUEST_EDU_GROUP`, `VFIO_GUEST_NVME_GROUP`).
pub const QEMU_GUEST_GROUPS: (u32, u32) = (1, 2);

/// Where the guest has QEMU's `edu` device: 0000:00:02.0.
pub fn edu_address() -> PciAddress {
    PciAddress::new(0, 0, 2, 0).expect("slot 2 function 0 is a valid address")
}

/// Where the guest has QEMU's NVMe controller: 0000:00:03.0.
pub fn nvme_address() -> PciAddress {
    PciAddress::new(0, 0, 3, 0).expect("slot 3 function 0 is a valid address")
}

/// The project's QEMU guest: [`edu`] at 0000:00:02.0 and [`nvme`] at
/// 0000:00:03.0, each alone in its IOMMU group ([`QEMU_GUEST_GROUPS`]),
/// both bound to vfio-pci, on a 2-CPU host.
pub fn qemu_guest() -> MockHostBuilder {
    crate::MockHost::builder()
        .cpus(2)
        .device(edu_address(), QEMU_GUEST_GROUPS.0, edu())
        .device(nvme_address(), QEMU_GUEST_GROUPS.1, nvme())
}
