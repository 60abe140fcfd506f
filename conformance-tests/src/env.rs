//! What a case is given: a backend and the devices to exercise.

use anyhow::{Context, Result};
use vfio_core::open::{DmaContext, Mode, OpenDevice};
use vfio_core::{PciAddress, VfioBackend};

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
    /// The devices the mock replays from captured profiles, in the order of
    /// [`PROFILED`]: QEMU's e1000e, virtio-net-pci, qemu-xhci, ivshmem-plain
    /// and pci-testdev, at 00:06.0 to 00:0a.0, each alone in its group.
    pub profiled: [PciAddress; PROFILED.len()],
}

/// The names of the guest's devices that the mock replays from a captured
/// profile, as the guest exports them (`VFIO_GUEST_<NAME>`) and as the
/// device-agnostic cases are labelled on them (`case[e1000e]`).
pub const PROFILED: [&str; 5] = ["e1000e", "virtio_net", "xhci", "ivshmem", "testdev"];

impl Default for Targets {
    fn default() -> Self {
        Self {
            edu: PciAddress::new(0, 0, 2, 0).expect("valid address"),
            nvme: PciAddress::new(0, 0, 3, 0).expect("valid address"),
            shared_edu: PciAddress::new(0, 1, 1, 0).expect("valid address"),
            watchdog: PciAddress::new(0, 1, 2, 0).expect("valid address"),
            big_nvme: PciAddress::new(0, 0, 5, 0).expect("valid address"),
            profiled: std::array::from_fn(|i| {
                PciAddress::new(0, 0, 6 + i as u8, 0).expect("valid address")
            }),
        }
    }
}

impl Targets {
    /// The defaults, overridden by the addresses the guest exports
    /// (`VFIO_GUEST_EDU`, `VFIO_GUEST_NVME`, `VFIO_GUEST_SHARED_EDU`,
    /// `VFIO_GUEST_WATCHDOG`, `VFIO_GUEST_BIG_NVME`, and
    /// `VFIO_GUEST_<NAME>` for each of [`PROFILED`]) where set.
    pub fn from_env() -> Result<Self> {
        let mut t = Self::default();
        let mut vars: Vec<(String, &mut PciAddress)> = vec![
            ("VFIO_GUEST_EDU".into(), &mut t.edu),
            ("VFIO_GUEST_NVME".into(), &mut t.nvme),
            ("VFIO_GUEST_SHARED_EDU".into(), &mut t.shared_edu),
            ("VFIO_GUEST_WATCHDOG".into(), &mut t.watchdog),
            ("VFIO_GUEST_BIG_NVME".into(), &mut t.big_nvme),
        ];
        for (name, slot) in PROFILED.iter().zip(t.profiled.iter_mut()) {
            vars.push((format!("VFIO_GUEST_{}", name.to_ascii_uppercase()), slot));
        }
        for (var, slot) in vars {
            if let Ok(value) = std::env::var(&var) {
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

/// A case's environment: a fresh backend, the target devices, the mode
/// devices are opened in, and what the host lets a case do beyond VFIO calls.
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
    /// How [`open`](Env::open) opens devices: type1 (the default), iommufd
    /// or no-IOMMU.
    pub mode: Mode,
}

/// A device opened in the environment's mode
/// ([`vfio_core::open::open_device`]), with its IOMMU context. Fields drop
/// in declaration order: the device, then its context.
#[derive(Debug)]
pub struct Opened<B: VfioBackend> {
    /// The open device.
    pub device: B::Device,
    /// Its IOMMU context, a [`DmaSpace`](vfio_core::DmaSpace) every mode
    /// maps through.
    pub dma: DmaContext<B>,
}

impl<B: VfioBackend> From<OpenDevice<B>> for Opened<B> {
    fn from(o: OpenDevice<B>) -> Self {
        Self {
            device: o.device,
            dma: o.dma,
        }
    }
}

const NO_GROUP: &str =
    "a group or container behaviour (iommufd opens the cdev): runs in type1 and noiommu mode only";

impl<B: VfioBackend> Opened<B> {
    /// The group, in the container modes; n/a in iommufd mode.
    pub fn group(&self) -> Result<&B::Group> {
        self.dma
            .group()
            .ok_or_else(|| crate::not_applicable(NO_GROUP))
    }

    /// The container, in the container modes; n/a in iommufd mode.
    pub fn container(&self) -> Result<&B::Container> {
        self.dma
            .container()
            .ok_or_else(|| crate::not_applicable(NO_GROUP))
    }

    /// The Type1v2 container, in type1 mode; n/a in the others.
    pub fn type1(&self) -> Result<&B::Container> {
        match self.dma.mode() {
            Mode::Type1 => self.container(),
            _ => Err(crate::not_applicable(
                "a Type1 container behaviour: runs in type1 mode only",
            )),
        }
    }

    /// The device, its group and its Type1v2 container, in type1 mode; n/a
    /// in the others.
    pub fn into_type1(self) -> Result<(B::Device, B::Group, B::Container)> {
        self.type1()?;
        match self.dma {
            DmaContext::Container { group, container } => Ok((self.device, group, container)),
            DmaContext::Ioas { .. } => Err(crate::not_applicable(NO_GROUP)),
        }
    }

    /// The IOAS, in iommufd mode; n/a in the others.
    pub fn ioas(&self) -> Result<&B::Ioas> {
        self.dma.ioas().ok_or_else(|| {
            crate::not_applicable(format!(
                "an IOAS behaviour; {} mode has none",
                self.dma.mode()
            ))
        })
    }

    /// The iommufd, in iommufd mode; n/a in the others.
    pub fn iommufd(&self) -> Result<&B::IommuFd> {
        self.dma
            .iommufd()
            .ok_or_else(|| crate::not_applicable("an iommufd behaviour: runs in iommufd mode only"))
    }
}

impl<B: VfioBackend> Env<B> {
    /// An environment over `backend` with the default targets, in type1 mode.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            targets: Targets::default(),
            host: std::sync::Arc::new(crate::NoHostControl),
            kernel: None,
            mode: Mode::Type1,
        }
    }

    /// The same environment on (or imitating) `kernel`.
    #[must_use]
    pub fn with_kernel(mut self, kernel: Option<Kernel>) -> Self {
        self.kernel = kernel;
        self
    }

    /// The same environment opening devices in `mode`.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
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

    /// Ends the case as n/a unless the environment is in one of `modes`;
    /// `what` says what the case needs, for the reason.
    pub fn only_in(&self, modes: &[Mode], what: &str) -> Result<()> {
        if modes.contains(&self.mode) {
            return Ok(());
        }
        let names: Vec<&str> = modes.iter().map(|m| m.name()).collect();
        Err(crate::not_applicable(format!(
            "{what}: runs in {} mode only",
            names.join(" and ")
        )))
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

    /// Opens group `number` the way the mode does: `/dev/vfio/noiommu-N` in
    /// no-IOMMU mode, `/dev/vfio/N` in the others (iommufd mode opens no
    /// group itself, but its host has them).
    pub fn open_group(&self, number: u32) -> vfio_core::Result<B::Group> {
        match self.mode {
            Mode::NoIommu => self.backend.open_noiommu_group(number),
            _ => self.backend.open_group(number),
        }
    }

    /// The IOMMU type the mode sets on a container: Type1v2, or NoIommu in
    /// no-IOMMU mode.
    pub fn iommu_type(&self) -> vfio_core::IommuType {
        match self.mode {
            Mode::NoIommu => vfio_core::IommuType::NoIommu,
            _ => vfio_core::IommuType::Type1v2,
        }
    }

    /// Opens `device` in the environment's mode
    /// ([`vfio_core::open::open_device`]): its group in a new container
    /// set to Type1v2 (or NoIommu), or its cdev bound to a new iommufd and
    /// attached to a new IOAS.
    pub fn open(&self, device: &PciAddress) -> Result<Opened<B>> {
        let opened = vfio_core::open::open_device(&self.backend, device, self.mode)
            .with_context(|| format!("opening {device} in {} mode", self.mode))?;
        Ok(opened.into())
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
