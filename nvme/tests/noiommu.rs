//! The driver in no-IOMMU mode on the simulated guest without an IOMMU,
//! whose DMA memory is simulated physical memory with no two base pages
//! contiguous: transfers across pages reach the right bytes through
//! per-page PRP entries, and a queue larger than a page is refused.

use nvme::{Nvme, NvmeError, Options};
use std::sync::Arc;
use vfio_core::DmaMemory;
use vfio_core::open::{Mode, OpenDevice, open_device};
use vfio_mock::{MockBackend, MockHost, profiles};

fn controller(host: &MockHost, queue_depth: u16) -> nvme::Result<Nvme<MockBackend>> {
    let backend = host.backend();
    let OpenDevice { device, dma } =
        open_device(&backend, &profiles::nvme_address(), Mode::NoIommu).expect("open");
    let options = Options {
        queue_depth,
        ..Options::default()
    };
    Nvme::new(&backend, device, Arc::new(dma), options)
}

#[test]
fn a_transfer_across_pages_that_are_not_contiguous_round_trips() {
    let host = profiles::qemu_guest_noiommu().build().expect("host");
    let nvme = controller(&host, 64).expect("bring-up with 64-entry queues");
    let buf = nvme
        .alloc_buffer(&host.backend(), 4 * 4096)
        .expect("buffer");
    let pages: Vec<u64> = (0..4)
        .map(|p| buf.memory().physical_address(p * 4096).expect("address"))
        .collect();
    assert!(
        pages.windows(2).all(|w| w[1] != w[0] + 4096),
        "the simulated pages should not be contiguous: {pages:x?}"
    );
    let data: Vec<u8> = (0..4 * 4096).map(|i| (i % 251) as u8).collect();
    buf.memory().write_at(0, &data).expect("fill");
    // From the middle of the first page to the middle of the last: PRP1,
    // then a list of the three pages after it.
    nvme.write_dma(1, 16, &buf, 2048, 3 * 4096).expect("write");
    let back = nvme
        .alloc_buffer(&host.backend(), 3 * 4096)
        .expect("buffer");
    nvme.read_dma(1, 16, &back, 0, 3 * 4096).expect("read");
    let mut got = vec![0u8; 3 * 4096];
    back.memory().read_at(0, &mut got).expect("copy out");
    assert_eq!(got, data[2048..2048 + 3 * 4096]);
}

#[test]
fn a_queue_larger_than_a_page_is_refused_in_memory_that_is_not_contiguous() {
    let host = profiles::qemu_guest_noiommu().build().expect("host");
    let e = controller(&host, 256).expect_err("a 16 KiB submission queue");
    assert!(
        matches!(e, NvmeError::Unsupported(why) if why.contains("contiguous")),
        "{e}"
    );
}
