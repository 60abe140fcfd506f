//! DMA mappings that unmap on drop, owned mappings, and allocated IOVAs,
//! seen from the device's side of the simulated IOMMU.

mod common;

use common::{guest, open};
use nix::errno::Errno;
use std::sync::Arc;
use vfio_core::{
    Container, Device, DmaFlags, DmaMemory, DmaSpace, ErrorKind, Group, IommuType, IovaAllocator,
    IovaOptions, MappedRegion, Operation, OwnedDmaMapping, VfioBackend,
};
use vfio_mock::profiles::{self, edu};
use vfio_mock::{DmaFault, MockBackend, MockHost};

const RW: DmaFlags = DmaFlags(DmaFlags::READ.0 | DmaFlags::WRITE.0);

/// A host with an edu whose model the test can watch, and its device open
/// with bus mastering on, in a container the test holds by `Arc`.
struct Edu {
    model: edu::EduModel,
    _host: MockHost,
    backend: MockBackend,
    container: Arc<vfio_mock::MockContainer>,
    bar: vfio_mock::MockRegion,
    _device: vfio_mock::MockDevice,
    _group: vfio_mock::MockGroup,
}

fn edu_host() -> Edu {
    let model = edu::EduModel::new();
    let host = MockHost::builder()
        .device(
            profiles::edu_address(),
            1,
            profiles::edu().model(model.clone()),
        )
        .build()
        .unwrap();
    let backend = host.backend();
    let group = backend.open_group(1).unwrap();
    let container = Arc::new(backend.open_container().unwrap());
    group.set_container(&container).unwrap();
    container.set_iommu(IommuType::Type1v2).unwrap();
    let device = group
        .open_device(&profiles::edu_address().to_string())
        .unwrap();
    device.set_bus_master(true).unwrap();
    let bar = device.map_region(0).unwrap();
    Edu {
        model,
        _host: host,
        backend,
        container,
        bar,
        _device: device,
        _group: group,
    }
}

impl Edu {
    /// Has the device copy 16 bytes from `iova` into its own buffer.
    fn dma_from(&self, iova: u64) {
        self.bar.write_u64(0x80, iova).unwrap();
        self.bar.write_u64(0x88, edu::DMA_BUFFER).unwrap();
        self.bar.write_u64(0x90, 16).unwrap();
        self.bar.write_u64(0x98, edu::DMA_RUN).unwrap();
    }
}

#[test]
fn a_dropped_mapping_is_gone_from_the_devices_view() {
    let e = edu_host();
    let mem = e.backend.alloc_dma(0x1000).unwrap();
    mem.write_at(0, b"visible to edu..").unwrap();
    let mapping = e.container.map_dma(&mem, 0, 0x1000, 0x10_0000, RW).unwrap();
    e.dma_from(mapping.iova());
    assert_eq!(&e.model.buffer()[..16], b"visible to edu..");
    assert_eq!(e.model.last_dma_fault(), None);
    drop(mapping);
    e.dma_from(0x10_0000);
    assert_eq!(
        e.model.last_dma_fault(),
        Some(DmaFault::Unmapped {
            iova: 0x10_0000,
            completed: 0
        })
    );
}

/// A driver's struct can hold an owned mapping; the memory outlives the
/// caller's handle to it, and the device keeps reaching it until the
/// mapping goes.
#[test]
fn an_owned_mapping_keeps_its_memory_mapped_after_the_callers_handle_is_gone() {
    struct Ring {
        mapping: OwnedDmaMapping<MockBackend>,
    }
    let e = edu_host();
    let mem = Arc::new(e.backend.alloc_dma(0x1000).unwrap());
    mem.write_at(0, b"owned by a ring.").unwrap();
    let ring = Ring {
        mapping: OwnedDmaMapping::<MockBackend>::new(
            Arc::clone(&e.container),
            Arc::clone(&mem),
            0,
            0x1000,
            0x20_0000,
            DmaFlags::READ,
        )
        .unwrap(),
    };
    drop(mem);
    e.dma_from(0x20_0000);
    assert_eq!(&e.model.buffer()[..16], b"owned by a ring.");
    assert_eq!(ring.mapping.unmap().unwrap(), 0x1000);
    e.dma_from(0x20_0000);
    assert_eq!(
        e.model.last_dma_fault(),
        Some(DmaFault::Unmapped {
            iova: 0x20_0000,
            completed: 0
        })
    );
}

/// The unmap of a drop can fail; the IOVA range may then still be mapped,
/// so the allocator never hands it out again.
#[test]
fn a_failed_unmap_on_drop_keeps_the_iova_range_allocated() {
    let (host, b) = guest();
    let o = open(&b, profiles::edu_address());
    let iovas =
        IovaAllocator::new(&o.container.iommu_info().unwrap(), IovaOptions::default()).unwrap();
    let mem = b.alloc_dma(0x1000).unwrap();
    let mapping = o.container.map_dma_in(&iovas, &mem, 0, 0x1000, RW).unwrap();
    let stuck = mapping.iova();
    host.fail_next(Operation::UnmapDma, Errno::EIO, 1);
    drop(mapping);
    host.assert_faults_consumed();
    let e = o
        .container
        .map_dma_raw(&mem, 0, 0x1000, stuck, RW)
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::EEXIST), "still mapped");
    let next = o.container.map_dma_in(&iovas, &mem, 0, 0x1000, RW).unwrap();
    assert_ne!(next.iova(), stuck);
    // An explicit unmap returns the failure instead.
    host.fail_next(Operation::UnmapDma, Errno::EIO, 1);
    let e = next.unmap().unwrap_err();
    assert_eq!((e.kind(), e.errno()), (ErrorKind::Io, Some(Errno::EIO)));
}

/// An allocator confined to a small window is exhausted with no kernel
/// call, and a refused map gives its IOVA back.
#[test]
fn an_exhausted_window_is_no_space_and_a_refused_map_frees_its_iova() {
    let (host, b) = guest();
    let o = open(&b, profiles::edu_address());
    let options = IovaOptions {
        window: 0x10_0000..=0x10_3fff,
        guard_pages: 1,
    };
    let iovas = IovaAllocator::new(&o.container.iommu_info().unwrap(), options).unwrap();
    let mem = b.alloc_dma(0x2000).unwrap();
    host.fail_next(Operation::MapDma, Errno::ENOMEM, 1);
    let e = o
        .container
        .map_dma_in(&iovas, &mem, 0, 0x1000, RW)
        .unwrap_err();
    assert_eq!(e.errno(), Some(Errno::ENOMEM));
    let first = o.container.map_dma_in(&iovas, &mem, 0, 0x1000, RW).unwrap();
    let second = o
        .container
        .map_dma_in(&iovas, &mem, 0x1000, 0x1000, RW)
        .unwrap();
    assert_eq!((first.iova(), second.iova()), (0x10_0000, 0x10_2000));
    let e = o
        .container
        .map_dma_in(&iovas, &mem, 0, 0x1000, RW)
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.errno(), e.operation()),
        (ErrorKind::NoSpace, None, Operation::AllocIova)
    );
    host.assert_faults_consumed();
}

/// A drop unmaps its own range and nothing next to it.
#[test]
fn dropping_a_mapping_leaves_its_neighbour_mapped() {
    let e = edu_host();
    let mem = e.backend.alloc_dma(0x2000).unwrap();
    mem.write_at(0x1000, b"the neighbour...").unwrap();
    let low = e.container.map_dma(&mem, 0, 0x1000, 0x30_0000, RW).unwrap();
    let high = e
        .container
        .map_dma(&mem, 0x1000, 0x1000, 0x30_1000, RW)
        .unwrap();
    drop(low);
    e.dma_from(high.iova());
    assert_eq!(e.model.last_dma_fault(), None);
    assert_eq!(&e.model.buffer()[..16], b"the neighbour...");
    e.dma_from(0x30_0000);
    assert_eq!(
        e.model.last_dma_fault(),
        Some(DmaFault::Unmapped {
            iova: 0x30_0000,
            completed: 0
        })
    );
}

/// An owned mapping can be kept in a driver's struct that moves between
/// threads.
#[test]
fn an_owned_mapping_is_send_sync_and_static() {
    fn driver_state<T: Send + Sync + 'static>() {}
    driver_state::<OwnedDmaMapping<MockBackend>>();
}
