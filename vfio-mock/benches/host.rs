//! Goal: a test builds its own simulated host freely. Building the QEMU
//! guest's topology (`profiles::qemu_guest()`: five devices in four
//! groups) and dropping it costs at most 50 µs.
//!
//! `build_drop` is a host nobody asks for paths: its fake `/sys`, `/proc`
//! and `/dev` trees are never written. `build_paths_drop` also asks for
//! them, as a driver that looks up its device's group in sysfs does: the
//! trees are written and deleted.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use vfio_mock::profiles;

fn host(c: &mut Criterion) {
    let mut g = c.benchmark_group("mock_host");
    g.bench_function("build_drop", |b| {
        b.iter(|| black_box(profiles::qemu_guest().build().expect("the host")));
    });
    g.bench_function("build_paths_drop", |b| {
        b.iter(|| {
            let host = profiles::qemu_guest().build().expect("the host");
            black_box(host.paths().sysfs().exists());
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_millis(1500));
    targets = host
}
criterion_main!(benches);
