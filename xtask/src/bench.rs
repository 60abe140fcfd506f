//! `cargo xtask bench`: runs the criterion benchmarks of vfio-linux,
//! vfio-mock and the NVMe driver, then prints the ratios that DESIGN.md's "Performance that
//! matters" goals are about, from that one run.
//!
//! It only reports: a ratio far from its goal is printed, never a failure.
//! Each number is criterion's mean (`mean.point_estimate`, in ns) from
//! `<target>/criterion/<group>/<bench>/new/estimates.json`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::{cmd, paths};

/// One benchmark: criterion's directory for it under `<target>/criterion`.
type BenchId = &'static str;

/// A line of the report.
#[derive(Debug, Clone, Copy)]
enum Row {
    /// `num / den`, as a factor.
    Ratio {
        label: &'static str,
        num: BenchId,
        den: BenchId,
        goal: &'static str,
    },
    /// One benchmark's time.
    Single {
        label: &'static str,
        bench: BenchId,
        goal: &'static str,
    },
    /// The rate of `part` (one operation each) as a share of the rate of
    /// `whole`: `whole / part`, in percent.
    Share {
        label: &'static str,
        part: BenchId,
        whole: BenchId,
        goal: &'static str,
    },
    /// `num` against the sum of two benchmarks, as a factor.
    RatioToSum {
        label: &'static str,
        num: BenchId,
        den: (BenchId, BenchId),
        goal: &'static str,
    },
    /// What each unit of N adds, from two benchmarks at N = `from.0` and `to.0`.
    Slope {
        label: &'static str,
        from: (u32, BenchId),
        to: (u32, BenchId),
        goal: &'static str,
    },
}

/// The goals, each with the measurements that check it.
const GOALS: &[(&str, &[Row])] = &[
    (
        "1. A register access through the trait on vfio-linux (a BAR's path: a shared file mapping, volatile) costs the same as a raw volatile access",
        &[
            Row::Ratio {
                label: "read_u32: trait vs raw volatile",
                num: "linux_register/trait_read_u32",
                den: "linux_register/raw_read_u32",
                goal: "~1x",
            },
            Row::Ratio {
                label: "write_u32: trait vs raw volatile",
                num: "linux_register/trait_write_u32",
                den: "linux_register/raw_write_u32",
                goal: "~1x",
            },
            Row::Ratio {
                label: "read_u32: anonymous region (atomic) vs raw volatile",
                num: "linux_register/anon_read_u32",
                den: "linux_register/raw_read_u32",
                goal: "reference",
            },
            Row::Ratio {
                label: "write_u32: anonymous region (compare-exchange) vs raw volatile",
                num: "linux_register/anon_write_u32",
                den: "linux_register/raw_write_u32",
                goal: "reference",
            },
        ],
    ),
    (
        "2. A mock register access on a plain BAR costs at most 5x a raw volatile access; with a model hook, tens of ns",
        &[
            Row::Single {
                label: "plain BAR read_u32 (NVMe MSI-X table)",
                bench: "mock_register/plain_read_u32",
                goal: "a few ns",
            },
            Row::Single {
                label: "hooked read_u32 (edu liveness)",
                bench: "mock_register/hooked_read_u32",
                goal: "tens of ns",
            },
            Row::Ratio {
                label: "read_u32: hooked vs plain",
                num: "mock_register/hooked_read_u32",
                den: "mock_register/plain_read_u32",
                goal: "~10x: a few ns vs tens",
            },
            Row::Ratio {
                label: "write_u32: hooked vs plain",
                num: "mock_register/hooked_write_u32",
                den: "mock_register/plain_write_u32",
                goal: "~10x: a few ns vs tens",
            },
            Row::Ratio {
                label: "read_u32: mock plain vs raw volatile",
                num: "mock_register/plain_read_u32",
                den: "linux_register/raw_read_u32",
                goal: "at most 5x",
            },
            Row::Ratio {
                label: "read_u32: no model vs plain (model declines)",
                num: "mock_register/no_model_read_u32",
                den: "mock_register/plain_read_u32",
                goal: "reference",
            },
            Row::Ratio {
                label: "read_u32: NVMe ASQ (model) vs plain",
                num: "mock_register/nvme_asq_read_u32",
                den: "mock_register/plain_read_u32",
                goal: "reference",
            },
        ],
    ),
    (
        "3. Interrupt delivery in the mock is one eventfd write: at most 1.5x a raw eventfd signal and consume",
        &[
            Row::Ratio {
                label: "device raises MSI-X vs raw eventfd",
                num: "irq_delivery/mock_raise_msix",
                den: "irq_delivery/raw_eventfd",
                goal: "at most 1.5x",
            },
            Row::Ratio {
                label: "loopback trigger_interrupts vs raw eventfd",
                num: "irq_delivery/mock_trigger_loopback",
                den: "irq_delivery/raw_eventfd",
                goal: "reference",
            },
        ],
    ),
    (
        "4. Programming N MSI-X vectors is one ioctl, whatever N",
        &[
            Row::Single {
                label: "enable_interrupts, 1 vector",
                bench: "msix_bind/vectors/1",
                goal: "one set_irqs call",
            },
            Row::Ratio {
                label: "enable_interrupts: 16 vs 1 vectors",
                num: "msix_bind/vectors/16",
                den: "msix_bind/vectors/1",
                goal: "payload only, still one call",
            },
            Row::Ratio {
                label: "enable_interrupts: 65 vs 1 vectors",
                num: "msix_bind/vectors/65",
                den: "msix_bind/vectors/1",
                goal: "payload only, still one call",
            },
            Row::Slope {
                label: "enable_interrupts: cost per extra vector",
                from: (1, "msix_bind/vectors/1"),
                to: (65, "msix_bind/vectors/65"),
                goal: "at most 1 us",
            },
            Row::Single {
                label: "enable_interrupts, 2048 vectors (16-CPU host)",
                bench: "msix_bind/vectors/2048",
                goal: "well under 5 ms",
            },
            Row::Slope {
                label: "enable_interrupts: cost per extra vector, 1 to 2048",
                from: (1, "msix_bind/vectors/1"),
                to: (2048, "msix_bind/vectors/2048"),
                goal: "at most 1 us",
            },
        ],
    ),
    (
        "5. A device that finishes work on its own thread and raises MSI-X costs at most 2x a raw eventfd ping-pong between two threads",
        &[Row::Ratio {
            label: "deferred completion vs eventfd ping-pong",
            num: "device_time/deferred_completion",
            den: "device_time/eventfd_ping_pong",
            goal: "at most 2x",
        }],
    ),
    (
        "6. Typed 8-byte DMA-memory access through the trait costs at most 1.2x a raw atomic on the same memory",
        &[
            Row::Ratio {
                label: "vfio-linux read_u64: trait vs raw atomic",
                num: "linux_dma/trait_read_u64",
                den: "linux_dma/raw_load_u64",
                goal: "<= 1.2x",
            },
            Row::Ratio {
                label: "vfio-linux write_u64: trait vs raw atomic",
                num: "linux_dma/trait_write_u64",
                den: "linux_dma/raw_store_u64",
                goal: "<= 1.2x",
            },
            Row::Ratio {
                label: "vfio-mock read_u64: trait vs raw atomic",
                num: "mock_dma/trait_read_u64",
                den: "mock_dma/raw_load_u64",
                goal: "<= 1.2x",
            },
            Row::Ratio {
                label: "vfio-mock write_u64: trait vs raw atomic",
                num: "mock_dma/trait_write_u64",
                den: "mock_dma/raw_store_u64",
                goal: "<= 1.2x",
            },
            Row::Single {
                label: "vfio-linux load_acquire_u64",
                bench: "linux_dma/load_acquire_u64",
                goal: "reference",
            },
            Row::Single {
                label: "vfio-linux store_release_u64",
                bench: "linux_dma/store_release_u64",
                goal: "reference",
            },
        ],
    ),
    (
        "7. A 64 KiB copy into or out of DMA memory costs at most 1.5x copy_from_slice on ordinary memory",
        &[
            Row::Ratio {
                label: "vfio-linux write_at 64 KiB vs copy_from_slice",
                num: "linux_dma/write_at_64k",
                den: "linux_dma/copy_from_slice_64k",
                goal: "<= 1.5x",
            },
            Row::Ratio {
                label: "vfio-linux read_at 64 KiB vs copy_from_slice",
                num: "linux_dma/read_at_64k",
                den: "linux_dma/copy_from_slice_64k",
                goal: "<= 1.5x",
            },
            Row::Ratio {
                label: "vfio-mock write_at 64 KiB vs copy_from_slice",
                num: "mock_dma/write_at_64k",
                den: "mock_dma/copy_from_slice_64k",
                goal: "<= 1.5x",
            },
            Row::Ratio {
                label: "vfio-mock read_at 64 KiB vs copy_from_slice",
                num: "mock_dma/read_at_64k",
                den: "mock_dma/copy_from_slice_64k",
                goal: "<= 1.5x",
            },
        ],
    ),
    (
        "8. A test builds its own host: the QEMU guest's topology, built and dropped, costs at most 50 us",
        &[
            Row::Single {
                label: "qemu_guest() built and dropped",
                bench: "mock_host/build_drop",
                goal: "at most 50 us",
            },
            Row::Single {
                label: "the same, with its sysfs, devfs and /proc trees written",
                bench: "mock_host/build_paths_drop",
                goal: "(paid only when the paths are used)",
            },
        ],
    ),
    (
        "9. 4 KiB random reads through the NVMe driver on the mock, against the same copies with no device",
        &[
            Row::Share {
                label: "polled, queue depth 32",
                part: "nvme_random_read/polled_qd32",
                whole: "nvme_random_read/baseline_copy_4k",
                goal: "at least 25%",
            },
            Row::Share {
                label: "interrupt-driven, queue depth 32",
                part: "nvme_random_read/interrupt_qd32",
                whole: "nvme_random_read/baseline_copy_4k",
                goal: "at least 10%",
            },
            Row::Share {
                label: "polled, queue depth 1",
                part: "nvme_random_read/polled_qd1",
                whole: "nvme_random_read/baseline_copy_4k",
                goal: "-",
            },
            Row::RatioToSum {
                label: "interrupt-driven QD1 latency vs ping-pong + copy",
                num: "nvme_random_read/interrupt_qd1",
                den: (
                    "device_time/eventfd_ping_pong",
                    "nvme_random_read/baseline_copy_4k",
                ),
                goal: "at most 3x",
            },
        ],
    ),
];

/// Runs the benchmarks with `extra` appended to `cargo bench`, then prints
/// the report.
pub fn run(extra: &[OsString]) -> Result<()> {
    let root = paths::workspace_root();
    let started = Instant::now();
    cmd::run(
        Command::new(paths::cargo())
            .current_dir(&root)
            .args(["bench", "-p", "vfio-linux", "-p", "vfio-mock", "-p", "nvme"])
            .args(extra),
    )?;
    let took = started.elapsed();
    let dir = target_dir(&root)?.join("criterion");
    println!();
    print!("{}", report(&dir));
    println!(
        "(cargo bench took {:.0} s; numbers are criterion means from {})",
        took.as_secs_f64(),
        dir.display()
    );
    print!("{}", fuzz_rates());
    Ok(())
}

/// Cargo's target directory for the workspace at `root`, as `cargo
/// metadata` reports it (so `CARGO_TARGET_DIR` and config are respected).
fn target_dir(root: &Path) -> Result<PathBuf> {
    let out = cmd::output(Command::new(paths::cargo()).current_dir(root).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))?;
    let text = String::from_utf8(out).context("cargo metadata printed non-UTF-8")?;
    let meta = json::parse(&text).context("cannot parse cargo metadata's output")?;
    meta.get("target_directory")
        .and_then(json::Value::as_str)
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// The mean time in ns of benchmark `id` under `criterion_dir`.
fn mean_ns(criterion_dir: &Path, id: &str) -> Result<f64> {
    let path = criterion_dir.join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    json::parse(&text)
        .with_context(|| format!("cannot parse {}", path.display()))?
        .get("mean")
        .and_then(|m| m.get("point_estimate"))
        .and_then(json::Value::as_f64)
        .filter(|ns| ns.is_finite() && *ns > 0.0)
        .with_context(|| format!("{} has no positive mean.point_estimate", path.display()))
}

/// The report over the estimates under `criterion_dir`. A benchmark that
/// was not run (filtered out, or failed) shows as not measured.
fn report(criterion_dir: &Path) -> String {
    let mean = |id: &str| mean_ns(criterion_dir, id).ok();
    let mut out = String::from("Performance goals (DESIGN.md), from this run:\n");
    for (goal, rows) in GOALS {
        let _ = writeln!(out, "\n{goal}");
        for row in *rows {
            let (label, measured, goal) = match *row {
                Row::Ratio {
                    label,
                    num,
                    den,
                    goal,
                } => {
                    let measured = match (mean(num), mean(den)) {
                        (Some(a), Some(b)) => {
                            format!("{:>10} vs {:>10}  = {:.2}x", time(a), time(b), a / b)
                        }
                        _ => not_measured(&[num, den]),
                    };
                    (label, measured, goal)
                }
                Row::Share {
                    label,
                    part,
                    whole,
                    goal,
                } => {
                    let measured = match (mean(part), mean(whole)) {
                        (Some(p), Some(w)) => format!(
                            "{:>10} vs {:>10}  = {:.1}% of the rate",
                            time(p),
                            time(w),
                            100.0 * w / p
                        ),
                        _ => not_measured(&[part, whole]),
                    };
                    (label, measured, goal)
                }
                Row::RatioToSum {
                    label,
                    num,
                    den: (d1, d2),
                    goal,
                } => {
                    let measured = match (mean(num), mean(d1), mean(d2)) {
                        (Some(a), Some(b), Some(c)) => {
                            format!(
                                "{:>10} vs {:>10}  = {:.2}x",
                                time(a),
                                time(b + c),
                                a / (b + c)
                            )
                        }
                        _ => not_measured(&[num, d1, d2]),
                    };
                    (label, measured, goal)
                }
                Row::Single { label, bench, goal } => {
                    let measured = mean(bench)
                        .map_or_else(|| not_measured(&[bench]), |ns| format!("{:>10}", time(ns)));
                    (label, measured, goal)
                }
                Row::Slope {
                    label,
                    from: (n0, from),
                    to: (n1, to),
                    goal,
                } => {
                    let measured = match (mean(from), mean(to)) {
                        (Some(a), Some(b)) if n1 > n0 => {
                            let per = (b - a) / f64::from(n1 - n0);
                            format!("{:>10} per vector", time(per))
                        }
                        _ => not_measured(&[from, to]),
                    };
                    (label, measured, goal)
                }
            };
            let _ = writeln!(out, "  {label:<46} {measured}  (goal: {goal})");
        }
    }
    out
}

fn not_measured(ids: &[&str]) -> String {
    format!("not measured ({})", ids.join(", "))
}

/// A time in ns, in the unit that suits it.
fn time(ns: f64) -> String {
    let abs = ns.abs();
    if abs < 10.0 {
        format!("{ns:.2} ns")
    } else if abs < 1e3 {
        format!("{ns:.1} ns")
    } else if abs < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if abs < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

/// How long each target runs for the fuzz-rate goal: the goal's 45 s.
const FUZZ_RATE_SECONDS: u32 = 45;

/// The fuzz targets the fuzz-rate goal names, with the executions per
/// second it asks of each.
const FUZZ_RATE_GOALS: [(&str, u64); 2] = [("hostile_device", 20_000), ("register_access", 50_000)];

/// The fuzz-rate goal: each target of [`FUZZ_RATE_GOALS`] under `cargo
/// fuzz` (nightly, its default sanitizer) for [`FUZZ_RATE_SECONDS`] from
/// its committed corpus, libFuzzer's executions per second against the
/// goal. It reports and never fails: a target that cannot run (no nightly,
/// no cargo-fuzz, a crash) shows as not measured, with why. The load
/// average is printed with it, since on a shared machine the rate follows
/// the CPU the run gets.
fn fuzz_rates() -> String {
    let mut out = String::from(
        "\n10. Fuzzing runs a hostile device thousands of times a second (cargo fuzz, with its sanitizer)\n",
    );
    let root = paths::workspace_root();
    let scratch = crate::ci::install_cargo_fuzz()
        .and_then(|()| crate::scratch::ScratchDir::new(&root.join("target"), "fuzz-rate"));
    for (target, goal) in FUZZ_RATE_GOALS {
        let label = format!("{target}: executions per second, {FUZZ_RATE_SECONDS} s");
        let load = load_average();
        let measured = match &scratch {
            Ok(dir) => match crate::ci::fuzz_for(target, FUZZ_RATE_SECONDS, dir.path()) {
                Ok(stats) => match (stats.per_sec, stats.runs) {
                    (Some(per_sec), Some(runs)) => {
                        format!("{per_sec:>10}/s ({runs} runs, load {load})")
                    }
                    _ => "not measured (libFuzzer printed no final stats)".to_owned(),
                },
                Err(e) => format!("not measured ({e:#})"),
            },
            Err(e) => format!("not measured ({e:#})"),
        };
        let _ = writeln!(out, "  {label:<46} {measured}  (goal: at least {goal}/s)");
    }
    out
}

/// The 1-minute load average from `/proc/loadavg`, or "unknown".
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Just enough JSON to read criterion's estimates and `cargo metadata`.
mod json {
    use anyhow::{Result, bail};

    /// Nesting deeper than this is refused rather than risking the stack.
    const MAX_DEPTH: usize = 128;

    /// A JSON value. Objects keep their keys in order.
    #[derive(Debug, Clone, PartialEq)]
    pub enum Value {
        Null,
        Bool(bool),
        Number(f64),
        String(String),
        Array(Vec<Value>),
        Object(Vec<(String, Value)>),
    }

    impl Value {
        /// The member `key` of an object.
        pub fn get(&self, key: &str) -> Option<&Value> {
            match self {
                Self::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
                _ => None,
            }
        }

        pub fn as_f64(&self) -> Option<f64> {
            match self {
                Self::Number(n) => Some(*n),
                _ => None,
            }
        }

        pub fn as_str(&self) -> Option<&str> {
            match self {
                Self::String(s) => Some(s),
                _ => None,
            }
        }
    }

    /// Parses one JSON document (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Result<Value> {
        let mut p = Parser { text, pos: 0 };
        let value = p.value(0)?;
        p.skip_ws();
        if p.pos != text.len() {
            bail!("trailing characters at byte {}", p.pos);
        }
        Ok(value)
    }

    struct Parser<'a> {
        text: &'a str,
        pos: usize,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<u8> {
            self.text.as_bytes().get(self.pos).copied()
        }

        fn skip_ws(&mut self) {
            while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
                self.pos += 1;
            }
        }

        fn expect(&mut self, byte: u8) -> Result<()> {
            self.skip_ws();
            if self.peek() != Some(byte) {
                bail!("expected `{}` at byte {}", char::from(byte), self.pos);
            }
            self.pos += 1;
            Ok(())
        }

        fn value(&mut self, depth: usize) -> Result<Value> {
            if depth > MAX_DEPTH {
                bail!("nested deeper than {MAX_DEPTH} levels");
            }
            self.skip_ws();
            match self.peek() {
                Some(b'{') => self.object(depth),
                Some(b'[') => self.array(depth),
                Some(b'"') => self.string().map(Value::String),
                Some(b't') => self.word("true", Value::Bool(true)),
                Some(b'f') => self.word("false", Value::Bool(false)),
                Some(b'n') => self.word("null", Value::Null),
                Some(b'-' | b'0'..=b'9') => self.number(),
                Some(_) => bail!("unexpected character at byte {}", self.pos),
                None => bail!("unexpected end of input"),
            }
        }

        fn word(&mut self, word: &str, value: Value) -> Result<Value> {
            if !self.text[self.pos..].starts_with(word) {
                bail!("bad literal at byte {}", self.pos);
            }
            self.pos += word.len();
            Ok(value)
        }

        fn number(&mut self) -> Result<Value> {
            let start = self.pos;
            while matches!(
                self.peek(),
                Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            ) {
                self.pos += 1;
            }
            let text = &self.text[start..self.pos];
            match text.parse::<f64>() {
                Ok(n) => Ok(Value::Number(n)),
                Err(_) => bail!("bad number {text:?} at byte {start}"),
            }
        }

        fn string(&mut self) -> Result<String> {
            self.expect(b'"')?;
            let mut out = String::new();
            let mut run = self.pos;
            loop {
                match self.peek() {
                    None => bail!("unterminated string"),
                    Some(b'"') => {
                        out.push_str(&self.text[run..self.pos]);
                        self.pos += 1;
                        return Ok(out);
                    }
                    Some(b'\\') => {
                        out.push_str(&self.text[run..self.pos]);
                        self.pos += 1;
                        let escaped = match self.peek() {
                            Some(b'"') => '"',
                            Some(b'\\') => '\\',
                            Some(b'/') => '/',
                            Some(b'b') => '\u{8}',
                            Some(b'f') => '\u{c}',
                            Some(b'n') => '\n',
                            Some(b'r') => '\r',
                            Some(b't') => '\t',
                            Some(b'u') => {
                                self.pos += 1;
                                let unit = self.hex4()?;
                                let code = if (0xd800..0xdc00).contains(&unit)
                                    && self.text[self.pos..].starts_with("\\u")
                                {
                                    self.pos += 2;
                                    let low = self.hex4()?;
                                    0x10000 + ((unit - 0xd800) << 10) + low.wrapping_sub(0xdc00)
                                } else {
                                    unit
                                };
                                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                                run = self.pos;
                                continue;
                            }
                            _ => bail!("bad escape at byte {}", self.pos),
                        };
                        out.push(escaped);
                        self.pos += 1;
                        run = self.pos;
                    }
                    Some(_) => self.pos += 1,
                }
            }
        }

        fn hex4(&mut self) -> Result<u32> {
            let Some(digits) = self.text.get(self.pos..self.pos + 4) else {
                bail!("short \\u escape at byte {}", self.pos);
            };
            let Ok(unit) = u32::from_str_radix(digits, 16) else {
                bail!("bad \\u escape at byte {}", self.pos);
            };
            self.pos += 4;
            Ok(unit)
        }

        fn array(&mut self, depth: usize) -> Result<Value> {
            self.expect(b'[')?;
            let mut items = Vec::new();
            self.skip_ws();
            if self.peek() == Some(b']') {
                self.pos += 1;
                return Ok(Value::Array(items));
            }
            loop {
                items.push(self.value(depth + 1)?);
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        return Ok(Value::Array(items));
                    }
                    _ => bail!("expected `,` or `]` at byte {}", self.pos),
                }
            }
        }

        fn object(&mut self, depth: usize) -> Result<Value> {
            self.expect(b'{')?;
            let mut members = Vec::new();
            self.skip_ws();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(Value::Object(members));
            }
            loop {
                self.skip_ws();
                let key = self.string()?;
                self.expect(b':')?;
                members.push((key, self.value(depth + 1)?));
                self.skip_ws();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        return Ok(Value::Object(members));
                    }
                    _ => bail!("expected `,` or `}}` at byte {}", self.pos),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What criterion 0.7 writes, trimmed to two estimates.
    fn estimates(mean: f64) -> String {
        format!(
            r#"{{"mean":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{lo},"upper_bound":{hi}}},"point_estimate":{mean},"standard_error":0.01}},"median":{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":2.0}},"point_estimate":99.0,"standard_error":0.02}}}}"#,
            lo = mean * 0.9,
            hi = mean * 1.1,
        )
    }

    fn fixture(benches: &[(&str, f64)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (id, mean) in benches {
            let new = dir.path().join(id).join("new");
            std::fs::create_dir_all(&new).unwrap();
            std::fs::write(new.join("estimates.json"), estimates(*mean)).unwrap();
        }
        dir
    }

    #[test]
    fn mean_is_the_mean_point_estimate_not_the_median() {
        let dir = fixture(&[("g/b", 12.5), ("g/vectors/65", 2.0e6)]);
        assert_eq!(mean_ns(dir.path(), "g/b").unwrap(), 12.5);
        assert_eq!(mean_ns(dir.path(), "g/vectors/65").unwrap(), 2.0e6);
        assert!(mean_ns(dir.path(), "g/missing").is_err());
    }

    #[test]
    fn a_non_positive_or_absent_mean_is_an_error() {
        let dir = fixture(&[("g/zero", 0.0)]);
        assert!(mean_ns(dir.path(), "g/zero").is_err());
        let bad = dir.path().join("g/bad/new");
        std::fs::create_dir_all(&bad).unwrap();
        std::fs::write(
            bad.join("estimates.json"),
            r#"{"median":{"point_estimate":1}}"#,
        )
        .unwrap();
        assert!(mean_ns(dir.path(), "g/bad").is_err());
    }

    #[test]
    fn report_prints_ratios_slopes_and_what_was_not_measured() {
        let dir = fixture(&[
            ("linux_register/trait_read_u32", 1.02),
            ("linux_register/raw_read_u32", 1.0),
            ("mock_register/plain_read_u32", 4.0),
            ("mock_register/hooked_read_u32", 40.0),
            ("msix_bind/vectors/1", 10_000.0),
            ("msix_bind/vectors/65", 74_000.0),
        ]);
        let text = report(dir.path());
        let line = |needle: &str| {
            text.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
                .to_owned()
        };
        let trait_read = line("read_u32: trait vs raw volatile");
        assert!(
            trait_read.contains("1.02 ns vs    1.00 ns  = 1.02x"),
            "{trait_read}"
        );
        assert!(trait_read.ends_with("(goal: ~1x)"), "{trait_read}");
        assert!(line("hooked vs plain").contains("= 10.00x"));
        assert!(line("mock plain vs raw volatile").contains("= 4.00x"));
        assert!(line("cost per extra vector").contains("1.0 µs per vector"));
        let write = line("write_u32: trait vs raw volatile");
        assert!(
            write.contains("not measured (linux_register/trait_write_u32"),
            "{write}"
        );
        assert!(line("device raises MSI-X").contains("not measured"));
        assert!(line("vfio-linux read_at 64 KiB").contains("not measured (linux_dma/read_at_64k"));
        for goal in [
            "1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. ", "8. ", "9. ",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(goal)),
                "{goal} in:\n{text}"
            );
        }
    }

    #[test]
    fn times_use_a_fitting_unit() {
        assert_eq!(time(0.627), "0.63 ns");
        assert_eq!(time(12.37), "12.4 ns");
        assert_eq!(time(683.5), "683.5 ns");
        assert_eq!(time(282_960.0), "283.0 µs");
        assert_eq!(time(2_475_700.0), "2.48 ms");
    }

    #[test]
    fn json_parses_nesting_escapes_and_literals() {
        let v = json::parse(
            r#" {"a": [1, -2.5e3, true, false, null], "s": "q\"\\\/\n\u00e9\ud83d\ude00x", "o": {}} "#,
        )
        .unwrap();
        assert_eq!(
            v.get("a"),
            Some(&json::Value::Array(vec![
                json::Value::Number(1.0),
                json::Value::Number(-2500.0),
                json::Value::Bool(true),
                json::Value::Bool(false),
                json::Value::Null,
            ]))
        );
        assert_eq!(
            v.get("s").and_then(json::Value::as_str),
            Some("q\"\\/\né😀x")
        );
        assert_eq!(v.get("o"), Some(&json::Value::Object(Vec::new())));
        assert_eq!(v.get("missing"), None);
    }

    #[test]
    fn json_rejects_malformed_input() {
        for bad in [
            "",
            "{",
            r#"{"a" 1}"#,
            "[1,]",
            r#""open"#,
            "tru",
            "1 2",
            r#""\x""#,
            "--1",
        ] {
            assert!(json::parse(bad).is_err(), "{bad:?} parsed");
        }
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(json::parse(&deep).is_err());
    }
}
