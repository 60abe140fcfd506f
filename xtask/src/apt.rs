//! Debian packages: installing missing tools and downloading `.deb` files.
//!
//! `apt-get update` runs at most once per xtask process, and only when needed: before an
//! install, or when a download fails (typically because a fresh machine has no package
//! lists yet).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};

use crate::cmd;

static UPDATED: AtomicBool = AtomicBool::new(false);

fn apt_get() -> Result<Command> {
    if cmd::which("apt-get").is_none() {
        bail!(
            "apt-get is not available: this needs a Debian-like host (or install the tools by hand)"
        );
    }
    let mut command = Command::new("apt-get");
    command.env("DEBIAN_FRONTEND", "noninteractive");
    Ok(command)
}

/// Runs `apt-get update` unless this process already did.
fn update_once() -> Result<()> {
    if UPDATED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    eprintln!("xtask: apt-get update");
    cmd::run(apt_get()?.arg("update")).context(
        "apt-get update failed (are you root, and can the machine reach the Debian mirrors?)",
    )
}

/// Installs `packages` with `apt-get install -y` (after one `apt-get update`).
pub fn install(packages: &[&str]) -> Result<()> {
    update_once()?;
    eprintln!("xtask: apt-get install -y {}", packages.join(" "));
    cmd::run(
        apt_get()?
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages),
    )
    .with_context(|| format!("could not install {} (are you root?)", packages.join(", ")))
}

/// Makes sure `program` is on `PATH`, installing `packages` if it is not.
pub fn ensure_program(program: &str, packages: &[&str]) -> Result<()> {
    if cmd::which(program).is_some() {
        return Ok(());
    }
    eprintln!(
        "xtask: `{program}` is missing; installing {}",
        packages.join(", ")
    );
    install(packages)?;
    if cmd::which(program).is_none() {
        bail!(
            "`{program}` is still not on PATH after installing {}",
            packages.join(", ")
        );
    }
    Ok(())
}

/// Downloads the `.deb` of `package` into `dir` and returns its path.
pub fn download(package: &str, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let attempt = || -> Result<()> {
        eprintln!("xtask: apt-get download {package}");
        // The download directory is usually not writable by apt's `_apt` sandbox user;
        // downloading as the invoking user avoids apt's warning about it.
        cmd::run(
            apt_get()?
                .args(["-o", "APT::Sandbox::User=root", "download", package])
                .current_dir(dir),
        )
    };
    if let Err(first) = attempt() {
        if UPDATED.load(Ordering::SeqCst) {
            return Err(first).context(format!("apt-get download {package} failed"));
        }
        eprintln!("xtask: download failed ({first:#}); refreshing package lists and retrying");
        update_once()?;
        attempt().with_context(|| {
            format!(
                "apt-get download {package} failed even after apt-get update \
                 (is the package still in the archive?)"
            )
        })?;
    }
    find_deb(package, dir)
}

/// The `.deb` of `package` that `apt-get download` left in `dir`.
pub(crate) fn find_deb(package: &str, dir: &Path) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(path);
        }
    }
    bail!(
        "apt-get download {package} succeeded but no {prefix}*.deb appeared in {}",
        dir.display()
    )
}
