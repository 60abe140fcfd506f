//! `cargo xtask build-guest-bin`: build a workspace binary statically for the guest.
//!
//! The explicit `--target` puts the artifacts under `<target-dir>/x86_64-unknown-linux-gnu/`,
//! apart from the host build, so the static flags never invalidate host artifacts.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cmd, paths};

/// The guest's target triple.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds `bin` of `package` as a static release binary and returns its path.
pub fn build(package: &str, bin: &str) -> Result<PathBuf> {
    if std::env::var_os("RUSTFLAGS").is_some()
        || std::env::var_os("CARGO_ENCODED_RUSTFLAGS").is_some()
    {
        eprintln!(
            "xtask: warning: RUSTFLAGS is set and overrides the target rustflags; \
             the guest binary may not be static"
        );
    }
    let root = paths::workspace_root();
    let mut cargo = Command::new(paths::cargo());
    cargo
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            package,
            "--bin",
            bin,
            "--target",
            GUEST_TARGET,
        ])
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        );
    eprintln!("xtask: {}", cmd::display(&cargo));
    cmd::run(&mut cargo).with_context(|| format!("building guest binary {package}/{bin}"))?;
    let path = target_dir()?.join(GUEST_TARGET).join("release").join(bin);
    if !path.is_file() {
        bail!("cargo succeeded but {} does not exist", path.display());
    }
    Ok(path)
}

/// The workspace's target directory, as cargo sees it (honouring `CARGO_TARGET_DIR`
/// and config files).
fn target_dir() -> Result<PathBuf> {
    let mut metadata = Command::new(paths::cargo());
    metadata.current_dir(paths::workspace_root()).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]);
    let json = cmd::output(&mut metadata)?;
    let json = String::from_utf8(json).context("cargo metadata printed non-UTF-8")?;
    json_string_field(&json, "target_directory")
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// Extracts the first top-level-looking `"key":"value"` string from JSON text.
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = json[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                'r' => value.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_string_field() {
        let json = r#"{"packages":[],"target_directory":"/w/t\"a\\b\u0041","version":1}"#;
        assert_eq!(
            json_string_field(json, "target_directory").as_deref(),
            Some("/w/t\"a\\bA")
        );
        assert_eq!(json_string_field(json, "missing"), None);
    }
}
