//! `vfio`: a command-line tool for people, like `lspci` and `setpci` but
//! through VFIO. It shows what vfio-pci gives a device (regions, VFIO
//! capabilities, IRQs, config space as vfio-pci virtualizes it), reads and
//! writes registers, and binds and watches interrupts, on this host's
//! kernel or, with `--mock`, on vfio-mock's simulated QEMU guest, so it can
//! be tried with no hardware:
//!
//! ```text
//! cargo run -p vfio-tool -- --mock list
//! cargo run -p vfio-tool -- --mock info 00:02.0
//! cargo run -p vfio-tool -- --mock config 00:03.0
//! cargo run -p vfio-tool -- --mock read 00:02.0 bar0 0
//! cargo run -p vfio-tool -- --mock irq 00:02.0 msi --trigger
//! ```
//!
//! Every command is generic over [`vfio_core::VfioBackend`]: the mock and
//! the kernel run the same code. `--json` prints one JSON document with
//! stable field names on stdout. [`run`] is the whole tool, with its
//! output and errors going where the caller says:
//!
//! ```
//! let mut out = Vec::new();
//! let mut err = Vec::new();
//! let code = vfio_tool::run(["vfio", "--mock", "read", "00:02.0", "bar0", "0"], &mut out, &mut err);
//! assert_eq!(code, 0);
//! // edu's identification register: version 1.0, 0xed.
//! assert_eq!(String::from_utf8(out)?, "bar0[0x0] = 0x010000ed (4 bytes, mmap)\n");
//! # Ok::<(), std::string::FromUtf8Error>(())
//! ```
//!
//! # Commands
//!
//! - `list`: devices bound to vfio-pci, their IOMMU groups, whether each
//!   group is viable (and, when not, which device is on which other
//!   driver), the group node and the device cdev (Linux 6.6 and later).
//! - `info DEV`: device, region and IRQ info with every VFIO region
//!   capability decoded, and the PCI and PCI Express capabilities decoded
//!   as `lspci -vvv` does.
//! - `config DEV`: a hex dump in `lspci -xxx` format (`lspci -F` reads it
//!   back) and the decoded header.
//! - `read DEV REGION OFFSET [WIDTH]`, `write DEV REGION OFFSET WIDTH
//!   VALUE`: one register of `bar0`..`bar5`, `rom`, `config` or a region
//!   index, through the region's mapping when it is mmappable there, else
//!   through the device file. Every check of the input (width 1, 2, 4 or 8;
//!   a value that fits; an offset inside the region and aligned to the
//!   width; a region that is present and readable or writable) runs before
//!   anything is written.
//! - `irq DEV INDEX [--count N] [--for SECONDS] [--trigger]`: binds N
//!   vectors to eventfds and prints each interrupt as it arrives with its
//!   vector and the Linux irq from `/proc/interrupts`. `--trigger` fires
//!   each vector once from userspace (`VFIO_IRQ_SET_ACTION_TRIGGER`), which
//!   vfio-pci delivers like a device's interrupt: on the mock, that is how
//!   to see one arrive (`vfio --mock irq 00:02.0 msi --trigger`).
//! - `capture DEV -o FILE [--bar-contents]`: the device's profile
//!   (`vfio_profile::capture`: device, region and IRQ info, config space
//!   with its writable bits, BAR layout, and BAR contents only when asked,
//!   since reading registers can have side effects), in vfio-profile's
//!   versioned JSON format.
//!
//! `--mock=PROFILE` runs any command on a mock host holding the one device
//! a profile describes, bound to vfio-pci at the address and in the IOMMU
//! group it was captured at, imitating the kernel it was captured on (or
//! `--kernel`). `capture` of that device writes the same file back.
//! A profile that cannot be read, of another version, or that vfio-profile
//! or the mock refuses (a broken capability chain, ...) exits with 2.
//!
//! # Exit codes
//!
//! - 0: the command did what it was asked.
//! - 1: VFIO, the kernel or the OS refused; stderr names the operation, the
//!   `ErrorKind` and the errno, e.g. `open group failed for /dev/vfio/1
//!   (permission denied) [kind: PermissionDenied, errno: EACCES]`. A device
//!   not bound to vfio-pci and a group that is not viable are refused here
//!   too, before any VFIO call that would fail, with what is wrong.
//! - 2: a usage error or bad input found before the device was touched,
//!   or a profile refused.
//!
//! Errors go to stderr, one line; stdout holds only the output.
//!
//! # What is checked where
//!
//! The tests run every command on the mock (`tests/commands.rs`), and
//! `list` and the decoders on this host's sysfs and pciutils
//! (`tests/lspci_agreement.rs`). On a kernel the commands run the same
//! generic code through vfio-linux; no test runs the tool itself against a
//! kernel's vfio-pci yet (the conformance suite does, for the calls the
//! tool is built from).
//!
//! # Where this decoding and `lspci -vvv` differ
//!
//! Each capability's line and each detail line `info` prints is one that
//! `lspci -vvv` (pciutils 3.9) prints for the same config bytes, word for
//! word, and a capability decoded in full (`details_complete` in the JSON)
//! has all of lspci's detail lines, in lspci's order; the test
//! `lspci_agreement` checks it on every PCI device of the machine it runs
//! on, on the mock's devices, on the committed device profiles, on the
//! synthetic dumps of `tests/config-dumps/`, and on any dumps named by
//! `VFIO_TOOL_CONFIG_DUMPS`. By design:
//!
//! - Decoded in full: Power Management (with the bridge extensions), MSI,
//!   MSI-X, vendor-specific capabilities, Slot ID, Debug port, the
//!   subsystem IDs, AGP, PCI-X (device and bridge), PCI Advanced Features,
//!   SATA HBA, Enhanced Allocation (with a bridge's fixed bus numbers and
//!   every entry), HyperTransport's MSI Mapping and other types but the
//!   two interface blocks, the named-only capabilities lspci prints
//!   nothing under, and PCI Express: DevCap, DevCtl and DevSta with the
//!   flags of each port type; LnkCap, LnkCtl and LnkSta where there is a
//!   link (not for root-complex integrated endpoints and event
//!   collectors); SltCap, SltCtl and SltSta for root ports, downstream
//!   ports and PCI-to-PCIe bridges with a slot; RootCap, RootCtl and
//!   RootSta for root ports and event collectors; and from version 2
//!   DevCap2, DevCtl2, LnkCap2, LnkCtl2 and LnkSta2. Of the extended
//!   capabilities: Advanced Error Reporting (with RootCmd, RootSta and
//!   ErrorSrc for root ports and event collectors), Device Serial Number,
//!   Latency Tolerance Reporting, SR-IOV (with its VF BARs), ACS, ARI,
//!   ATS, PASID, Page Request Interface, Secondary PCI Express, Downstream
//!   Port Containment, L1 PM Substates, Precision Time Measurement,
//!   Resizable BAR (physical and VF), Virtual Channel (the port and each
//!   VC resource), Transaction Processing Hints, Multicast, Root Complex
//!   Link, Root Complex Event Collector endpoint association, Data Object
//!   Exchange, and the vendor-specific and designated vendor-specific
//!   headers (their `<unreadable>` too). The extended capabilities lspci
//!   names with `<?>` (Power Budgeting, Data Link Feature, the 16 GT/s
//!   physical layer, lane margining, ...), `Null` and the ids it does not
//!   know have no detail lines there or here, and are complete too.
//! - Fewer detail lines for the rest: VPD is named and its contents (which
//!   lspci reads through the kernel's `vpd` file) not shown; the link
//!   registers lspci prints under HyperTransport's Slave or Primary and
//!   Host or Secondary Interface are not decoded; and the structures of
//!   CXL's designated vendor-specific capabilities are not decoded.
//! - Where the function is matters, as in lspci: an endpoint's LnkCap2
//!   and LnkCtl2 are printed only at device 0, function 0. `info` decodes
//!   for the device's address ([`pci::decode_at`]); [`pci::decode`]
//!   decodes as for 00.0.
//! - DevCap2's AtomicOps completer bits are printed for a function with a
//!   memory BAR, which lspci judges from the BAR registers when it reads a
//!   dump, and from sysfs's BAR sizes too on a live system: a memory BAR
//!   whose register reads 0 counts for lspci on the host, not here.
//! - Where lspci 3.9 has a slip, it is followed: DOE's `Error` flag is
//!   set by the busy or interrupt status bits (lspci tests the status
//!   against 0x3, not bit 2).
//! - LTR's reserved latency scales 6 and 7, and Multicast's window and
//!   overlay sizes of 2^31 bytes and more, are worked out as lspci on
//!   x86-64 prints them (its 32-bit shifts wrap). Where lspci leaves a
//!   line unended (Multicast's McastCap of a function other than a port)
//!   the next line's text is on the same line here too, and an RCEC
//!   bitmap's run of devices that reaches device 31 is shown by its first
//!   device, as lspci shows it.
//! - A register block that runs past the bytes read is left out whole,
//!   as lspci leaves it out. An Enhanced Allocation entry whose size is
//!   smaller than the fields its flags call for is read on past its end
//!   here; lspci 3.9 aborts on it (`Internal bug: Accessing non-read
//!   configuration byte`), so no dump holds one.
//! - The link, slot and root blocks are held to lspci on the synthetic
//!   dumps only: the devices the tests reach (this machine's and the QEMU
//!   guest's, e1000e and xhci among them) are integrated endpoints, with no
//!   link. Integrated endpoints' device registers, DevCap2 and DevCtl2 and
//!   AER are also held to lspci on those real devices.
//! - In the text output, a line continuing a register is indented four
//!   spaces further, where lspci indents it with a tab.
//! - No ID database: the Subsystem capability names its IDs as lspci does
//!   when it has no names (`Subsystem: Device 8086:7000`), where lspci
//!   with pci.ids or udev's hwdb says `Intel Corporation Device 7000`. The
//!   agreement test runs lspci with neither.
//! - A CardBus header (type 2) keeps its capability pointer at 0x14,
//!   where lspci looks; vfio-core's walker reads 0x34 for every header
//!   type, and no dump compares the two.
//! - Vendor-specific capabilities are decoded for virtio only (as lspci
//!   does for Red Hat's 1af4:1000..107f); others are `Len=.. <?>`, as
//!   lspci has them.
//! - Config space comes from VFIO's config region, which vfio-pci
//!   virtualizes: the capabilities vfio-pci hides or changes are seen as
//!   vfio-pci shows them, and lspci of the same device on the host (from
//!   sysfs) can list more. The agreement test compares the two decoders on
//!   the same bytes.
//! - A malformed list (a loop, a pointer below 0x40, a capability past
//!   the bytes read) is reported as an error naming where it broke
//!   (vfio-core's walker), where lspci prints what it walked and
//!   `<chain looped>` or `<chain broken>`. An extended header of 0 or all
//!   ones ends the list wherever it is, as in lspci; when the walker then
//!   finds a loop past it (all ones points at 0xffc), that is reported.
//! - `Region` lines and the other header lines lspci prints are not
//!   capability lines; `config` prints the Command and Status registers
//!   in lspci's `Control:` and `Status:` words, and `info` gives region
//!   sizes from VFIO's region info rather than from BAR sizing.
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod dump;
pub mod error;
pub mod open;
pub mod pci;
pub mod sysfs;

use clap::Parser;
use cli::{Cli, Command, Kernel, ModeArg};
use commands::Report;
use error::{EXIT_OK, EXIT_USAGE, ToolError, usage};
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::Duration;
use vfio_core::VfioBackend;

/// Runs the tool with `args` (the first is the program name), writing the
/// output to `out` and errors to `err`; returns the exit code.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                err.write_all(text.as_bytes())
            } else {
                out.write_all(text.as_bytes())
            };
            return code;
        }
    };
    match run_cli(&cli, out) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            let _ = writeln!(err, "vfio: {e}");
            e.exit_code()
        }
    }
}

/// What a command knows of the host beyond its backend.
#[derive(Debug, Clone, Default)]
pub struct HostContext {
    /// The kernel release (`uname -r`) a captured profile records: this
    /// host's, or on the mock the series it imitates (`6.1`, `6.12`).
    pub kernel_release: String,
    /// The profile the mock host replays, with `--mock=PROFILE`: a capture
    /// of its device keeps the profile's `source`, so it gives the same
    /// file back.
    pub replayed: Option<vfio_profile::DeviceProfile>,
}

fn mock_kernel(kernel: Kernel) -> vfio_mock::KernelVersion {
    match kernel {
        Kernel::V6_1 => vfio_mock::KernelVersion::V6_1,
        Kernel::V6_12 => vfio_mock::KernelVersion::V6_12,
    }
}

/// Reads and checks a profile file for `--mock=PROFILE`.
pub fn load_profile(path: &Path) -> Result<vfio_profile::DeviceProfile, ToolError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ToolError::BadProfile(format!("cannot read profile {}: {e}", path.display()))
    })?;
    vfio_profile::DeviceProfile::from_json(&text).map_err(|e| {
        ToolError::BadProfile(format!(
            "profile {} is refused: {}",
            path.display(),
            error::chain(&e)
        ))
    })
}

/// A mock host holding the one device `profile` describes, bound to
/// vfio-pci at the address and in the IOMMU group it was captured at
/// (group 1 when it names none), on `kernel` or else the kernel it was
/// captured on (6.1 when the mock imitates no such kernel): vfio-mock's
/// `MockHost::replaying`.
pub fn profile_host(
    profile: &vfio_profile::DeviceProfile,
    kernel: Option<Kernel>,
) -> Result<vfio_mock::MockHost, ToolError> {
    let refused = |e: vfio_mock::BuildError| {
        ToolError::BadProfile(format!(
            "the mock refuses the profile: {}",
            error::chain(&e)
        ))
    };
    let mut builder = vfio_mock::MockHost::replaying(profile)
        .map_err(refused)?
        .cpus(2);
    if let Some(kernel) = kernel {
        builder = builder.kernel(mock_kernel(kernel));
    }
    builder.build().map_err(refused)
}

/// Runs a parsed command line on the backend it names.
pub fn run_cli(cli: &Cli, out: &mut dyn Write) -> Result<(), ToolError> {
    match &cli.mock {
        Some(Some(path)) => {
            let profile = load_profile(path)?;
            let host = profile_host(&profile, cli.kernel)?;
            let context = HostContext {
                kernel_release: host.kernel().series().to_owned(),
                replayed: Some(profile),
            };
            run_on(&host.backend(), cli, &context, out)
        }
        Some(None) => {
            // The guest as it boots for the mode asked: on 6.12 for iommufd,
            // without an IOMMU for noiommu.
            let (builder, default_kernel) = match cli.mode {
                Some(ModeArg::Iommufd) => (
                    vfio_mock::profiles::qemu_guest_in(vfio_core::open::Mode::Iommufd),
                    Kernel::V6_12,
                ),
                Some(ModeArg::Noiommu) => (
                    vfio_mock::profiles::qemu_guest_in(vfio_core::open::Mode::NoIommu),
                    Kernel::V6_12,
                ),
                _ => (vfio_mock::profiles::qemu_guest(), Kernel::V6_1),
            };
            let kernel = mock_kernel(cli.kernel.unwrap_or(default_kernel));
            let host = builder
                .kernel(kernel)
                .build()
                .map_err(|e| usage(format!("the mock host could not be built: {e}")))?;
            let context = HostContext {
                kernel_release: kernel.series().to_owned(),
                replayed: None,
            };
            run_on(&host.backend(), cli, &context, out)
        }
        None => {
            let backend = vfio_linux::LinuxBackend::new();
            let release = backend.host_paths().procfs().join("sys/kernel/osrelease");
            let context = HostContext {
                kernel_release: std::fs::read_to_string(&release)
                    .map(|r| r.trim().to_owned())
                    .unwrap_or_default(),
                replayed: None,
            };
            run_on(&backend, cli, &context, out)
        }
    }
}

fn emit(report: &impl Report, json: bool, out: &mut dyn Write) -> Result<(), ToolError> {
    if json {
        serde_json::to_writer_pretty(&mut *out, report).map_err(|e| ToolError::Output(e.into()))?;
        writeln!(out)?;
    } else {
        report.human(out)?;
    }
    Ok(())
}

/// Runs `cli`'s command on `backend`.
pub fn run_on<B: VfioBackend>(
    backend: &B,
    cli: &Cli,
    context: &HostContext,
    out: &mut dyn Write,
) -> Result<(), ToolError> {
    use commands::{access, capture, config, info, irq, list};
    let mode = cli.mode;
    match &cli.command {
        Command::List => emit(&list::list(backend), cli.json, out),
        Command::Info { device } => emit(&info::info(backend, device, mode)?, cli.json, out),
        Command::Config { device } => emit(&config::config(backend, device, mode)?, cli.json, out),
        Command::Read {
            device,
            region,
            offset,
            width,
        } => emit(
            &access::access(
                backend,
                device,
                mode,
                region,
                offset,
                width,
                access::Op::Read,
            )?,
            cli.json,
            out,
        ),
        Command::Write {
            device,
            region,
            offset,
            width,
            value,
        } => {
            access::parse_region(region)?;
            access::parse_number("offset", offset)?;
            let value = access::parse_value(value, access::parse_width(width)?)?;
            emit(
                &access::access(
                    backend,
                    device,
                    mode,
                    region,
                    offset,
                    width,
                    access::Op::Write(value),
                )?,
                cli.json,
                out,
            )
        }
        Command::Capture {
            device,
            output,
            bar_contents,
        } => emit(
            &capture::capture(backend, device, mode, context, output, *bar_contents)?,
            cli.json,
            out,
        ),
        Command::Irq {
            device,
            index,
            count,
            for_seconds,
            trigger,
        } => {
            let duration = match for_seconds {
                Some(s) if s.is_finite() && *s >= 0.0 && *s <= 86_400.0 => {
                    Some(Duration::from_secs_f64(*s))
                }
                Some(s) => return Err(usage(format!("--for {s}: expected 0 to 86400 seconds"))),
                None => None,
            };
            let watch = irq::Watch {
                count: *count,
                duration,
                trigger: *trigger,
            };
            let live: Option<&mut dyn Write> = if cli.json { None } else { Some(&mut *out) };
            let report = irq::irq(backend, device, mode, index, watch, live)?;
            emit(&report, cli.json, out)
        }
    }
}
