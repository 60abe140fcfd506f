//! Running cases, and reporting their outcomes on every run side by side, as
//! text, Markdown and JSON.
//!
//! A [`Run`] is one execution of the suite: a backend, the kernel it is or
//! imitates, and the IOMMU mode. A mock run and a Linux run with the same
//! kernel and mode are twins, and twins must agree case by case.

use crate::{Case, Env, NotApplicable};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;
use vfio_core::VfioBackend;

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub enum Outcome {
    /// Every assertion held.
    Pass,
    /// An assertion failed or a call errored; the message says which.
    Fail(String),
    /// The case does not apply to the device it ran on; the reason says why.
    NotApplicable(String),
}

impl Outcome {
    /// `pass`, `fail` or `n/a`.
    pub fn status(&self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail(_) => "fail",
            Self::NotApplicable(_) => "n/a",
        }
    }

    /// The failure message or the reason a case does not apply; empty for a pass.
    pub fn detail(&self) -> &str {
        match self {
            Self::Pass => "",
            Self::Fail(s) | Self::NotApplicable(s) => s,
        }
    }
}

/// An outcome as it is written: `{"status": ..., "detail": ...}`.
#[derive(Serialize, Deserialize)]
struct Wire {
    status: String,
    #[serde(default)]
    detail: String,
}

impl From<Outcome> for Wire {
    fn from(o: Outcome) -> Self {
        Self {
            status: o.status().to_owned(),
            detail: o.detail().to_owned(),
        }
    }
}

impl TryFrom<Wire> for Outcome {
    type Error = String;

    fn try_from(w: Wire) -> Result<Self, String> {
        match w.status.as_str() {
            "pass" => Ok(Self::Pass),
            "fail" => Ok(Self::Fail(w.detail)),
            "n/a" => Ok(Self::NotApplicable(w.detail)),
            other => Err(format!("unknown status `{other}`")),
        }
    }
}

/// One case's result on one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time in microseconds.
    pub micros: u64,
}

/// Every case's result on one backend: what the guest sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Which backend ran the suite.
    pub backend: String,
    /// The kernel release it ran on (`uname -r`), where it ran on one.
    #[serde(default)]
    pub kernel: Option<String>,
    /// The mode the cases opened devices in (`type1`, `iommufd`,
    /// `noiommu`); a report without one is type1's.
    #[serde(default)]
    pub mode: Option<String>,
    /// The results, in suite order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// How many cases passed, did not apply, and failed.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for r in &self.results {
            match r.outcome {
                Outcome::Pass => c.passed += 1,
                Outcome::NotApplicable(_) => c.not_applicable += 1,
                Outcome::Fail(_) => c.failed += 1,
            }
        }
        c
    }
}

/// Cases by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that did not apply.
    pub not_applicable: usize,
    /// Cases that failed.
    pub failed: usize,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed, {} n/a, {} failed",
            self.passed, self.not_applicable, self.failed
        )
    }
}

/// Runs one case in an environment from `factory`, turning a
/// [`NotApplicable`] into n/a and other errors and panics into a failure.
pub fn run_case<B: VfioBackend>(
    case: &Case<B>,
    factory: &dyn Fn() -> anyhow::Result<Env<B>>,
) -> CaseResult {
    let start = Instant::now();
    let outcome = match catch_unwind(AssertUnwindSafe(|| {
        factory().and_then(|env| (case.run)(&env))
    })) {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(e)) => match e.downcast_ref::<NotApplicable>() {
            Some(n) => Outcome::NotApplicable(n.0.clone()),
            None => Outcome::Fail(format!("{e:#}")),
        },
        Err(panic) => Outcome::Fail(format!(
            "panicked: {}",
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default()
        )),
    };
    CaseResult {
        name: case.name.clone(),
        outcome,
        micros: start.elapsed().as_micros() as u64,
    }
}

/// Runs `cases` (each in a fresh environment), printing a line per case.
pub fn run_suite<B: VfioBackend>(
    backend: &str,
    cases: &[Case<B>],
    factory: &dyn Fn() -> anyhow::Result<Env<B>>,
) -> Report {
    let results = cases
        .iter()
        .map(|case| {
            let r = run_case(case, factory);
            match &r.outcome {
                Outcome::Pass => println!("PASS {} ({} us)", r.name, r.micros),
                Outcome::NotApplicable(why) => println!("N/A  {}: {why}", r.name),
                Outcome::Fail(why) => println!("FAIL {}: {why}", r.name),
            }
            r
        })
        .collect();
    Report {
        backend: backend.to_owned(),
        kernel: None,
        mode: None,
        results,
    }
}

/// Which implementation a run drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `vfio-mock`, the simulated host.
    Mock,
    /// `vfio-linux` on a real kernel's vfio-pci.
    Linux,
}

impl Backend {
    /// `mock` or `linux`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mock => "mock",
            Self::Linux => "linux",
        }
    }
}

/// One execution of the suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    /// The backend.
    pub backend: Backend,
    /// The kernel series it ran on or imitates, e.g. `6.1`.
    pub kernel: String,
    /// The IOMMU interface the cases use, e.g. `type1`.
    pub mode: String,
}

impl Run {
    /// A run of `backend` on (or imitating) `kernel` in `mode`.
    pub fn new(backend: Backend, kernel: impl Into<String>, mode: impl Into<String>) -> Self {
        Self {
            backend,
            kernel: kernel.into(),
            mode: mode.into(),
        }
    }

    /// `<backend>-<kernel>-<mode>`, e.g. `mock-6.1-type1`.
    pub fn id(&self) -> String {
        format!("{}-{}-{}", self.backend.as_str(), self.kernel, self.mode)
    }

    /// True for the other backend on the same kernel and mode.
    pub fn is_twin_of(&self, other: &Run) -> bool {
        self.backend != other.backend && self.kernel == other.kernel && self.mode == other.mode
    }
}

/// The series of a kernel release: `6.1` for `6.1.0-54-amd64`.
pub fn kernel_series(release: &str) -> String {
    release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .collect::<Vec<_>>()
        .join(".")
}

/// One case's results on every run that ran it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The case's name.
    pub name: String,
    /// Its outcome per run, by run id, in the order of the table's runs.
    pub results: Vec<(String, Outcome)>,
    /// Why the case runs on one backend only, if it does.
    pub only: Option<String>,
}

impl Row {
    /// The outcome on run `id`, if the case ran there.
    pub fn result(&self, id: &str) -> Option<&Outcome> {
        self.results.iter().find(|(r, _)| r == id).map(|(_, o)| o)
    }
}

/// Every run and every case's results on them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// The runs, in column order.
    pub runs: Vec<Run>,
    /// One row per case, in the order the cases first ran.
    pub rows: Vec<Row>,
}

impl Table {
    /// Adds `report` as the results of `run`. `only` gives the reason for each
    /// case that runs on this run's backend alone.
    pub fn add(&mut self, run: Run, report: &Report, only: &[(String, String)]) {
        let id = run.id();
        for r in &report.results {
            let row = match self.rows.iter().position(|row| row.name == r.name) {
                Some(i) => &mut self.rows[i],
                None => {
                    self.rows.push(Row {
                        name: r.name.clone(),
                        results: Vec::new(),
                        only: None,
                    });
                    self.rows.last_mut().expect("just pushed")
                }
            };
            row.results.push((id.clone(), r.outcome.clone()));
            if let Some((_, why)) = only.iter().find(|(name, _)| *name == r.name) {
                row.only = Some(why.clone());
            }
        }
        self.runs.push(run);
    }

    /// Everything wrong with the table, one sentence each: failures, a case
    /// missing from a run, twins that disagree (pass against n/a included).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for row in &self.rows {
            for (id, o) in &row.results {
                if let Outcome::Fail(why) = o {
                    out.push(format!("`{}` fails on {id}: {why}", row.name));
                }
            }
            for (i, a) in self.runs.iter().enumerate() {
                let (ida, oa) = (a.id(), row.result(&a.id()));
                if oa.is_none() && row.only.is_none() {
                    out.push(format!("`{}` did not run on {ida}", row.name));
                }
                for b in self.runs[i + 1..].iter().filter(|b| b.is_twin_of(a)) {
                    let idb = b.id();
                    if let (Some(oa), Some(ob)) = (oa, row.result(&idb))
                        && oa.status() != ob.status()
                    {
                        out.push(format!(
                            "`{}`: twins disagree, {} on {ida} and {} on {idb}",
                            row.name,
                            oa.status(),
                            ob.status()
                        ));
                    }
                }
            }
        }
        out
    }

    /// How many cases on run `id` passed, did not apply and failed.
    pub fn counts(&self, id: &str) -> Counts {
        let mut c = Counts::default();
        for o in self.rows.iter().filter_map(|r| r.result(id)) {
            match o {
                Outcome::Pass => c.passed += 1,
                Outcome::NotApplicable(_) => c.not_applicable += 1,
                Outcome::Fail(_) => c.failed += 1,
            }
        }
        c
    }

    /// The table as Markdown: a column per run and whether the row agrees;
    /// failures and the reasons for n/a are listed under it.
    pub fn markdown(&self) -> String {
        let ids: Vec<String> = self.runs.iter().map(Run::id).collect();
        let mut out = format!("| case | {} | agree |\n|---|", ids.join(" | "));
        out.push_str(&"---|".repeat(ids.len() + 1));
        out.push('\n');
        let problems = self.problems();
        for row in &self.rows {
            let cells: Vec<&str> = ids
                .iter()
                .map(|id| match row.result(id) {
                    Some(Outcome::Pass) => "pass",
                    Some(Outcome::NotApplicable(_)) => "n/a",
                    Some(Outcome::Fail(_)) => "FAIL",
                    None => "-",
                })
                .collect();
            let tag = format!("`{}`", row.name);
            let agree = if problems.iter().any(|p| p.starts_with(&tag)) {
                "**NO**".to_owned()
            } else {
                match &row.only {
                    Some(why) => {
                        let mut on: Vec<&str> = self
                            .runs
                            .iter()
                            .filter(|run| row.result(&run.id()).is_some())
                            .map(|run| run.backend.as_str())
                            .collect();
                        on.dedup();
                        format!("{} only: {why}", on.join(", "))
                    }
                    None => "yes".to_owned(),
                }
            };
            out.push_str(&format!("| {tag} | {} | {agree} |\n", cells.join(" | ")));
        }
        let mut na: Vec<String> = Vec::new();
        for row in &self.rows {
            for (_, o) in &row.results {
                if let Outcome::NotApplicable(why) = o {
                    let line = format!("- `{}`: {why}", row.name);
                    if !na.contains(&line) {
                        na.push(line);
                    }
                }
            }
        }
        if !na.is_empty() {
            out.push_str("\nNot applicable:\n\n");
            out.push_str(&na.join("\n"));
            out.push('\n');
        }
        if !problems.is_empty() {
            out.push_str("\nProblems:\n\n");
            for p in &problems {
                out.push_str(&format!("- {p}\n"));
            }
        }
        out
    }
}

/// `{"runs": {id: run}, "cases": [row]}`, runs and results in table order.
impl Serialize for Table {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Runs<'a>(&'a [Run]);
        impl Serialize for Runs<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|r| (r.id(), r)))
            }
        }
        let mut t = s.serialize_struct("Table", 2)?;
        t.serialize_field("runs", &Runs(&self.runs))?;
        t.serialize_field("cases", &self.rows)?;
        t.end()
    }
}

/// `{"name": ..., "results": {id: outcome}, "only": null | why}`.
impl Serialize for Row {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Results<'a>(&'a [(String, Outcome)]);
        impl Serialize for Results<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(id, o)| (id, o)))
            }
        }
        let mut r = s.serialize_struct("Row", 3)?;
        r.serialize_field("name", &self.name)?;
        r.serialize_field("results", &Results(&self.results))?;
        r.serialize_field("only", &self.only)?;
        r.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(results: &[(&str, Outcome)]) -> Report {
        Report {
            backend: "any".into(),
            kernel: None,
            mode: None,
            results: results
                .iter()
                .map(|(n, o)| CaseResult {
                    name: (*n).into(),
                    outcome: o.clone(),
                    micros: 1,
                })
                .collect(),
        }
    }

    fn mock() -> Run {
        Run::new(Backend::Mock, "6.1", "type1")
    }

    fn linux() -> Run {
        Run::new(Backend::Linux, "6.1", "type1")
    }

    fn na(why: &str) -> Outcome {
        Outcome::NotApplicable(why.into())
    }

    #[test]
    fn twins_must_agree_and_nothing_may_fail() {
        let mut t = Table::default();
        t.add(
            mock(),
            &report(&[
                ("a", Outcome::Pass),
                ("b", Outcome::Pass),
                ("c", na("no MSI-X")),
                ("d", na("no MSI-X")),
            ]),
            &[],
        );
        t.add(
            linux(),
            &report(&[
                ("a", Outcome::Pass),
                ("b", Outcome::Fail("y".into())),
                ("c", na("no MSI-X")),
                ("d", Outcome::Pass),
                ("k", Outcome::Pass),
            ]),
            &[("k".into(), "raw call".into())],
        );
        assert_eq!(
            t.problems(),
            [
                "`b` fails on linux-6.1-type1: y",
                "`b`: twins disagree, pass on mock-6.1-type1 and fail on linux-6.1-type1",
                "`d`: twins disagree, n/a on mock-6.1-type1 and pass on linux-6.1-type1",
            ]
        );
        let md = t.markdown();
        assert!(
            md.starts_with(
                "| case | mock-6.1-type1 | linux-6.1-type1 | agree |\n|---|---|---|---|\n"
            ),
            "{md}"
        );
        assert!(md.contains("| `a` | pass | pass | yes |"), "{md}");
        assert!(md.contains("| `b` | pass | FAIL | **NO** |"), "{md}");
        assert!(md.contains("| `c` | n/a | n/a | yes |"), "{md}");
        assert!(md.contains("| `d` | n/a | pass | **NO** |"), "{md}");
        assert!(
            md.contains("| `k` | - | pass | linux only: raw call |"),
            "{md}"
        );
        assert!(
            md.contains("\nNot applicable:\n\n- `c`: no MSI-X\n- `d`: no MSI-X\n"),
            "{md}"
        );
    }

    #[test]
    fn a_shared_case_missing_from_a_run_is_a_problem() {
        let mut t = Table::default();
        t.add(mock(), &report(&[("a", Outcome::Pass)]), &[]);
        t.add(linux(), &report(&[]), &[]);
        assert_eq!(t.problems(), ["`a` did not run on linux-6.1-type1"]);
    }

    #[test]
    fn runs_of_other_kernels_are_not_twins() {
        let newer = Run::new(Backend::Linux, "6.12", "iommufd");
        assert_eq!(newer.id(), "linux-6.12-iommufd");
        assert!(linux().is_twin_of(&mock()) && !newer.is_twin_of(&mock()));
        assert_eq!(kernel_series("6.1.0-54-amd64"), "6.1");
        assert_eq!(kernel_series("6.12.117"), "6.12");
    }

    #[test]
    fn the_json_has_the_stable_shape() {
        let mut t = Table::default();
        t.add(
            mock(),
            &report(&[("a", Outcome::Pass), ("b", na("edu has no MSI-X"))]),
            &[],
        );
        t.add(
            linux(),
            &report(&[
                ("a", Outcome::Fail("want busy, EBUSY".into())),
                ("b", na("edu has no MSI-X")),
                ("k", Outcome::Pass),
            ]),
            &[("k".into(), "a raw call to the kernel".into())],
        );
        let want = r#"{
  "runs": {
    "mock-6.1-type1": {"backend": "mock", "kernel": "6.1", "mode": "type1"},
    "linux-6.1-type1": {"backend": "linux", "kernel": "6.1", "mode": "type1"}
  },
  "cases": [
    {"name": "a", "results": {
      "mock-6.1-type1": {"status": "pass", "detail": ""},
      "linux-6.1-type1": {"status": "fail", "detail": "want busy, EBUSY"}
    }, "only": null},
    {"name": "b", "results": {
      "mock-6.1-type1": {"status": "n/a", "detail": "edu has no MSI-X"},
      "linux-6.1-type1": {"status": "n/a", "detail": "edu has no MSI-X"}
    }, "only": null},
    {"name": "k", "results": {
      "linux-6.1-type1": {"status": "pass", "detail": ""}
    }, "only": "a raw call to the kernel"}
  ]
}"#;
        // The literal without the layout: whitespace outside strings removed.
        let squeezed: String = want
            .split('"')
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 1 {
                    format!("\"{part}\"")
                } else {
                    part.chars().filter(|c| !c.is_whitespace()).collect()
                }
            })
            .collect();
        assert_eq!(serde_json::to_string(&t).unwrap(), squeezed);
    }

    #[test]
    fn reports_round_trip_through_json() {
        let mut r = report(&[
            ("a", Outcome::Pass),
            ("b", Outcome::Fail("why \"quoted\"".into())),
            ("c", na("no MSI-X")),
        ]);
        r.kernel = Some("6.1.0-54-amd64".into());
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            json.contains(r#"{"name":"c","outcome":{"status":"n/a","detail":"no MSI-X"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }
}
