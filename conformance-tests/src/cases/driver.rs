//! Driver-level behaviours: real drivers doing real work on the devices.

use crate::{Env, Mode};
use anyhow::{Result, ensure};
use edu::Edu;
use std::time::{Duration, Instant};
use vfio_core::{Device, DmaFlags, DmaSpace, MappedRegion, VfioBackend, region};

/// The edu driver computes factorials, each completed by an MSI interrupt.
pub fn edu_driver_computes_factorials_with_completion_interrupts<B: VfioBackend>(
    env: &Env<B>,
) -> Result<()> {
    let o = env.open_edu()?;
    let mut edu = Edu::<B>::new(&env.backend, o.device)?;
    for (n, want) in [
        (0u32, 1u32),
        (1, 1),
        (5, 120),
        (10, 3_628_800),
        (12, 479_001_600),
    ] {
        let got = edu.factorial(n)?;
        ensure!(got == want, "{n}! = {got}");
    }
    // 13! does not fit in 32 bits: the device wraps.
    ensure!(edu.factorial(13)? == 6_227_020_800u64 as u32, "13! wraps");
    Ok(())
}

/// The edu driver moves data to the device and back by DMA through the IOMMU.
pub fn edu_driver_dma_round_trip_through_the_iommu<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    env.only_in(
        &[Mode::Type1],
        "the edu crate's dma_round_trip maps through a Type1 container and gives the device IOVAs",
    )?;
    let (device, _group, container) = env.open_edu()?.into_type1()?;
    let mut edu = Edu::<B>::new(&env.backend, device)?;
    let data: Vec<u8> = (0..=255u8).cycle().take(edu::DMA_MAX_TRANSFER).collect();
    let back = edu.dma_round_trip(&env.backend, &container, &data)?;
    ensure!(back == data, "data changed on the round trip");
    let short = edu.dma_round_trip(&env.backend, &container, b"vfio")?;
    ensure!(short == b"vfio", "{short:?}");
    let too_long = vec![0u8; edu::DMA_BUFFER_LEN];
    let e = edu
        .dma_round_trip(&env.backend, &container, &too_long)
        .expect_err("4 KiB transfer");
    ensure!(matches!(e, edu::EduError::TooLong(4096)), "{e}");
    Ok(())
}

/// NVMe controller register offsets.
mod nvme {
    pub const CAP: u64 = 0x00;
    pub const VS: u64 = 0x08;
    pub const CC: u64 = 0x14;
    pub const CSTS: u64 = 0x1c;
    pub const AQA: u64 = 0x24;
    pub const ASQ: u64 = 0x28;
    pub const ACQ: u64 = 0x30;
}

fn wait_ready<R: MappedRegion>(bar0: &R, ready: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let csts = bar0.read_u32(nvme::CSTS)?;
        if (csts & 1 == 1) == ready {
            return Ok(());
        }
        ensure!(csts & 2 == 0, "controller fatal status, CSTS {csts:#x}");
        ensure!(Instant::now() < deadline, "CSTS.RDY never became {ready}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Enabling the NVMe controller with admin queues set makes it ready; disabling
/// it clears ready. Its version register reads NVMe 1.4.
pub fn nvme_controller_enable_sets_ready<B: VfioBackend>(env: &Env<B>) -> Result<()> {
    let o = env.open_nvme()?;
    o.device.set_bus_master(true)?;
    let bar0 = o.device.map_region(region::BAR0)?;
    let vs = bar0.read_u32(nvme::VS)?;
    ensure!(vs == 0x0001_0400, "VS {vs:#x}");
    let cap = bar0.read_u64(nvme::CAP)?;
    ensure!(cap & 0xffff > 0, "CAP.MQES is 0: {cap:#x}");
    ensure!(bar0.read_u32(nvme::CSTS)? & 1 == 0, "ready before enable");
    let queues = env.backend.alloc_dma(0x2000)?;
    let queues_mapped = o.dma.map_dma(
        &queues,
        0,
        0x2000,
        0x20_0000,
        DmaFlags::READ | DmaFlags::WRITE,
    )?;
    bar0.write_u32(nvme::AQA, (31 << 16) | 31)?;
    bar0.write_u64(nvme::ASQ, queues_mapped.device_address(0)?)?;
    bar0.write_u64(nvme::ACQ, queues_mapped.device_address(0x1000)?)?;
    // IOSQES 6 (64-byte entries), IOCQES 4 (16-byte), 4 KiB pages, NVM command set, enable.
    bar0.write_u32(nvme::CC, (4 << 20) | (6 << 16) | 1)?;
    wait_ready(&bar0, true)?;
    bar0.write_u32(nvme::CC, 0)?;
    wait_ready(&bar0, false)?;
    Ok(())
}
