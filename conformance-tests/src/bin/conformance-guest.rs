//! Runs the conformance suite on the real kernel's vfio-pci.
//!
//! Built static and run inside the QEMU guest by the conformance runner (and
//! `cargo xtask ci`); also runs on any host whose `edu` and NVMe devices are at
//! 00:02.0 and 00:03.0 and bound to vfio-pci. Prints a line per case, then the
//! JSON report on a line prefixed `@@OUT@@ ` for the host to collect, then a
//! `N passed, N n/a, N failed` line. Exits 1 if any case fails.

use conformance_tests::{Env, HostControl, Kernel, SysfsHostControl, Targets, kernel, report};
use std::path::Path;
use std::sync::Arc;
use vfio_linux::LinuxBackend;

fn main() {
    let (targets, release) = match Targets::from_env().and_then(|t| Ok((t, kernel::release()?))) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("conformance-guest: {e:#}");
            std::process::exit(2);
        }
    };
    let cases = kernel::suite();
    // The guest is the suite's own machine: cases may remove and restore devices.
    let host: Arc<dyn HostControl> = Arc::new(SysfsHostControl::new(
        Path::new("/sys"),
        Path::new("/dev/kmsg"),
        Path::new("/proc"),
    ));
    let kernel = Kernel::from_release(&release);
    let factory = || {
        Ok(Env::new(LinuxBackend::new())
            .with_targets(targets)
            .with_host(host.clone())
            .with_kernel(kernel))
    };
    let mut report = report::run_suite("vfio-linux", &cases, &factory);
    report.kernel = Some(release);
    let counts = report.counts();
    match serde_json::to_string(&report) {
        Ok(json) => println!("@@OUT@@ {json}"),
        Err(e) => eprintln!("cannot encode the report: {e}"),
    }
    println!("{counts}");
    std::process::exit(i32::from(counts.failed != 0));
}
