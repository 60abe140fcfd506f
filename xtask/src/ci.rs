//! `cargo xtask ci`: the project's single test command.
//!
//! A table of steps, run in order; each prints a header and its wall time, the first
//! failure stops the run, and a summary of every step's time closes it. To add a step,
//! add a row to [`STEPS`].

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{apt, cmd, paths};

/// What a step did, when it did not fail.
enum Outcome {
    Passed,
    Skipped(String),
}

/// One row of the pipeline.
struct Step {
    name: &'static str,
    run: fn() -> Result<Outcome>,
}

/// The pipeline, in order.
const STEPS: &[Step] = &[
    Step {
        name: "install missing tools",
        run: install_tools,
    },
    Step {
        name: "cargo fmt --check",
        run: || cargo(&["fmt", "--all", "--", "--check"], &[]),
    },
    Step {
        name: "cargo clippy",
        run: || {
            cargo(
                &[
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--",
                    "-D",
                    "warnings",
                ],
                &[],
            )
        },
    },
    Step {
        name: "cargo test",
        run: || cargo(&["test", "--workspace"], &[]),
    },
    Step {
        name: "cargo doc",
        run: || {
            cargo(
                &["doc", "--workspace", "--no-deps"],
                &[("RUSTDOCFLAGS", "-D warnings")],
            )
        },
    },
    Step {
        name: "guest kernel: Linux 6.12 from Debian's source (cached after the first build)",
        run: guest_kernel,
    },
    Step {
        name: "conformance: vfio-mock vs Linux 6.1 and 6.12 vfio-pci in QEMU",
        run: conformance,
    },
    Step {
        name: "miri: vfio-core parse::, access::, words:: and dma::, vfio-mock memory:: and iommu:: tests",
        run: miri,
    },
    Step {
        name: "fuzz corpus replay",
        run: fuzz_replay,
    },
];

/// Where the conformance step leaves its side-by-side table, relative to the workspace.
const CONFORMANCE_MARKDOWN: &str = "target/conformance.md";

/// The toolchain Miri runs on, and the components it needs there.
const MIRI_TOOLCHAIN: &str = "nightly";
const MIRI_COMPONENTS: [&str; 2] = ["miri", "rust-src"];

/// The vfio-core tests Miri runs: the pure paths, with the atomic-word copies
/// behind both backends' DMA memory and the typed access on top of them (their
/// two-thread race tests included). Miri interprets on one core: all of `--lib`
/// takes 23 minutes there.
const MIRI_FILTERS: [&str; 4] = ["parse::", "access::", "words::", "dma::"];

/// Tests too slow for Miri: a 1 MiB line read through a 7-byte buffer takes about 15
/// minutes there, for no check the other parser tests lack.
const MIRI_SKIPS: [&str; 1] = ["overlong_lines_are_skipped_and_crlf_is_accepted"];

/// The vfio-mock tests Miri runs: its DMA memory (plain atomic words, with a
/// device thread and a driver thread racing on them) and the IOMMU translating
/// into it. vfio-linux's DMA memory is mmap'd `MAP_SHARED` and its barriers are
/// inline assembly, neither of which Miri supports; its words are vfio-core's.
const MIRI_MOCK_FILTERS: [&str; 2] = ["memory::", "iommu::"];

/// Runs every step; fails at the first failing step.
pub fn run() -> Result<()> {
    let start = Instant::now();
    let mut summary: Vec<(&str, String, Duration)> = Vec::new();
    let mut failure = None;
    for (i, step) in STEPS.iter().enumerate() {
        println!("\n==> [{}/{}] {}", i + 1, STEPS.len(), step.name);
        let step_start = Instant::now();
        let result = (step.run)();
        let elapsed = step_start.elapsed();
        let status = match &result {
            Ok(Outcome::Passed) => "ok".to_owned(),
            Ok(Outcome::Skipped(why)) => format!("skipped ({why})"),
            Err(_) => "FAILED".to_owned(),
        };
        println!("==> {}: {status} in {}", step.name, secs(elapsed));
        summary.push((step.name, status, elapsed));
        if let Err(err) = result {
            failure = Some(err.context(format!("ci step `{}` failed", step.name)));
            break;
        }
    }
    println!("\n==> ci summary");
    for (name, status, elapsed) in &summary {
        println!("    {:>8}  {name}: {status}", secs(*elapsed));
    }
    for step in STEPS.iter().skip(summary.len()) {
        println!("    {:>8}  {}: not run", "-", step.name);
    }
    println!("    {:>8}  total", secs(start.elapsed()));
    match failure {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Runs cargo in the workspace root with extra environment.
fn cargo(args: &[&str], env: &[(&str, &str)]) -> Result<Outcome> {
    cargo_in(&paths::workspace_root(), args, env)
}

fn cargo_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Outcome> {
    let mut command = Command::new(paths::cargo());
    command.current_dir(dir).args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    println!("$ {}", cmd::display(&command));
    cmd::run(&mut command)?;
    Ok(Outcome::Passed)
}

fn install_tools() -> Result<Outcome> {
    let mut did = Vec::new();
    if cmd::which("qemu-system-x86_64").is_none() {
        apt::install(&["qemu-system-x86", "busybox-static"])?;
        did.push("qemu-system-x86, busybox-static");
    } else {
        println!("qemu-system-x86_64 is present");
    }
    let mut missing = Vec::new();
    for component in ["fmt", "clippy"] {
        let present = Command::new(paths::cargo())
            .args([component, "--version"])
            .output()
            .map(|out| out.status.success())
            .unwrap_or(false);
        if !present {
            missing.push(if component == "fmt" {
                "rustfmt"
            } else {
                "clippy"
            });
        }
    }
    if missing.is_empty() {
        println!("rustfmt and clippy are present");
    } else {
        if cmd::which("rustup").is_none() {
            bail!(
                "{} missing and rustup is not available to add them",
                missing.join(" and ")
            );
        }
        let mut rustup = Command::new("rustup");
        rustup.args(["component", "add"]).args(&missing);
        println!("$ {}", cmd::display(&rustup));
        cmd::run(&mut rustup)?;
        did.push("rustfmt/clippy");
    }
    if install_miri()? {
        did.push("miri");
    }
    if did.is_empty() {
        Ok(Outcome::Skipped("all present".to_owned()))
    } else {
        Ok(Outcome::Passed)
    }
}

/// Makes sure the Miri toolchain has Miri and the standard library's source, installing
/// what is missing; returns whether it installed anything.
fn install_miri() -> Result<bool> {
    if cmd::which("rustup").is_none() {
        bail!("Miri needs rustup (for the {MIRI_TOOLCHAIN} toolchain), which is not available");
    }
    let mut list = Command::new("rustup");
    list.args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        MIRI_TOOLCHAIN,
    ]);
    let mut rustup = Command::new("rustup");
    match cmd::output(&mut list) {
        Ok(installed) => {
            let installed = String::from_utf8_lossy(&installed);
            let missing: Vec<&str> = MIRI_COMPONENTS
                .into_iter()
                .filter(|component| {
                    !installed.lines().any(|line| {
                        line == *component || line.starts_with(&format!("{component}-"))
                    })
                })
                .collect();
            if missing.is_empty() {
                println!("{MIRI_TOOLCHAIN} has {}", MIRI_COMPONENTS.join(" and "));
                return Ok(false);
            }
            rustup
                .args(["component", "add", "--toolchain", MIRI_TOOLCHAIN])
                .args(missing);
        }
        // No such toolchain: install a minimal one with just what Miri needs.
        Err(_) => {
            rustup.args([
                "toolchain",
                "install",
                MIRI_TOOLCHAIN,
                "--profile",
                "minimal",
            ]);
            for component in MIRI_COMPONENTS {
                rustup.args(["--component", component]);
            }
        }
    }
    println!("$ {}", cmd::display(&rustup));
    cmd::run(&mut rustup)?;
    Ok(true)
}

/// The 6.12 guest kernel: found in the cache, or built (5 to 10 minutes on two cores).
fn guest_kernel() -> Result<Outcome> {
    let built = crate::kernel::ensure()?;
    println!("Linux {}: {}", crate::kernel::SERIES, built.dir.display());
    Ok(Outcome::Passed)
}

/// The conformance runner: the suite on vfio-mock imitating Linux 6.1 and 6.12 and,
/// through `cargo xtask build-guest-bin` and `cargo xtask guest`, on the real vfio-pci
/// in the QEMU guest booting each (four runs). It prints the side-by-side table and
/// fails if any case fails or twins disagree.
fn conformance() -> Result<Outcome> {
    cargo(
        &[
            "run",
            "-p",
            "conformance-tests",
            "--",
            "--require-kernel",
            "--markdown",
            CONFORMANCE_MARKDOWN,
        ],
        &[],
    )?;
    println!("side-by-side table: {CONFORMANCE_MARKDOWN}");
    Ok(Outcome::Passed)
}

/// vfio-core's parser and register-access unit tests under Miri, which checks that pure
/// code for undefined behaviour. Tests that need system calls Miri lacks are
/// `#[cfg_attr(miri, ignore)]` in vfio-core; proptest runs few cases, as Miri is slow.
/// Run through `rustup run` because `$CARGO` is the stable cargo, not the rustup proxy
/// that understands `+nightly`.
fn miri() -> Result<Outcome> {
    let runs: [(&str, &[&str], &[&str]); 2] = [
        ("vfio-core", &MIRI_FILTERS, &MIRI_SKIPS),
        ("vfio-mock", &MIRI_MOCK_FILTERS, &[]),
    ];
    for (package, filters, skips) in runs {
        let mut command = Command::new("rustup");
        command
            .current_dir(paths::workspace_root())
            .args([
                "run",
                MIRI_TOOLCHAIN,
                "cargo",
                "miri",
                "test",
                "-p",
                package,
                "--lib",
            ])
            .arg("--")
            .args(filters)
            .args(skips.iter().flat_map(|test| ["--skip", test]))
            .env("PROPTEST_CASES", "8")
            .env("MIRIFLAGS", "-Zmiri-disable-isolation");
        println!("$ {}", cmd::display(&command));
        cmd::run(&mut command)?;
    }
    Ok(Outcome::Passed)
}

fn fuzz_replay() -> Result<Outcome> {
    let fuzz = paths::workspace_root().join("fuzz");
    if !fuzz.join("Cargo.toml").is_file() {
        println!("no fuzz/Cargo.toml yet: nothing to replay");
        return Ok(Outcome::Skipped("no fuzz/ crate".to_owned()));
    }
    cargo(&["test", "--manifest-path", "fuzz/Cargo.toml"], &[]).context("replaying the fuzz corpus")
}
