//! What a case is given: a backend and the devices to exercise.

use anyhow::{Context, Result};
use vfio_core::{Container, Group, IommuType, PciAddress, VfioBackend};

/// The devices the suite drives. In the QEMU guest these are QEMU's `edu` at
/// 00:02.0 and an NVMe controller at 00:03.0, both bound to vfio-pci, and
/// behind a PCI bridge (so sharing one IOMMU group) a second `edu` bound to
/// vfio-pci and an i6300esb watchdog bound to its own driver, which makes that
/// group not viable; and at 00:05.0 an NVMe controller with 2048 MSI-X
/// vectors. The simulated host models the same five.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    /// QEMU's `edu` educational device.
    pub edu: PciAddress,
    /// QEMU's NVMe controller.
    pub nvme: PciAddress,
    /// An `edu` bound to vfio-pci in a group with a device on another driver.
    pub shared_edu: PciAddress,
    /// The device on another driver (an i6300esb watchdog) in that group.
    pub watchdog: PciAddress,
    /// An NVMe controller with 2048 MSI-X vectors, more than the host's
    /// CPUs can take.
    pub big_nvme: PciAddress,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            edu: PciAddress::new(0, 0, 2, 0).expect("valid address"),
            nvme: PciAddress::new(0, 0, 3, 0).expect("valid address"),
            shared_edu: PciAddress::new(0, 1, 1, 0).expect("valid address"),
            watchdog: PciAddress::new(0, 1, 2, 0).expect("valid address"),
            big_nvme: PciAddress::new(0, 0, 5, 0).expect("valid address"),
        }
    }
}

impl Targets {
    /// The defaults, overridden by the addresses the guest exports
    /// (`VFIO_GUEST_EDU`, `VFIO_GUEST_NVME`, `VFIO_GUEST_SHARED_EDU`,
    /// `VFIO_GUEST_WATCHDOG`, `VFIO_GUEST_BIG_NVME`) where set.
    pub fn from_env() -> Result<Self> {
        let mut t = Self::default();
        for (var, slot) in [
            ("VFIO_GUEST_EDU", &mut t.edu),
            ("VFIO_GUEST_NVME", &mut t.nvme),
            ("VFIO_GUEST_SHARED_EDU", &mut t.shared_edu),
            ("VFIO_GUEST_WATCHDOG", &mut t.watchdog),
            ("VFIO_GUEST_BIG_NVME", &mut t.big_nvme),
        ] {
            if let Ok(value) = std::env::var(var) {
                *slot = value.parse().with_context(|| format!("{var}={value}"))?;
            }
        }
        Ok(t)
    }
}

/// The kernel whose vfio-pci a run is on (or the mock imitates), for the
/// behaviours that changed between the releases the suite is judged by:
/// the mock's own setting, so the two cannot drift apart.
pub use vfio_mock::KernelVersion as Kernel;

/// A case's environment: a fresh backend, the target devices, and what the
/// host lets a case do beyond VFIO calls.
#[derive(Debug)]
pub struct Env<B: VfioBackend> {
    /// The backend under test.
    pub backend: B,
    /// The devices to use.
    pub targets: Targets,
    /// Device removal and restore on this host.
    pub host: std::sync::Arc<dyn crate::HostControl>,
    /// The kernel the backend is on or imitates, if the suite knows it.
    pub kernel: Option<Kernel>,
}

/// A device opened the usual way, with the container and group it needs.
/// Fields drop in declaration order: device, then group, then container.
#[derive(Debug)]
pub struct Opened<B: VfioBackend> {
    /// The open device.
    pub device: B::Device,
    /// Its group, attached to `container`.
    pub group: B::Group,
    /// A container set to Type1v2.
    pub container: B::Container,
}

impl<B: VfioBackend> Env<B> {
    /// An environment over `backend` with the default targets.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            targets: Targets::default(),
            host: std::sync::Arc::new(crate::NoHostControl),
            kernel: None,
        }
    }

    /// The same environment on (or imitating) `kernel`.
    #[must_use]
    pub fn with_kernel(mut self, kernel: Option<Kernel>) -> Self {
        self.kernel = kernel;
        self
    }

    /// The kernel, for a case pinning a behaviour that differs between
    /// releases; not applicable on a kernel the suite does not know.
    pub fn kernel(&self) -> Result<Kernel> {
        self.kernel.ok_or_else(|| {
            crate::not_applicable(
                "this behaviour differs between kernel releases, and the suite knows it \
                 on Linux 6.1 and 6.12 only",
            )
        })
    }

    /// The same environment with other targets.
    #[must_use]
    pub fn with_targets(mut self, targets: Targets) -> Self {
        self.targets = targets;
        self
    }

    /// The same environment with a host that lets cases remove devices.
    #[must_use]
    pub fn with_host(mut self, host: std::sync::Arc<dyn crate::HostControl>) -> Self {
        self.host = host;
        self
    }

    /// The IOMMU group number of `device`, from sysfs.
    pub fn group_of(&self, device: &PciAddress) -> Result<u32> {
        self.backend
            .host_paths()
            .iommu_group(device)
            .with_context(|| format!("IOMMU group of {device}"))
    }

    /// Opens the group of `device`, attaches a new Type1v2 container and opens the device.
    pub fn open(&self, device: &PciAddress) -> Result<Opened<B>> {
        let group = self.backend.open_group(self.group_of(device)?)?;
        let container = self.backend.open_container()?;
        group.set_container(&container)?;
        container.set_iommu(IommuType::Type1v2)?;
        // A device just bound (or brought back by a rescan) can be ENODEV
        // for a moment on Linux 6.1: one retry, as a driver would.
        let device = vfio_core::retry::open_device_with_retry::<B>(
            &group,
            &device.to_string(),
            &vfio_core::SystemClock,
        )?;
        Ok(Opened {
            device,
            group,
            container,
        })
    }

    /// Opens the `edu` device.
    pub fn open_edu(&self) -> Result<Opened<B>> {
        self.open(&self.targets.edu)
    }

    /// Opens the NVMe device.
    pub fn open_nvme(&self) -> Result<Opened<B>> {
        self.open(&self.targets.nvme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_map_to_the_kernels_the_suite_knows() {
        assert_eq!(Kernel::from_release("6.1.0-54-amd64"), Some(Kernel::V6_1));
        assert_eq!(Kernel::from_release("6.12.117"), Some(Kernel::V6_12));
        assert_eq!(Kernel::from_release("6.6.30"), None);
        assert_eq!(Kernel::from_release("6.10.1"), None);
        assert_eq!(Kernel::V6_12.series(), "6.12");
    }
}
