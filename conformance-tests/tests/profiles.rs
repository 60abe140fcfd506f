//! The device-agnostic cases on devices replayed from captured profiles:
//! each of the mock's guest devices is captured in every kernel and mode
//! the suite runs, replayed alone on a new host, and judged by the same
//! cases with the same outcome as the device it was captured from.

use conformance_tests::report::{self, Outcome};
use conformance_tests::{Case, Env, generic, mock};
use vfio_core::PciAddress;
use vfio_mock::MockBackend;
use vfio_profile::{CaptureOptions, DeviceProfile, Source, capture};

/// Captures `address` through `env`'s backend, in `env`'s mode.
fn capture_in(env: &Env<MockBackend>, address: &PciAddress) -> anyhow::Result<DeviceProfile> {
    let opened = env.open(address)?;
    let kernel = env.kernel()?;
    let source = Source {
        kernel_release: format!("{}.0", kernel.series()),
        pci_address: address.to_string(),
        driver: "vfio-pci".into(),
        iommu_group: None,
        date: None,
    };
    Ok(capture::<MockBackend>(
        &opened.device,
        &CaptureOptions::new(source),
    )?)
}

/// Every generic case on `address` of the environments `make` builds:
/// the names that did not apply, or the first failure.
fn outcomes(
    address: PciAddress,
    label: &str,
    make: &dyn Fn() -> anyhow::Result<Env<MockBackend>>,
) -> Vec<String> {
    let mut not_applicable = Vec::new();
    for g in generic::all::<MockBackend>() {
        let run = g.run;
        let case = Case::new(format!("{}[{label}]", g.name), move |env: &Env<_>| {
            run(env, &address)
        });
        let r = report::run_case(&case, make);
        match r.outcome {
            Outcome::Pass => {}
            Outcome::NotApplicable(_) => not_applicable.push(g.name.to_owned()),
            Outcome::Fail(why) => panic!("{}: {why}", r.name),
        }
    }
    not_applicable
}

#[test]
fn device_agnostic_cases_judge_a_replayed_profile_as_the_device_it_was_captured_from() {
    for kernel in mock::KERNELS {
        for &mode in mock::modes(kernel) {
            let env = mock::env_in(kernel, mode).expect("the guest host builds");
            for (label, address) in [("edu", env.targets.edu), ("nvme", env.targets.nvme)] {
                let profile = capture_in(&env, &address)
                    .unwrap_or_else(|e| panic!("capture of {label} on {kernel:?} {mode:?}: {e:#}"));
                let replayed_on = vfio_mock::profile_kernel(&profile).expect("a mock kernel");
                assert_eq!(replayed_on, kernel);
                let label = format!("{label} {kernel:?} {mode:?}");
                let original = outcomes(address, &label, &move || mock::env_in(kernel, mode));
                let profile = std::sync::Arc::new(profile);
                let replay = outcomes(address, &format!("{label} replayed"), &move || {
                    mock::env_for_profile(&profile, address, kernel, mode)
                });
                assert_eq!(replay, original, "{label}");
            }
        }
    }
}
