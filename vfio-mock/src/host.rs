//! The simulated host: its devices and groups, the fake `/sys`, `/proc`
//! and `/dev` trees, fault injection, and the [`MockBackend`] drivers use.

use crate::MockDevice;
use crate::builder::{BuildError, PciDeviceBuilder};
use crate::clock::MockClock;
use crate::container::{ContainerSlot, MockContainer};
use crate::fault::{Faults, UnconsumedFaults};
use crate::fault_log::{FaultLog, IommuFault};
use crate::group::{GroupCore, MockGroup};
use crate::iommufd::DomainSlot;
use crate::iommufd::{Ctx, MockIommuFd};
use crate::memory::{HugetlbPool, MockDmaMemory, PhysMemory};
use crate::model::DeviceContext;
use crate::pci_device::{Driver, PciDevice};
use crate::procfs::ProcInterrupts;
use crate::region::MockRegion;
use crate::scheduler::Scheduler;
use crate::sysfs::{self, NoIommuMode};
use nix::errno::Errno;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use tempfile::TempDir;
use vfio_core::{
    Error, EventFdInterrupt, HostPaths, HugePages, Operation, PciAddress, Result, VfioBackend,
};

/// How the host answers the downstream keep-alive ioctl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepAlive {
    /// Upstream Linux has no such ioctl: ENOTTY (reported as unsupported).
    #[default]
    Upstream,
    /// A downstream kernel that implements it: success for any device of
    /// the group (ENODEV for other names).
    Downstream,
}

/// The Linux release whose vfio-pci the host imitates, where releases differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub enum KernelVersion {
    /// Linux 6.1 (the default).
    #[default]
    V6_1,
    /// Linux 6.12, as the guest kernel is built: with `/dev/iommu`
    /// (`CONFIG_IOMMUFD`) and VFIO device cdevs (`CONFIG_VFIO_DEVICE_CDEV`).
    V6_12,
}

impl KernelVersion {
    /// The kernel of a release (`uname -r`, e.g. `6.1.0-54-amd64`), if it
    /// is one of the series the mock imitates.
    pub fn from_release(release: &str) -> Option<Self> {
        let mut numbers = release.split(|c: char| !c.is_ascii_digit());
        match (numbers.next(), numbers.next()) {
            (Some("6"), Some("1")) => Some(Self::V6_1),
            (Some("6"), Some("12")) => Some(Self::V6_12),
            _ => None,
        }
    }

    /// The series, e.g. `6.12`.
    pub fn series(self) -> &'static str {
        match self {
            Self::V6_1 => "6.1",
            Self::V6_12 => "6.12",
        }
    }

    /// Whether vfio-pci can add MSI-X vectors to an enabled index
    /// (`vdev->has_dyn_msix`, from `pci_msix_can_alloc_dyn`, Linux 6.5 on;
    /// true on the x86 guest), so `VFIO_DEVICE_GET_IRQ_INFO` leaves
    /// `NORESIZE` off a device's MSI-X index.
    pub(crate) fn dynamic_msix(self) -> bool {
        self >= Self::V6_12
    }

    /// Whether each PCI device has an MSI irq domain of its own, named
    /// after it (`PCI-MSI-<device>`, `PCI-MSIX-<device>` in
    /// `/proc/interrupts`, the hwirq being the vector): x86's per-device
    /// MSI domains, in the 6.12 guest. 6.1 has one `PCI-MSI` domain.
    pub(crate) fn per_device_msi_domains(self) -> bool {
        self >= Self::V6_12
    }

    /// Whether `VFIO_GROUP_GET_DEVICE_FD` still finds a device whose removal
    /// has begun: on 6.1 it stays on the group's device list until released;
    /// 6.12's `vfio_unregister_group_dev` takes it off first
    /// (`vfio_device_group_unregister`), so the name is ENODEV.
    pub(crate) fn opens_devices_being_removed(self) -> bool {
        self < Self::V6_12
    }

    /// Whether `/dev/iommu` exists: Debian's 6.1 is built without
    /// `CONFIG_IOMMUFD`, the 6.12 guest kernel with it.
    pub(crate) fn has_iommufd(self) -> bool {
        self >= Self::V6_12
    }

    /// Whether vfio devices have a cdev (`/dev/vfio/devices/vfioN`):
    /// `CONFIG_VFIO_DEVICE_CDEV`, Linux 6.6 on, built into the 6.12 guest.
    pub(crate) fn has_device_cdev(self) -> bool {
        self >= Self::V6_12
    }
}

/// The host's fake `/sys`, `/proc` and `/dev` trees, once made.
#[derive(Debug)]
struct Trees {
    /// Owns the trees; deleted with the last handle. `None` if it could
    /// not be created (the error is the host's).
    _dir: Option<TempDir>,
    paths: HostPaths,
}

/// The state shared by every handle of one host.
#[derive(Debug)]
pub(crate) struct HostInner {
    /// Made on first use of the host's paths: a host whose files nobody
    /// reads never writes them.
    trees: OnceLock<Trees>,
    /// Held while the trees are made and while a removal edits them, so
    /// that a device removed meanwhile is either left out or taken out.
    tree_lock: Mutex<()>,
    noiommu: NoIommuMode,
    pub clock: Arc<MockClock>,
    pub faults: Arc<Faults>,
    pub keep_alive: KeepAlive,
    pub noiommu_mode: bool,
    pub kernel: KernelVersion,
    pub groups: BTreeMap<u32, Arc<GroupCore>>,
    pub procfs: Arc<ProcInterrupts>,
    pub fault_log: Arc<FaultLog>,
    pub scheduler: Arc<Scheduler>,
    /// The reserved 2 MiB hugetlb pages DMA memory may take.
    pub hugetlb: Arc<HugetlbPool>,
    /// The frames of DMA memory, which no-IOMMU devices reach.
    pub phys: Arc<PhysMemory>,
    /// Each vfio-pci device's `vfio-dev` index (`vfioN`): `device_ida` in
    /// `vfio_main.c` hands out the lowest free index as each device is
    /// registered, in the order the devices were added to the host.
    // Unconfirmed: the guest's indices follow the order its devices were
    // bound to vfio-pci, which the mock takes to be the builder's order.
    pub cdev_index: BTreeMap<PciAddress, u32>,
    /// The IOMMU's address width, page sizes and reserved ranges.
    pub geometry: crate::iommu::IommuGeometry,
    errors: Mutex<Vec<String>>,
}

impl HostInner {
    /// The roots of the fake trees, making them on first use: the
    /// temporary directory, sysfs and devfs as the devices are now (a
    /// device removed before is not there), and `/proc/interrupts` with
    /// every irq and count so far, kept up to date from then on.
    pub(crate) fn paths(&self) -> &HostPaths {
        if let Some(trees) = self.trees.get() {
            return &trees.paths;
        }
        let _made = self.tree_lock.lock();
        &self.trees.get_or_init(|| self.make_trees()).paths
    }

    fn make_trees(&self) -> Trees {
        let dir = match tempfile::Builder::new()
            .prefix("vfio-mock-")
            .tempdir_in(tree_parent())
        {
            Ok(dir) => dir,
            Err(e) => {
                self.errors
                    .lock()
                    .push(format!("cannot create the host's temporary directory: {e}"));
                // Under a file, so that every lookup fails (ENOTDIR).
                return Trees {
                    _dir: None,
                    paths: HostPaths::under(std::path::Path::new("/dev/null/vfio-mock")),
                };
            }
        };
        let paths = HostPaths::under(dir.path());
        let groups: Vec<_> = self.groups.values().cloned().collect();
        let tree = sysfs::Tree {
            groups: &groups,
            noiommu: self.noiommu,
            kernel: self.kernel,
            cdev_index: &self.cdev_index,
        };
        if let Err(e) = sysfs::create(&paths, &tree) {
            self.errors
                .lock()
                .push(format!("cannot create the fake sysfs and devfs: {e}"));
        }
        if let Err(e) = self.procfs.attach(paths.interrupts_path()) {
            self.errors
                .lock()
                .push(format!("cannot write the fake /proc/interrupts: {e}"));
        }
        Trees {
            _dir: Some(dir),
            paths,
        }
    }

    pub(crate) fn device(
        &self,
        address: &PciAddress,
    ) -> Option<(&Arc<GroupCore>, &Arc<PciDevice>)> {
        self.groups.values().find_map(|g| {
            g.devices
                .iter()
                .find(|d| d.address == *address)
                .map(|d| (g, d))
        })
    }
}

/// A simulated VFIO host: a cheaply cloneable handle.
///
/// Made by [`MockHost::builder`]; drivers use its [`backend`](Self::backend);
/// tests use it to inject faults, unplug devices and act as a device.
#[derive(Debug, Clone)]
pub struct MockHost {
    inner: Arc<HostInner>,
}

/// The [`VfioBackend`] of a [`MockHost`].
#[derive(Debug, Clone)]
pub struct MockBackend {
    inner: Arc<HostInner>,
}

struct Entry {
    address: PciAddress,
    group: u32,
    device: PciDeviceBuilder,
    driver: Driver,
    noiommu: bool,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("address", &self.address)
            .field("group", &self.group)
            .field("driver", &self.driver)
            .finish_non_exhaustive()
    }
}

/// Describes a [`MockHost`].
#[derive(Debug)]
pub struct MockHostBuilder {
    entries: Vec<Entry>,
    keep_alive: KeepAlive,
    noiommu: NoIommuMode,
    kernel: KernelVersion,
    cpus: usize,
    clock: Option<Arc<MockClock>>,
    hugetlb_pages: usize,
    geometry: crate::iommu::IommuGeometry,
}

impl Default for MockHostBuilder {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            keep_alive: KeepAlive::Upstream,
            noiommu: NoIommuMode::Unsupported,
            kernel: KernelVersion::V6_1,
            cpus: 2,
            clock: None,
            hugetlb_pages: 0,
            geometry: crate::iommu::IommuGeometry::default(),
        }
    }
}

impl MockHostBuilder {
    /// Adds `device` at `address` in IOMMU group `group`, bound to vfio-pci.
    #[must_use]
    pub fn device(self, address: PciAddress, group: u32, device: PciDeviceBuilder) -> Self {
        self.device_bound_to(address, group, device, Driver::VfioPci)
    }

    /// Adds a device bound to `driver`. A device bound to another driver
    /// makes its group non-viable.
    #[must_use]
    pub fn device_bound_to(
        mut self,
        address: PciAddress,
        group: u32,
        device: PciDeviceBuilder,
        driver: Driver,
    ) -> Self {
        self.entries.push(Entry {
            address,
            group,
            device,
            driver,
            noiommu: false,
        });
        self
    }

    /// Adds a vfio-pci device without an IOMMU, in no-IOMMU group `group`
    /// (`/dev/vfio/noiommu-<group>`). Needs [`NoIommuMode::Enabled`]. The
    /// kernel is tainted (`TAINT_USER`) on a host with such a group. In a
    /// container set to the no-IOMMU driver the device DMAs to physical
    /// addresses, which the host's DMA memory has page by page (see
    /// [`DmaFault::NoMemory`](crate::DmaFault::NoMemory)).
    #[must_use]
    pub fn noiommu_device(
        mut self,
        address: PciAddress,
        group: u32,
        device: PciDeviceBuilder,
    ) -> Self {
        self.entries.push(Entry {
            address,
            group,
            device,
            driver: Driver::VfioPci,
            noiommu: true,
        });
        self
    }

    /// The keep-alive behaviour (default [`KeepAlive::Upstream`]).
    #[must_use]
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Whether no-IOMMU mode exists (default [`NoIommuMode::Unsupported`],
    /// like the reference kernel).
    #[must_use]
    pub fn noiommu_mode(mut self, mode: NoIommuMode) -> Self {
        self.noiommu = mode;
        self
    }

    /// The kernel release to imitate where vfio-pci's behaviour changed between
    /// releases (default [`KernelVersion::V6_1`]). [`KernelVersion::V6_12`]
    /// also has `/dev/iommu` and the device cdevs
    /// (`/dev/vfio/devices/vfioN`), which Debian's 6.1 is built without.
    #[must_use]
    pub fn kernel(mut self, kernel: KernelVersion) -> Self {
        self.kernel = kernel;
        self
    }

    /// The host's CPUs (default 2, like the guest): the columns of
    /// `/proc/interrupts`, and the interrupt-vector budget. Each CPU has 201
    /// vectors for device irqs (measured on Linux 6.1 x86-64, and on the 6.12
    /// guest kernel) and the host's own 7 irqs hold some, so 2 CPUs take 395
    /// bound MSI/MSI-X vectors and INTx lines; one more bind fails with
    /// ENOSPC, as `request_irq` does.
    #[must_use]
    pub fn cpus(mut self, cpus: usize) -> Self {
        self.cpus = cpus.clamp(1, 1024);
        self
    }

    /// Reserved 2 MiB hugetlb pages (default 0, as `/proc/sys/vm/nr_hugepages`
    /// is on a host that reserved none): DMA memory allocated with
    /// [`HugePages::Prefer`] or [`HugePages::Require`] takes them while
    /// enough are free and gives them back when its last reference (the
    /// memory handle, or a DMA mapping of it) goes.
    #[must_use]
    pub fn hugetlb_pages(mut self, pages: usize) -> Self {
        self.hugetlb_pages = pages;
        self
    }

    /// The IOMMU's address width in bits (default 39, QEMU 7.2's
    /// intel-iommu; `-device intel-iommu,aw-bits=48` gives 48): type1's
    /// IOVA ranges end at `2^bits - 1`, and a mapping past it is EINVAL.
    #[must_use]
    pub fn iommu_address_bits(mut self, bits: u32) -> Self {
        self.geometry.address_bits = bits.clamp(12, 64);
        self
    }

    /// The IOMMU page sizes, as type1's `iova_pgsizes` bitmap (default
    /// 0x40201000: 4 KiB, 2 MiB and 1 GiB, as intel-iommu reports them).
    /// The smallest is the alignment maps and unmaps need; a bitmap of 0 is
    /// taken as 4 KiB.
    #[must_use]
    pub fn iommu_page_sizes(mut self, bitmap: u64) -> Self {
        self.geometry.page_sizes = if bitmap == 0 { 1 << 12 } else { bitmap };
        self
    }

    /// The IOVA ranges the IOMMU reserves (default: the x86 MSI window
    /// 0xfee00000..=0xfeefffff), left out of type1's IOVA ranges.
    #[must_use]
    pub fn iommu_reserved(mut self, ranges: &[vfio_core::IovaRange]) -> Self {
        self.geometry.reserved = ranges.to_vec();
        self
    }

    /// Shares a clock (default: a fresh [`MockClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<MockClock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the description and creates the host and its file trees.
    pub fn build(self) -> std::result::Result<MockHost, BuildError> {
        // A host whose devices are all no-IOMMU devices has no IOMMU, and
        // no VT-d unit to take an irq or remap interrupts.
        let has_iommu = self.entries.is_empty() || self.entries.iter().any(|e| !e.noiommu);
        let irq_kernel = crate::irq::IrqKernel {
            dynamic_msix: self.kernel.dynamic_msix(),
            per_device_msi_domain: self.kernel.per_device_msi_domains(),
            remapped: has_iommu,
        };
        let procfs = Arc::new(ProcInterrupts::new(self.cpus, has_iommu));
        let faults = Arc::new(Faults::default());
        let fault_log = Arc::new(FaultLog::default());
        let clock = self.clock.unwrap_or_default();
        let scheduler = Arc::new(Scheduler::new(clock.clone()));
        let noiommu_mode = self.noiommu == NoIommuMode::Enabled;

        type Slots = (bool, ContainerSlot, DomainSlot, Vec<Arc<PciDevice>>);
        let mut groups: BTreeMap<u32, Slots> = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        let mut cdev_index = BTreeMap::new();
        for (k, entry) in self.entries.into_iter().enumerate() {
            if !seen.insert(entry.address) {
                return Err(BuildError::new(format!("two devices at {}", entry.address)));
            }
            if entry.noiommu && !noiommu_mode {
                return Err(BuildError::new(format!(
                    "{} is a no-IOMMU device but no-IOMMU mode is not enabled",
                    entry.address
                )));
            }
            let k = k as u64;
            let windows = [
                0xc000_0000u64.saturating_add(k.saturating_mul(0x0400_0000)),
                0x80_0000_0000u64.saturating_add(k.saturating_mul(0x10_0000_0000)),
                0xc000u64.saturating_add(k.saturating_mul(0x100)),
            ];
            let spec = entry
                .device
                .finish(windows, self.kernel)
                .map_err(|e| BuildError::new(format!("{}: {e}", entry.address)))?;
            let group = groups.entry(entry.group).or_insert_with(|| {
                (
                    entry.noiommu,
                    ContainerSlot::default(),
                    DomainSlot::default(),
                    Vec::new(),
                )
            });
            if group.0 != entry.noiommu {
                return Err(BuildError::new(format!(
                    "group {} mixes no-IOMMU and IOMMU devices",
                    entry.group
                )));
            }
            let has_pin = spec.interrupt_pin != 0;
            if entry.driver == Driver::VfioPci {
                let index = cdev_index.len() as u32;
                cdev_index.insert(entry.address, index);
            }
            let mut device = PciDevice::new(
                entry.address,
                entry.driver,
                entry.device,
                spec,
                procfs.clone(),
                group.1.clone(),
                group.2.clone(),
                faults.clone(),
                fault_log.clone(),
                scheduler.clone(),
            );
            device.iommu_last_iova = self.geometry.last_iova();
            device.irq_kernel = irq_kernel;
            if has_pin {
                procfs.add_fixed(
                    device.intx_irq,
                    procfs.io_apic_chip(),
                    format!("{}-fasteoi", device.intx_irq),
                );
            }
            group.3.push(device.into_arc());
        }
        if has_iommu {
            procfs.add_dmar();
        }
        let groups: BTreeMap<u32, Arc<GroupCore>> = groups
            .into_iter()
            .map(|(n, (noiommu, slot, domain, devices))| {
                (
                    n,
                    Arc::new(GroupCore::new(n, noiommu, devices, slot, domain)),
                )
            })
            .collect();
        Ok(MockHost {
            inner: Arc::new(HostInner {
                trees: OnceLock::new(),
                tree_lock: Mutex::new(()),
                noiommu: self.noiommu,
                clock,
                faults,
                keep_alive: self.keep_alive,
                noiommu_mode,
                kernel: self.kernel,
                groups,
                procfs,
                fault_log,
                scheduler,
                hugetlb: Arc::new(HugetlbPool::new(self.hugetlb_pages)),
                phys: Arc::default(),
                cdev_index,
                geometry: self.geometry.clone(),
                errors: Mutex::new(Vec::new()),
            }),
        })
    }
}

/// Where hosts put their fake `/sys`, `/proc` and `/dev` trees:
/// `$VFIO_MOCK_TMPDIR` if set, else `/dev/shm` where it is a writable
/// directory (tmpfs: creating and deleting a tree of ~50 files on a disk file
/// system mounted with `discard` costs ~100 ms per host), else the system
/// temporary directory.
fn tree_parent() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("VFIO_MOCK_TMPDIR") {
        return dir.into();
    }
    let shm = std::path::Path::new("/dev/shm");
    let writable = std::fs::metadata(shm).is_ok_and(|m| m.is_dir() && !m.permissions().readonly());
    if writable {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

impl MockHost {
    /// An empty host description.
    pub fn builder() -> MockHostBuilder {
        MockHostBuilder::default()
    }

    /// The backend drivers are given.
    pub fn backend(&self) -> MockBackend {
        MockBackend {
            inner: self.inner.clone(),
        }
    }

    /// The kernel release the host imitates ([`MockHostBuilder::kernel`]).
    pub fn kernel(&self) -> KernelVersion {
        self.inner.kernel
    }

    /// The fake `/sys`, `/proc` and `/dev` roots.
    ///
    /// The trees are written the first time they are asked for, here or
    /// through the backend's [`host_paths`](VfioBackend::host_paths), and
    /// kept up to date from then on: they show what the kernel would show
    /// at that moment, and a host nobody asks never touches the disk. A
    /// failure to write them is reported by [`done`](Self::done).
    pub fn paths(&self) -> &HostPaths {
        self.inner.paths()
    }

    /// The virtual clock the open-device retry sleeps on.
    pub fn clock(&self) -> &Arc<MockClock> {
        &self.inner.clock
    }

    /// Makes the next `count` calls of `operation` fail with `errno`, after
    /// any failures already planned for it.
    ///
    /// Every operation the mock performs can fail: container, group and
    /// device ioctls, region I/O and mapping, register access through a
    /// mapped region (`RegisterRead`/`RegisterWrite`), DMA allocation and
    /// CPU access (`AllocDma`, `DmaAccess`) and `CreateInterrupt`;
    /// iommufd's calls (`OpenIommufd`, `OpenDeviceCdev`, `BindIommufd`,
    /// `AttachPt`, `DetachPt`, `AllocIoas`, `Destroy`, `IovaRanges`, and
    /// `MapDma`/`UnmapDma` on an IOAS) and `PhysicalAddress` too. The
    /// lookups vfio-core does itself from the fake files (`LookupGroup`,
    /// `LookupIrq`, `ModuleParameter`) and waits on an interrupt
    /// (`WaitInterrupt`) never consult this plan.
    pub fn fail_next(&self, operation: Operation, errno: Errno, count: u32) {
        self.inner.faults.fail_next(operation, errno, count);
    }

    /// `Ok` when every planned fault was used and the host kept its fake
    /// files up to date; otherwise what is left over.
    pub fn done(&self) -> std::result::Result<(), UnconsumedFaults> {
        let pending = self.inner.faults.pending();
        let mut host_errors = self.inner.errors.lock().clone();
        host_errors.extend(self.inner.procfs.errors());
        host_errors.extend(self.inner.scheduler.errors.lock().iter().cloned());
        if pending.is_empty() && host_errors.is_empty() {
            Ok(())
        } else {
            Err(UnconsumedFaults {
                pending,
                host_errors,
            })
        }
    }

    /// Panics (this is a test assertion) unless [`done`](Self::done) is `Ok`.
    #[track_caller]
    pub fn assert_faults_consumed(&self) {
        if let Err(e) = self.done() {
            panic!("{e}");
        }
    }

    /// Removes the device at `address`, as writing 1 to its sysfs `remove`
    /// does on Linux 6.1 (`vfio_pci_remove` → `vfio_unregister_group_dev`).
    ///
    /// At once the REQ eventfd, if the user bound one, is signalled to ask
    /// for the device back. Every open handle and mapped region keeps
    /// working, and the device can still be opened (Linux 6.1 allows it, and
    /// waits for the new handle too). When the last of them is closed, the
    /// device is gone: it
    /// leaves sysfs (and its group's `/dev/vfio` node goes when no vfio-pci
    /// device is left), and any call through a group handle to open it is
    /// ENODEV. On 6.12 the device's cdev (its sysfs `vfio-dev` entry and
    /// `/dev/vfio/devices` node) goes at once, and an open cdev file holds
    /// the device as an open device fd does. The kernel's writer blocks
    /// until then; the returned
    /// [`Removal`] is that writer: [`Removal::wait`] blocks the same way,
    /// and asks again every 10 seconds, as the kernel does.
    ///
    /// `None` if there is no such device or its removal has already begun.
    pub fn remove_device(&self, address: PciAddress) -> Option<Removal> {
        let (_, device) = self.inner.device(&address)?;
        let host = Arc::downgrade(&self.inner);
        let complete = Box::new(move || {
            let Some(inner) = host.upgrade() else { return };
            let Some((group, device)) = inner.device(&address) else {
                return;
            };
            device.finish_removal();
            let _editing = inner.tree_lock.lock();
            let Some(trees) = inner.trees.get() else {
                // Not made yet: they will be made without the device.
                return;
            };
            let index = inner.cdev_index.get(&address).copied();
            if let Err(e) = sysfs::remove_device(&trees.paths, group, device, index) {
                inner
                    .errors
                    .lock()
                    .push(format!("cannot remove {address} from the fake sysfs: {e}"));
            }
        });
        if !device.begin_removal(complete) {
            return None;
        }
        if !self.inner.kernel.opens_devices_being_removed() {
            // 6.12's vfio_unregister_group_dev deletes the vfio-dev device
            // (its sysfs entry and cdev node) at once (`vfio_device_del`).
            let _editing = self.inner.tree_lock.lock();
            if let (Some(trees), Some(&index)) =
                (self.inner.trees.get(), self.inner.cdev_index.get(&address))
            {
                if let Err(e) = sysfs::remove_cdev(&trees.paths, device, index) {
                    self.inner
                        .errors
                        .lock()
                        .push(format!("cannot remove {address}'s vfio-dev entry: {e}"));
                }
            }
        }
        Some(Removal {
            device: device.clone(),
        })
    }

    /// Moves the host's virtual time `by` forward, running every timer of
    /// [`DeviceContext::schedule`] that falls due, in deadline order, on
    /// this thread and with the clock at the timer's deadline. Returns how
    /// many ran. From inside device work it does nothing and returns 0.
    pub fn advance(&self, by: std::time::Duration) -> usize {
        self.inner.scheduler.advance(by)
    }

    /// Waits for every [`DeviceContext::defer`]red job to finish, then runs
    /// the earliest timer (moving the clock to its deadline), and so on
    /// until no job or timer is left. Returns how many timers ran. A model
    /// that always schedules more work keeps it from returning. From
    /// inside device work it does nothing and returns 0.
    pub fn run_until_idle(&self) -> usize {
        self.inner.scheduler.run_until_idle()
    }

    /// Timers not yet run and deferred jobs not yet finished.
    pub fn pending_work(&self) -> (usize, usize) {
        self.inner.scheduler.pending()
    }

    /// Sets the host's pool of reserved 2 MiB hugetlb pages to `pages` in
    /// all, as writing `/proc/sys/vm/nr_hugepages` does (pages DMA memory
    /// holds stay held, so the pool never shrinks below them), and returns
    /// its size. The builder's [`hugetlb_pages`](MockHostBuilder::hugetlb_pages)
    /// sets the size it starts with.
    pub fn reserve_hugetlb_pages(&self, pages: u64) -> u64 {
        let pages = usize::try_from(pages).unwrap_or(usize::MAX);
        self.inner.hugetlb.resize(pages) as u64
    }

    /// The DMA remapping faults since the host was built, oldest first:
    /// what intel-iommu prints to the kernel log as `DMAR: [DMA Read
    /// NO_PASID] Request device [00:02.0] fault addr 0x100000 [fault
    /// reason 0x06] PTE Read access is not set` (each record's `Display`
    /// gives that text). A device DMA the IOMMU refuses in part or whole
    /// adds one record per refused run of bytes. The log keeps 4096 records.
    pub fn iommu_faults(&self) -> Vec<IommuFault> {
        self.inner.fault_log.snapshot().0
    }

    /// Acts as the device at `address`: raise interrupts, DMA, touch BAR
    /// memory (what its model could do). `None` if there is no such device.
    pub fn with_device<R>(
        &self,
        address: PciAddress,
        f: impl FnOnce(&DeviceContext<'_>) -> R,
    ) -> Option<R> {
        let (_, device) = self.inner.device(&address)?;
        Some(f(&DeviceContext { device }))
    }
}

impl From<&MockHost> for MockBackend {
    fn from(host: &MockHost) -> Self {
        host.backend()
    }
}

impl MockBackend {
    /// The host this backend belongs to.
    pub fn host(&self) -> MockHost {
        MockHost {
            inner: self.inner.clone(),
        }
    }

    fn fault(&self, op: Operation) -> Result<()> {
        match self.inner.faults.take(op) {
            Some(errno) => Err(Error::from_errno(op, errno)),
            None => Ok(()),
        }
    }

    /// `vfio_group_fops_open` for IOMMU or no-IOMMU group `number`.
    fn open_group_node(&self, number: u32, noiommu: bool) -> Result<MockGroup> {
        self.fault(Operation::OpenGroup)?;
        // The node's path names the error; only an error needs the trees.
        let err = |e| {
            let paths = self.inner.paths();
            let path = if noiommu {
                paths.noiommu_group_path(number)
            } else {
                paths.group_path(number)
            };
            Error::from_errno(Operation::OpenGroup, e).with_target(path.display())
        };
        // No node unless a device of the group is bound to vfio-pci.
        // Unconfirmed: ENOENT, the answer for a node that is not there.
        if noiommu && !self.inner.noiommu_mode {
            // No no-IOMMU group exists unless vfio was loaded with the
            // parameter (`vfio_noiommu_group_alloc` is never reached).
            return Err(err(Errno::ENOENT).with_detail(
                "no-IOMMU mode is off: it needs vfio.enable_unsafe_noiommu_mode=1 \
                 (and a kernel with CONFIG_VFIO_NOIOMMU)",
            ));
        }
        let group = self
            .inner
            .groups
            .get(&number)
            .filter(|g| g.noiommu == noiommu && g.has_vfio_device())
            .ok_or_else(|| err(Errno::ENOENT))?;
        group.open().map_err(err)?;
        Ok(MockGroup::new(group.clone(), self.inner.clone()))
    }
}

impl VfioBackend for MockBackend {
    type Container = MockContainer;
    type Group = MockGroup;
    type Device = MockDevice;
    type Region = MockRegion;
    type DmaMemory = MockDmaMemory;
    type Interrupt = EventFdInterrupt;
    type IommuFd = crate::iommufd::MockIommuFd;
    type Ioas = crate::iommufd::MockIoas;

    fn host_paths(&self) -> &HostPaths {
        self.inner.paths()
    }

    fn open_container(&self) -> Result<MockContainer> {
        self.fault(Operation::OpenContainer)?;
        Ok(MockContainer::new(self.inner.clone()))
    }

    fn open_group(&self, number: u32) -> Result<MockGroup> {
        self.open_group_node(number, false)
    }

    fn open_noiommu_group(&self, number: u32) -> Result<MockGroup> {
        self.open_group_node(number, true)
    }

    /// `/dev/iommu`: on 6.1 there is none (Debian builds it without
    /// `CONFIG_IOMMUFD`), so NotFound (ENOENT).
    fn open_iommufd(&self) -> Result<MockIommuFd> {
        self.fault(Operation::OpenIommufd)?;
        let err = |e| {
            Error::from_errno(Operation::OpenIommufd, e)
                .with_target(self.inner.paths().iommufd_path().display())
        };
        if !self.inner.kernel.has_iommufd() {
            return Err(err(Errno::ENOENT).with_detail("the kernel lacks CONFIG_IOMMUFD"));
        }
        Ctx::open(&self.inner).map(MockIommuFd::new).map_err(err)
    }

    /// The device's cdev, found as vfio-linux finds it: the `vfioN` of its
    /// sysfs `vfio-dev/` directory, then `/dev/vfio/devices/vfioN`. On 6.1
    /// there is no such node (no `CONFIG_VFIO_DEVICE_CDEV`), and a no-IOMMU
    /// device has none on 6.12 either (`vfio_device_add`): ENOENT. A
    /// device whose removal has begun has neither entry (6.12 deletes them
    /// first, `vfio_device_del`); one found by an earlier lookup is ENODEV
    /// (`vfio_device_try_get_registration`).
    fn open_device_cdev(&self, address: &PciAddress) -> Result<MockDevice> {
        self.fault(Operation::OpenDeviceCdev)?;
        let paths = self.inner.paths();
        let name = paths.device_cdev_name(address)?;
        let node = paths.device_cdev_path(&name);
        let err = |e| Error::from_errno(Operation::OpenDeviceCdev, e).with_target(node.display());
        if !self.inner.kernel.has_device_cdev() {
            return Err(err(Errno::ENOENT)
                .with_detail("the kernel lacks CONFIG_VFIO_DEVICE_CDEV (Linux 6.6 and later)"));
        }
        let (group, device) = self
            .inner
            .device(address)
            .filter(|(_, d)| {
                self.inner
                    .cdev_index
                    .get(&d.address)
                    .map(|i| format!("vfio{i}"))
                    == Some(name.clone())
            })
            .ok_or_else(|| err(Errno::ENOENT))?;
        if group.noiommu {
            return Err(err(Errno::ENOENT).with_detail("a no-IOMMU device has no cdev"));
        }
        if device.is_removed() || device.is_unregistering() {
            return Err(err(Errno::ENODEV).with_detail("the device is being removed"));
        }
        let fd = nix::sys::eventfd::EventFd::from_value_and_flags(
            0,
            nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
        )
        .map_err(err)?;
        device.hold();
        // Unconfirmed: the handle's name is the PCI address, as through the
        // group (vfio-linux may name it by its cdev).
        Ok(MockDevice::new_cdev(
            group.clone(),
            crate::device::Hold(device.clone()),
            address.to_string(),
            fd,
            self.inner.clone(),
        ))
    }

    fn new_interrupt(&self) -> Result<EventFdInterrupt> {
        self.fault(Operation::CreateInterrupt)?;
        EventFdInterrupt::new()
    }

    fn alloc_dma_with(&self, size: usize, pages: HugePages) -> Result<MockDmaMemory> {
        MockDmaMemory::alloc_with(
            size,
            pages,
            &self.inner.hugetlb,
            &self.inner.phys,
            self.inner.faults.clone(),
        )
    }
}

/// A device removal under way: what a writer of the device's sysfs `remove`
/// waits for. See [`MockHost::remove_device`].
#[derive(Debug)]
pub struct Removal {
    device: Arc<PciDevice>,
}

/// How often the kernel asks the user again to release a device being removed.
const REQUEST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Removal {
    /// True once the user has released the device and it is gone.
    pub fn is_done(&self) -> bool {
        self.device.is_removed()
    }

    /// Waits up to `timeout` for the user to release the device, signalling
    /// the REQ eventfd again every 10 seconds of waiting; true once it is
    /// gone.
    pub fn wait(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now().checked_add(timeout);
        loop {
            let left = deadline.map_or(REQUEST_INTERVAL, |d| {
                d.saturating_duration_since(std::time::Instant::now())
            });
            if self.device.wait_released(left.min(REQUEST_INTERVAL)) || self.is_done() {
                return self.is_done();
            }
            if left <= REQUEST_INTERVAL {
                return self.is_done();
            }
            self.device.request_release();
        }
    }
}
