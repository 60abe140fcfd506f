//! The command line.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use vfio_core::PciAddress;

/// The text after `--help`: exit codes and where errors go.
pub const AFTER_HELP: &str = "\
Exit codes:
  0  the command did what it was asked
  1  VFIO, the kernel or the OS refused (stderr names the ErrorKind and errno)
  2  usage error or bad input, found before the device was touched, or a
     profile (--mock=PROFILE) that cannot be read or is refused

Errors go to stderr, one line each; stdout holds only the command's output
(with --json, exactly one JSON document).";

/// See and poke what vfio-pci gives a PCI device: regions, capabilities,
/// interrupts and config space as vfio-pci virtualizes it.
#[derive(Debug, Parser)]
#[command(name = "vfio", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Run on vfio-mock's simulated QEMU guest instead of this host's
    /// kernel (edu at 00:02.0, NVMe at 00:03.0, a shared-group edu at
    /// 01:01.0 beside a watchdog on its own driver at 01:02.0, a 2048-vector
    /// NVMe at 00:05.0). `--mock=PROFILE` runs instead on a host holding
    /// the one device a profile file describes (from `vfio capture`), at
    /// the address and in the IOMMU group it was captured at, bound to vfio-pci.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        require_equals = true,
        value_name = "PROFILE"
    )]
    pub mock: Option<Option<PathBuf>>,

    /// The kernel the mock imitates: 6.1 (container and groups) or 6.12
    /// (also device cdevs and /dev/iommu). By default 6.1, or with
    /// `--mock=PROFILE` the kernel the profile was captured on.
    #[arg(long, global = true, value_enum)]
    pub kernel: Option<Kernel>,

    /// How to open a device: type1 (container and group), iommufd (the
    /// device cdev, Linux 6.6 and later) or noiommu. By default noiommu
    /// when the device's group is a no-IOMMU group, else type1. With
    /// `--mock`, also picks the guest as it boots for that mode: Linux 6.12
    /// for iommufd, and without an IOMMU (no-IOMMU groups) for noiommu.
    #[arg(long, global = true, value_enum)]
    pub mode: Option<ModeArg>,

    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The kernel version the mock imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kernel {
    /// Linux 6.1.
    #[value(name = "6.1")]
    V6_1,
    /// Linux 6.12.
    #[value(name = "6.12")]
    V6_12,
}

/// How a device is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// The legacy container with the device's group, type1 IOMMU.
    Type1,
    /// The device cdev bound to /dev/iommu.
    Iommufd,
    /// A no-IOMMU group.
    Noiommu,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Devices bound to vfio-pci: IOMMU group, viability (and what makes a
    /// group not viable), group node and cdev node.
    List,
    /// Device, region and IRQ info with every VFIO capability, and the PCI
    /// capabilities decoded as `lspci -vvv` does.
    Info {
        /// The device: DDDD:BB:DD.F or BB:DD.F.
        device: PciAddress,
    },
    /// Config space as vfio-pci gives it: a hex dump in `lspci -xxx`
    /// format and the decoded header.
    Config {
        /// The device: DDDD:BB:DD.F or BB:DD.F.
        device: PciAddress,
    },
    /// Reads WIDTH bytes of a region at OFFSET: through its mapping when
    /// the region is mmappable there, else through the device file.
    Read {
        /// The device: DDDD:BB:DD.F or BB:DD.F.
        device: PciAddress,
        /// bar0..bar5, rom, config, or a region index.
        region: String,
        /// Byte offset in the region (decimal, or hex with 0x).
        offset: String,
        /// 1, 2, 4 or 8 bytes.
        #[arg(default_value = "4")]
        width: String,
    },
    /// Writes VALUE (WIDTH bytes, little-endian) to a region at OFFSET:
    /// through its mapping when the region is mmappable there, else
    /// through the device file.
    Write {
        /// The device: DDDD:BB:DD.F or BB:DD.F.
        device: PciAddress,
        /// bar0..bar5, rom, config, or a region index.
        region: String,
        /// Byte offset in the region (decimal, or hex with 0x).
        offset: String,
        /// 1, 2, 4 or 8 bytes.
        width: String,
        /// The value (decimal, or hex with 0x); must fit in WIDTH bytes.
        value: String,
    },
    /// Captures the device's profile (device, region and IRQ info, config
    /// space with its writable bits, BAR layout) into FILE, in
    /// vfio-profile's versioned JSON format; `--mock=FILE` replays it.
    /// Capture writes config space to find the writable bits, restoring
    /// each byte; the device should not be in use meanwhile.
    Capture {
        /// The device: DDDD:BB:DD.F or BB:DD.F.
        device: PciAddress,
        /// The profile file to write.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Also record every BAR's contents, read through the device file.
        /// Reading a register can have side effects (a FIFO pops, a status
        /// clears): ask only for a device known to be safe to read.
        #[arg(long)]
        bar_contents: bool,
    },
    /// Binds COUNT vectors of an IRQ index to eventfds and prints each
    /// interrupt as it arrives, with its vector and the Linux irq from
    /// /proc/interrupts.
    Irq {
        /// The device: DDDD:BB:DD.F or BB:DD.F.
        device: PciAddress,
        /// intx, msi, msix, or an index number.
        index: String,
        /// How many vectors to bind, from vector 0.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// How long to watch, in seconds (default 10; with --trigger, until
        /// every vector has fired once).
        #[arg(long = "for", value_name = "SECONDS")]
        for_seconds: Option<f64>,
        /// Fire every bound vector once from userspace (VFIO_IRQ_SET_ACTION_TRIGGER),
        /// which vfio-pci signals like a device interrupt: a way to see
        /// delivery work, on the mock or on a device that is idle.
        #[arg(long)]
        trigger: bool,
    },
}
