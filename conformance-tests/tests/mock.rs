//! The conformance suite on the simulated backend: one `#[test]` per case,
//! the same functions the real kernel runs in the QEMU guest.

use conformance_tests::cases::*;
use conformance_tests::report::{self, Outcome};
use conformance_tests::{Case, Env, generic, mock};

macro_rules! mock_tests {
    ($($module:ident :: $name:ident),* $(,)?) => {
        $(
            /// The case on the mock imitating Linux 6.1 in type1 mode, where
            /// it passes or (a case of another mode) does not apply; the
            /// other modes are the whole-suite tests below.
            #[test]
            fn $name() {
                let mut env = mock::env().expect("mock host");
                if let Err(e) = $module::$name(&env) {
                    // A case that does not apply on 6.1 runs on 6.12 too,
                    // where it passes or is a case of another mode.
                    assert!(
                        e.downcast_ref::<conformance_tests::NotApplicable>().is_some(),
                        "{}: {e:?}",
                        stringify!($name)
                    );
                    env = mock::env_on(vfio_mock::KernelVersion::V6_12).expect("mock host");
                    if let Err(e) = $module::$name(&env) {
                        assert!(
                            e.downcast_ref::<conformance_tests::NotApplicable>().is_some(),
                            "{}: {e:?}",
                            stringify!($name)
                        );
                    }
                }
                env.backend.host().done().expect("no faults or host errors left over");
            }
        )*
    };
}

/// The whole suite on the mock imitating `kernel` in `mode`: the cases
/// that fail, and the cases that do not apply for a reason other than the
/// mode.
fn suite_on(
    kernel: vfio_mock::KernelVersion,
    mode: conformance_tests::Mode,
) -> (Vec<String>, Vec<String>) {
    let factory = move || mock::env_in(kernel, mode);
    let report = report::run_suite("vfio-mock", &conformance_tests::cases::all(), &factory);
    let (mut failed, mut not_applicable) = (Vec::new(), Vec::new());
    for r in report.results {
        match r.outcome {
            Outcome::Pass => {}
            Outcome::NotApplicable(why) if why.ends_with(" mode only") => {}
            Outcome::NotApplicable(_) => not_applicable.push(r.name),
            Outcome::Fail(why) => failed.push(format!("{}: {why}", r.name)),
        }
    }
    (failed, not_applicable)
}

/// The device-agnostic MSI-X cases on the devices with no MSI-X: `edu`,
/// and of the captured ones `ivshmem-plain` and `pci-testdev`.
const NO_MSIX: [&str; 6] = [
    "msix_loopback_reaches_exactly_the_triggered_vectors[edu]",
    "unbinding_a_vector_range_leaves_the_rest_bound[edu]",
    "msix_loopback_reaches_exactly_the_triggered_vectors[ivshmem]",
    "unbinding_a_vector_range_leaves_the_rest_bound[ivshmem]",
    "msix_loopback_reaches_exactly_the_triggered_vectors[testdev]",
    "unbinding_a_vector_range_leaves_the_rest_bound[testdev]",
];

/// Linux 6.12's iommufd mode on the mock: every case passes, or does not
/// apply (to the mode, or to a device without the feature).
#[test]
fn every_case_passes_or_does_not_apply_on_the_mock_in_iommufd_mode() {
    let (failed, not_applicable) = suite_on(
        vfio_mock::KernelVersion::V6_12,
        conformance_tests::Mode::Iommufd,
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(not_applicable, NO_MSIX);
}

/// Linux 6.12's no-IOMMU mode on the mock: every case passes, or does not
/// apply.
#[test]
fn every_case_passes_or_does_not_apply_on_the_mock_in_noiommu_mode() {
    let (failed, not_applicable) = suite_on(
        vfio_mock::KernelVersion::V6_12,
        conformance_tests::Mode::NoIommu,
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(not_applicable, NO_MSIX);
}

conformance_tests::for_each_case!(mock_tests);

/// Every device-agnostic case on both mock devices (those the table leaves
/// out as covered included): each passes, or does not apply where the device
/// lacks the feature.
#[test]
fn device_agnostic_cases_pass_or_do_not_apply_on_both_devices() {
    let mut not_applicable = Vec::new();
    for (label, pick) in [
        (
            "edu",
            (|t: &conformance_tests::Targets| t.edu)
                as fn(&conformance_tests::Targets) -> vfio_core::PciAddress,
        ),
        ("nvme", |t: &conformance_tests::Targets| t.nvme),
    ] {
        for g in generic::all::<vfio_mock::MockBackend>() {
            let run = g.run;
            let case = Case::new(format!("{}[{label}]", g.name), move |env: &Env<_>| {
                run(env, &pick(&env.targets))?;
                env.backend.host().done()?;
                Ok(())
            });
            let r = report::run_case(&case, &mock::env);
            match r.outcome {
                Outcome::Pass => {}
                Outcome::NotApplicable(_) => not_applicable.push(r.name),
                Outcome::Fail(why) => panic!("{}: {why}", r.name),
            }
        }
    }
    assert_eq!(
        not_applicable,
        [
            "msix_loopback_reaches_exactly_the_triggered_vectors[edu]",
            "unbinding_a_vector_range_leaves_the_rest_bound[edu]",
        ]
    );
}

/// The whole suite on the mock imitating Linux 6.12 in type1 mode: every
/// case passes, or does not apply (to the mode, or to a device without the
/// feature), as on 6.1.
#[test]
fn every_case_passes_or_does_not_apply_on_the_mock_imitating_6_12() {
    let (failed, not_applicable) = suite_on(
        vfio_mock::KernelVersion::V6_12,
        conformance_tests::Mode::Type1,
    );
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(not_applicable, NO_MSIX);
}

/// The cases only the mock runs pass.
#[test]
fn mock_only_cases_pass() {
    for c in mock::only_cases() {
        let r = report::run_case(&c.case, &mock::env);
        assert_eq!(r.outcome, Outcome::Pass, "{}", r.name);
    }
}
