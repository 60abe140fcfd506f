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
        name: case.name.to_owned(),
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
