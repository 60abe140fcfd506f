//! The guest's kernel, modules and busybox, fetched from Debian and cached under
//! `target/guest/`.
//!
//! The `.deb` files are downloaded with `apt-get download` and unpacked with `dpkg -x`
//! into a scratch directory; only the few files the guest needs are kept (decompressed,
//! so busybox `insmod` can load them), then the scratch directory is removed. A `STAMP`
//! file marks a complete cache.
//!
//! The kernel is also unpacked from its bzImage into a plain ELF `vmlinux`: QEMU boots
//! that through the PVH entry point, which skips the in-guest xz decompression and
//! halves the run (about 3.3 s instead of 7 s from start to power-off under TCG).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::scratch::ScratchDir;
use crate::{apt, cmd};

/// The Debian kernel ABI the guest runs.
pub const KERNEL_ABI: &str = "6.1.0-54-amd64";
/// The package that carries it.
pub const KERNEL_PACKAGE: &str = "linux-image-6.1.0-54-amd64-unsigned";
/// Bump when the cache layout or contents change, to refetch.
const CACHE_VERSION: u32 = 3;
/// The package that carries a static busybox.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";
/// Modules to load, in this order (each after the modules it depends on): VFIO, then
/// the watchdog core and the i6300esb driver, which claims the guest's watchdog device.
pub const MODULES: [&str; 8] = [
    "irqbypass",
    "vfio",
    "vfio_iommu_type1",
    "vfio_virqfd",
    "vfio-pci-core",
    "vfio-pci",
    "watchdog",
    "i6300esb",
];

/// Paths to the cached guest assets.
#[derive(Debug)]
pub struct Assets {
    /// The kernel image: the uncompressed `vmlinux` if it could be extracted, else
    /// `vmlinuz`.
    pub kernel: PathBuf,
    /// The static busybox.
    pub busybox: PathBuf,
    /// Each module of [`MODULES`], in order, with its uncompressed `.ko` if the kernel
    /// package has it as a separate file.
    pub modules: Vec<(String, Option<PathBuf>)>,
}

/// Returns the cached assets, fetching them first if the cache is incomplete.
pub fn ensure(cache: &Path) -> Result<Assets> {
    let dir = cache.join(format!("assets-{KERNEL_ABI}-v{CACHE_VERSION}"));
    if !dir.join("STAMP").is_file() {
        fetch(cache, &dir).context("fetching the guest kernel and busybox")?;
    }
    let vmlinux = dir.join("vmlinux");
    Ok(Assets {
        kernel: if vmlinux.is_file() {
            vmlinux
        } else {
            dir.join("vmlinuz")
        },
        busybox: dir.join("busybox"),
        modules: MODULES
            .iter()
            .map(|name| {
                let path = dir.join("modules").join(format!("{name}.ko"));
                (name.to_string(), path.is_file().then_some(path))
            })
            .collect(),
    })
}

fn fetch(cache: &Path, dir: &Path) -> Result<()> {
    eprintln!(
        "xtask: fetching guest assets ({KERNEL_PACKAGE}, {BUSYBOX_PACKAGE}) into {}",
        dir.display()
    );
    for tool in ["dpkg", "apt-get"] {
        if cmd::which(tool).is_none() {
            bail!("`{tool}` is missing: fetching the guest kernel needs a Debian-like host");
        }
    }
    // Process-unique scratch and staging directories, so concurrent first runs do not
    // trip over each other; whichever finishes first installs the cache.
    let scratch_dir = ScratchDir::new(cache, "fetch-scratch")?;
    let scratch = scratch_dir.path();
    let staging_dir = ScratchDir::new(cache, "assets-staging")?;
    let staging = staging_dir.path();
    std::fs::create_dir_all(staging.join("modules"))
        .with_context(|| format!("creating {}", staging.display()))?;

    let kernel_root = unpack(KERNEL_PACKAGE, scratch)?;
    let vmlinuz = kernel_root.join(format!("boot/vmlinuz-{KERNEL_ABI}"));
    copy(&vmlinuz, &staging.join("vmlinuz"))?;
    let extracted = extract_vmlinux(&vmlinuz, &staging.join("vmlinux"), scratch)?;
    if !extracted {
        eprintln!("xtask: could not extract vmlinux; the guest boots the slower vmlinuz");
    }

    let tree = kernel_root.join(format!("lib/modules/{KERNEL_ABI}/kernel"));
    let found = index_modules(&tree)?;
    let mut stamp = format!(
        "kernel: {KERNEL_PACKAGE} (vmlinux extracted: {extracted})\nbusybox: {BUSYBOX_PACKAGE}\n"
    );
    for name in MODULES {
        match found.get(&normalize(name)) {
            Some(source) => {
                let shown = source.strip_prefix(&tree).unwrap_or(source);
                eprintln!("xtask: module {name}: {}", shown.display());
                stamp.push_str(&format!("module {name}: {}\n", shown.display()));
                decompress(source, &staging.join("modules").join(format!("{name}.ko")))?;
            }
            None => {
                eprintln!("xtask: module {name}: not a separate file in {KERNEL_PACKAGE}");
                stamp.push_str(&format!("module {name}: absent\n"));
            }
        }
    }

    let busybox_root = unpack(BUSYBOX_PACKAGE, scratch)?;
    copy(&busybox_root.join("bin/busybox"), &staging.join("busybox"))?;

    std::fs::write(staging.join("STAMP"), stamp)?;
    if dir.exists() && !dir.join("STAMP").is_file() {
        // Left over from an interrupted run of an older version.
        remove_if_exists(dir)?;
    }
    if let Err(err) = std::fs::rename(staging, dir) {
        if !dir.join("STAMP").is_file() {
            return Err(err)
                .with_context(|| format!("renaming {} to {}", staging.display(), dir.display()));
        }
        // Another xtask process installed the cache first; ours is dropped.
    }
    Ok(())
}

/// Downloads `package` and unpacks it with `dpkg -x`; returns the unpacked root.
fn unpack(package: &str, scratch: &Path) -> Result<PathBuf> {
    let deb = apt::download(package, &scratch.join("debs"))?;
    let root = scratch.join(package);
    cmd::run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root))
        .with_context(|| format!("unpacking {}", deb.display()))?;
    Ok(root)
}

/// Extracts the ELF kernel from an xz-compressed bzImage (like the kernel's
/// `scripts/extract-vmlinux`). Returns `false` when that is not possible.
fn extract_vmlinux(vmlinuz: &Path, dest: &Path, scratch: &Path) -> Result<bool> {
    const XZ_MAGIC: &[u8] = b"\xfd7zXZ\0";
    if cmd::which("xz").is_none() {
        return Ok(false);
    }
    let image = std::fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let Some(at) = image.windows(XZ_MAGIC.len()).position(|w| w == XZ_MAGIC) else {
        return Ok(false);
    };
    let payload = scratch.join("vmlinux.xz");
    std::fs::write(&payload, &image[at..])?;
    let out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let unpacked = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .arg(&payload)
        .stdout(out)
        .status()
        .is_ok_and(|status| status.success());
    let is_elf = unpacked && std::fs::read(dest).is_ok_and(|elf| elf.starts_with(b"\x7fELF"));
    if !is_elf {
        std::fs::remove_file(dest)?;
    }
    Ok(is_elf)
}

/// Maps each module name (with `-` as `_`) to its file under `tree`.
fn index_modules(tree: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut found = HashMap::new();
    let mut pending = vec![tree.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = ["", ".xz", ".zst", ".gz"]
                .iter()
                .find_map(|ext| name.strip_suffix(&format!(".ko{ext}")))
            {
                found.insert(normalize(stem), path);
            }
        }
    }
    if found.is_empty() {
        bail!("no kernel modules found under {}", tree.display());
    }
    Ok(found)
}

fn normalize(module: &str) -> String {
    module.replace('-', "_")
}

/// Copies a module, decompressing `.ko.xz`, `.ko.zst` and `.ko.gz` on the host.
fn decompress(source: &Path, dest: &Path) -> Result<()> {
    let name = source.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        "xz"
    } else if name.ends_with(".zst") {
        "zstd"
    } else if name.ends_with(".gz") {
        "gzip"
    } else {
        return copy(source, dest);
    };
    if cmd::which(tool).is_none() {
        bail!("`{tool}` is needed to decompress {}", source.display());
    }
    let out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    cmd::run(Command::new(tool).arg("-dc").arg(source).stdout(out))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}
