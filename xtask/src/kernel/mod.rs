//! Linux 6.12 built from Debian's `linux-source-6.12`, for the guest: everything the
//! guest needs built in (no modules), cached per user.
//!
//! The recipe: `apt-get download linux-source-6.12` from Debian trixie through a private
//! apt configuration ([`source`]), unpack it in a scratch directory, `make ARCH=x86_64
//! tinyconfig`, apply `xtask/kernel/linux-6.12.config` ([`fragment`]), `make
//! olddefconfig`, check that every option of the fragment survived, `make -j2 bzImage`.
//! The bzImage, the ELF `vmlinux` (which QEMU boots through its PVH entry point,
//! skipping decompression) and the `.config` are kept under [`cache::root`], named by
//! [`cache::key`]; the scratch directory is removed. A build takes 5 to 10 minutes on two
//! shared cores; later runs find the cached kernel in about a second (one `apt-cache`
//! call; `apt-get update` at most once a day).

mod cache;
mod fragment;
mod source;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::scratch::ScratchDir;
use crate::{apt, cmd};

/// The kernel series built here.
pub const SERIES: &str = "6.12";
/// Debian's package with that series' source.
const SOURCE_PACKAGE: &str = "linux-source-6.12";
/// The Debian suite it is taken from.
const SUITE: &str = "trixie";
/// The configuration fragment applied on top of `tinyconfig`.
pub const FRAGMENT: &str = include_str!("../../kernel/linux-6.12.config");
/// Bump when the recipe changes in a way the fragment does not show (the make targets,
/// what is kept), to rebuild.
const RECIPE_VERSION: u32 = 1;
/// Parallel jobs of `make` (the development machines have two cores).
const MAKE_JOBS: &str = "-j2";

/// A built kernel in the cache.
#[derive(Debug)]
pub struct BuiltKernel {
    /// Its cache directory.
    pub dir: PathBuf,
    /// The compressed, bootable image.
    pub bzimage: PathBuf,
    /// The ELF image QEMU boots through the PVH entry point.
    pub vmlinux: PathBuf,
}

impl BuiltKernel {
    fn at(dir: PathBuf) -> Self {
        Self {
            bzimage: dir.join("bzImage"),
            vmlinux: dir.join("vmlinux"),
            dir,
        }
    }

    fn complete(&self) -> bool {
        self.dir.join("STAMP").is_file() && self.bzimage.is_file() && self.vmlinux.is_file()
    }
}

/// Returns the cached Linux 6.12 for the current source package and fragment, building
/// it first if there is none.
pub fn ensure() -> Result<BuiltKernel> {
    let root = cache::root()?;
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let settings = fragment::parse(FRAGMENT).context("xtask/kernel/linux-6.12.config")?;
    for tool in ["apt-get", "apt-cache", "dpkg-deb"] {
        if cmd::which(tool).is_none() {
            bail!("`{tool}` is missing: building the guest kernel needs a Debian-like host");
        }
    }
    // One process at a time asks apt and builds; the others wait, then find the kernel.
    let _lock = cache::Lock::acquire(&root.join("lock"), "building or looking up a kernel")?;
    let apt = source::PrivateApt::new(&root.join("apt"), SUITE);
    let version = apt.version(SOURCE_PACKAGE)?;
    let key = cache::key(SERIES, &version, FRAGMENT, RECIPE_VERSION);
    let kernel = BuiltKernel::at(root.join(&key));
    if kernel.complete() {
        return Ok(kernel);
    }
    for stem in ["build", "staging"] {
        ScratchDir::sweep(&root, stem);
    }
    eprintln!(
        "xtask: building Linux {SERIES} from {SOURCE_PACKAGE} {version} (Debian {SUITE}) \
         into {}; 5 to 10 minutes on two cores",
        kernel.dir.display()
    );
    let start = Instant::now();
    let staging = ScratchDir::new(&root, "staging")?;
    build(&apt, &version, &settings, &root, staging.path())?;
    let took = start.elapsed();
    std::fs::write(
        staging.path().join("STAMP"),
        format!(
            "{SOURCE_PACKAGE} {version} (Debian {SUITE}), recipe v{RECIPE_VERSION}, \
             built in {:.0} s\n",
            took.as_secs_f64()
        ),
    )?;
    if kernel.dir.exists() {
        // An incomplete directory can only be a leftover: complete ones are renamed in.
        std::fs::remove_dir_all(&kernel.dir)
            .with_context(|| format!("removing {}", kernel.dir.display()))?;
    }
    std::fs::rename(staging.path(), &kernel.dir).with_context(|| {
        format!(
            "renaming {} to {}",
            staging.path().display(),
            kernel.dir.display()
        )
    })?;
    eprintln!(
        "xtask: built Linux {SERIES} in {:.0} s: {}",
        took.as_secs_f64(),
        kernel.dir.display()
    );
    Ok(kernel)
}

/// Builds the kernel in a scratch directory under `root` and leaves `bzImage`, `vmlinux`,
/// `config` and `build.log` in `out`.
fn build(
    apt: &source::PrivateApt,
    version: &str,
    settings: &[fragment::Setting],
    root: &Path,
    out: &Path,
) -> Result<()> {
    install_build_tools()?;
    let scratch = ScratchDir::new(root, "build")?;
    let deb = apt.download(SOURCE_PACKAGE, version, &scratch.path().join("deb"))?;
    let unpacked = scratch.path().join("deb-root");
    cmd::run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    std::fs::remove_file(&deb)?;
    let tarball = unpacked.join(format!("usr/src/{SOURCE_PACKAGE}.tar.xz"));
    eprintln!("xtask: unpacking {}", tarball.display());
    cmd::run(
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(scratch.path()),
    )?;
    std::fs::remove_dir_all(&unpacked)?;
    let tree = scratch.path().join(SOURCE_PACKAGE);
    let log = out.join("build.log");

    make(&tree, &["tinyconfig"], &log)?;
    let config_path = tree.join(".config");
    let tiny = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    std::fs::write(&config_path, fragment::apply(&tiny, settings))?;
    make(&tree, &["olddefconfig"], &log)?;
    let config = std::fs::read_to_string(&config_path)?;
    let missing = fragment::missing(&config, settings);
    if !missing.is_empty() {
        bail!(
            "after `make olddefconfig` these options of xtask/kernel/linux-6.12.config are \
             not as written (a missing dependency, or an option this kernel does not \
             have):\n  {}",
            missing.join("\n  ")
        );
    }
    eprintln!(
        "xtask: .config has all {} options of the fragment; make {MAKE_JOBS} bzImage",
        settings.len()
    );
    make(&tree, &[MAKE_JOBS, "bzImage"], &log)?;
    for (from, to) in [
        ("arch/x86/boot/bzImage", "bzImage"),
        ("vmlinux", "vmlinux"),
        (".config", "config"),
    ] {
        std::fs::copy(tree.join(from), out.join(to))
            .with_context(|| format!("copying {from} out of the build tree"))?;
    }
    Ok(())
}

/// Runs `make ARCH=x86_64 ARGS` in `tree`, appending its output to `log`; on failure the
/// error carries the log's last lines.
fn make(tree: &Path, args: &[&str], log: &Path) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut command = Command::new("make");
    command
        .current_dir(tree)
        .arg("ARCH=x86_64")
        .args(args)
        .stdout(file.try_clone()?)
        .stderr(file);
    let status = cmd::status(&mut command)?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`{}` failed ({status}); the end of {}:\n{}",
            cmd::display(&command),
            log.display(),
            tail.join("\n")
        );
    }
    Ok(())
}

/// The compiler, make and the kernel's build dependencies, installed through apt when
/// missing.
fn install_build_tools() -> Result<()> {
    for (program, package) in [
        ("make", "make"),
        ("gcc", "gcc"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("bc", "bc"),
        ("xz", "xz-utils"),
        ("perl", "perl"),
    ] {
        apt::ensure_program(program, &[package])?;
    }
    // objtool needs libelf's headers.
    if !Path::new("/usr/include/libelf.h").is_file() {
        apt::install(&["libelf-dev"])?;
    }
    Ok(())
}
