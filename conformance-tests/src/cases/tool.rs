//! The `vfio` tool on the kernel, held to the tool on the mock's guest.

use crate::{Env, not_applicable};
use anyhow::Result;
use vfio_core::VfioBackend;

/// Runs `vfio --mode MODE ARGS` on `backend`, its output as text.
fn vfio<B: VfioBackend>(
    backend: &B,
    env_mode: &str,
    kernel: &str,
    args: &[&str],
) -> Result<String> {
    let cli = <vfio_tool::cli::Cli as clap::Parser>::try_parse_from(
        ["vfio", "--mode", env_mode]
            .into_iter()
            .chain(args.iter().copied()),
    )?;
    let context = vfio_tool::HostContext {
        kernel_release: kernel.to_owned(),
        replayed: None,
    };
    let mut out = Vec::new();
    vfio_tool::run_on(backend, &cli, &context, &mut out)
        .map_err(|e| anyhow::anyhow!("vfio {}: {e}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `vfio list`, as text and as JSON, lists the guest's vfio-pci devices as
/// it lists the mock's guest on the same kernel and in the same mode: the
/// same devices, groups, viability (the watchdog named as what makes the
/// bridged group not viable), group nodes and device cdevs.
pub fn vfio_tool_lists_the_guest_as_the_mock_guest<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let Some(kernel) = env.kernel else {
        return Err(not_applicable(
            "the kernel is not one the mock's guest imitates",
        ));
    };
    let mock = crate::mock::env_in(kernel, env.mode)?;
    let mode = env.mode.name();
    for args in [&["list"][..], &["--json", "list"]] {
        let got = vfio(&env.backend, mode, kernel.series(), args)?;
        let want = vfio(&mock.backend, mode, kernel.series(), args)?;
        anyhow::ensure!(
            got == want,
            "vfio {} on the guest:\n{got}\non the mock's guest:\n{want}",
            args.join(" ")
        );
    }
    Ok(())
}
