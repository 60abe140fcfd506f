//! The conformance runner: the suite on the simulated backend and on the real
//! kernel, side by side.
//!
//! ```text
//! cargo run -p conformance-tests [-- OPTIONS]
//!
//!   --device ADDR       run the device-agnostic cases on ADDR, a device bound
//!                       to vfio-pci on this host (needs root), and nothing else
//!   --mock-only         run on the simulated backend only
//!   --host              run the kernel side on this host (root, QEMU's edu and
//!                       NVMe devices bound to vfio-pci at --edu/--nvme) instead
//!                       of in the QEMU guest
//!   --edu ADDR          the edu device's PCI address (default 0000:00:02.0)
//!   --nvme ADDR         the NVMe device's PCI address (default 0000:00:03.0)
//!   --require-kernel    fail when the kernel side cannot run (default when CI=true)
//!   --markdown FILE     write the side-by-side table as Markdown
//!   --json FILE         write the rows as JSON
//! ```
//!
//! With no options it runs the suite on the mock and, where QEMU is installed,
//! in the guest, prints the table, and exits non-zero if any case fails on
//! either backend or the two disagree.

use anyhow::{Context, Result, bail};
use conformance_tests::report::{self, Outcome, Report};
use conformance_tests::{Env, Targets, cases, guest, mock};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vfio_core::PciAddress;
use vfio_linux::LinuxBackend;

#[derive(Debug, Default)]
struct Options {
    device: Option<PciAddress>,
    mock_only: bool,
    host: bool,
    require_kernel: bool,
    targets: Targets,
    markdown: Option<PathBuf>,
    json: Option<PathBuf>,
}

fn parse_args() -> Result<Options> {
    let mut o = Options {
        require_kernel: std::env::var("CI").is_ok_and(|v| v == "true"),
        ..Options::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--device" => o.device = Some(address(&value("--device")?)?),
            "--mock-only" => o.mock_only = true,
            "--host" => o.host = true,
            "--require-kernel" => o.require_kernel = true,
            "--edu" => o.targets.edu = address(&value("--edu")?)?,
            "--nvme" => o.targets.nvme = address(&value("--nvme")?)?,
            "--markdown" => o.markdown = Some(value("--markdown")?.into()),
            "--json" => o.json = Some(value("--json")?.into()),
            "-h" | "--help" => {
                println!(
                    "usage: cargo run -p conformance-tests [-- --mock-only | --host] [--edu ADDR] [--nvme ADDR] [--require-kernel] [--markdown FILE] [--json FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown option `{other}` (try --help)"),
        }
    }
    if o.mock_only && o.require_kernel && std::env::var("CI").is_err() {
        bail!("--mock-only and --require-kernel contradict each other");
    }
    Ok(o)
}

fn address(s: &str) -> Result<PciAddress> {
    Ok(s.parse()?)
}

/// Checks that this host can run the kernel side directly on `devices`, with
/// a clear message naming what is missing.
fn check_host(devices: &[PciAddress]) -> Result<()> {
    let paths = vfio_core::HostPaths::default();
    for &dev in devices {
        if !paths.pci_device_dir(&dev).exists() {
            bail!("no PCI device {dev} on this host (see /sys/bus/pci/devices)");
        }
        let driver = std::fs::read_link(paths.pci_device_dir(&dev).join("driver")).ok();
        if driver
            .as_deref()
            .and_then(Path::file_name)
            .is_none_or(|d| d != "vfio-pci")
        {
            bail!(
                "{dev} is not bound to vfio-pci: echo vfio-pci > /sys/bus/pci/devices/{dev}/driver_override, then echo {dev} > /sys/bus/pci/drivers_probe"
            );
        }
        let group = paths.iommu_group(&dev)?;
        let node = paths.group_path(group);
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&node)
            .with_context(|| {
                format!(
                    "cannot open {} (permission on /dev/vfio, or the group is in use)",
                    node.display()
                )
            })?;
    }
    Ok(())
}

fn kernel_report(o: &Options, workspace: &Path) -> Result<Option<Report>> {
    if o.mock_only {
        return Ok(None);
    }
    if o.host {
        check_host(&[o.targets.edu, o.targets.nvme])?;
        let cases = cases::all::<LinuxBackend>();
        let targets = o.targets;
        let factory = move || Ok(Env::new(LinuxBackend::new()).with_targets(targets));
        println!("== the suite on this host's vfio-pci");
        return Ok(Some(report::run_suite(
            "vfio-linux (host)",
            &cases,
            &factory,
        )));
    }
    if let Some(why) = guest::unavailable() {
        if o.require_kernel {
            bail!("the kernel side cannot run: {why}");
        }
        println!("== kernel side skipped: {why}");
        return Ok(None);
    }
    println!("== the suite on Linux 6.1's vfio-pci in the QEMU guest");
    guest::run(workspace).map(Some)
}

/// `--device ADDR`: the device-agnostic cases on a device of this host.
fn run_on_device(device: PciAddress) -> Result<bool> {
    check_host(&[device])?;
    println!("== device-agnostic cases on {device} (this host's vfio-pci)");
    let cases: Vec<_> = conformance_tests::generic::all::<LinuxBackend>()
        .into_iter()
        .map(|g| {
            let run = g.run;
            conformance_tests::Case::new(g.name, move |env: &Env<LinuxBackend>| run(env, &device))
        })
        .collect();
    let report = report::run_suite("vfio-linux (host)", &cases, &|| {
        Ok(Env::new(LinuxBackend::new()))
    });
    let (passed, failed) = report.counts();
    println!("{passed} passed, {failed} failed");
    Ok(failed == 0)
}

fn run() -> Result<bool> {
    let o = parse_args()?;
    if let Some(device) = o.device {
        return run_on_device(device);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    println!("== the suite on vfio-mock");
    let mock_report = report::run_suite("vfio-mock", &cases::all(), &mock::env);
    let mock_only: Vec<(String, Outcome, String)> = mock::only_cases()
        .iter()
        .map(|c| {
            let r = report::run_case(&c.case, &mock::env);
            (r.name, r.outcome, c.why.to_owned())
        })
        .collect();
    let kernel = kernel_report(&o, &workspace)?;
    let rows = report::compare(&mock_report, kernel.as_ref(), &mock_only);
    let table = report::markdown(&rows);
    println!("\n{table}");
    let agreeing = rows.iter().filter(|r| r.agrees()).count();
    if let Some(path) = &o.markdown {
        std::fs::write(path, format!("# Conformance: vfio-mock against Linux 6.1's vfio-pci\n\nGenerated by `cargo run -p conformance-tests -- --markdown {}`.\n\n{table}", path.display()))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let all_ok = if kernel.is_some() {
        agreeing == rows.len()
    } else {
        mock_report.all_passed() && mock_only.iter().all(|(_, o, _)| *o == Outcome::Pass)
    };
    if kernel.is_some() {
        println!("{} cases; {agreeing} agree on both backends", rows.len());
        println!("{agreeing} passed, {} failed", rows.len() - agreeing);
    } else {
        let (passed, failed) = mock_report.counts();
        let only_failed = mock_only
            .iter()
            .filter(|(_, o, _)| *o != Outcome::Pass)
            .count();
        println!("kernel side not run; on vfio-mock:");
        println!(
            "{} passed, {} failed",
            passed + mock_only.len() - only_failed,
            failed + only_failed
        );
    }
    Ok(all_ok)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("conformance-tests: {e:#}");
            ExitCode::FAILURE
        }
    }
}
