//! Where things live: the workspace root, the guest asset cache, cargo itself.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The workspace root: the parent of the xtask crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
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
