//! Where things live: the workspace root, the guest asset cache, cargo itself.

use std::ffi::OsString;
use std::path::PathBuf;

/// The workspace root: the parent of the xtask crate's manifest directory.
///
/// `cargo run` (hence `cargo xtask`) sets `CARGO_MANIFEST_DIR` at run time; the value
/// baked in at compile time is the fallback for running the binary directly.
pub fn workspace_root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match manifest.parent() {
        Some(root) => root.to_path_buf(),
        None => manifest,
    }
}

/// The guest cache, `<workspace>/target/guest/`.
///
/// Deliberately independent of `CARGO_TARGET_DIR`, so the downloaded kernel survives
/// builds that use another target directory.
pub fn guest_dir() -> PathBuf {
    workspace_root().join("target").join("guest")
}

/// The cargo executable that started us (`$CARGO`), or `cargo` from `PATH`.
pub fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}
