//! Debian's kernel source package, through a private apt configuration: its own deb822
//! sources file, package lists and cache, so the machine's apt configuration and state
//! are never changed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};

use crate::cmd;

/// Package lists younger than this are used as they are (no `apt-get update`).
const LISTS_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The keyring that signs Debian's suites (from `debian-archive-keyring`).
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A private apt for one Debian suite, with its state under `dir`.
#[derive(Debug)]
pub struct PrivateApt {
    dir: PathBuf,
    suite: &'static str,
}

impl PrivateApt {
    /// A private apt for `suite` (e.g. `trixie`) keeping its files under `dir`.
    pub fn new(dir: &Path, suite: &'static str) -> Self {
        Self {
            dir: dir.join(suite),
            suite,
        }
    }

    fn sources(&self) -> PathBuf {
        // apt reads a file whose name does not end in `.sources` as one-line format.
        self.dir.join(format!("{}.sources", self.suite))
    }

    fn lists(&self) -> PathBuf {
        self.dir.join("lists")
    }

    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// Writes the sources file and the directories apt expects.
    fn prepare(&self) -> Result<()> {
        for dir in [
            self.lists().join("partial"),
            self.cache().join("archives/partial"),
        ] {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = format!(
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: {}\nComponents: main\n\
             Signed-By: {KEYRING}\n",
            self.suite
        );
        std::fs::write(self.sources(), text)
            .with_context(|| format!("writing {}", self.sources().display()))
    }

    /// `program` (`apt-get` or `apt-cache`) with the private configuration.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DEBIAN_FRONTEND", "noninteractive");
        let mut set = |key: &str, value: &Path| {
            command.arg("-o").arg(format!("{key}={}", value.display()));
        };
        set("Dir::Etc::SourceList", &self.sources());
        set("Dir::Etc::SourceParts", Path::new("/dev/null"));
        set("Dir::State::Lists", &self.lists());
        set("Dir::Cache", &self.cache());
        // The download directory is usually not writable by apt's `_apt` sandbox user.
        command.args(["-o", "APT::Sandbox::User=root"]);
        command
    }

    /// Refreshes the package lists, unless `only_if_stale` and they are recent.
    fn update(&self, only_if_stale: bool) -> Result<()> {
        self.prepare()?;
        let stamp = self.dir.join("updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < LISTS_MAX_AGE);
        if only_if_stale && fresh {
            return Ok(());
        }
        eprintln!("xtask: apt-get update (private lists for {})", self.suite);
        cmd::output(self.command("apt-get").arg("update")).with_context(|| {
            format!(
                "refreshing the package lists of Debian {} (can the machine reach \
                 deb.debian.org?)",
                self.suite
            )
        })?;
        std::fs::write(&stamp, b"").with_context(|| format!("writing {}", stamp.display()))
    }

    /// The candidate version of `package` in the current lists, if they have it.
    fn listed_version(&self, package: &str) -> Option<String> {
        let out =
            cmd::output(
                self.command("apt-cache")
                    .args(["show", "--no-all-versions", package]),
            )
            .ok()?;
        parse_version(&String::from_utf8_lossy(&out))
    }

    /// The version of `package` the suite has now (lists at most a day old).
    pub fn version(&self, package: &str) -> Result<String> {
        self.update(true)?;
        if let Some(version) = self.listed_version(package) {
            return Ok(version);
        }
        // The lists may predate the package: refresh them once and ask again.
        self.update(false)?;
        self.listed_version(package)
            .with_context(|| format!("Debian {} has no package {package}", self.suite))
    }

    /// Downloads `package` at `version` into `dir` and returns the `.deb`'s path.
    pub fn download(&self, package: &str, version: &str, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!(
            "xtask: apt-get download {package}={version} (Debian {})",
            self.suite
        );
        cmd::output(
            self.command("apt-get")
                .arg("download")
                .arg(format!("{package}={version}"))
                .current_dir(dir),
        )?;
        crate::apt::find_deb(package, dir)
    }
}

/// The first `Version:` field of `apt-cache show` output.
fn parse_version(show: &str) -> Option<String> {
    show.lines()
        .find_map(|line| line.strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_the_first_version_field() {
        let show = "Package: linux-source-6.12\nSource: linux\nVersion: 6.12.117-1\n\
                    Installed-Size: 150000\n\nVersion: 6.12.95-1~bpo12+1\n";
        assert_eq!(parse_version(show).as_deref(), Some("6.12.117-1"));
        assert_eq!(parse_version("Package: x\n"), None);
        assert_eq!(parse_version("Version:   \n"), None);
    }

    #[test]
    fn the_private_configuration_points_apt_at_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let apt = PrivateApt::new(dir.path(), "trixie");
        apt.prepare().unwrap();
        let sources = std::fs::read_to_string(apt.sources()).unwrap();
        assert!(sources.contains("Suites: trixie\n"), "{sources}");
        assert!(apt.sources().to_string_lossy().ends_with(".sources"));
        assert!(apt.lists().join("partial").is_dir());
        let line = cmd::display(&apt.command("apt-get"));
        let root = dir.path().join("trixie");
        for want in [
            format!("Dir::Etc::SourceList={}", apt.sources().display()),
            "Dir::Etc::SourceParts=/dev/null".to_owned(),
            format!("Dir::State::Lists={}/lists", root.display()),
            format!("Dir::Cache={}/cache", root.display()),
        ] {
            assert!(line.contains(&want), "{line} lacks {want}");
        }
    }
}
