//! Replays the committed corpus and regression inputs through every target.
//!
//! Each target panics on a property violation, so a test passes when every
//! file of `corpus/<target>/` and `regressions/<target>/` runs through it.
//! This is what stable CI runs: `cargo test --manifest-path fuzz/Cargo.toml`.

use std::path::{Path, PathBuf};

/// The files of `dir/<target>/`, sorted; none when the directory is absent.
fn inputs(dir: &str, target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("reading a corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input of `target`; returns how many ran.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let files: Vec<PathBuf> = ["corpus", "regressions"]
        .iter()
        .flat_map(|dir| inputs(dir, target))
        .collect();
    for file in &files {
        let data = std::fs::read(file).expect("reading a corpus file");
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{target} failed on {}", file.display());
    }
    files.len()
}

macro_rules! replay_tests {
    ($($target:ident),* $(,)?) => {$(
        #[test]
        fn $target() {
            let n = replay(stringify!($target), vfio_fuzz::$target);
            assert!(n > 0, "no corpus for {}", stringify!($target));
        }
    )*};
}

replay_tests!(
    vfio_caps,
    pci_caps,
    proc_interrupts,
    sysfs,
    register_access,
    hostile_device,
    hostile_nvme,
    dma_access,
);

/// Every target named in the library has a corpus and a replay test above.
#[test]
fn every_target_is_replayed() {
    for (name, _) in vfio_fuzz::TARGETS {
        assert!(
            !inputs("corpus", name).is_empty(),
            "corpus/{name}/ is missing or empty"
        );
    }
}
