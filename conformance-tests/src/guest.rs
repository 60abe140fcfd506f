//! Running the suite on the real kernel in the QEMU guest, from the host.

use crate::report::Report;
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use vfio_core::open::Mode;

/// The guest binary's package and name.
const GUEST_BIN: (&str, &str) = ("conformance-tests", "conformance-guest");

/// Why the guest cannot run here, if it cannot: QEMU is missing.
pub fn unavailable() -> Option<String> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()))
        .unwrap_or(false);
    (!found).then(|| {
        "qemu-system-x86_64 is not installed: `apt-get install qemu-system-x86` \
         (or run `cargo xtask ci`, which installs it)"
            .to_owned()
    })
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Makes sure Linux `series` is there to boot (`cargo xtask kernel` builds
/// 6.12 if it is not cached), builds the static guest binary and returns
/// its path.
fn prepare(workspace: &Path, series: &str) -> Result<PathBuf> {
    if series != "6.1" {
        // Built (5 to 10 minutes) or found in the cache, with its progress shown.
        let status = cargo()
            .current_dir(workspace)
            .args(["xtask", "kernel"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("running `cargo xtask kernel`")?;
        if !status.success() {
            bail!("`cargo xtask kernel` failed ({status}): no Linux {series} to boot");
        }
    }
    let out = cargo()
        .current_dir(workspace)
        .args(["xtask", "build-guest-bin", GUEST_BIN.0, GUEST_BIN.1])
        .output()
        .context("running `cargo xtask build-guest-bin`")?;
    if !out.status.success() {
        bail!(
            "building the guest binary failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let binary = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_owned());
    Ok(binary)
}

/// Builds the static guest binary, boots the guest on Linux `series` (`6.1`,
/// or `6.12`, which `cargo xtask kernel` builds first if it is not cached)
/// with it, has it run the suite once in each of `modes`, and returns the
/// kernel's reports, one per mode. With `noiommu` the guest boots without
/// an IOMMU and with vfio's `enable_unsafe_noiommu_mode=1` (`cargo xtask
/// guest --noiommu`). `workspace` is the workspace root; the reports are
/// also left, a line each, in
/// `<workspace>/target/guest/conformance-<series>[-noiommu].json`.
pub fn run(workspace: &Path, series: &str, noiommu: bool, modes: &[Mode]) -> Result<Vec<Report>> {
    let binary = prepare(workspace, series)?;
    let suffix = if noiommu { "-noiommu" } else { "" };
    let json = workspace.join(format!("target/guest/conformance-{series}{suffix}.json"));
    // A report of an earlier run must not pass for this one's.
    let _ = std::fs::remove_file(&json);
    let mut guest = cargo();
    guest
        .current_dir(workspace)
        .args(["xtask", "guest", "--kernel", series])
        // The suite in two modes takes longer than one boot's default limit.
        .args(["--timeout", "900"]);
    if noiommu {
        guest.arg("--noiommu");
    }
    guest.arg("--output").arg(&json).arg("--").arg(&binary);
    for mode in modes {
        guest.args(["--mode", mode.name()]);
    }
    let run = guest.output().context("running `cargo xtask guest`")?;
    let console =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    let timing = console
        .lines()
        .rfind(|l| l.starts_with("guest: ran in"))
        .unwrap_or("");
    let text = std::fs::read_to_string(&json).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() < modes.len() {
        let tail: Vec<&str> = console.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the guest returned {} of {} reports (exit status {}): it did not boot or the \
             suite crashed. Last lines of its console:\n{}",
            lines.len(),
            modes.len(),
            run.status,
            tail.join("\n")
        );
    }
    if !timing.is_empty() {
        println!("{timing}");
    }
    lines
        .iter()
        .map(|line| {
            serde_json::from_str(line)
                .with_context(|| format!("a guest report in {} does not parse", json.display()))
        })
        .collect()
}

/// What the guest gave back from a capture.
#[derive(Debug)]
pub struct Captured {
    /// A profile of each device the mock replays, by the device's name, in
    /// the order of [`PROFILED`](crate::PROFILED).
    pub profiles: Vec<(String, vfio_profile::DeviceProfile)>,
    /// Every PCI function's config space as sysfs has it in the guest, as
    /// an `lspci -xxx` dump.
    pub sysfs_config: String,
}

/// One line the guest binary prints in `--capture` mode.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum CaptureLine {
    Profile {
        device: String,
        profile: serde_json::Value,
    },
    Dump {
        sysfs_config: String,
    },
}

/// Boots the guest on Linux `series` with an IOMMU and has the guest binary
/// capture a profile of each device the mock replays
/// ([`PROFILED`](crate::PROFILED)) through vfio-pci, and dump every
/// function's config space from sysfs.
pub fn capture(workspace: &Path, series: &str) -> Result<Captured> {
    let binary = prepare(workspace, series)?;
    let out_file = workspace.join(format!("target/guest/profiles-{series}.json"));
    let _ = std::fs::remove_file(&out_file);
    let run = cargo()
        .current_dir(workspace)
        .args(["xtask", "guest", "--kernel", series, "--output"])
        .arg(&out_file)
        .arg("--")
        .arg(&binary)
        .arg("--capture")
        .output()
        .context("running `cargo xtask guest`")?;
    let text = std::fs::read_to_string(&out_file).unwrap_or_default();
    let mut profiles = Vec::new();
    let mut sysfs_config = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let line: CaptureLine = serde_json::from_str(line)
            .with_context(|| format!("a line of {} does not parse", out_file.display()))?;
        match line {
            CaptureLine::Profile { device, profile } => {
                let profile = vfio_profile::DeviceProfile::from_json(&profile.to_string())
                    .with_context(|| format!("the profile of {device} is refused"))?;
                profiles.push((device, profile));
            }
            CaptureLine::Dump { sysfs_config: dump } => sysfs_config = Some(dump),
        }
    }
    match sysfs_config {
        Some(sysfs_config) if profiles.len() == crate::PROFILED.len() => Ok(Captured {
            profiles,
            sysfs_config,
        }),
        _ => {
            let console = String::from_utf8_lossy(&run.stdout).into_owned()
                + &String::from_utf8_lossy(&run.stderr);
            let tail: Vec<&str> = console.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the guest returned {} of {} profiles and {} config dump (exit status {}). \
                 Last lines of its console:\n{}",
                profiles.len(),
                crate::PROFILED.len(),
                if text.contains("sysfs_config") {
                    "its"
                } else {
                    "no"
                },
                run.status,
                tail.join("\n")
            )
        }
    }
}
