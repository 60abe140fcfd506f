//! Config space, BARs and the edu and NVMe models, through the trait.

mod common;

use common::{guest, open};
use nix::errno::Errno;
use std::sync::Arc;
use std::time::Duration;
use vfio_core::{
    Device, DmaFlags, DmaMemory, DmaSpace, ErrorKind, Interrupt, IrqIndex, MappedRegion,
    VfioBackend, region,
};
use vfio_mock::profiles::{self, edu, nvme};
use vfio_mock::{BarSpec, DmaFault, FaultAccess, MockHost, PciDeviceBuilder};

const SOON: Duration = Duration::from_secs(5);

#[test]
fn config_space_read_only_bits_stay_and_writable_bits_change() {
    let (_host, b) = guest();
    let o = open(&b, profiles::edu_address());
    o.device.write_config(0, &[0xff; 4]).unwrap();
    o.device.write_config(8, &[0xff; 4]).unwrap();
    o.device.write_config(0x3d, &[0x04]).unwrap();
    assert_eq!(
        o.device.read_config::<4>(0).unwrap(),
        [0x34, 0x12, 0xe8, 0x11]
    );
    assert_eq!(
        o.device.read_config::<4>(8).unwrap(),
        [0x10, 0x00, 0xff, 0x00]
    );
    assert_eq!(o.device.read_config::<1>(0x3d).unwrap(), [1]);
    // Command: I/O, memory and SERR# as the guest's firmware left them;
    // bus master is writable.
    let cmd = u16::from_le_bytes(o.device.read_config::<2>(4).unwrap());
    assert_eq!(cmd, 0x0103);
    o.device
        .write_config(4, &(cmd | 0x4 | 0x8).to_le_bytes())
        .unwrap();
    let cmd = u16::from_le_bytes(o.device.read_config::<2>(4).unwrap());
    assert_eq!(cmd & 0xf, 0x7, "special cycles (bit 3) is read-only");
    // Interrupt line is writable.
    o.device.write_config(0x3c, &[0x5a]).unwrap();
    assert_eq!(o.device.read_config::<1>(0x3c).unwrap(), [0x5a]);
}

#[test]
fn bar_registers_read_back_their_size_mask_after_all_ones() {
    let (_host, b) = guest();
    let o = open(&b, profiles::edu_address());
    o.device.write_config(0x10, &[0xff; 4]).unwrap();
    assert_eq!(
        u32::from_le_bytes(o.device.read_config::<4>(0x10).unwrap()),
        0xfff0_0000
    );
    o.device.write_config(0x14, &[0xff; 4]).unwrap();
    assert_eq!(
        u32::from_le_bytes(o.device.read_config::<4>(0x14).unwrap()),
        0,
        "absent BAR"
    );
    let n = open(&b, profiles::nvme_address());
    n.device.write_config(0x10, &[0xff; 8]).unwrap();
    // 16 KiB, 64-bit, non-prefetchable: low dword 0xffffc004, upper all ones.
    assert_eq!(
        u32::from_le_bytes(n.device.read_config::<4>(0x10).unwrap()),
        0xffff_c004
    );
    assert_eq!(
        u32::from_le_bytes(n.device.read_config::<4>(0x14).unwrap()),
        0xffff_ffff
    );
}

#[test]
fn nvme_capabilities_are_laid_out_like_qemus() {
    let (_host, b) = guest();
    let n = open(&b, profiles::nvme_address());
    let mut config = vec![0u8; 4096];
    vfio_core::access::read_exact(&n.device, region::CONFIG, 0, &mut config).unwrap();
    let caps = vfio_core::parse::pci_caps::capabilities(&config).unwrap();
    let ids: Vec<(u8, u8)> = caps.iter().map(|c| (c.id, c.offset)).collect();
    assert_eq!(ids, [(0x11, 0x40), (0x10, 0x80), (0x01, 0x60)]);
    let msix = vfio_core::parse::pci_caps::msix(&config).unwrap().unwrap();
    assert_eq!(
        (
            msix.table_size,
            msix.table_bar,
            msix.table_offset,
            msix.pba_offset
        ),
        (65, 0, 0x2000, 0x3000)
    );
    let info = n.device.region_info(0).unwrap();
    assert_eq!(info.caps, vec![vfio_core::RegionCap::MsixMappable]);
}

#[test]
fn concurrent_register_access_from_threads_is_consistent() {
    let host = MockHost::builder()
        .device(
            "0000:01:00.0".parse().unwrap(),
            7,
            PciDeviceBuilder::new(0x1af4, 0x1000).bar(2, BarSpec::memory64(1 << 16)),
        )
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, "0000:01:00.0".parse().unwrap());
    let bar = Arc::new(o.device.map_region(2).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let bar = bar.clone();
            std::thread::spawn(move || {
                for i in 0..1000u64 {
                    // Each thread owns one byte of word 0 and a word of its own.
                    bar.write_u8(t, (i & 0xff) as u8).unwrap();
                    bar.write_u64(0x100 + 8 * t, i).unwrap();
                    assert_eq!(bar.read_u64(0x100 + 8 * t).unwrap(), i);
                }
                bar.write_u8(t, 0xa0 + t as u8).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(bar.read_u64(0).unwrap(), 0xa7a6_a5a4_a3a2_a1a0);
    // The pread path sees the same memory.
    let mut buf = [0u8; 8];
    assert_eq!(o.device.read_region(2, 0, &mut buf).unwrap(), 8);
    assert_eq!(u64::from_le_bytes(buf), 0xa7a6_a5a4_a3a2_a1a0);
}

#[test]
fn region_reads_are_cut_at_bar_end_skip_the_msix_table_and_fault_past_config() {
    let (_host, b) = guest();
    let n = open(&b, profiles::nvme_address());
    let mut buf = [0u8; 8];
    assert_eq!(
        n.device
            .read_region(0, nvme::BAR0_SIZE - 2, &mut buf)
            .unwrap(),
        2
    );
    let mut table = [0u8; 16];
    assert_eq!(n.device.read_region(0, 0x2000, &mut table).unwrap(), 16);
    assert_eq!(
        table, [0xff; 16],
        "the MSI-X table is not reachable through read()"
    );
    let e = n
        .device
        .read_region(region::CONFIG, 4094, &mut buf)
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::OutOfRange, Some(Errno::EFAULT))
    );
    let e = n
        .device
        .read_region(0, nvme::BAR0_SIZE, &mut buf)
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.errno()),
        (ErrorKind::InvalidArgument, Some(Errno::EINVAL)),
        "vfio-pci's answer past a BAR's end"
    );
    let e = n.device.region_info(region::VGA).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EINVAL));
    // Memory decoding off: BAR reads through the file fail with EIO.
    n.device.write_config(4, &[0, 0]).unwrap();
    let e = n.device.read_region(0, 0, &mut buf).unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EIO));
}

fn edu_msi(b: &vfio_mock::MockBackend, o: &common::Opened) -> vfio_core::EventFdInterrupt {
    let irq = b.new_interrupt().unwrap();
    o.device.enable_interrupts(IrqIndex::MSI, &[&irq]).unwrap();
    irq
}

#[test]
fn edu_factorial_completes_and_interrupts_through_msi() {
    let (_host, b) = guest();
    let o = open(&b, profiles::edu_address());
    let irq = edu_msi(&b, &o);
    // An MSI is a memory write by the device: it needs Bus Master Enable.
    o.device.set_bus_master(true).unwrap();
    let bar = o.device.map_region(0).unwrap();
    assert_eq!(bar.read_u32(0).unwrap(), edu::ID);
    bar.write_u32(0x20, edu::STATUS_IRQ_FACT).unwrap();
    bar.write_u32(0x08, 10).unwrap();
    assert_eq!(irq.wait(Some(SOON)).unwrap(), Some(1));
    assert_eq!(bar.read_u32(0x20).unwrap() & edu::STATUS_COMPUTING, 0);
    assert_eq!(bar.read_u32(0x08).unwrap(), 3_628_800);
    assert_eq!(bar.read_u32(0x24).unwrap(), edu::IRQ_FACT);
    bar.write_u32(0x64, edu::IRQ_FACT).unwrap();
    assert_eq!(bar.read_u32(0x24).unwrap(), 0);
    // Without bit 7, no interrupt.
    bar.write_u32(0x20, 0).unwrap();
    bar.write_u32(0x08, 3).unwrap();
    assert_eq!(bar.read_u32(0x08).unwrap(), 6);
    assert_eq!(irq.try_consume().unwrap(), None);
    // Narrow accesses are refused by the device (read 0) and the liveness register inverts.
    assert_eq!(bar.read_u16(0).unwrap(), 0);
    bar.write_u32(0x04, 0x1234_5678).unwrap();
    assert_eq!(bar.read_u32(0x04).unwrap(), !0x1234_5678);
}

#[test]
fn edu_intx_is_automasked_until_acknowledged_and_unmasked() {
    let (_host, b) = guest();
    let o = open(&b, profiles::edu_address());
    let irq = b.new_interrupt().unwrap();
    o.device.enable_interrupts(IrqIndex::INTX, &[&irq]).unwrap();
    let bar = o.device.map_region(0).unwrap();
    bar.write_u32(0x60, 0x4).unwrap();
    assert_eq!(irq.wait(Some(SOON)).unwrap(), Some(1));
    // Still asserted and masked: raising again does nothing.
    bar.write_u32(0x60, 0x8).unwrap();
    assert_eq!(irq.try_consume().unwrap(), None);
    // Unmasking while the line is still asserted signals again and stays masked.
    o.device.unmask_intx().unwrap();
    assert_eq!(irq.try_consume().unwrap(), Some(1));
    bar.write_u32(0x64, 0xc).unwrap();
    o.device.unmask_intx().unwrap();
    assert_eq!(irq.try_consume().unwrap(), None);
    bar.write_u32(0x60, 0x1).unwrap();
    assert_eq!(irq.try_consume().unwrap(), Some(1));
}

#[test]
fn edu_dma_round_trips_through_the_iommu_and_faults_on_unmapped_iovas() {
    let model = edu::EduModel::new();
    let host = MockHost::builder()
        .device(
            profiles::edu_address(),
            1,
            profiles::edu().model(model.clone()),
        )
        .build()
        .unwrap();
    let b = host.backend();
    let o = open(&b, profiles::edu_address());
    let mem = b.alloc_dma(0x2000).unwrap();
    let pattern: Vec<u8> = (0..64u8).collect();
    mem.write_at(0, &pattern).unwrap();
    let mapping = o
        .container
        .map_dma(&mem, 0, 0x2000, 0x10_0000, DmaFlags::READ | DmaFlags::WRITE)
        .unwrap();
    let bar = o.device.map_region(0).unwrap();
    let irq = edu_msi(&b, &o);
    let dma = |src: u64, dst: u64, cmd: u64| {
        bar.write_u64(0x80, src).unwrap();
        bar.write_u64(0x88, dst).unwrap();
        bar.write_u64(0x90, 64).unwrap();
        bar.write_u64(0x98, cmd | edu::DMA_RUN | edu::DMA_IRQ)
            .unwrap();
    };
    // Bus mastering is off after open: neither the DMA nor its MSI happens.
    dma(0x10_0000, edu::DMA_BUFFER, 0);
    assert_eq!(model.last_dma_fault(), Some(DmaFault::BusMasterDisabled));
    assert_eq!(irq.try_consume().unwrap(), None);
    bar.write_u32(0x64, edu::IRQ_DMA).unwrap();
    let cmd = u16::from_le_bytes(o.device.read_config::<2>(4).unwrap());
    o.device
        .write_config(4, &(cmd | 0x4).to_le_bytes())
        .unwrap();
    // RAM -> device, then device -> RAM one page further.
    dma(0x10_0000, edu::DMA_BUFFER, 0);
    assert_eq!(&model.buffer()[..64], &pattern[..]);
    dma(edu::DMA_BUFFER, 0x10_1000, edu::DMA_TO_RAM);
    assert_eq!(bar.read_u64(0x98).unwrap() & edu::DMA_RUN, 0);
    let mut back = vec![0u8; 64];
    mem.read_at(0x1000, &mut back).unwrap();
    assert_eq!(back, pattern);
    assert_eq!(
        model.last_dma_fault(),
        Some(DmaFault::BusMasterDisabled),
        "no new fault"
    );
    // An unmapped IOVA faults.
    dma(0x20_0000, edu::DMA_BUFFER, 0);
    assert_eq!(
        model.last_dma_fault(),
        Some(DmaFault::Unmapped {
            iova: 0x20_0000,
            completed: 0
        })
    );
    // After unmapping, the old IOVA faults too.
    assert_eq!(mapping.unmap().unwrap(), 0x2000);
    dma(edu::DMA_BUFFER, 0x10_0000, edu::DMA_TO_RAM);
    assert_eq!(
        model.last_dma_fault(),
        Some(DmaFault::Unmapped {
            iova: 0x10_0000,
            completed: 0
        })
    );
    // Each refused DMA left a record in the host's fault log.
    let faults: Vec<String> = host.iommu_faults().iter().map(|f| f.to_string()).collect();
    assert_eq!(
        faults,
        [
            "[DMA Read NO_PASID] Request device [00:02.0] fault addr 0x200000 \
             [fault reason 0x06] PTE Read access is not set",
            "[DMA Write NO_PASID] Request device [00:02.0] fault addr 0x100000 \
             [fault reason 0x05] PTE Write access is not set",
        ]
    );
}

#[test]
fn a_dma_past_the_end_of_a_mapping_moves_the_mapped_part_and_logs_the_rest() {
    let (host, b) = guest();
    let o = open(&b, profiles::edu_address());
    let mem = b.alloc_dma(0x2000).unwrap();
    let _mapped1 = o
        .container
        .map_dma(&mem, 0, 0x1000, 0x10_0000, DmaFlags::READ | DmaFlags::WRITE)
        .unwrap();
    let _mapped2 = o
        .container
        .map_dma(&mem, 0x1000, 0x1000, 0x10_1000, DmaFlags::READ)
        .unwrap();
    o.device.set_bus_master(true).unwrap();
    let data = [7u8; 0x20];
    let r = host.with_device(profiles::edu_address(), |ctx| {
        ctx.dma_write(0x10_0ff0, &data)
    });
    assert_eq!(
        r,
        Some(Err(DmaFault::Permission {
            iova: 0x10_1000,
            completed: 0x10
        }))
    );
    let mut back = [0u8; 0x20];
    mem.read_at(0xff0, &mut back).unwrap();
    assert_eq!(back[..0x10], [7; 0x10]);
    assert_eq!(back[0x10..], [0; 0x10]);
    let mut buf = [1u8; 0x20];
    let r = host.with_device(profiles::edu_address(), |ctx| {
        ctx.dma_read(0x10_1ff0, &mut buf)
    });
    assert_eq!(
        r,
        Some(Err(DmaFault::Unmapped {
            iova: 0x10_2000,
            completed: 0x10
        }))
    );
    assert_eq!(buf[0x10..], [1; 0x10], "refused bytes are left alone");
    let faults = host.iommu_faults();
    assert_eq!(faults.len(), 2);
    assert_eq!(
        (faults[0].page, faults[0].access, faults[0].reason),
        (0x10_1000, FaultAccess::Write, vfio_mock::REASON_NO_WRITE)
    );
    assert_eq!(
        (faults[1].page, faults[1].access, faults[1].reason),
        (0x10_2000, FaultAccess::Read, vfio_mock::REASON_NO_READ)
    );
}

#[test]
fn nvme_enable_sets_ready_and_disable_clears_it() {
    let (_host, b) = guest();
    let o = open(&b, profiles::nvme_address());
    let bar = o.device.map_region(0).unwrap();
    assert_eq!(bar.read_u64(nvme::reg::CAP).unwrap(), nvme::CAP);
    assert_eq!(bar.read_u32(nvme::reg::VS).unwrap(), 0x0001_0400);
    // Enabling without admin queues fails the controller.
    bar.write_u32(nvme::reg::CC, nvme::CC_EN).unwrap();
    assert_eq!(bar.read_u32(nvme::reg::CSTS).unwrap(), nvme::CSTS_CFS);
    bar.write_u32(nvme::reg::CC, 0).unwrap();
    assert_eq!(bar.read_u32(nvme::reg::CSTS).unwrap(), 0);
    bar.write_u32(nvme::reg::AQA, 0x001f_001f).unwrap();
    bar.write_u64(nvme::reg::ASQ, 0x10_0000).unwrap();
    bar.write_u64(nvme::reg::ACQ, 0x10_1000).unwrap();
    bar.write_u32(nvme::reg::CC, (4 << 20) | (6 << 16) | nvme::CC_EN)
        .unwrap();
    assert_eq!(bar.read_u32(nvme::reg::CSTS).unwrap(), nvme::CSTS_RDY);
    bar.write_u32(nvme::reg::CC, 0).unwrap();
    assert_eq!(bar.read_u32(nvme::reg::CSTS).unwrap() & nvme::CSTS_RDY, 0);
    // A reset (FLR) clears CC and CSTS but, as on QEMU 7.2, keeps the
    // admin queue registers.
    bar.write_u64(nvme::reg::ASQ, 0x20_0000).unwrap();
    bar.write_u32(nvme::reg::CC, (4 << 20) | (6 << 16) | nvme::CC_EN)
        .unwrap();
    o.device.reset().unwrap();
    assert_eq!(bar.read_u32(nvme::reg::CC).unwrap(), 0);
    assert_eq!(bar.read_u32(nvme::reg::CSTS).unwrap(), 0);
    assert_eq!(bar.read_u64(nvme::reg::ASQ).unwrap(), 0x20_0000);
    let edu = open(&b, profiles::edu_address());
    assert_eq!(edu.device.reset().unwrap_err().errno(), Some(Errno::EINVAL));
}
