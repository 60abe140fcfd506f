//! MSI and MSI-X behaviours that changed between Linux 6.1 and 6.12, seen
//! through the raw `VFIO_DEVICE_SET_IRQS` call and `/proc/interrupts`.
//!
//! The library's own calls keep 6.1's rules on every kernel (a bind past
//! the enabled vectors is refused before the kernel sees it), so these
//! cases drive [`Device::set_irqs`] to get the kernel's answer.

use crate::{Env, Kernel, Mode, expect_error, fired};
use anyhow::{Context, Result, bail, ensure};
use std::os::fd::AsFd;
use vfio_core::{Device, Errno, ErrorKind, IrqAction, IrqData, IrqIndex, PciAddress, VfioBackend};

/// The MSI-X vector bound past the four enabled ones.
const GROWN: u32 = 10;

/// A vector past the enabled ones that nothing is bound to.
const UNALLOCATED: u32 = 11;

fn interrupts<B: VfioBackend>(env: &Env<B>, n: u32) -> Result<Vec<B::Interrupt>> {
    (0..n).map(|_| Ok(env.backend.new_interrupt()?)).collect()
}

/// On 6.12 (`has_dyn_msix`) a raw `SET_IRQS` eventfd bind past the enabled
/// vectors of an enabled MSI-X index allocates the vector
/// (`vfio_msi_alloc_irq`): it fires on a trigger and is listed as
/// `vfio-msix[N](<device>)`; unbinding (fd -1) and a `DATA_NONE` trigger
/// on a vector never allocated succeed and do nothing. 6.1 refuses all
/// three with EINVAL (`vdev->num_ctx` bounds every call). Either way the
/// enabled vectors keep working, and disabling the index gives every
/// vector back to the host's CPUs.
pub fn raw_binds_past_the_enabled_msix_vectors_grow_the_index_on_6_12_only<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let kernel = env.kernel()?;
    let nvme = env.targets.nvme;
    let paths = env.backend.host_paths();
    let o = env.open_nvme()?;
    let irqs = interrupts(env, 5)?;
    let first: Vec<&B::Interrupt> = irqs[..4].iter().collect();
    o.device.enable_interrupts(IrqIndex::MSIX, &first)?;
    let grow = o.device.set_irqs(
        IrqIndex::MSIX,
        IrqAction::Trigger,
        GROWN,
        IrqData::Eventfds(&[Some(irqs[4].as_fd())]),
    );
    let unbind = || {
        o.device.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            UNALLOCATED,
            IrqData::Eventfds(&[None]),
        )
    };
    let trigger = |start| {
        o.device.set_irqs(
            IrqIndex::MSIX,
            IrqAction::Trigger,
            start,
            IrqData::None { count: 1 },
        )
    };
    match kernel {
        Kernel::V6_1 => {
            let einval = (ErrorKind::InvalidArgument, Some(Errno::EINVAL));
            expect_error("bind past the enabled vectors", grow, einval.0, einval.1)?;
            expect_error("unbind past them", unbind(), einval.0, einval.1)?;
            expect_error(
                "DATA_NONE trigger past them",
                trigger(UNALLOCATED),
                einval.0,
                einval.1,
            )?;
            expect_error(
                "lookup of the refused vector",
                paths.vector_irq(&nvme, IrqIndex::MSIX, GROWN),
                ErrorKind::NotFound,
                None,
            )?;
        }
        Kernel::V6_12 => {
            grow.context("bind past the enabled vectors")?;
            trigger(GROWN).context("trigger of the grown vector")?;
            let got = fired(&irqs)?;
            ensure!(got == [4], "the grown vector's trigger fired {got:?}");
            paths
                .vector_irq(&nvme, IrqIndex::MSIX, GROWN)
                .context("the grown vector is listed")?;
            unbind().context("unbind past the enabled vectors")?;
            trigger(UNALLOCATED).context("DATA_NONE trigger past them")?;
            let got = fired(&irqs)?;
            ensure!(got.is_empty(), "unbind and trigger past them fired {got:?}");
            expect_error(
                "lookup of a vector never allocated",
                paths.vector_irq(&nvme, IrqIndex::MSIX, UNALLOCATED),
                ErrorKind::NotFound,
                None,
            )?;
        }
    }
    o.device.trigger_interrupts(IrqIndex::MSIX, 0, 4)?;
    let got = fired(&irqs)?;
    ensure!(got == [0, 1, 2, 3], "the enabled vectors fired {got:?}");
    o.device.disable_interrupts(IrqIndex::MSIX)?;
    expect_error(
        "lookup of the grown vector after disable",
        paths.vector_irq(&nvme, IrqIndex::MSIX, GROWN),
        ErrorKind::NotFound,
        None,
    )?;
    drop(o);
    budget_is_whole(env)
}

/// Binds the 2048-vector NVMe's vectors one at a time until the host's
/// CPUs have no vector left, and checks the count is the guest's whole
/// budget (nothing left held by earlier binds), then disables.
fn budget_is_whole<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let big = env.targets.big_nvme;
    let o = env.open(&big)?;
    let count = o.device.irq_info(IrqIndex::MSIX)?.count;
    let irq = env.backend.new_interrupt()?;
    o.device.enable_interrupts_unbound(IrqIndex::MSIX, count)?;
    let mut bound = 0;
    while bound < count {
        match o.device.bind_interrupt(IrqIndex::MSIX, bound, &irq) {
            Ok(()) => bound += 1,
            Err(e) if e.errno() == Some(Errno::ENOSPC) => break,
            Err(e) => return Err(e.into()),
        }
    }
    o.device.disable_interrupts(IrqIndex::MSIX)?;
    let budget = if env.mode == Mode::NoIommu {
        super::irq::NOIOMMU_GUEST_VECTOR_BUDGET
    } else {
        super::irq::GUEST_VECTOR_BUDGET
    };
    ensure!(
        bound == budget,
        "{bound} vectors bound before ENOSPC afterwards, want the whole budget of {budget}"
    );
    Ok(())
}

/// The chip and `<hwirq>-<handler>` columns of the `/proc/interrupts`
/// line one of whose actions is `action`, and the line.
fn columns(text: &str, action: &str) -> Option<(String, String, String)> {
    let cpus = text
        .lines()
        .next()?
        .split_whitespace()
        .filter(|t| t.starts_with("CPU"))
        .count();
    text.lines().find_map(|line| {
        let (label, rest) = line.split_once(':')?;
        label.trim().parse::<u32>().ok()?;
        let mut tokens = rest.split_whitespace().skip(cpus);
        let mut chip = Vec::new();
        let hwirq = loop {
            let t = tokens.next()?;
            let handler = t.split_once('-').is_some_and(|(n, h)| {
                n.bytes().all(|b| b.is_ascii_digit())
                    && !h.is_empty()
                    && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            if handler {
                break t;
            }
            chip.push(t);
        };
        let actions: Vec<&str> = tokens.collect();
        let actions = actions.join(" ");
        actions
            .split(", ")
            .any(|a| a == action)
            .then(|| (chip.join(" "), hwirq.to_owned(), line.to_owned()))
    })
}

/// The chip a vfio MSI or MSI-X vector's line names, and its hwirq.
///
/// 6.1 puts every PCI device's vectors in one x86 domain, `PCI-MSI`, whose
/// hwirq encodes the requester id (`pci_msi_domain_calc_hwirq`: vector |
/// rid << 11 | domain << 27). 6.12 gives each device a domain of its own
/// (`PCI-MSI-<device>` / `PCI-MSIX-<device>`) whose hwirq is the vector.
/// With interrupt remapping (VT-d) the chip's name starts with `IR-`.
fn expected(
    kernel: Kernel,
    remapped: bool,
    msix: bool,
    device: &PciAddress,
    vector: u32,
) -> (String, String) {
    let ir = if remapped { "IR-" } else { "" };
    match kernel {
        Kernel::V6_1 => {
            let devfn = (u64::from(device.device()) << 3) | u64::from(device.function());
            let rid = (u64::from(device.bus()) << 8) | devfn;
            let hwirq = u64::from(vector) | (rid << 11) | (u64::from(device.domain()) << 27);
            (format!("{ir}PCI-MSI"), format!("{hwirq}-edge"))
        }
        Kernel::V6_12 => {
            let kind = if msix { "MSIX" } else { "MSI" };
            (format!("{ir}PCI-{kind}-{device}"), format!("{vector}-edge"))
        }
    }
}

/// The lines of bound vfio vectors name the kernel's MSI domain: on 6.1
/// `IR-PCI-MSI` with a hwirq from the requester id, on 6.12 the device's
/// own domain (`IR-PCI-MSIX-<device>` for the NVMe controller's MSI-X,
/// `IR-PCI-MSI-<device>` for `edu`'s MSI) with the vector as hwirq; with
/// no IOMMU there is no interrupt remapping and no `IR-`, on `edu`'s INTx
/// line (`IO-APIC`, `IR-IO-APIC` with VT-d) too. Lookups by action name
/// work on all of them.
pub fn vfio_vector_lines_name_the_kernels_msi_domain<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let kernel = env.kernel()?;
    let remapped = env.mode != Mode::NoIommu;
    let paths = env.backend.host_paths();
    let (nvme, edu) = (env.targets.nvme, env.targets.edu);
    let n = env.open_nvme()?;
    let e = env.open_edu()?;
    let irqs = interrupts(env, 4)?;
    let refs: Vec<&B::Interrupt> = irqs[..3].iter().collect();
    n.device.enable_interrupts(IrqIndex::MSIX, &refs)?;
    e.device.enable_interrupts(IrqIndex::MSI, &[&irqs[3]])?;
    let text = std::fs::read_to_string(paths.interrupts_path())?;
    let mut wrong = Vec::new();
    for (msix, device, vector) in [(true, &nvme, 0), (true, &nvme, 2), (false, &edu, 0)] {
        let index = if msix { IrqIndex::MSIX } else { IrqIndex::MSI };
        let action = vfio_core::parse::proc_interrupts::vfio_action_name(index, vector, device)
            .context("vfio action name")?;
        let Some((chip, hwirq, line)) = columns(&text, &action) else {
            bail!("no line for {action} in:\n{text}");
        };
        let irq = paths
            .vector_irq(device, index, vector)
            .with_context(|| format!("lookup of {action}"))?;
        ensure!(
            line.trim_start().starts_with(&format!("{irq}:")),
            "{action} looked up as irq {irq}, listed as `{line}`"
        );
        let want = expected(kernel, remapped, msix, device, vector);
        if (chip.as_str(), hwirq.as_str()) != (want.0.as_str(), want.1.as_str()) {
            wrong.push(format!(
                "{action}: chip `{chip}` hwirq `{hwirq}`, want `{}` `{}` (line `{line}`)",
                want.0, want.1
            ));
        }
    }
    if !wrong.is_empty() {
        let others: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("vfio") || l.contains("APIC") || l.contains("dmar"))
            .collect();
        bail!("{}; lines: {}", wrong.join("; "), others.join(" | "));
    }
    n.device.disable_interrupts(IrqIndex::MSIX)?;
    e.device.disable_interrupts(IrqIndex::MSI)?;
    // INTx goes through the IO-APIC, remapped as well when there is an IOMMU.
    e.device.enable_interrupts(IrqIndex::INTX, &[&irqs[3]])?;
    let text2 = std::fs::read_to_string(paths.interrupts_path())?;
    let action = vfio_core::parse::proc_interrupts::vfio_action_name(IrqIndex::INTX, 0, &edu)
        .context("vfio action name")?;
    let Some((chip, hwirq, line)) = columns(&text2, &action) else {
        bail!("no line for {action} in:\n{text2}");
    };
    e.device.disable_interrupts(IrqIndex::INTX)?;
    let ir = if remapped { "IR-" } else { "" };
    ensure!(
        chip == format!("{ir}IO-APIC") && hwirq.ends_with("-fasteoi"),
        "{action}: chip `{chip}` hwirq `{hwirq}`, want `{ir}IO-APIC` `<pin>-fasteoi` \
         (line `{line}`)"
    );
    Ok(())
}
