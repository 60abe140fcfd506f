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
        name: "conformance: vfio-mock vs vfio-pci in QEMU, Linux 6.1 (type1) and 6.12 (type1, iommufd, no-IOMMU)",
        run: conformance,
    },
    Step {
        name: "miri: vfio-linux's mappings and DMA memory, the atomic words of vfio-core and vfio-mock",
        run: miri,
    },
    Step {
        name: "fuzz corpus replay",
        run: fuzz_replay,
    },
    Step {
        name: "fuzz: each target for a short while, from its corpus",
        run: fuzz_briefly,
    },
];

/// Where the conformance step leaves its side-by-side table, relative to the workspace.
const CONFORMANCE_MARKDOWN: &str = "target/conformance.md";

/// The toolchain Miri runs on, and the components it needs there.
const MIRI_TOOLCHAIN: &str = "nightly";
const MIRI_COMPONENTS: [&str; 2] = ["miri", "rust-src"];

/// What Miri runs: the code where it can find undefined behaviour.
///
/// - vfio-linux's `mmap::` and `memory::` tests: the unsafe mapping code
///   and DMA memory on anonymous memory (mapped private under Miri, which
///   has no shared mappings), their two-thread races and release/acquire
///   handshakes included, with the barriers as fences (Miri runs no inline
///   assembly). Tests that map files or hugetlb pages are ignored there.
/// - vfio-core's `words::` and `dma::` tests: the lock-free atomic-word
///   copies both backends' DMA memory is made of, and the typed access on
///   top of them.
/// - vfio-mock's `memory::` and `iommu::` tests: its DMA memory (the same
///   words, with a device thread and a driver thread racing on them) and
///   the IOMMU translating into it.
///
/// vfio-core's parsers are safe code with no unsafe underneath; Miri has
/// nothing to find there that the tests and fuzzing do not.
const MIRI_RUNS: [(&str, &[&str]); 3] = [
    ("vfio-linux", &["mmap::", "memory::"]),
    ("vfio-core", &["words::", "dma::"]),
    ("vfio-mock", &["memory::", "iommu::"]),
];

/// How long `cargo fuzz` runs each target in CI: long enough to shake out a
/// shallow crash, short enough for the 2-core CI machine.
const FUZZ_SECONDS: u32 = 20;

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
    // vfio-tool's lspci_agreement test holds its decoding to pciutils' lspci.
    if cmd::which("lspci").is_none() {
        apt::install(&["pciutils"])?;
        did.push("pciutils");
    } else {
        println!("lspci is present");
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

/// The conformance runner: the suite on vfio-mock imitating Linux 6.1 (type1) and 6.12
/// (type1, iommufd and no-IOMMU) and, through `cargo xtask build-guest-bin` and
/// `cargo xtask guest`, on the real vfio-pci in the QEMU guest: eight runs from three
/// boots (6.1; 6.12 with an IOMMU, running the suite in type1 and then iommufd mode;
/// 6.12 without an IOMMU, in no-IOMMU mode). The runner prints each boot's time; this
/// step prints them again after its own, and fails if any case fails or twins disagree.
fn conformance() -> Result<Outcome> {
    let mut command = Command::new(paths::cargo());
    command.current_dir(paths::workspace_root()).args([
        "run",
        "-p",
        "conformance-tests",
        "--",
        "--require-kernel",
        "--markdown",
        CONFORMANCE_MARKDOWN,
    ]);
    println!("$ {}", cmd::display(&command));
    // Streamed as it runs (the guests take minutes), and kept for the boot times.
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running the conformance runner")?;
    let mut text = String::new();
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let line = line.context("reading the conformance runner's output")?;
            println!("{line}");
            text.push_str(&line);
            text.push('\n');
        }
    }
    let status = child.wait().context("waiting for the conformance runner")?;
    let timings = boot_timings(&text);
    if !timings.is_empty() {
        println!("conformance boots:");
        for line in &timings {
            println!("    {line}");
        }
    }
    if !status.success() {
        bail!("the conformance runner failed ({status})");
    }
    println!("side-by-side table: {CONFORMANCE_MARKDOWN}");
    Ok(Outcome::Passed)
}

/// The runner's line for each guest boot (`== Linux 6.12 guest (type1, iommufd): 212.3 s`),
/// without the `== `.
fn boot_timings(output: &str) -> Vec<&str> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("== "))
        .filter(|l| l.starts_with("Linux ") && l.contains(" guest (") && l.ends_with(" s"))
        .collect()
}

/// [`MIRI_RUNS`] under Miri. Run through `rustup run` because `$CARGO` is
/// the stable cargo, not the rustup proxy that understands `+nightly`;
/// proptest runs few cases, as Miri is slow.
fn miri() -> Result<Outcome> {
    for (package, filters) in MIRI_RUNS {
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
            .env("PROPTEST_CASES", "8")
            .env("MIRIFLAGS", "-Zmiri-disable-isolation");
        println!("$ {}", cmd::display(&command));
        let started = Instant::now();
        cmd::run(&mut command)?;
        println!("miri: {package} in {}", secs(started.elapsed()));
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

/// The fuzz targets: the `[[bin]]` names of fuzz/Cargo.toml.
fn fuzz_targets(manifest: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin {
            if let Some(name) = line
                .strip_prefix("name")
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('='))
            {
                targets.push(name.trim().trim_matches('"').to_owned());
            }
        }
    }
    targets
}

/// Each fuzz target under `cargo fuzz` (nightly, with its sanitizer) for
/// [`FUZZ_SECONDS`], starting from its committed corpus; new inputs go to
/// a scratch directory, so the checkout is left as it was. Prints each
/// target's executions per second. A crash fails the step, with the input
/// left where libFuzzer says.
fn fuzz_briefly() -> Result<Outcome> {
    let root = paths::workspace_root();
    let fuzz = root.join("fuzz");
    let Ok(manifest) = std::fs::read_to_string(fuzz.join("Cargo.toml")) else {
        return Ok(Outcome::Skipped("no fuzz/ crate".to_owned()));
    };
    install_cargo_fuzz()?;
    let scratch = crate::scratch::ScratchDir::new(&root.join("target"), "fuzz-scratch")?;
    let mut rates = Vec::new();
    for target in fuzz_targets(&manifest) {
        let stats = fuzz_for(&target, FUZZ_SECONDS, scratch.path())?;
        println!("fuzz: {target}: {stats}");
        rates.push(format!("{target} {stats}"));
    }
    println!("fuzz rates ({FUZZ_SECONDS} s each): {}", rates.join("; "));
    Ok(Outcome::Passed)
}

/// What libFuzzer's `-print_final_stats=1` reports at the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FuzzStats {
    /// `stat::number_of_executed_units`: inputs run.
    pub runs: Option<u64>,
    /// `stat::average_exec_per_sec`: inputs run per second of the run.
    pub per_sec: Option<u64>,
}

impl FuzzStats {
    /// The final stats from libFuzzer's log (its stderr).
    pub(crate) fn parse(log: &str) -> Self {
        let stat = |name: &str| {
            log.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Self {
            runs: stat("stat::number_of_executed_units:"),
            per_sec: stat("stat::average_exec_per_sec:"),
        }
    }
}

impl std::fmt::Display for FuzzStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.runs, self.per_sec) {
            (Some(runs), Some(per_sec)) => write!(f, "{runs} runs, {per_sec}/s"),
            _ => f.write_str("no final stats"),
        }
    }
}

/// Runs fuzz target `target` under `cargo fuzz` (nightly, its default
/// sanitizer) for `seconds`, from `fuzz/corpus/<target>/`, writing new
/// inputs under `scratch` so the committed corpus stays as it was. A crash
/// is an error, with libFuzzer's log (which names the input) on stderr.
/// `cargo fuzz` must be installed.
pub(crate) fn fuzz_for(target: &str, seconds: u32, scratch: &Path) -> Result<FuzzStats> {
    let fuzz = paths::workspace_root().join("fuzz");
    let new_inputs = scratch.join(target);
    std::fs::create_dir_all(&new_inputs)?;
    let mut command = Command::new("rustup");
    command
        .current_dir(&fuzz)
        .args([
            "run",
            MIRI_TOOLCHAIN,
            "cargo",
            "fuzz",
            "run",
            "--features",
            "libfuzzer",
        ])
        .arg(target)
        .arg(&new_inputs);
    let corpus = fuzz.join("corpus").join(target);
    if corpus.is_dir() {
        command.arg(corpus);
    }
    command
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg("-print_final_stats=1");
    println!("$ {}", cmd::display(&command));
    let out = command
        .output()
        .with_context(|| format!("running cargo fuzz on {target}"))?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        eprintln!("{log}");
        bail!("cargo fuzz run {target} failed: {}", out.status);
    }
    Ok(FuzzStats::parse(&log))
}

/// Installs cargo-fuzz (into cargo's bin directory, which a fresh clone
/// keeps) if `cargo fuzz` is not there.
pub(crate) fn install_cargo_fuzz() -> Result<()> {
    let present = Command::new(paths::cargo())
        .args(["fuzz", "--version"])
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    if present {
        return Ok(());
    }
    let mut install = Command::new(paths::cargo());
    install.args(["install", "cargo-fuzz", "--locked"]);
    println!("$ {}", cmd::display(&install));
    cmd::run(&mut install).context("installing cargo-fuzz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_timings_are_the_runners_guest_lines() {
        let out = "== the suite on vfio-mock imitating Linux 6.1 in type1 mode\n\
                   == Linux 6.1 guest (type1): 95.2 s\n\
                   PASS x (3 us)\n\
                   == Linux 6.12 guest (noiommu): 26.0 s\n";
        assert_eq!(
            boot_timings(out),
            [
                "Linux 6.1 guest (type1): 95.2 s",
                "Linux 6.12 guest (noiommu): 26.0 s"
            ]
        );
    }

    #[test]
    fn fuzz_stats_are_libfuzzers_final_lines() {
        let log = "#4096\tpulse  cov: 12 exec/s: 2048\n\
                   Done 435169 runs in 46 second(s)\n\
                   stat::number_of_executed_units: 435169\n\
                   stat::average_exec_per_sec:     9460\n\
                   stat::new_units_added:          3\n";
        let stats = FuzzStats::parse(log);
        assert_eq!(
            stats,
            FuzzStats {
                runs: Some(435_169),
                per_sec: Some(9460)
            }
        );
        assert_eq!(stats.to_string(), "435169 runs, 9460/s");
        let none = FuzzStats::parse("INFO: Seed: 1\n");
        assert_eq!(none.to_string(), "no final stats");
    }

    #[test]
    fn fuzz_targets_are_the_bin_names_of_the_manifest() {
        let manifest = "[package]\nname = \"vfio-fuzz\"\n\n[[bin]]\nname = \"vfio_caps\"\npath = \"x.rs\"\n\n[[bin]]\nname=\"hostile_device\"\n[dependencies]\nname = \"not-a-target\"\n";
        assert_eq!(fuzz_targets(manifest), ["vfio_caps", "hostile_device"]);
    }
}
