//! Where built kernels are kept, what names them, and the lock that lets one xtask
//! process at a time build them.
//!
//! The cache lives outside the repository (`${XDG_CACHE_HOME:-$HOME/.cache}/vfio-stack/
//! kernels/`), so a fresh clone on the same machine finds the kernel a previous one built.
//! Each kernel is a directory named by its [`key`], created by renaming a complete staging
//! directory into place: a reader sees a whole kernel or none.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};

/// The directory all built kernels live under.
pub fn root() -> Result<PathBuf> {
    let base =
        match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty()).context(
                "neither XDG_CACHE_HOME nor HOME is set: no place for the kernel cache",
            )?)
            .join(".cache"),
        };
    Ok(base.join("vfio-stack").join("kernels"))
}

/// The name of a built kernel: the series, the source package's version, a hash of the
/// configuration fragment and the build recipe's version, e.g.
/// `linux-6.12-6.12.117-1-3f2a...-v1`.
pub fn key(series: &str, source_version: &str, fragment: &str, recipe: u32) -> String {
    let version: String = source_version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "linux-{series}-{version}-{:016x}-v{recipe}",
        fnv1a64(fragment.as_bytes())
    )
}

/// The 64-bit FNV-1a hash: stable across Rust releases and machines, unlike std's
/// `DefaultHasher`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A lock held by one process: a directory created atomically, with the holder's pid
/// inside, removed on drop. A lock whose holder is gone is taken over.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

/// How long a lock directory may lack its pid file before it counts as abandoned (its
/// creator died between creating it and writing the pid).
const PID_GRACE: Duration = Duration::from_secs(10);

impl Lock {
    /// Takes the lock at `path`, waiting while another live process holds it.
    pub fn acquire(path: &Path, what: &str) -> Result<Self> {
        let mut told = false;
        let started = Instant::now();
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => {
                    std::fs::write(path.join("pid"), std::process::id().to_string())
                        .with_context(|| format!("writing {}/pid", path.display()))?;
                    return Ok(Self {
                        path: path.to_owned(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
            match holder(path) {
                Holder::Alive(pid) => {
                    if !told {
                        eprintln!("xtask: waiting for process {pid}, which is {what}");
                        told = true;
                    }
                }
                Holder::Unknown => {}
                Holder::Gone => {
                    let _ = std::fs::remove_dir_all(path);
                    continue;
                }
            }
            if started.elapsed() > Duration::from_secs(3 * 60 * 60) {
                bail!("gave up waiting for the lock {}", path.display());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

enum Holder {
    Alive(u32),
    /// No pid yet, and the lock is young: its creator is probably writing it.
    Unknown,
    Gone,
}

fn holder(lock: &Path) -> Holder {
    match std::fs::read_to_string(lock.join("pid")) {
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(pid) if Path::new("/proc").join(pid.to_string()).exists() => Holder::Alive(pid),
            _ => Holder::Gone,
        },
        Err(_) => {
            let young = std::fs::metadata(lock)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_none_or(|age| age < PID_GRACE);
            if young { Holder::Unknown } else { Holder::Gone }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_names_version_fragment_and_recipe() {
        let a = key("6.12", "6.12.117-1", "CONFIG_VFIO=y\n", 1);
        assert!(a.starts_with("linux-6.12-6.12.117-1-"), "{a}");
        assert!(a.ends_with("-v1"), "{a}");
        assert_ne!(a, key("6.12", "6.12.118-1", "CONFIG_VFIO=y\n", 1));
        assert_ne!(a, key("6.12", "6.12.117-1", "CONFIG_VFIO=m\n", 1));
        assert_ne!(a, key("6.12", "6.12.117-1", "CONFIG_VFIO=y\n", 2));
        assert_eq!(
            key("6.12", "1:6.12~bpo/1", "", 1),
            "linux-6.12-1_6.12_bpo_1-cbf29ce484222325-v1"
        );
    }

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_lock_is_exclusive_and_a_dead_holders_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let held = Lock::acquire(&path, "testing").unwrap();
        assert_eq!(
            std::fs::read_to_string(path.join("pid")).unwrap(),
            std::process::id().to_string()
        );
        assert!(matches!(holder(&path), Holder::Alive(_)));
        drop(held);
        assert!(!path.exists());

        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("pid"), "4294967295").unwrap();
        assert!(matches!(holder(&path), Holder::Gone));
        let taken = Lock::acquire(&path, "testing").unwrap();
        assert!(path.join("pid").is_file());
        drop(taken);
    }
}
