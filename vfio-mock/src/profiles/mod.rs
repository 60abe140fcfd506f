//! Ready-made devices and the QEMU guest's topology, so one driver runs on
//! the mock and on the real devices in the project's QEMU guest.

pub mod captured;
pub mod edu;
pub mod nvme;

pub use captured::{CAPTURED, CapturedDevice};
pub use edu::{EduModel, edu};
pub use nvme::{NvmeConfig, NvmeModel, nvme, nvme_with_vectors};

use crate::host::MockHostBuilder;
use crate::{BarSpec, Driver, PciDeviceBuilder};
use vfio_core::PciAddress;

/// The IOMMU groups of the guest's devices, `(edu, nvme)`, as the guest
/// (q35, intel-iommu) numbers them: host bridge 0, 00:02.0 1, 00:03.0 2.
pub const QEMU_GUEST_GROUPS: (u32, u32) = (1, 2);

/// The IOMMU group shared by the devices behind the guest's PCI bridge.
pub const QEMU_GUEST_SHARED_GROUP: u32 = 3;

/// The IOMMU group of the guest's NVMe controller with 2048 vectors.
pub const QEMU_GUEST_BIG_NVME_GROUP: u32 = 4;

/// Where the guest has its NVMe controller with 2048 MSI-X vectors: 0000:00:05.0.
pub fn big_nvme_address() -> PciAddress {
    PciAddress::new(0, 0, 5, 0).expect("slot 5 function 0 is a valid address")
}

/// Where the guest has the `edu` behind its PCI bridge: 0000:01:01.0.
pub fn shared_edu_address() -> PciAddress {
    PciAddress::new(0, 1, 1, 0).expect("bus 1 slot 1 is a valid address")
}

/// Where the guest has the i6300esb watchdog behind its PCI bridge: 0000:01:02.0.
pub fn watchdog_address() -> PciAddress {
    PciAddress::new(0, 1, 2, 0).expect("bus 1 slot 2 is a valid address")
}

/// An Intel 6300ESB watchdog (8086:25ab), as QEMU's `i6300esb` presents it:
/// a small memory BAR and nothing else a VFIO user needs.
pub fn i6300esb() -> PciDeviceBuilder {
    PciDeviceBuilder::new(0x8086, 0x25ab)
        .class(0x08_80_00)
        .bar(0, BarSpec::memory32(4096))
}

/// Where the guest has QEMU's `edu` device: 0000:00:02.0.
pub fn edu_address() -> PciAddress {
    PciAddress::new(0, 0, 2, 0).expect("slot 2 function 0 is a valid address")
}

/// Where the guest has QEMU's NVMe controller: 0000:00:03.0.
pub fn nvme_address() -> PciAddress {
    PciAddress::new(0, 0, 3, 0).expect("slot 3 function 0 is a valid address")
}

/// What the guest's firmware (SeaBIOS) leaves in a device's config space
/// before Linux binds it to vfio-pci: I/O, memory and SERR# enable set in the
/// command register, interrupt line 11, and BAR0 at `bar0`. Checked byte for
/// byte against the guest's dumps: `edu_config_space_matches_the_kernels_dump`
/// and `nvme_config_space_matches_the_kernels_dump`.
fn as_seabios_left_it(device: PciDeviceBuilder, bar0: u64) -> PciDeviceBuilder {
    device
        .command(0x0103)
        .interrupt_line(11)
        .bar_address(0, bar0)
}

/// Where the guest's firmware puts `edu`'s BAR0.
pub const EDU_BAR0_ADDRESS: u64 = 0xfea0_0000;
/// Where the guest's firmware puts the NVMe controller's (64-bit) BAR0: above
/// 4 GiB, with every 64-bit BAR of the guest, since `pci-testdev`'s 1 GiB BAR
/// does not fit in the window below.
pub const NVME_BAR0_ADDRESS: u64 = 0x1_0001_0000;

/// The project's QEMU guest, on a 2-CPU host: [`edu()`] at 0000:00:02.0 and
/// [`nvme()`] at 0000:00:03.0, each alone in its IOMMU group
/// ([`QEMU_GUEST_GROUPS`]) and bound to vfio-pci; and behind a PCI bridge,
/// sharing group [`QEMU_GUEST_SHARED_GROUP`], a second `edu` bound to
/// vfio-pci and an [`i6300esb`] watchdog bound to its own driver (`i6300ESB timer`, the name the kernel's driver has in sysfs), which makes
/// that group not viable; and at 0000:00:05.0 an NVMe controller with 2048
/// MSI-X vectors and serial `vfio0002` ([`NvmeConfig`]), more than the 2 CPUs can take, in
/// group [`QEMU_GUEST_BIG_NVME_GROUP`]; then the devices replayed from their
/// captures ([`CAPTURED`]) at 00:06.0 to 00:0a.0, each alone in its group.
pub fn qemu_guest() -> MockHostBuilder {
    let mut builder = crate::MockHost::builder()
        .cpus(2)
        .device(
            edu_address(),
            QEMU_GUEST_GROUPS.0,
            as_seabios_left_it(edu(), EDU_BAR0_ADDRESS),
        )
        .device(
            nvme_address(),
            QEMU_GUEST_GROUPS.1,
            as_seabios_left_it(nvme(), NVME_BAR0_ADDRESS),
        )
        .device(shared_edu_address(), QEMU_GUEST_SHARED_GROUP, edu())
        .device_bound_to(
            watchdog_address(),
            QEMU_GUEST_SHARED_GROUP,
            i6300esb(),
            Driver::Other("i6300ESB timer".into()),
        )
        .device(
            big_nvme_address(),
            QEMU_GUEST_BIG_NVME_GROUP,
            NvmeConfig::new("vfio0002").msix_vectors(2048).build(),
        );
    for d in CAPTURED {
        builder = builder.device(d.address(), d.group, PciDeviceBuilder::captured(d));
    }
    builder
}

/// The project's QEMU guest booted on Linux 6.12 without an IOMMU and with
/// vfio's `enable_unsafe_noiommu_mode=1`: the same PCI devices at the same
/// addresses as [`qemu_guest`] (so the firmware places the BARs where it
/// does there), each vfio-pci device in a no-IOMMU group numbered in the
/// order the guest binds them: `edu` `noiommu-0`, NVMe `noiommu-1`, the
/// `edu` behind the bridge `noiommu-2` and the 2048-vector NVMe
/// `noiommu-3`, then the captured devices ([`CAPTURED`]) `noiommu-4` to
/// `noiommu-8`. The watchdog, on its own driver and in no group there, is
/// left out.
pub fn qemu_guest_noiommu() -> MockHostBuilder {
    let mut builder = crate::MockHost::builder()
        .cpus(2)
        .kernel(crate::KernelVersion::V6_12)
        .noiommu_mode(crate::NoIommuMode::Enabled)
        .noiommu_device(
            edu_address(),
            0,
            as_seabios_left_it(edu(), EDU_BAR0_ADDRESS),
        )
        .noiommu_device(
            nvme_address(),
            1,
            as_seabios_left_it(nvme(), NVME_BAR0_ADDRESS),
        )
        .noiommu_device(shared_edu_address(), 2, edu())
        .noiommu_device(
            big_nvme_address(),
            3,
            NvmeConfig::new("vfio0002").msix_vectors(2048).build(),
        );
    for d in CAPTURED {
        builder =
            builder.noiommu_device(d.address(), d.noiommu_group, PciDeviceBuilder::captured(d));
    }
    builder
}

/// The guest a driver runs in `mode` on: [`qemu_guest`] on Linux 6.1 for
/// type1, on Linux 6.12 for iommufd (which offers the container, the device
/// cdevs and `/dev/iommu` together), and [`qemu_guest_noiommu`] for
/// no-IOMMU mode.
pub fn qemu_guest_in(mode: vfio_core::open::Mode) -> MockHostBuilder {
    use vfio_core::open::Mode;
    match mode {
        Mode::Type1 => qemu_guest(),
        Mode::Iommufd => qemu_guest().kernel(crate::KernelVersion::V6_12),
        _ => qemu_guest_noiommu(),
    }
}
