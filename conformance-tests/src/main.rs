//! The conformance runner: the suite on the simulated backend and on the real
//! kernel, side by side.
//!
//! ```text
//! cargo run -p conformance-tests [-- OPTIONS]
//!
//!   --device ADDR       run the device-agnostic cases on ADDR, a device bound
//!                       to vfio-pci on this host (needs root), and nothing else
//!   --profile FILE      run the device-agnostic cases on the mock replaying
//!                       the device profile FILE (repeatable), at the address
//!                       it was captured at, on the kernel it was captured on,
//!                       in every mode of that kernel (or each --mode), and
//!                       nothing else
//!   --capture-profiles DIR
//!                       boot the guest on each --kernel (default both), capture
//!                       a profile of each device the mock replays, write each
//!                       to DIR/linux-SERIES/NAME.json (and every function's
//!                       config space from the guest's sysfs, as an `lspci
//!                       -xxx` dump, to DIR/linux-SERIES/sysfs-config.txt),
//!                       and run no case
//!   --mock-only         run on the simulated backend only
//!   --host              run the kernel side on this host (root, QEMU's edu and
//!                       NVMe devices bound to vfio-pci at --edu/--nvme) instead
//!                       of in the QEMU guest
//!   --edu ADDR          the edu device's PCI address (default 0000:00:02.0)
//!   --nvme ADDR         the NVMe device's PCI address (default 0000:00:03.0)
//!   --kernel SERIES     the kernel to judge by, 6.1 or 6.12 (repeatable;
//!                       default both: the mock imitating each, and the guest
//!                       booting each; with --host, the one this host runs)
//!   --mode MODE         the way devices are opened, type1, iommufd or noiommu
//!                       (repeatable; default every mode the kernel has: type1
//!                       on 6.1, all three on 6.12). Type1 and iommufd run in
//!                       one boot of the IOMMU guest, no-IOMMU in a boot of its
//!                       own without an IOMMU
//!   --require-kernel    fail when the kernel side cannot run (default when CI=true)
//!   --markdown FILE     write the side-by-side table as Markdown
//!   --json FILE         write the table as JSON: {"runs": {id: {backend,
//!                       kernel, mode}}, "cases": [{name, results: {id:
//!                       {status, detail}}, only}]}
//! ```
//!
//! With no options it runs the suite on the mock imitating Linux 6.1 (type1)
//! and 6.12 (type1, iommufd and no-IOMMU) and, where QEMU is installed, in
//! the guest on each of the two kernels (three boots: 6.1, 6.12 with an
//! IOMMU, 6.12 without), prints the table, and exits non-zero if any case fails on
//! any run, or twins (the mock and Linux on the same kernel and mode) differ
//! on any case, n/a against pass included.

use anyhow::{Context, Result, bail};
use conformance_tests::report::{self, Backend, Report, Run, Table};
use conformance_tests::{Env, Kernel, Targets, guest, kernel, mock};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use vfio_core::PciAddress;
use vfio_core::open::Mode;
use vfio_linux::LinuxBackend;
use vfio_mock::KernelVersion;

#[derive(Debug, Default)]
struct Options {
    device: Option<PciAddress>,
    profiles: Vec<PathBuf>,
    capture_profiles: Option<PathBuf>,
    mock_only: bool,
    host: bool,
    require_kernel: bool,
    targets: Targets,
    kernels: Vec<KernelVersion>,
    modes: Vec<Mode>,
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
            "--profile" => o.profiles.push(value("--profile")?.into()),
            "--capture-profiles" => o.capture_profiles = Some(value("--capture-profiles")?.into()),
            "--mock-only" => o.mock_only = true,
            "--host" => o.host = true,
            "--require-kernel" => o.require_kernel = true,
            "--edu" => o.targets.edu = address(&value("--edu")?)?,
            "--nvme" => o.targets.nvme = address(&value("--nvme")?)?,
            "--kernel" => {
                let series = value("--kernel")?;
                let kernel = mock::KERNELS
                    .into_iter()
                    .find(|k| k.series() == series)
                    .with_context(|| format!("--kernel takes 6.1 or 6.12, not `{series}`"))?;
                if !o.kernels.contains(&kernel) {
                    o.kernels.push(kernel);
                }
            }
            "--mode" => {
                let mode: Mode = value("--mode")?
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--mode: {e}"))?;
                if !o.modes.contains(&mode) {
                    o.modes.push(mode);
                }
            }
            "--markdown" => o.markdown = Some(value("--markdown")?.into()),
            "--json" => o.json = Some(value("--json")?.into()),
            "-h" | "--help" => {
                println!(
                    "usage: cargo run -p conformance-tests [-- --mock-only | --host | --device ADDR | --profile FILE... | --capture-profiles DIR] [--edu ADDR] [--nvme ADDR] [--kernel 6.1|6.12]... [--mode type1|iommufd|noiommu]... [--require-kernel] [--markdown FILE] [--json FILE]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown option `{other}` (try --help)"),
        }
    }
    if o.mock_only && o.require_kernel && std::env::var("CI").is_err() {
        bail!("--mock-only and --require-kernel contradict each other");
    }
    if o.kernels.is_empty() {
        o.kernels = mock::KERNELS.to_vec();
    }
    o.kernels.sort();
    o.modes
        .sort_by_key(|m| Mode::ALL.iter().position(|a| a == m));
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

/// The modes to run on `kernel`: those asked for that it has, or all it has.
fn modes_on(o: &Options, kernel: KernelVersion) -> Vec<Mode> {
    mock::modes(kernel)
        .iter()
        .copied()
        .filter(|m| o.modes.is_empty() || o.modes.contains(m))
        .collect()
}

/// The suite on the real kernel `kernel` in each of `modes`: in the guest
/// booting it (type1 and iommufd in one boot with an IOMMU, no-IOMMU in one
/// without), or with `--host` on this host (whatever it runs; nothing for
/// the other kernels). The reports come back in the order of `modes`.
fn kernel_reports(
    o: &Options,
    workspace: &Path,
    kernel: KernelVersion,
    modes: &[Mode],
) -> Result<Vec<(Mode, Report)>> {
    if o.mock_only || modes.is_empty() {
        return Ok(Vec::new());
    }
    if o.host {
        let release = kernel::release()?;
        if report::kernel_series(&release) != kernel.series() {
            println!(
                "== this host runs {release}, not Linux {}: no kernel run for it",
                kernel.series()
            );
            return Ok(Vec::new());
        }
        check_host(&[o.targets.edu, o.targets.nvme])?;
        let cases = kernel::suite();
        let targets = o.targets;
        let known = Kernel::from_release(&release);
        let mut out = Vec::new();
        for &mode in modes {
            let factory = move || {
                Ok(Env::new(LinuxBackend::new())
                    .with_targets(targets)
                    .with_kernel(known)
                    .with_mode(mode))
            };
            println!("== the suite on this host's vfio-pci in {mode} mode");
            let mut report = report::run_suite("vfio-linux (host)", &cases, &factory);
            report.kernel = Some(release.clone());
            report.mode = Some(mode.name().to_owned());
            out.push((mode, report));
        }
        return Ok(out);
    }
    if let Some(why) = guest::unavailable() {
        if o.require_kernel {
            bail!("the kernel side cannot run: {why}");
        }
        println!("== kernel side skipped: {why}");
        return Ok(Vec::new());
    }
    let series = kernel.series();
    let mut out = Vec::new();
    let with_iommu: Vec<Mode> = modes
        .iter()
        .copied()
        .filter(|m| *m != Mode::NoIommu)
        .collect();
    let boots = [(false, with_iommu), (true, vec![Mode::NoIommu])];
    for (noiommu, boot_modes) in boots {
        let boot_modes: Vec<Mode> = boot_modes
            .into_iter()
            .filter(|m| modes.contains(m))
            .collect();
        if boot_modes.is_empty() {
            continue;
        }
        let names: Vec<&str> = boot_modes.iter().map(|m| m.name()).collect();
        println!(
            "== the suite on Linux {series}'s vfio-pci in the QEMU guest {}, in {} mode",
            if noiommu {
                "without an IOMMU"
            } else {
                "with an IOMMU"
            },
            names.join(" and ")
        );
        let started = std::time::Instant::now();
        let reports = guest::run(workspace, series, noiommu, &boot_modes)?;
        println!(
            "== Linux {series} guest ({}): {:.1} s",
            names.join(", "),
            started.elapsed().as_secs_f64()
        );
        for mode in boot_modes {
            let report = reports
                .iter()
                .find(|r| r.mode.as_deref().unwrap_or("type1") == mode.name())
                .with_context(|| format!("the guest sent no report for {mode} mode"))?;
            let release = report
                .kernel
                .as_deref()
                .context("the kernel's report does not say which kernel ran it")?;
            if report::kernel_series(release) != series {
                bail!("the guest was to boot Linux {series} but ran {release}");
            }
            out.push((mode, report.clone()));
        }
    }
    Ok(out)
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
    let known = Kernel::from_release(&kernel::release()?);
    let report = report::run_suite("vfio-linux (host)", &cases, &|| {
        Ok(Env::new(LinuxBackend::new()).with_kernel(known))
    });
    let counts = report.counts();
    println!("{counts}");
    Ok(counts.failed == 0)
}

/// `--profile FILE`: the device-agnostic cases on the mock replaying each
/// profile, in the modes its kernel has (or those asked for).
fn run_on_profiles(o: &Options) -> Result<bool> {
    let mut ok = true;
    for path in &o.profiles {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let profile = vfio_profile::DeviceProfile::from_json(&text)
            .with_context(|| format!("reading the profile {}", path.display()))?;
        let address = address(&profile.source.pci_address)
            .with_context(|| format!("the source address of {}", path.display()))?;
        let version = vfio_mock::profile_kernel(&profile).with_context(|| {
            format!(
                "{} was captured on {}, which the mock does not imitate",
                path.display(),
                profile.source.kernel_release
            )
        })?;
        let profile = std::sync::Arc::new(profile);
        for mode in modes_on(o, version) {
            println!(
                "== device-agnostic cases on {} (vfio-mock replaying it, Linux {}, {mode} mode)",
                path.display(),
                version.series()
            );
            let cases: Vec<_> = conformance_tests::generic::all::<vfio_mock::MockBackend>()
                .into_iter()
                .map(|g| {
                    let run = g.run;
                    conformance_tests::Case::new(g.name, move |env: &Env<_>| run(env, &address))
                })
                .collect();
            let profile = profile.clone();
            let report = report::run_suite("vfio-mock (profile)", &cases, &move || {
                mock::env_for_profile(&profile, address, version, mode)
            });
            let counts = report.counts();
            println!("{counts}");
            ok &= counts.failed == 0;
        }
    }
    Ok(ok)
}

/// `--capture-profiles DIR`: the guest's profiled devices captured on each
/// kernel, written to `DIR/linux-<series>/<name>.json`.
fn capture_profiles(o: &Options, workspace: &Path, dir: &Path) -> Result<()> {
    if let Some(why) = guest::unavailable() {
        bail!("cannot boot the guest: {why}");
    }
    for &version in &o.kernels {
        let series = version.series();
        let out = dir.join(format!("linux-{series}"));
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let captured = guest::capture(workspace, series)?;
        for (name, profile) in captured.profiles {
            let path = out.join(format!("{name}.json"));
            std::fs::write(&path, profile.to_json())
                .with_context(|| format!("writing {}", path.display()))?;
            println!("captured {name} on Linux {series}: {}", path.display());
        }
        let path = out.join("sysfs-config.txt");
        std::fs::write(&path, captured.sysfs_config)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "the guest's config spaces from sysfs on Linux {series}: {}",
            path.display()
        );
    }
    Ok(())
}

fn run() -> Result<bool> {
    let o = parse_args()?;
    if let Some(device) = o.device {
        return run_on_device(device);
    }
    if !o.profiles.is_empty() {
        return run_on_profiles(&o);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_owned();
    if let Some(dir) = &o.capture_profiles {
        capture_profiles(&o, &workspace, dir)?;
        return Ok(true);
    }
    let mut table = Table::default();
    for &version in &o.kernels {
        let modes = modes_on(&o, version);
        let mut mocks = Vec::new();
        for &mode in &modes {
            println!(
                "== the suite on vfio-mock imitating Linux {} in {mode} mode",
                version.series()
            );
            let factory = move || mock::env_in(version, mode);
            mocks.push((
                mode,
                report::run_suite("vfio-mock", &mock::suite(), &factory),
            ));
        }
        // kernel_reports checked that the guest ran this series.
        let linux = kernel_reports(&o, &workspace, version, &modes)?;
        for (mode, mock_report) in mocks {
            table.add(
                Run::new(Backend::Mock, version.series(), mode.name()),
                &mock_report,
                &mock::only_reasons(),
            );
            if let Some((_, k)) = linux.iter().find(|(m, _)| *m == mode) {
                let run = Run::new(Backend::Linux, version.series(), mode.name());
                table.add(run, k, &kernel::only_reasons());
            }
        }
    }
    let markdown = table.markdown();
    println!("\n{markdown}");
    if let Some(path) = &o.markdown {
        let runs: Vec<String> = table.runs.iter().map(|r| format!("`{}`", r.id())).collect();
        std::fs::write(
            path,
            format!(
                "# Conformance: vfio-mock against Linux's vfio-pci\n\n\
                 Generated by `cargo run -p conformance-tests -- --markdown {}`. \
                 Runs: {}.\n\n{markdown}",
                path.display(),
                runs.join(", ")
            ),
        )
        .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &o.json {
        std::fs::write(path, serde_json::to_string_pretty(&table)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let kernel_ran = table.runs.iter().any(|r| r.backend == Backend::Linux);
    for run in &table.runs {
        let id = run.id();
        println!("{id}: {}", table.counts(&id));
        if kernel_ran && !table.runs.iter().any(|r| r.is_twin_of(run)) {
            println!("{id}: no twin to agree with");
        }
    }
    let problems = table.problems();
    match (table.runs.len(), problems.len()) {
        (_, 0) if !kernel_ran => {
            println!("{} cases; kernel side not run", table.rows.len())
        }
        (_, 0) => println!("{} cases; all twins agree", table.rows.len()),
        (_, n) => println!(
            "{} cases; {n} problems (listed under the table)",
            table.rows.len()
        ),
    }
    Ok(problems.is_empty())
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
