//! IOMMU groups (`/dev/vfio/N`), as Linux 6.1's `vfio_group.c` runs them.

use crate::container::{ContainerSlot, MockContainer};
use crate::device::{MockDevice, OpenDevice};
use crate::host::{HostInner, KeepAlive, MockBackend};
use crate::iommufd::DomainSlot;
use crate::pci_device::{Driver, PciDevice};
use nix::errno::Errno;
use parking_lot::Mutex;
use std::sync::Arc;
use vfio_core::{Error, ErrorKind, Group, GroupKeepAlive, GroupStatus, Operation, Result};

/// The kernel's `struct vfio_group` for one IOMMU group of the host.
#[derive(Debug)]
pub(crate) struct GroupCore {
    pub number: u32,
    /// A no-IOMMU group (`/dev/vfio/noiommu-N`).
    pub noiommu: bool,
    pub devices: Vec<Arc<PciDevice>>,
    pub slot: ContainerSlot,
    /// The IOAS the group is attached to through an iommufd.
    pub domain: DomainSlot,
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    /// The group file is open (it may be open only once).
    opened: bool,
    /// Open device fds (each is a `container_users` reference).
    device_fds: u32,
    /// Cdevs of the group's devices bound to an iommufd
    /// (`cdev_device_open_cnt`).
    cdev_bound: u32,
    /// The iommufd context that owns the group's DMA (`owner`,
    /// `owner_cnt` of the IOMMU group), by its id.
    dma_owner: Option<(u64, u32)>,
}

impl GroupCore {
    pub(crate) fn new(
        number: u32,
        noiommu: bool,
        devices: Vec<Arc<PciDevice>>,
        slot: ContainerSlot,
        domain: DomainSlot,
    ) -> Self {
        Self {
            number,
            noiommu,
            devices,
            slot,
            domain,
            state: Mutex::new(GroupState::default()),
        }
    }

    /// The group exists for VFIO (has a `/dev/vfio` node) while a device
    /// of it is bound to vfio-pci.
    pub(crate) fn has_vfio_device(&self) -> bool {
        self.devices
            .iter()
            .any(|d| d.driver == Driver::VfioPci && !d.is_removed())
    }

    /// Viable: no device of the group is bound to a driver that uses the
    /// kernel's DMA API (`iommu_group_dma_owner_claimed` is false).
    pub(crate) fn viable(&self) -> bool {
        self.devices
            .iter()
            .all(|d| d.is_removed() || !matches!(d.driver, Driver::Other(_)))
    }

    /// Marks the group file open (`vfio_group_fops_open`): EBUSY while a
    /// cdev of the group is bound (`cdev_device_open_cnt`) or the file is
    /// open already.
    pub(crate) fn open(&self) -> std::result::Result<(), Errno> {
        let mut s = self.state.lock();
        if s.cdev_bound > 0 || s.opened {
            return Err(Errno::EBUSY);
        }
        s.opened = true;
        Ok(())
    }

    /// `vfio_device_block_group`, as a cdev binds: EBUSY while the group
    /// file is open.
    pub(crate) fn block_for_cdev(&self) -> std::result::Result<(), Errno> {
        let mut s = self.state.lock();
        if s.opened {
            return Err(Errno::EBUSY);
        }
        s.cdev_bound += 1;
        Ok(())
    }

    /// `vfio_device_unblock_group`.
    pub(crate) fn unblock_for_cdev(&self) {
        let mut s = self.state.lock();
        s.cdev_bound = s.cdev_bound.saturating_sub(1);
    }

    /// `iommu_device_claim_dma_owner` for iommufd context `owner`: EPERM
    /// while a kernel driver of the group, or another context, owns its
    /// DMA.
    pub(crate) fn claim_dma_owner(&self, owner: u64) -> std::result::Result<(), Errno> {
        if !self.viable() {
            return Err(Errno::EPERM);
        }
        let mut s = self.state.lock();
        match &mut s.dma_owner {
            Some((o, n)) if *o == owner => *n += 1,
            Some(_) => return Err(Errno::EPERM),
            None => s.dma_owner = Some((owner, 1)),
        }
        Ok(())
    }

    /// `iommu_device_release_dma_owner`.
    pub(crate) fn release_dma_owner(&self) {
        let mut s = self.state.lock();
        if let Some((_, n)) = &mut s.dma_owner {
            *n -= 1;
            if *n == 0 {
                s.dma_owner = None;
            }
        }
    }

    fn detach(&self) {
        if let Some(c) = self.slot.lock().take() {
            c.detach(self.number);
        }
    }

    pub(crate) fn device_closed(&self) {
        let mut s = self.state.lock();
        s.device_fds = s.device_fds.saturating_sub(1);
    }
}

/// The open group file. Device fds hold a reference to it, so it is
/// released (detaching its container) only once they are all closed.
#[derive(Debug)]
pub(crate) struct GroupFile {
    pub core: Arc<GroupCore>,
}

impl Drop for GroupFile {
    fn drop(&mut self) {
        // vfio_group_fops_release: detach the container, allow a new open.
        self.core.detach();
        self.core.state.lock().opened = false;
    }
}

/// An open `/dev/vfio/N` (or `/dev/vfio/noiommu-N`).
#[derive(Debug)]
pub struct MockGroup {
    file: Arc<GroupFile>,
    host: Arc<HostInner>,
}

impl MockGroup {
    pub(crate) fn new(core: Arc<GroupCore>, host: Arc<HostInner>) -> Self {
        Self {
            file: Arc::new(GroupFile { core }),
            host,
        }
    }

    fn core(&self) -> &GroupCore {
        &self.file.core
    }

    fn err(&self, op: Operation, errno: Errno) -> Error {
        Error::from_errno(op, errno).with_target(format_args!("group {}", self.core().number))
    }

    fn fault(&self, op: Operation) -> Result<()> {
        match self.host.faults.take(op) {
            Some(errno) => Err(self.err(op, errno)),
            None => Ok(()),
        }
    }

    /// Refuses names with a NUL byte before any "ioctl", as vfio-linux does
    /// (with no errno: the kernel is never asked, since a C string ends at
    /// the NUL).
    fn check_name(op: Operation, name: &str) -> Result<()> {
        if name.contains('\0') {
            return Err(Error::new(op, ErrorKind::InvalidArgument)
                .with_target(name.escape_debug())
                .with_detail("device name contains a NUL byte"));
        }
        Ok(())
    }

    /// `vfio_device_get_from_name`: the first device of this group, bound
    /// to vfio-pci, that `name` names (see [`match_name`]), or the errno
    /// of a name vfio-pci refuses. A device whose removal has begun is
    /// still listed on 6.1, not on 6.12
    /// ([`KernelVersion::opens_devices_being_removed`](crate::KernelVersion)).
    fn find(&self, name: &str) -> std::result::Result<Option<&Arc<PciDevice>>, Errno> {
        let unlisted_early = !self.host.kernel.opens_devices_being_removed();
        for d in &self.core().devices {
            if d.driver != Driver::VfioPci
                || d.is_removed()
                || (unlisted_early && d.is_unregistering())
            {
                continue;
            }
            if match_name(&d.address.to_string(), name)? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    fn open_device_once(&self, name: &str) -> Result<MockDevice> {
        self.fault(Operation::OpenDevice)?;
        let err = |e| Error::from_errno(Operation::OpenDevice, e).with_target(name);
        // strndup_user(arg, PAGE_SIZE): the kernel copies at most a page,
        // NUL included, so a name of 4096 bytes or more is EINVAL.
        if name.len() >= NAME_MAX_WITH_NUL {
            return Err(err(Errno::EINVAL).with_detail(format_args!(
                "a device name of {} bytes is longer than the page the kernel copies",
                name.len()
            )));
        }
        let device = self
            .find(name)
            .map_err(err)?
            .ok_or_else(|| err(Errno::ENODEV))?
            .clone();
        // vfio_device_assign_container: the group needs a container with
        // an IOMMU driver set. (A group that is not viable cannot have a
        // container, so it fails here too.)
        let container = self.core().slot.lock().clone();
        if !container.is_some_and(|c| c.has_iommu()) {
            return Err(err(Errno::EINVAL));
        }
        let fd = nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )
        .map_err(err)?;
        self.core().state.lock().device_fds += 1;
        device.open_fd();
        Ok(MockDevice::new(
            Arc::new(OpenDevice {
                device,
                group: Some(self.file.clone()),
                binding: None,
            }),
            name.to_owned(),
            fd,
            self.host.clone(),
        ))
    }
}

/// The most bytes of a device name the kernel copies, its NUL included
/// (`PAGE_SIZE` on x86-64).
const NAME_MAX_WITH_NUL: usize = 4096;

/// `vfio_pci_core_match`: `name` names the device `pci_name` when it is
/// `pci_name` itself, or `pci_name` followed by a space and options. Spaces
/// alone match; the only option is `vf_token=<uuid>`, and a device that is
/// neither an SR-IOV PF nor a VF (every mock device) refuses any option,
/// well-formed or not, with EINVAL. Anything else after the name is no match.
/// Checked: `device_name_options_after_a_space_are_invalid_without_sr_iov`.
fn match_name(pci_name: &str, name: &str) -> std::result::Result<bool, Errno> {
    let Some(rest) = name.strip_prefix(pci_name) else {
        return Ok(false);
    };
    if rest.is_empty() {
        return Ok(true);
    }
    if !rest.starts_with(' ') {
        return Ok(false);
    }
    if rest.bytes().all(|b| b == b' ') {
        Ok(true)
    } else {
        Err(Errno::EINVAL)
    }
}

impl Group<MockBackend> for MockGroup {
    fn number(&self) -> u32 {
        self.core().number
    }

    fn status(&self) -> Result<GroupStatus> {
        self.fault(Operation::GroupStatus)?;
        let core = self.core();
        if !core.has_vfio_device() {
            return Err(self.err(Operation::GroupStatus, Errno::ENODEV));
        }
        if core.slot.lock().is_some() {
            Ok(GroupStatus::VIABLE | GroupStatus::CONTAINER_SET)
        } else if core.viable() {
            Ok(GroupStatus::VIABLE)
        } else {
            Ok(GroupStatus::EMPTY)
        }
    }

    fn set_container(&self, container: &MockContainer) -> Result<()> {
        self.fault(Operation::SetContainer)?;
        let core = self.core();
        let mut slot = core.slot.lock();
        if slot.is_some() {
            return Err(self.err(Operation::SetContainer, Errno::EINVAL));
        }
        if !core.has_vfio_device() {
            return Err(self.err(Operation::SetContainer, Errno::ENODEV));
        }
        // iommu_group_claim_dma_owner fails (EPERM) while a kernel driver
        // owns DMA for a device of the group (checked in the guest:
        // `group_with_a_device_on_another_driver_is_not_viable`).
        if !core.viable() {
            return Err(self.err(Operation::SetContainer, Errno::EPERM));
        }
        container
            .core
            .attach(core.number, core.noiommu)
            .map_err(|e| self.err(Operation::SetContainer, e))?;
        *slot = Some(container.core.clone());
        Ok(())
    }

    fn unset_container(&self) -> Result<()> {
        self.fault(Operation::UnsetContainer)?;
        let core = self.core();
        if core.slot.lock().is_none() {
            return Err(self.err(Operation::UnsetContainer, Errno::EINVAL));
        }
        // Open devices are container users besides the group itself.
        if core.state.lock().device_fds > 0 {
            return Err(self.err(Operation::UnsetContainer, Errno::EBUSY));
        }
        core.detach();
        Ok(())
    }

    fn open_device(&self, name: &str) -> Result<MockDevice> {
        Self::check_name(Operation::OpenDevice, name)?;
        self.open_device_once(name)
    }
}

impl GroupKeepAlive<MockBackend> for MockGroup {
    fn set_keep_alive(&self, name: &str) -> Result<()> {
        Self::check_name(Operation::KeepAlive, name)?;
        self.fault(Operation::KeepAlive)?;
        let err = |e| Error::from_errno(Operation::KeepAlive, e).with_target(name);
        match self.host.keep_alive {
            // Upstream has no such ioctl: the group's ioctl handler
            // answers ENOTTY before looking at the name.
            KeepAlive::Upstream => Err(err(Errno::ENOTTY)),
            KeepAlive::Downstream => self
                .find(name)
                .map_err(err)?
                .map(drop)
                .ok_or_else(|| err(Errno::ENODEV)),
        }
    }
}
