//! `cargo xtask guest`: run a static binary inside a QEMU guest whose kernel drives the
//! emulated `edu` and NVMe devices with the real vfio-pci driver.
//!
//! The guest: Debian's Linux 6.1, or Linux 6.12 built from Debian's source by
//! [`crate::kernel`] ([`GuestKernel`]), under TCG (q35, emulated VT-d), with a busybox
//! initramfs whose `/init` loads the VFIO and watchdog modules (6.1; 6.12 has them built
//! in), binds the devices of [`DEVICES`] to their drivers, runs the binary as
//! `/vfio-test` and reports its exit code over the serial console.
//!
//! # What the test binary sees
//! - Runs as root (pid > 1, a child of `/init`) in `/`, stdin `/dev/null`, stdout and
//!   stderr on the serial console; `PATH=/bin:/sbin:/usr/bin:/usr/sbin` (busybox applets).
//! - Mounted: `/proc`, `/sys`, `/dev` (devtmpfs), `/tmp` (tmpfs); `/` is the writable
//!   initramfs. No network, no libc (hence static binaries).
//! - `VFIO_GUEST_EDU=0000:00:02.0` and `VFIO_GUEST_NVME=0000:00:03.0`, both bound to
//!   vfio-pci, with their IOMMU group numbers in `VFIO_GUEST_EDU_GROUP` and
//!   `VFIO_GUEST_NVME_GROUP` (1 and 2, each device alone in its group).
//! - A non-viable group: behind a conventional PCI bridge at `0000:00:04.0`, a second
//!   `edu` bound to vfio-pci, `VFIO_GUEST_SHARED_EDU=0000:01:01.0`, and an i6300ESB
//!   watchdog bound to its kernel driver (`i6300ESB timer`),
//!   `VFIO_GUEST_WATCHDOG=0000:01:02.0`. The bridge and both devices share one IOMMU
//!   group (3), in `VFIO_GUEST_SHARED_EDU_GROUP` and `VFIO_GUEST_WATCHDOG_GROUP`.
//!   `/dev/vfio/3` exists and opens, but the watchdog's driver makes the group
//!   non-viable: `VFIO_GROUP_GET_STATUS` reports no `VIABLE` flag and
//!   `VFIO_GROUP_SET_CONTAINER` fails with `EPERM`. The watchdog is never armed
//!   (nothing opens `/dev/watchdog`; `nowayout` is off). The bus number behind the
//!   bridge is the firmware's choice (1), read from sysfs at boot.
//! - `VFIO_GUEST_BIG_NVME=0000:00:05.0`: a second NVMe controller, bound to vfio-pci,
//!   with 2048 MSI-X vectors (`msix_qsize=2048`), more than the guest's CPUs can
//!   take (with 2 CPUs, 395 of them bind, on 6.1 and on 6.12), in `VFIO_GUEST_BIG_NVME_GROUP` (4).
//! - At 00:06.0 to 00:0a.0, each bound to vfio-pci and alone in its group (5 to 9):
//!   `e1000e`, `virtio-net-pci`, `qemu-xhci`, `ivshmem-plain` and `pci-testdev` with a
//!   1 GiB BAR, in `VFIO_GUEST_E1000E`, `VFIO_GUEST_VIRTIO_NET`, `VFIO_GUEST_XHCI`,
//!   `VFIO_GUEST_IVSHMEM` and `VFIO_GUEST_TESTDEV` (and `..._GROUP`): the devices whose
//!   captured profiles the mock replays. That BAR does not fit below 4 GiB, so the
//!   firmware puts every 64-bit BAR above it (the NVMe controller's BAR0 at
//!   0x1_0001_0000).
//! - `/dev/vfio/<group>` exists for each vfio-pci device before the binary starts.
//! - With `--noiommu` (Linux 6.12 only) the machine has no IOMMU and the kernel command
//!   line sets `vfio.enable_unsafe_noiommu_mode=1`: each vfio-pci device gets a
//!   no-IOMMU group, numbered from 0 in the order the devices are bound (`edu` 0, `nvme`
//!   1, `shared_edu` 2, `big_nvme` 3, then the five above 4 to 8), with its node at `/dev/vfio/noiommu-<group>`
//!   and no device cdev; the watchdog has no group. The PCI devices and their
//!   addresses are the same. QEMU's `edu` is given a 64-bit DMA mask
//!   ([`EDU_NOIOMMU_PROPERTIES`]): it is handed physical addresses, which its default
//!   28-bit mask would cut short in 1 GiB of RAM.
//! - Lines printed as `@@OUT@@ <text>` are collected by the host (`--output FILE`).
//! - The NVMe disks are blank on every run; kernel messages logged while the binary ran are
//!   echoed after it exits, prefixed `guest dmesg:`.

mod assets;
mod binary;
mod console;
mod init_script;
mod initramfs;
mod qemu;

use std::ffi::OsString;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::scratch::ScratchDir;
use crate::{apt, kernel, paths};
use console::Console;
use init_script::Module;
use initramfs::CpioWriter;
use qemu::Machine;

/// Where the test binary lives in the guest.
pub const GUEST_TEST_PATH: &str = "/vfio-test";

/// Default wall-time limit of a guest run.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Default number of virtual CPUs.
pub const DEFAULT_CPUS: u32 = 2;

/// What QEMU's `edu` is given in the guest without an IOMMU: a DMA mask as wide as an
/// address (its default masks DMA addresses to 28 bits, below most of the guest's RAM).
pub const EDU_NOIOMMU_PROPERTIES: &str = "dma_mask=0xffffffffffffffff";

/// Size of the sparse NVMe backing file.
const NVME_IMAGE_BYTES: u64 = 64 << 20;

/// The bridge the shared-group devices sit behind: a conventional PCI-to-PCI bridge at
/// slot 4 of the root bus. The IOMMU cannot tell apart the requests of the devices behind
/// it (they all arrive with the bridge's requester ID), so the kernel puts them and the
/// bridge in one IOMMU group.
///
/// QEMU's `pci-bridge` rather than `pcie-pci-bridge` (which groups the same way): with
/// its hot-plug controller off, the guest's `shpchp` leaves it alone instead of logging
/// a slot registration failure on every boot.
pub const BRIDGE: Bridge = Bridge {
    id: "br0",
    slot: 4,
    qemu: "pci-bridge,chassis_nr=1,shpc=off",
};

/// A PCI bridge on the root bus, with a QEMU id that devices name as their `bus`.
#[derive(Debug, Clone, Copy)]
pub struct Bridge {
    /// The QEMU device id.
    pub id: &'static str,
    /// PCI slot (device number) on bus 0, function 0.
    pub slot: u8,
    /// The QEMU device type.
    pub qemu: &'static str,
}

impl Bridge {
    /// The bridge's own PCI address, e.g. `0000:00:04.0`.
    pub fn bdf(&self) -> String {
        root_bdf(self.slot)
    }

    fn qemu_arg(&self) -> String {
        format!("{},id={},addr={:02x}.0", self.qemu, self.id, self.slot)
    }
}

/// Where a device sits. Function 0 always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A slot on the root bus (bus 0): the address is fixed.
    Root(u8),
    /// A slot on the secondary bus of [`BRIDGE`]. The bus number is the one the
    /// firmware gave the bridge, so `/init` reads it from sysfs.
    Bridged(u8),
}

/// What `/init` binds a device to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// vfio-pci; `/init` also waits for the group's `/dev/vfio/<group>` node.
    VfioPci,
    /// An ordinary kernel driver, by its name under `/sys/bus/pci/drivers/`. On 6.1 its
    /// module must be in [`assets::MODULES`] (the driver usually claims the device as
    /// soon as the module loads); the 6.12 kernel has it built in (see
    /// `xtask/kernel/linux-6.12.config`).
    Kernel(&'static str),
}

impl Driver {
    /// The driver's name under `/sys/bus/pci/drivers/`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::VfioPci => "vfio-pci",
            Self::Kernel(name) => name,
        }
    }
}

/// A PCI device attached to the guest.
#[derive(Debug, Clone, Copy)]
pub struct GuestDevice {
    /// Short name; the test sees `VFIO_GUEST_<NAME>` and `VFIO_GUEST_<NAME>_GROUP`.
    pub name: &'static str,
    /// Where it sits.
    pub slot: Slot,
    /// The QEMU `-device` value, without the bus and address.
    pub qemu: &'static str,
    /// The id of the blank disk image the device is given (`drive=<id>` in
    /// [`qemu`](Self::qemu)), if it takes one.
    pub drive: Option<&'static str>,
    /// A QEMU option the device needs before it, as (option, value): the
    /// memory backend of `ivshmem-plain`, or the network peer of a NIC (a hub
    /// port, which goes nowhere: the guest has no network).
    pub backend: Option<(&'static str, &'static str)>,
    /// The driver it is bound to.
    pub driver: Driver,
}

impl GuestDevice {
    /// The environment variable holding the address in the guest.
    pub fn env_name(&self) -> String {
        format!("VFIO_GUEST_{}", self.name.to_ascii_uppercase())
    }

    /// The `-device` value: [`qemu`](Self::qemu), then (for `edu` without an IOMMU)
    /// [`EDU_NOIOMMU_PROPERTIES`], then the bus and address.
    fn qemu_arg(&self, iommu: bool) -> String {
        let mut value = self.qemu.to_owned();
        if !iommu && self.qemu.split(',').next() == Some("edu") {
            value = format!("{value},{EDU_NOIOMMU_PROPERTIES}");
        }
        match self.slot {
            Slot::Root(slot) => format!("{value},addr={slot:02x}.0"),
            Slot::Bridged(slot) => format!("{value},bus={},addr={slot:02x}.0", BRIDGE.id),
        }
    }
}

/// The PCI address of function 0 of `slot` on the root bus, e.g. `0000:00:02.0`.
fn root_bdf(slot: u8) -> String {
    format!("0000:00:{slot:02x}.0")
}

/// The devices every guest gets, bound in this order.
///
/// `edu` and `nvme` each have an IOMMU group of their own (groups 1 and 2). `shared_edu`
/// and `watchdog` sit behind [`BRIDGE`] and share a group: with the watchdog bound to its
/// own kernel driver (`i6300esb`, which uses the DMA API), that group is not viable, so
/// the kernel refuses to attach it to a container.
///
/// The last five are there to be captured as device profiles and replayed by the mock
/// (each in a group of its own, bound to vfio-pci): `e1000e` (PCIe, MSI-X in a BAR of
/// its own, a ROM), `virtio-net-pci` (vendor-specific capabilities, an I/O BAR, a 64-bit
/// prefetchable BAR), `qemu-xhci` (a 16 KiB BAR holding the MSI-X table), `ivshmem-plain`
/// (a 1 MiB shared-memory BAR, no interrupts) and `pci-testdev` (a 1 GiB BAR).
pub const DEVICES: [GuestDevice; 10] = [
    GuestDevice {
        name: "edu",
        slot: Slot::Root(2),
        qemu: "edu",
        drive: None,
        backend: None,
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "nvme",
        slot: Slot::Root(3),
        qemu: "nvme,serial=vfio0001,drive=nvm",
        drive: Some("nvm"),
        backend: None,
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "shared_edu",
        slot: Slot::Bridged(1),
        qemu: "edu",
        drive: None,
        backend: None,
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "watchdog",
        slot: Slot::Bridged(2),
        qemu: "i6300esb",
        drive: None,
        backend: None,
        driver: Driver::Kernel(WATCHDOG_DRIVER),
    },
    GuestDevice {
        name: "big_nvme",
        slot: Slot::Root(5),
        qemu: "nvme,serial=vfio0002,drive=nvm2,msix_qsize=2048",
        drive: Some("nvm2"),
        backend: None,
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "e1000e",
        slot: Slot::Root(6),
        qemu: "e1000e,netdev=net0",
        drive: None,
        backend: Some(("-netdev", "hubport,id=net0,hubid=0")),
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "virtio_net",
        slot: Slot::Root(7),
        qemu: "virtio-net-pci,netdev=net1",
        drive: None,
        backend: Some(("-netdev", "hubport,id=net1,hubid=1")),
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "xhci",
        slot: Slot::Root(8),
        qemu: "qemu-xhci",
        drive: None,
        backend: None,
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "ivshmem",
        slot: Slot::Root(9),
        qemu: "ivshmem-plain,memdev=ivshmem",
        drive: None,
        backend: Some(("-object", "memory-backend-ram,id=ivshmem,size=1M,share=on")),
        driver: Driver::VfioPci,
    },
    GuestDevice {
        name: "testdev",
        slot: Slot::Root(10),
        qemu: "pci-testdev,membar=1G",
        drive: None,
        backend: None,
        driver: Driver::VfioPci,
    },
];

/// The i6300esb driver's name in sysfs.
const WATCHDOG_DRIVER: &str = "i6300ESB timer";

/// The kernel the guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuestKernel {
    /// Debian's `linux-image-6.1.0-54-amd64-unsigned`, VFIO and the watchdog driver
    /// as modules.
    #[default]
    Debian6_1,
    /// Linux 6.12 from Debian's `linux-source-6.12`, built by [`kernel::ensure`] with
    /// everything built in.
    Built6_12,
}

impl GuestKernel {
    /// The address width of the guest's VT-d on this kernel: QEMU 7.2's
    /// default 39 bits on Linux 6.1, 48 on Linux 6.12, so the suite sees
    /// both geometries (the conformance suite's mock twin of each is built
    /// with the same width: `conformance_tests::cases::uapi::guest_address_bits`).
    pub fn iommu_address_bits(self) -> u32 {
        match self {
            Self::Built6_12 => 48,
            _ => 39,
        }
    }

    /// Parses the series given to `--kernel`: `6.1` or `6.12`.
    pub fn from_series(series: &str) -> Option<Self> {
        match series {
            "6.1" => Some(Self::Debian6_1),
            s if s == kernel::SERIES => Some(Self::Built6_12),
            _ => None,
        }
    }
}

/// What to run in the guest, and how.
#[derive(Debug)]
pub struct GuestOptions {
    /// The kernel to boot.
    pub kernel: GuestKernel,
    /// Boot without an IOMMU, with vfio's no-IOMMU mode enabled (6.12 only).
    pub noiommu: bool,
    /// The static binary to run.
    pub binary: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Where `@@OUT@@ ` lines go, if anywhere.
    pub output: Option<PathBuf>,
    /// Wall-time limit for the whole guest run.
    pub timeout: Duration,
    /// Virtual CPUs.
    pub cpus: u32,
}

/// Runs the binary in the guest and returns its exit code.
pub fn run(opts: &GuestOptions) -> Result<i32> {
    let test = binary::load(&opts.binary)?;
    apt::ensure_program("qemu-system-x86_64", &["qemu-system-x86"])
        .context("QEMU is missing and could not be installed")?;

    let cache = paths::guest_dir();
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    // Leftovers of interrupted runs (Ctrl-C skips the cleanup).
    for stem in ["run", "fetch-scratch", "assets-staging"] {
        ScratchDir::sweep(&cache, stem);
    }
    let mut assets = assets::ensure(&cache)?;
    if opts.kernel == GuestKernel::Built6_12 {
        let built = kernel::ensure().context("building the guest's Linux 6.12")?;
        // The 6.1 package's busybox stays; the kernel has no modules to load.
        assets.kernel = built.vmlinux;
        assets.modules.clear();
    }
    // Per-run files, so concurrent runs neither share an initramfs nor fight over the
    // disk image's lock, and every run starts from a blank NVMe disk.
    let run_dir = ScratchDir::new(&cache, "run")?;
    let initrd = run_dir.path().join("initramfs.cpio");
    write_initramfs(&initrd, &assets, &test, &opts.args, opts.noiommu)?;
    for id in DEVICES.iter().filter_map(|d| d.drive) {
        qemu::create_disk(&run_dir.path().join(format!("{id}.img")), NVME_IMAGE_BYTES)?;
    }

    let machine = Machine {
        kernel: &assets.kernel,
        initrd: &initrd,
        drive_dir: run_dir.path(),
        devices: &DEVICES,
        cpus: opts.cpus,
        iommu: !opts.noiommu,
        iommu_address_bits: opts.kernel.iommu_address_bits(),
    };
    let mut console = Console::new(opts.output.as_deref())?;
    let boot = machine.boot(&mut console, opts.timeout)?;
    eprintln!(
        "guest: ran in {:.1} s ({}{})",
        boot.elapsed.as_secs_f64(),
        assets.kernel.display(),
        if opts.noiommu { ", no IOMMU" } else { "" }
    );

    if let Some(reason) = &console.setup_failed {
        bail!(
            "guest setup failed before the test ran: {reason}\nlast lines of console:\n{}",
            console.tail()
        );
    }
    if let Some(code) = console.exit_code {
        return Ok(code);
    }
    let what = match (&console.panic, boot.status) {
        (Some(panic), _) => format!("the guest kernel panicked ({panic})"),
        (None, None) => format!(
            "the guest timed out after {:.0} s and QEMU was killed",
            opts.timeout.as_secs_f64()
        ),
        (None, Some(status)) => format!(
            "QEMU exited ({status}) early: did the guest boot? (a crashed /init panics \
             the kernel, which ends QEMU)"
        ),
    };
    bail!(
        "guest never printed the exit marker: {what}; last lines of console:\n{}",
        console.tail()
    )
}

/// Writes the initramfs: busybox, `/init`, the modules and the test binary.
fn write_initramfs(
    path: &Path,
    assets: &assets::Assets,
    test: &[u8],
    args: &[OsString],
    noiommu: bool,
) -> Result<()> {
    let busybox = std::fs::read(&assets.busybox)
        .with_context(|| format!("reading {}", assets.busybox.display()))?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut cpio = CpioWriter::new(BufWriter::new(file));
    for dir in [
        "bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp",
    ] {
        cpio.dir(dir)?;
    }
    // The kernel opens /dev/console for init before anything is mounted.
    cpio.char_dev("dev/console", 0o600, 5, 1)?;
    cpio.file("bin/busybox", 0o755, &busybox)?;
    cpio.symlink("bin/sh", "busybox")?;

    let mut modules = Vec::new();
    for (name, source) in &assets.modules {
        let path = match source {
            Some(source) => {
                let inside = format!("lib/modules/{name}.ko");
                let data = std::fs::read(source)
                    .with_context(|| format!("reading {}", source.display()))?;
                cpio.file(&inside, 0o644, &data)?;
                Some(format!("/{inside}"))
            }
            None => None,
        };
        modules.push(Module {
            name: name.clone(),
            path,
        });
    }
    cpio.file(GUEST_TEST_PATH, 0o755, test)?;
    cpio.file(
        "init",
        0o755,
        &init_script::render(&modules, &DEVICES, args, noiommu),
    )?;
    cpio.finish()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
