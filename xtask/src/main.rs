//! Development automation for the VFIO workspace, run as `cargo xtask <command>`.
//!
//! - `guest`: run a static binary in a QEMU guest with the real vfio-pci driver;
//! - `build-guest-bin`: build a workspace binary statically for that guest;
//! - `kernel`: build (or find in the cache) the guest's Linux 6.12;
//! - `ci`: the project's whole test pipeline;
//! - `bench`: the criterion benchmarks and the performance-goal ratios.

mod apt;
mod bench;
mod build_guest_bin;
mod ci;
mod cmd;
mod guest;
mod kernel;
mod paths;
mod scratch;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  guest [--kernel 6.1|6.12] [--noiommu] [--output FILE] [--timeout SECS] [--cpus N] -- BINARY [ARGS...]
      Run a static x86-64 BINARY in a QEMU guest with the real vfio-pci: Debian's
      Linux 6.1 (default), or Linux 6.12 built from Debian's linux-source-6.12 (see
      `kernel`).
      Devices, with their addresses and IOMMU groups in VFIO_GUEST_<NAME>[_GROUP]:
        EDU         0000:00:02.0  group 1  vfio-pci
        NVME        0000:00:03.0  group 2  vfio-pci
        SHARED_EDU  0000:01:01.0  group 3  vfio-pci        (behind the PCI bridge
        WATCHDOG    0000:01:02.0  group 3  i6300ESB timer   at 0000:00:04.0, group 3)
        BIG_NVME    0000:00:05.0  group 4  vfio-pci        (NVMe with 2048 MSI-X vectors)
      Group 3 is not viable: its watchdog has a kernel driver, so attaching the group
      to a container fails (EPERM).
      --noiommu (6.12 only) boots without the IOMMU and with
      vfio.enable_unsafe_noiommu_mode=1: the vfio-pci devices get no-IOMMU groups
      (/dev/vfio/noiommu-N, numbered from 0 in the order above), the watchdog none,
      and edu a DMA mask covering the guest's RAM.
      Lines the binary prints starting with `@@OUT@@ ` are appended (minus the prefix)
      to FILE. Exits with the binary's exit code. Default timeout 300 s, 2 CPUs.
  build-guest-bin PACKAGE BIN
      Build a workspace binary statically for the guest and print its path.
  kernel
      Build Linux 6.12 from Debian trixie's linux-source-6.12 with
      xtask/kernel/linux-6.12.config on top of tinyconfig (5 to 10 minutes), or find
      it in ${XDG_CACHE_HOME:-~/.cache}/vfio-stack/kernels/, and print its directory.
  ci
      fmt, clippy, tests, docs, the 6.12 guest kernel, the conformance suite
      (vfio-mock imitating 6.1 and 6.12 side by side with vfio-pci in the guest on
      each; table in target/conformance.md), Miri over vfio-linux's mappings and
      DMA memory and the atomic words of vfio-core and vfio-mock (nightly), the
      fuzz corpus replay, and each fuzz target under cargo fuzz for a short while.
  bench [ARGS...]
      `cargo bench -p vfio-linux -p vfio-mock -p nvme ARGS...`, then the ratios DESIGN.md's
      performance goals are about (a report: it never fails on a ratio).
";

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let Some(command) = args.next() else {
        eprint!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    let rest: Vec<OsString> = args.collect();
    match command.to_str() {
        Some("guest") => {
            let opts = parse_guest(rest)?;
            let code = guest::run(&opts)?;
            if code != 0 {
                eprintln!("guest: {} exited with code {code}", opts.binary.display());
            }
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Some("build-guest-bin") => {
            let [package, bin] = rest.as_slice() else {
                bail!("usage: cargo xtask build-guest-bin PACKAGE BIN");
            };
            let (Some(package), Some(bin)) = (package.to_str(), bin.to_str()) else {
                bail!("package and binary names must be UTF-8");
            };
            let path = build_guest_bin::build(package, bin)?;
            println!("{}", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Some("kernel") => {
            if !rest.is_empty() {
                bail!("`cargo xtask kernel` takes no arguments");
            }
            let start = std::time::Instant::now();
            let built = kernel::ensure()?;
            eprintln!(
                "xtask: Linux {} ready in {:.1} s",
                kernel::SERIES,
                start.elapsed().as_secs_f64()
            );
            println!("{}", built.dir.display());
            Ok(ExitCode::SUCCESS)
        }
        Some("ci") => {
            if !rest.is_empty() {
                bail!("`cargo xtask ci` takes no arguments");
            }
            ci::run()?;
            Ok(ExitCode::SUCCESS)
        }
        Some("bench") => {
            bench::run(&rest)?;
            Ok(ExitCode::SUCCESS)
        }
        Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            eprint!("{USAGE}");
            bail!("unknown command {:?}", command);
        }
    }
}

/// Parses `guest` options up to `--` (or the first non-option), then BINARY and ARGS.
fn parse_guest(args: Vec<OsString>) -> Result<guest::GuestOptions> {
    let mut output = None;
    let mut timeout = guest::DEFAULT_TIMEOUT;
    let mut cpus = guest::DEFAULT_CPUS;
    let mut kernel = guest::GuestKernel::default();
    let mut noiommu = false;
    let mut args = args.into_iter();
    let binary = loop {
        let Some(arg) = args.next() else {
            bail!(
                "usage: cargo xtask guest [--kernel 6.1|6.12] [--noiommu] [--output FILE] [--timeout SECS] -- BINARY [ARGS...]"
            );
        };
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.to_str() {
            Some("--") => {
                break args.next().context("missing BINARY after `--`")?;
            }
            Some("--kernel") => {
                let series = value("--kernel")?;
                kernel = series
                    .to_str()
                    .and_then(guest::GuestKernel::from_series)
                    .with_context(|| format!("--kernel takes 6.1 or 6.12, not {series:?}"))?;
            }
            Some("--noiommu") => noiommu = true,
            Some("--output") => output = Some(PathBuf::from(value("--output")?)),
            Some("--timeout") => {
                let secs: f64 = value("--timeout")?
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .context("--timeout needs a positive number of seconds")?;
                timeout = Duration::from_secs_f64(secs);
            }
            Some("--cpus") => {
                cpus = value("--cpus")?
                    .to_str()
                    .and_then(|s| s.parse().ok())
                    .filter(|n| (1..=8).contains(n))
                    .context("--cpus needs a number from 1 to 8")?;
            }
            Some(flag) if flag.starts_with('-') => bail!("unknown guest option {flag}"),
            _ => break arg,
        }
    };
    if noiommu && kernel != guest::GuestKernel::Built6_12 {
        bail!("--noiommu needs --kernel 6.12, whose vfio is built in and takes the parameter");
    }
    Ok(guest::GuestOptions {
        kernel,
        noiommu,
        binary: PathBuf::from(binary),
        args: args.collect(),
        output,
        timeout,
        cpus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_guest_options() {
        let opts = parse_guest(os(&[
            "--output",
            "o.json",
            "--timeout",
            "12",
            "--",
            "bin",
            "--x",
            "y",
        ]))
        .unwrap();
        assert_eq!(opts.binary, PathBuf::from("bin"));
        assert_eq!(opts.args, os(&["--x", "y"]));
        assert_eq!(opts.output, Some(PathBuf::from("o.json")));
        assert_eq!(opts.timeout, Duration::from_secs(12));
        assert_eq!(opts.kernel, guest::GuestKernel::Debian6_1);

        let opts = parse_guest(os(&["--kernel", "6.12", "--", "bin"])).unwrap();
        assert_eq!(opts.kernel, guest::GuestKernel::Built6_12);
        assert!(!opts.noiommu);

        let opts = parse_guest(os(&["--kernel", "6.12", "--noiommu", "--", "bin"])).unwrap();
        assert!(opts.noiommu);

        let opts = parse_guest(os(&["bin", "--output"])).unwrap();
        assert_eq!(opts.args, os(&["--output"]));
        assert_eq!(opts.output, None);
        assert_eq!(opts.timeout, guest::DEFAULT_TIMEOUT);
    }

    #[test]
    fn rejects_bad_guest_options() {
        assert!(parse_guest(os(&[])).is_err());
        assert!(parse_guest(os(&["--timeout", "-1", "--", "b"])).is_err());
        assert!(parse_guest(os(&["--bogus", "--", "b"])).is_err());
        assert!(parse_guest(os(&["--"])).is_err());
        assert!(parse_guest(os(&["--kernel", "6.6", "--", "b"])).is_err());
        // 6.1's vfio is a module: the parameter is not on its command line.
        assert!(parse_guest(os(&["--noiommu", "--", "b"])).is_err());
    }
}
