//! The captured device profiles the mock replays, held to the kernel.
//!
//! Each device of [`PROFILED`](crate::PROFILED) was captured through
//! vfio-pci in the guest, on each kernel, and committed with vfio-mock
//! ([`vfio_mock::profiles::CAPTURED`]). On the kernel this case captures the
//! device again and requires what the kernel shows now to be the committed
//! profile, byte for byte; on the mock, whose device replays that profile,
//! it requires the capture to give the profile back. The same case on both
//! backends is the proof that the replay answers as the device did.

use crate::{Env, not_applicable};
use anyhow::{Result, ensure};
use vfio_core::VfioBackend;
use vfio_profile::{CaptureOptions, DeviceProfile, Source};

/// A fresh capture of the `i`-th device of [`PROFILED`](crate::PROFILED)
/// through the device file, config writes probed and restored, equals its
/// committed capture on this kernel: the same JSON, line for line. Of the
/// `source` block, the address and the driver are compared; the kernel
/// release by series (the mock has no release of its own): the profile's
/// must be the kernel's; the IOMMU group not at all (it is the host's
/// numbering, which the no-IOMMU guest's differs from).
pub fn capture_matches_the_committed_profile<B: VfioBackend>(env: &Env<B>, i: usize) -> Result<()> {
    let Some(kernel) = env.kernel else {
        return Err(not_applicable(
            "the kernel is not one the profiles were captured on",
        ));
    };
    let device = vfio_mock::profiles::CAPTURED[i];
    let committed = device.profile(kernel);
    let address = env.targets.profiled[i];
    ensure!(
        vfio_mock::profile_kernel(committed) == Some(kernel),
        "the committed profile of {} names release {}, not Linux {}",
        device.name,
        committed.source.kernel_release,
        kernel.series()
    );
    let o = env.open(&address)?;
    let source = Source::of_device(
        env.backend.host_paths(),
        &address,
        &committed.source.kernel_release,
    )?;
    let mut got = vfio_profile::capture::<B>(&o.device, &CaptureOptions::new(source))?;
    ensure!(
        (&got.source.pci_address, &got.source.driver)
            == (&committed.source.pci_address, &committed.source.driver),
        "{} is {} on {}, captured as {} on {}",
        device.name,
        got.source.pci_address,
        got.source.driver,
        committed.source.pci_address,
        committed.source.driver
    );
    // The group is the host's numbering (the no-IOMMU guest numbers its
    // groups apart), not the device's.
    got.source = committed.source.clone();
    ensure_same_profile(device.name, &got, committed)
}

/// `got` is `want`, or an error naming the first lines that differ.
fn ensure_same_profile(name: &str, got: &DeviceProfile, want: &DeviceProfile) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let (got, want) = (got.to_json(), want.to_json());
    let differ: Vec<String> = got
        .lines()
        .zip(want.lines())
        .enumerate()
        .filter(|(_, (g, w))| g != w)
        .take(6)
        .map(|(n, (g, w))| format!("line {}: {} (committed {})", n + 1, g.trim(), w.trim()))
        .collect();
    anyhow::bail!(
        "{name}: the capture differs from the committed profile ({} lines against {}): {}",
        got.lines().count(),
        want.lines().count(),
        differ.join("; ")
    )
}

/// The `vfio` tool's `info` and `config`, as text and as JSON, read the
/// `i`-th device of [`PROFILED`](crate::PROFILED) exactly as they read a
/// mock host replaying its committed capture, opened in the same mode: on
/// the kernel, the tool's view of the real device is its view of the
/// replay.
pub fn vfio_tool_reads_the_device_as_its_replay<B: VfioBackend>(
    env: &Env<B>,
    i: usize,
) -> Result<()> {
    let Some(kernel) = env.kernel else {
        return Err(not_applicable(
            "the kernel is not one the profiles were captured on",
        ));
    };
    let device = vfio_mock::profiles::CAPTURED[i];
    let address = env.targets.profiled[i].to_string();
    let replay = crate::mock::env_for_profile(
        device.profile(kernel),
        env.targets.profiled[i],
        kernel,
        env.mode,
    )?;
    let context = vfio_tool::HostContext {
        kernel_release: kernel.series().to_owned(),
        replayed: None,
    };
    let mode = env.mode.name();
    for args in [
        vec!["info", &address],
        vec!["config", &address],
        vec!["--json", "info", &address],
        vec!["--json", "config", &address],
    ] {
        let cli = <vfio_tool::cli::Cli as clap::Parser>::try_parse_from(
            ["vfio", "--mode", mode]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        let run = |backend: &dyn Fn(&mut Vec<u8>) -> Result<(), vfio_tool::error::ToolError>| {
            let mut out = Vec::new();
            backend(&mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
        };
        let got = run(&|out| vfio_tool::run_on(&env.backend, &cli, &context, out))
            .map_err(|e| anyhow::anyhow!("vfio {}: {e}", args.join(" ")))?;
        let want = run(&|out| vfio_tool::run_on(&replay.backend, &cli, &context, out))
            .map_err(|e| anyhow::anyhow!("vfio {} on the replay: {e}", args.join(" ")))?;
        if got != want {
            let differ: Vec<String> = got
                .lines()
                .zip(want.lines())
                .filter(|(g, w)| g != w)
                .take(4)
                .map(|(g, w)| format!("{g:?} (replay {w:?})"))
                .collect();
            anyhow::bail!(
                "vfio {} on {}: {} lines against the replay's {}: {}",
                args.join(" "),
                device.name,
                got.lines().count(),
                want.lines().count(),
                differ.join("; ")
            );
        }
    }
    Ok(())
}
