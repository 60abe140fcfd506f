//! Reads kept 32 deep on the simulated controller, polled and
//! interrupt-driven: the driver rings a doorbell for each while the
//! controller's thread is busy with the ones before, and every read must
//! still bring back its own blocks.

use std::sync::Arc;
use vfio_core::{Container, DmaMemory, Group, IommuType, VfioBackend};
use vfio_mock::{MockBackend, MockHost, profiles};

/// The bytes of one read.
const READ: usize = 4096;
/// Reads in flight.
const DEPTH: usize = 32;
/// The part of the drive written and read.
const SPAN: usize = 1 << 20;

/// The byte at `offset` of the drive.
fn byte(offset: usize) -> u8 {
    ((offset / READ) as u8).wrapping_mul(31) ^ (offset % 251) as u8
}

fn driver(host: &MockHost) -> nvme::Nvme<MockBackend> {
    let backend = host.backend();
    let address = profiles::nvme_address();
    let group = backend
        .open_group(backend.host_paths().iommu_group(&address).unwrap())
        .unwrap();
    let container = Arc::new(backend.open_container().unwrap());
    group.set_container(&container).unwrap();
    container.set_iommu(IommuType::Type1v2).unwrap();
    let device = group.open_device(&address.to_string()).unwrap();
    let options = nvme::Options {
        io_queues: 1,
        ..nvme::Options::default()
    };
    nvme::Nvme::new(&backend, device, container, options).unwrap()
}

#[test]
fn reads_kept_32_deep_each_bring_back_their_own_blocks() {
    let host = profiles::qemu_guest().build().unwrap();
    let backend = host.backend();
    let mut nvme = driver(&host);
    let data: Vec<u8> = (0..SPAN).map(byte).collect();
    for (i, chunk) in data.chunks(128 << 10).enumerate() {
        nvme.write(1, (i * (128 << 10) / 512) as u64, chunk)
            .unwrap();
    }
    let buffers = nvme.alloc_buffer(&backend, DEPTH * READ).unwrap();
    let pages = (SPAN / READ) as u64;
    for mode in [
        nvme::CompletionMode::Polled,
        nvme::CompletionMode::Interrupt,
    ] {
        nvme.set_completion_mode(mode);
        // Read `i` brings page `page_of(i)` into slot `i % DEPTH`.
        let page_of = |i: usize| (i as u64 * 37 + 11) % pages;
        let submit = |i: usize| {
            let slot = i % DEPTH;
            nvme.submit_read_dma(
                1,
                page_of(i) * (READ / 512) as u64,
                &buffers,
                slot * READ,
                READ,
            )
            .unwrap()
        };
        let mut flight: Vec<_> = (0..DEPTH).map(submit).collect();
        let mut got = vec![0u8; READ];
        for i in 0..DEPTH * 40 {
            let slot = i % DEPTH;
            nvme.finish(&flight[slot]).unwrap();
            buffers.memory().read_at(slot * READ, &mut got).unwrap();
            let at = page_of(i) as usize * READ;
            assert!(
                got == data[at..at + READ],
                "{mode:?} read {i} (page {}) brought back other bytes",
                page_of(i)
            );
            flight[slot] = submit(i + DEPTH);
        }
        for t in &flight {
            nvme.finish(t).unwrap();
        }
    }
    drop(buffers);
    drop(nvme);
    host.run_until_idle();
    host.assert_faults_consumed();
}
