//! One suite of VFIO behaviours, written once and generic over the backend.
//!
//! Each case is a function `fn(&Env<B>) -> anyhow::Result<()>` for any
//! `B: VfioBackend`, given a fresh environment by a backend factory. The same
//! cases run against the real kernel's vfio-pci (in a QEMU guest, or on a host
//! with devices bound to vfio-pci) and against the simulated backend, so the
//! simulation is held to what the kernel does.
#![deny(missing_docs)]

pub mod cases;
mod env;
mod expect;
pub mod generic;
pub mod guest;
pub mod host_control;
pub mod kernel;
pub mod mock;
pub mod report;

pub use env::{Env, Kernel, Opened, PROFILED, Targets};
pub use expect::expect_error;
pub use host_control::{HostControl, IommuFaultRecord, NoHostControl, SysfsHostControl};
pub use vfio_core::open::Mode;

/// The reason a case does not apply to the device it was given. A case ends
/// with it (through [`not_applicable`]) instead of passing with nothing
/// checked; the runner reports it as n/a.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplicable(pub String);

impl std::fmt::Display for NotApplicable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not applicable: {}", self.0)
    }
}

impl std::error::Error for NotApplicable {}

/// Ends a case as not applicable: `return Err(not_applicable("edu has no MSI-X"))`.
pub fn not_applicable(reason: impl Into<String>) -> anyhow::Error {
    NotApplicable(reason.into()).into()
}

/// Which of `irqs` have fired since last consumed, consuming them: the
/// indexes in order.
pub fn fired<I: vfio_core::Interrupt>(irqs: &[I]) -> anyhow::Result<Vec<usize>> {
    let mut out = Vec::new();
    for (i, irq) in irqs.iter().enumerate() {
        if irq.try_consume()?.is_some() {
            out.push(i);
        }
    }
    Ok(out)
}

/// A backend the whole suite runs on: the trait family, and the opt-in
/// calls the suite also judges (the downstream keep-alive ioctl).
pub trait SuiteBackend: vfio_core::VfioBackend<Group: vfio_core::GroupKeepAlive<Self>> {}

impl<B> SuiteBackend for B where B: vfio_core::VfioBackend<Group: vfio_core::GroupKeepAlive<B>> {}

/// The body of a case.
pub type CaseFn<B> = Box<dyn Fn(&Env<B>) -> anyhow::Result<()> + Send + Sync>;

/// One conformance case.
pub struct Case<B: vfio_core::VfioBackend> {
    /// What the case proves, as a snake_case sentence (device-agnostic cases
    /// carry the device they ran on, e.g. `region_table_is_consistent[nvme]`).
    pub name: String,
    /// The case body.
    pub run: CaseFn<B>,
}

/// A case only one backend can run, with the reason the other cannot.
pub struct OnlyCase<B: vfio_core::VfioBackend> {
    /// The case.
    pub case: Case<B>,
    /// Why the other backend cannot run it.
    pub why: &'static str,
}

impl<B: vfio_core::VfioBackend> std::fmt::Debug for OnlyCase<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnlyCase")
            .field("case", &self.case.name)
            .field("why", &self.why)
            .finish()
    }
}

/// The shared suite, then the cases only this backend runs.
pub fn suite_with<B: SuiteBackend>(only: Vec<OnlyCase<B>>) -> Vec<Case<B>> {
    let mut cases = crate::cases::all::<B>();
    cases.extend(only.into_iter().map(|c| c.case));
    cases
}

/// Each one-backend case's name and why only that backend runs it.
pub fn only_reasons_of<B: vfio_core::VfioBackend>(only: Vec<OnlyCase<B>>) -> Vec<(String, String)> {
    only.into_iter()
        .map(|c| (c.case.name, c.why.to_owned()))
        .collect()
}

impl<B: vfio_core::VfioBackend> Case<B> {
    /// A case from a name and a body.
    pub fn new(
        name: impl Into<String>,
        run: impl Fn(&Env<B>) -> anyhow::Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

impl<B: vfio_core::VfioBackend> std::fmt::Debug for Case<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}
