//! Config space as vfio-pci virtualizes it: the bytes a user reads after
//! open, and what writes to each kind of field do.
//!
//! The reference dumps under `fixtures/` were read from Linux 6.1's vfio-pci
//! in the QEMU guest (`cargo xtask guest`), right after open.

use crate::Env;
use anyhow::{Result, bail, ensure};
use std::fmt::Write as _;
use vfio_core::{Device, IrqIndex, MappedRegion, VfioBackend, region};

/// `edu`'s 256 bytes of config space as Linux 6.1's vfio-pci shows them.
pub const EDU_CONFIG: &[u8] = include_bytes!("../../fixtures/edu-config-linux-6.1.bin");
/// The NVMe controller's 4096 bytes of config space as Linux 6.1's vfio-pci
/// shows them.
pub const NVME_CONFIG: &[u8] = include_bytes!("../../fixtures/nvme-config-linux-6.1.bin");

/// The whole config region of `device`, as large as region info says.
pub fn dump<B: VfioBackend>(device: &B::Device) -> Result<Vec<u8>> {
    let size = device.region_info(region::CONFIG)?.size;
    let mut bytes = vec![0u8; usize::try_from(size)?];
    vfio_core::access::read_exact(device, region::CONFIG, 0, &mut bytes)?;
    Ok(bytes)
}

/// Fails with every differing offset (`offset: got, want`) when `got` is
/// not `want`, byte for byte.
pub fn ensure_same_bytes(what: &str, got: &[u8], want: &[u8]) -> Result<()> {
    if got == want {
        return Ok(());
    }
    let mut report = format!("{what}: {} bytes, expected {}", got.len(), want.len());
    let differing: Vec<usize> = (0..got.len().max(want.len()))
        .filter(|&i| got.get(i) != want.get(i))
        .collect();
    let show = |b: Option<&u8>| b.map_or_else(|| "--".to_owned(), |b| format!("{b:02x}"));
    for &i in differing.iter().take(48) {
        let _ = write!(
            report,
            "\n  {i:#05x}: {} (expected {})",
            show(got.get(i)),
            show(want.get(i))
        );
    }
    if differing.len() > 48 {
        let _ = write!(report, "\n  ... {} differing bytes in all", differing.len());
    }
    bail!(report)
}

fn read16<B: VfioBackend>(device: &B::Device, offset: u64) -> Result<u16> {
    Ok(u16::from_le_bytes(device.read_config::<2>(offset)?))
}

fn read32<B: VfioBackend>(device: &B::Device, offset: u64) -> Result<u32> {
    Ok(u32::from_le_bytes(device.read_config::<4>(offset)?))
}

/// Writes `value` at `offset` and returns the 32-bit register holding it.
fn write_then_read32<B: VfioBackend>(device: &B::Device, offset: u64, bytes: &[u8]) -> Result<u32> {
    device.write_config(offset, bytes)?;
    read32::<B>(device, offset & !3)
}

/// Right after open, `edu`'s whole config space (256 bytes) reads exactly as
/// Linux 6.1's vfio-pci showed it: command 0x0103 (as the firmware left it),
/// BAR0 at 0xfea00000, interrupt line 11, MSI at 0x40 with control 0x0080.
pub fn edu_config_space_matches_the_kernels_dump<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_edu()?;
    ensure_same_bytes("edu config space", &dump::<B>(&o.device)?, EDU_CONFIG)
}

/// Right after open, the NVMe controller's whole config space (4096 bytes)
/// reads exactly as Linux 6.1's vfio-pci showed it: 64-bit BAR0 at
/// 0x1_0001_0000 (the firmware put every 64-bit BAR above 4 GiB when
/// `pci-testdev`'s 1 GiB BAR joined the guest), MSI-X at 0x40, PM at 0x60, a root-complex integrated
/// PCIe endpoint capability at 0x80, and zeros past 0x100.
pub fn nvme_config_space_matches_the_kernels_dump<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    ensure_same_bytes("NVMe config space", &dump::<B>(&o.device)?, NVME_CONFIG)
}

/// The command register keeps I/O, memory, bus master, SERR# enable and
/// INTx disable (0x0507 of 0xffff), and clears them all on 0; the status
/// register ignores writes. The same on `edu` and the NVMe controller.
pub fn command_register_keeps_only_qemus_writable_bits<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    for o in [env.open_edu()?, env.open_nvme()?] {
        let d = &o.device;
        let name = d.name().to_owned();
        let mut got = Vec::new();
        for value in [0xffffu16, 0x0000, 0x0400, 0x0006] {
            d.write_config(0x04, &value.to_le_bytes())?;
            got.push(read16::<B>(d, 0x04)?);
        }
        ensure!(
            got == [0x0507, 0x0000, 0x0400, 0x0006],
            "{name}: command after 0xffff, 0, 0x0400, 0x0006: {got:04x?}"
        );
        d.write_config(0x06, &[0xff, 0xff])?;
        let status = read16::<B>(d, 0x06)?;
        ensure!(status == 0x0010, "{name}: status {status:#06x}");
    }
    Ok(())
}

/// Cache line size and interrupt line keep what is written; the latency
/// timer, interrupt pin, min-grant/max-latency, IDs, revision and class,
/// subsystem IDs, capability pointer, CardBus pointer and (absent) ROM BAR
/// ignore writes of all-ones. The same on `edu` and the NVMe controller.
pub fn header_writes_stick_only_in_cache_line_size_and_interrupt_line<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let mut got = Vec::new();
    for (o, ids, class) in [
        (env.open_edu()?, 0x11e8_1234u32, 0x00ff_0010u32),
        (env.open_nvme()?, 0x0010_1b36, 0x0108_0202),
    ] {
        let d = &o.device;
        for (offset, bytes, want) in [
            (0x0cu64, &[0xffu8, 0xff][..], 0x0000_00ffu32),
            (0x3c, &[0x5a], 0x0000_015a),
            (0x3d, &[0x03], 0x0000_015a),
            (0x3e, &[0xff, 0xff], 0x0000_015a),
            (0x00, &[0xff; 4], ids),
            (0x08, &[0xff; 4], class),
            (0x2c, &[0xff; 4], 0x1100_1af4),
            (0x34, &[0xff], 0x0000_0040),
            (0x28, &[0xff; 4], 0),
            (0x30, &[0xff; 4], 0),
        ] {
            let value = write_then_read32::<B>(d, offset, bytes)?;
            if value != want {
                got.push(format!(
                    "{}: {offset:#04x}: {value:#010x}, expected {want:#010x}",
                    d.name()
                ));
            }
        }
    }
    ensure!(got.is_empty(), "{}", got.join("; "));
    Ok(())
}

/// BARs are virtual: all-ones reads back the size mask with the type bits
/// (`edu` BAR0 0xfff00000, absent BARs 0; NVMe's 64-bit BAR0 0xffffc004,
/// its upper half the address's, 1 (the firmware put it above 4 GiB), then
/// 0xffffffff), an address reads back cut to the BAR's alignment (0x12345678 -> 0x12300000), and none of it moves the mapping
/// or the device file's view of the registers.
pub fn bar_writes_read_back_the_size_mask_and_aligned_addresses<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let d = &o.device;
    let bar0 = d.map_region(region::BAR0)?;
    let mut got = Vec::new();
    for offset in [0x10u64, 0x14, 0x18, 0x1c, 0x20, 0x24] {
        got.push(write_then_read32::<B>(d, offset, &[0xff; 4])?);
    }
    ensure!(
        got == [0xfff0_0000, 0, 0, 0, 0, 0],
        "edu BARs after all-ones: {got:08x?}"
    );
    let moved =
        [0xfeb0_0000u32, 0x1234_5678].map(|a| write_then_read32::<B>(d, 0x10, &a.to_le_bytes()));
    let moved = moved.into_iter().collect::<Result<Vec<_>>>()?;
    ensure!(
        moved == [0xfeb0_0000, 0x1230_0000],
        "edu BAR0 addresses read back {moved:08x?}"
    );
    let id = bar0.read_u32(0)?;
    ensure!(id == 0x0100_00ed, "edu id through the mapping {id:#x}");
    let mut buf = [0u8; 4];
    d.read_region(region::BAR0, 0, &mut buf)?;
    ensure!(
        u32::from_le_bytes(buf) == 0x0100_00ed,
        "edu id through the file {buf:x?}"
    );

    let o = env.open_nvme()?;
    let d = &o.device;
    let low = write_then_read32::<B>(d, 0x10, &[0xff; 4])?;
    let high_before = read32::<B>(d, 0x14)?;
    let high = write_then_read32::<B>(d, 0x14, &[0xff; 4])?;
    ensure!(
        (low, high_before, high)
            == (
                0xffff_c004,
                (vfio_mock::profiles::NVME_BAR0_ADDRESS >> 32) as u32,
                0xffff_ffff
            ),
        "NVMe BAR0 low {low:#x}, high {high_before:#x} then {high:#x}"
    );
    let vs = d.map_region(region::BAR0)?.read_u32(0x08)?;
    ensure!(vs == 0x0001_0400, "NVMe VS through the mapping {vs:#x}");
    Ok(())
}

/// `edu`'s MSI Message Control is virtual and its low byte wholly writable,
/// with two fix-ups: Enable only sticks while MSI is enabled by ioctl, and
/// the queue size is capped at what was enabled (here 0). Enabling MSI by
/// ioctl does not show in it (0x0080 stays), and disabling leaves what the
/// user wrote (0x0081). Address and data are virtual: all-ones sticks.
pub fn msi_control_enable_sticks_only_while_msi_is_enabled<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    const CONTROL: u64 = 0x42;
    let o = env.open_edu()?;
    let d = &o.device;
    let mut got = Vec::new();
    let mut step = |d: &B::Device, bytes: Option<[u8; 2]>| -> Result<()> {
        if let Some(bytes) = bytes {
            d.write_config(CONTROL, &bytes)?;
        }
        got.push(read16::<B>(d, CONTROL)?);
        Ok(())
    };
    step(d, None)?;
    step(d, Some([0x01, 0x00]))?;
    step(d, Some([0xff, 0xff]))?;
    step(d, Some([0x80, 0x00]))?;
    let irq = env.backend.new_interrupt()?;
    d.enable_interrupts(IrqIndex::MSI, &[&irq])?;
    step(d, None)?;
    step(d, Some([0x81, 0x00]))?;
    step(d, Some([0xf1, 0x00]))?;
    d.trigger_interrupts(IrqIndex::MSI, 0, 1)?;
    ensure!(
        vfio_core::Interrupt::try_consume(&irq)?.is_some(),
        "the MSI vector did not fire"
    );
    d.disable_interrupts(IrqIndex::MSI)?;
    step(d, None)?;
    // A write that ends where Message Control starts (the read-only ID and
    // next pointer) also runs the fix-up, clearing the stale Enable.
    d.write_config(CONTROL - 2, &[0xff, 0xff])?;
    step(d, None)?;
    d.enable_interrupts(IrqIndex::MSI, &[&irq])?;
    step(d, Some([0x81, 0x00]))?;
    d.disable_interrupts(IrqIndex::MSI)?;
    step(d, Some([0x81, 0x00]))?;
    ensure!(
        got == [
            0x0080, 0x0000, 0x008e, 0x0080, 0x0080, 0x0081, 0x0081, 0x0081, 0x0080, 0x0081, 0x0080
        ],
        "MSI control: {got:04x?}"
    );
    d.write_config(0x44, &[0xff; 10])?;
    let regs = (
        read32::<B>(d, 0x44)?,
        read32::<B>(d, 0x48)?,
        read32::<B>(d, 0x4c)?,
    );
    ensure!(
        regs == (0xffff_ffff, 0xffff_ffff, 0x0000_ffff),
        "MSI address and data {regs:08x?}"
    );
    Ok(())
}

/// vfio-pci does not virtualize MSI-X: the NVMe controller's Message Control
/// reads the device's (0x0040, table size 65), ignores user writes, and
/// shows Enable (0x8040) exactly while MSI-X is enabled by ioctl.
pub fn msix_control_follows_the_ioctls_and_ignores_writes<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    const CONTROL: u64 = 0x42;
    let o = env.open_nvme()?;
    let d = &o.device;
    let mut got = vec![read16::<B>(d, CONTROL)?];
    d.write_config(CONTROL, &[0x00, 0xc0])?;
    got.push(read16::<B>(d, CONTROL)?);
    let irqs = [env.backend.new_interrupt()?, env.backend.new_interrupt()?];
    d.enable_interrupts(IrqIndex::MSIX, &[&irqs[0], &irqs[1]])?;
    got.push(read16::<B>(d, CONTROL)?);
    d.write_config(CONTROL, &[0x00, 0x00])?;
    got.push(read16::<B>(d, CONTROL)?);
    d.trigger_interrupts(IrqIndex::MSIX, 0, 2)?;
    let fired = crate::fired(&irqs)?;
    ensure!(fired == [0, 1], "fired {fired:?}");
    d.disable_interrupts(IrqIndex::MSIX)?;
    got.push(read16::<B>(d, CONTROL)?);
    ensure!(
        got == [0x0040, 0x0040, 0x8040, 0x8040, 0x0040],
        "MSI-X control: {got:04x?}"
    );
    Ok(())
}

/// What a user writes to config space lasts until the device is closed: the
/// next open reads the same bytes as the first (the kernel's dump).
pub fn config_space_is_restored_when_the_device_is_closed<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    for (offset, bytes) in [
        (0x04u64, &[0x00u8, 0x04][..]),
        (0x0c, &[0x10]),
        (0x10, &[0xff; 4]),
        (0x3c, &[0x44]),
        (0x42, &[0xff, 0xff]),
        (0x44, &[0xff; 10]),
    ] {
        o.device.write_config(offset, bytes)?;
    }
    ensure!(
        dump::<B>(&o.device)? != EDU_CONFIG,
        "the writes changed nothing"
    );
    drop(o);
    let o = env.open_edu()?;
    ensure_same_bytes(
        "edu config space after reopening",
        &dump::<B>(&o.device)?,
        EDU_CONFIG,
    )
}
