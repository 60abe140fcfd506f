//! The shared conformance suite, run on the simulated QEMU guest: every
//! case must pass here exactly as on the real kernel.

use conformance_tests::{Env, cases};
use std::panic::{AssertUnwindSafe, catch_unwind};
use vfio_mock::{MockBackend, profiles};

/// Cases where the mock follows Linux 6.1's source and the case expects
/// otherwise. The guest run decides; until it has, they are listed here
/// (and the test fails if one starts passing, so the list stays true).
const DISPUTED: &[(&str, &str)] = &[(
    "binding_a_non_eventfd_is_invalid_and_changes_nothing",
    "6.1 vfio_msi_set_block: set_vector_signal drops the old trigger before \
     eventfd_ctx_fdget fails, and the rollback unbinds start..=failed, so \
     vectors 0 and 1 end unbound",
)];

fn env() -> anyhow::Result<Env<MockBackend>> {
    let host = profiles::qemu_guest().build()?;
    Ok(Env::new(host.backend()))
}

#[test]
fn every_conformance_case_passes_on_the_mock() {
    let mut failures = Vec::new();
    for case in cases::all::<MockBackend>() {
        // Some cases `expect` errors; a panic is that case's failure, not the run's.
        let outcome = catch_unwind(AssertUnwindSafe(|| env().and_then(|e| (case.run)(&e))));
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(p) => Some(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default()
            )),
        };
        let disputed = DISPUTED.iter().find(|(name, _)| *name == case.name);
        match (failure, disputed) {
            (None, None) => {}
            (Some(f), None) => failures.push(format!("{}: {f}", case.name)),
            (Some(f), Some((_, why))) => {
                eprintln!("disputed case {} fails as expected ({why}): {f}", case.name)
            }
            (None, Some(_)) => failures.push(format!(
                "{}: passes now; remove it from DISPUTED",
                case.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "failed cases:\n{}",
        failures.join("\n")
    );
}
