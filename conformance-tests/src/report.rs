//! Running cases and reporting their outcomes, as text and as JSON.

use crate::{Case, Env};
use serde::{Deserialize, Serialize};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;
use vfio_core::VfioBackend;

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Outcome {
    /// Every assertion held.
    Pass,
    /// An assertion failed or a call errored; the message says which.
    Fail(String),
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

/// Every case's result on one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Which backend ran the suite.
    pub backend: String,
    /// The results, in suite order.
    pub results: Vec<CaseResult>,
}

impl Report {
    /// True when every case passed.
    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|r| r.outcome == Outcome::Pass)
    }

    /// How many cases passed and failed.
    pub fn counts(&self) -> (usize, usize) {
        let passed = self
            .results
            .iter()
            .filter(|r| r.outcome == Outcome::Pass)
            .count();
        (passed, self.results.len() - passed)
    }
}

/// Runs one case in an environment from `factory`, turning errors and panics
/// into a failed outcome.
pub fn run_case<B: VfioBackend>(
    case: &Case<B>,
    factory: &dyn Fn() -> anyhow::Result<Env<B>>,
) -> CaseResult {
    let start = Instant::now();
    let outcome = match catch_unwind(AssertUnwindSafe(|| {
        factory().and_then(|env| (case.run)(&env))
    })) {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(e)) => Outcome::Fail(format!("{e:#}")),
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
                Outcome::Fail(why) => println!("FAIL {}: {why}", r.name),
            }
            r
        })
        .collect();
    Report {
        backend: backend.to_owned(),
        results,
    }
}

/// One case's results on the two backends, side by side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// The case's name.
    pub name: String,
    /// Outcome on the simulated backend, if it ran there.
    pub mock: Option<Outcome>,
    /// Outcome on the real kernel, if it ran there.
    pub kernel: Option<Outcome>,
    /// Why the case runs on one backend only, if it does.
    pub only: Option<String>,
}

impl Row {
    /// True when the case passed everywhere it was meant to run.
    pub fn agrees(&self) -> bool {
        matches!(
            (&self.mock, &self.kernel, &self.only),
            (Some(Outcome::Pass), Some(Outcome::Pass), None) | (Some(Outcome::Pass), None, Some(_))
        )
    }
}

/// Lines up the mock's report with the kernel's (if there is one), adding the
/// single-backend cases with their reasons.
pub fn compare(
    mock: &Report,
    kernel: Option<&Report>,
    mock_only: &[(String, Outcome, String)],
) -> Vec<Row> {
    let mut rows: Vec<Row> = mock
        .results
        .iter()
        .map(|r| Row {
            name: r.name.clone(),
            mock: Some(r.outcome.clone()),
            kernel: kernel
                .and_then(|k| k.results.iter().find(|x| x.name == r.name))
                .map(|x| x.outcome.clone()),
            only: None,
        })
        .collect();
    if let Some(k) = kernel {
        for r in &k.results {
            if !rows.iter().any(|row| row.name == r.name) {
                rows.push(Row {
                    name: r.name.clone(),
                    mock: None,
                    kernel: Some(r.outcome.clone()),
                    only: None,
                });
            }
        }
    }
    rows.extend(mock_only.iter().map(|(name, outcome, why)| Row {
        name: name.clone(),
        mock: Some(outcome.clone()),
        kernel: None,
        only: Some(why.clone()),
    }));
    rows
}

fn cell(o: &Option<Outcome>) -> &'static str {
    match o {
        Some(Outcome::Pass) => "pass",
        Some(Outcome::Fail(_)) => "FAIL",
        None => "-",
    }
}

/// The side-by-side table as Markdown: case, mock, kernel, agree; failures
/// are listed under it with their messages.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from("| case | mock | kernel | agree |\n|---|---|---|---|\n");
    for r in rows {
        let agree = match (&r.only, r.agrees()) {
            (Some(why), true) => format!("mock only: {why}"),
            (None, true) => "yes".to_owned(),
            (_, false) => "**NO**".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {agree} |\n",
            r.name,
            cell(&r.mock),
            cell(&r.kernel)
        ));
    }
    let failures: Vec<String> = rows
        .iter()
        .flat_map(|r| {
            [("mock", &r.mock), ("kernel", &r.kernel)]
                .into_iter()
                .filter_map(move |(b, o)| match o {
                    Some(Outcome::Fail(why)) => Some(format!("- `{}` on {b}: {why}", r.name)),
                    _ => None,
                })
        })
        .collect();
    if !failures.is_empty() {
        out.push_str("\nFailures:\n\n");
        out.push_str(&failures.join("\n"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(backend: &str, results: &[(&str, Outcome)]) -> Report {
        Report {
            backend: backend.into(),
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

    #[test]
    fn a_case_agrees_only_when_it_passes_on_both() {
        let mock = report(
            "mock",
            &[
                ("a", Outcome::Pass),
                ("b", Outcome::Pass),
                ("c", Outcome::Fail("x".into())),
            ],
        );
        let kernel = report(
            "kernel",
            &[
                ("a", Outcome::Pass),
                ("b", Outcome::Fail("y".into())),
                ("c", Outcome::Pass),
            ],
        );
        let rows = compare(
            &mock,
            Some(&kernel),
            &[("f".into(), Outcome::Pass, "fault injection".into())],
        );
        let agree: Vec<(&str, bool)> = rows.iter().map(|r| (r.name.as_str(), r.agrees())).collect();
        assert_eq!(
            agree,
            [("a", true), ("b", false), ("c", false), ("f", true)]
        );
        let table = markdown(&rows);
        assert!(table.contains("| `b` | pass | FAIL | **NO** |"), "{table}");
        assert!(
            table.contains("| `f` | pass | - | mock only: fault injection |"),
            "{table}"
        );
        assert!(table.contains("- `b` on kernel: y"), "{table}");
    }

    #[test]
    fn without_a_kernel_report_shared_cases_do_not_agree() {
        let mock = report("mock", &[("a", Outcome::Pass)]);
        let rows = compare(&mock, None, &[]);
        assert!(!rows[0].agrees());
    }

    #[test]
    fn reports_round_trip_through_json() {
        let r = report(
            "vfio-linux",
            &[
                ("a", Outcome::Pass),
                ("b", Outcome::Fail("why \"quoted\"".into())),
            ],
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&json).unwrap(), r);
    }
}
