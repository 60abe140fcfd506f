//! Runs the conformance suite on the real kernel's vfio-pci.
//!
//! Built static and run inside the QEMU guest by the conformance runner (and
//! `cargo xtask ci`); also runs on any host whose `edu` and NVMe devices are at
//! 00:02.0 and 00:03.0 and bound to vfio-pci. Runs the suite once in each
//! mode given as `--mode MODE` (type1, iommufd or noiommu; default type1),
//! in that order, the case that removes a device
//! ([`REMOVES_A_DEVICE`](conformance_tests::cases::REMOVES_A_DEVICE)) of each
//! mode last. It prints a line per case as it runs, then for each mode the
//! JSON report on a line prefixed `@@OUT@@ ` for the host to collect and a
//! `MODE: N passed, N n/a, N failed in S s` line. Exits 1 if any case fails, 2 on bad
//! arguments. With `--capture` it runs no case: it captures a profile of each
//! device the mock replays and prints it for the host to collect.

use conformance_tests::{
    Env, HostControl, Kernel, Mode, SysfsHostControl, Targets, cases, kernel, report,
};
use std::path::Path;
use std::sync::Arc;
use vfio_linux::LinuxBackend;

fn modes() -> Result<Vec<Mode>, String> {
    let mut modes = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--mode", Some(value)) => {
                modes.push(value.parse::<Mode>().map_err(|e| e.to_string())?)
            }
            _ => {
                return Err(format!(
                    "usage: conformance-guest [--mode type1|iommufd|noiommu]...; got `{arg}`"
                ));
            }
        }
    }
    if modes.is_empty() {
        modes.push(Mode::Type1);
    }
    Ok(modes)
}

/// `--capture`: a profile of each of the guest's profiled devices
/// ([`PROFILED`](conformance_tests::PROFILED)), captured through vfio-pci
/// in type1 mode, each printed as `@@OUT@@ {"device": NAME, "profile": ...}`;
/// then every PCI function's config space from sysfs as one `lspci -xxx`
/// dump, `@@OUT@@ {"sysfs_config": TEXT}`.
fn capture_profiles(targets: &Targets, release: &str) -> anyhow::Result<()> {
    let backend = LinuxBackend::new();
    let paths = vfio_core::HostPaths::default();
    for (name, address) in conformance_tests::PROFILED.iter().zip(&targets.profiled) {
        let opened = vfio_core::open::open_device(&backend, address, Mode::Type1)
            .map_err(|e| anyhow::anyhow!("opening {name} at {address}: {e}"))?;
        let source = vfio_profile::Source::of_device(&paths, address, release)?;
        let profile = vfio_profile::capture::<LinuxBackend>(
            &opened.device,
            &vfio_profile::CaptureOptions::new(source),
        )?;
        let line = serde_json::json!({ "device": name, "profile": profile });
        println!("@@OUT@@ {line}");
        println!("conformance-guest: captured {name} at {address}");
    }
    // Every PCI function's config space as the kernel reads it from the
    // device (sysfs, as root: all of it), for the lspci agreement test.
    let mut dump = String::new();
    let mut devices: Vec<_> = std::fs::read_dir(paths.sysfs().join("bus/pci/devices"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    devices.sort();
    for dir in devices {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let id = |file: &str| {
            std::fs::read_to_string(dir.join(file))
                .map(|s| s.trim().trim_start_matches("0x").to_owned())
                .unwrap_or_default()
        };
        let config = std::fs::read(dir.join("config"))?;
        let short = name.strip_prefix("0000:").unwrap_or(&name);
        let description = format!(
            "[{}:{}] in the guest on Linux {release}",
            id("vendor"),
            id("device")
        );
        dump.push_str(&vfio_tool::dump::device_dump(short, &description, &config));
        dump.push('\n');
    }
    println!("@@OUT@@ {}", serde_json::json!({ "sysfs_config": dump }));
    Ok(())
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--capture") {
        let done = Targets::from_env().and_then(|targets| {
            let release = kernel::release()?;
            capture_profiles(&targets, &release)
        });
        if let Err(e) = done {
            eprintln!("conformance-guest: capture: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    let setup = modes().map_err(anyhow::Error::msg).and_then(|modes| {
        let targets = Targets::from_env()?;
        Ok((modes, targets, kernel::release()?))
    });
    let (modes, targets, release) = match setup {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conformance-guest: {e:#}");
            std::process::exit(2);
        }
    };
    // Each mode's cases but the one that removes a device, then that one of
    // each mode: it moves edu's BAR, which the other modes' config-space
    // cases would see.
    let (held, cases): (Vec<_>, Vec<_>) = kernel::suite()
        .into_iter()
        .partition(|c| c.name == cases::REMOVES_A_DEVICE);
    let order: Vec<String> = kernel::suite().into_iter().map(|c| c.name).collect();
    // The guest is the suite's own machine: cases may remove and restore devices.
    let host: Arc<dyn HostControl> = Arc::new(SysfsHostControl::new(
        Path::new("/sys"),
        Path::new("/dev/kmsg"),
        Path::new("/proc"),
    ));
    let kernel = Kernel::from_release(&release);
    let factory = |mode: Mode| {
        let host = host.clone();
        move || {
            Ok(Env::new(LinuxBackend::new())
                .with_targets(targets)
                .with_host(host.clone())
                .with_kernel(kernel)
                .with_mode(mode))
        }
    };
    let mut reports = Vec::new();
    for &mode in &modes {
        println!("conformance-guest: the suite in {mode} mode");
        let started = std::time::Instant::now();
        let report = report::run_suite("vfio-linux", &cases, &factory(mode));
        reports.push((mode, report, started.elapsed()));
    }
    for (mode, report, elapsed) in &mut reports {
        println!(
            "conformance-guest: {} in {mode} mode",
            cases::REMOVES_A_DEVICE
        );
        let started = std::time::Instant::now();
        let last = report::run_suite("vfio-linux", &held, &factory(*mode));
        report.results.extend(last.results);
        report
            .results
            .sort_by_key(|r| order.iter().position(|n| *n == r.name));
        *elapsed += started.elapsed();
    }
    let mut failed = false;
    for (mode, mut report, elapsed) in reports {
        report.kernel = Some(release.clone());
        report.mode = Some(mode.name().to_owned());
        let counts = report.counts();
        match serde_json::to_string(&report) {
            Ok(json) => println!("@@OUT@@ {json}"),
            Err(e) => eprintln!("cannot encode the report: {e}"),
        }
        println!("{mode}: {counts} in {:.1} s", elapsed.as_secs_f64());
        failed |= counts.failed != 0;
    }
    std::process::exit(i32::from(failed));
}
