//! Directories that remove themselves, so failed runs leave no half-made files behind.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A fresh directory, unique to this process, removed (with its contents) on drop.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<parent>/<stem>-<pid>`, replacing any leftover of the same name.
    pub fn new(parent: &Path, stem: &str) -> Result<Self> {
        let path = parent.join(format!("{stem}-{}", std::process::id()));
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    /// Removes `<parent>/<stem>-<pid>` directories whose process is gone (left behind
    /// by an interrupted run).
    pub fn sweep(parent: &Path, stem: &str) {
        let Ok(entries) = std::fs::read_dir(parent) else {
            return;
        };
        let prefix = format!("{stem}-");
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .and_then(|pid| pid.parse::<u32>().ok());
            if let Some(pid) = pid {
                let alive = Path::new("/proc").join(pid.to_string()).exists();
                if !alive {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop() {
        let dir = ScratchDir::new(&std::env::temp_dir(), "xtask-scratch-test").unwrap();
        let path = dir.path().to_path_buf();
        std::fs::write(path.join("f"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn sweep_removes_dirs_of_dead_processes_only() {
        let parent = ScratchDir::new(&std::env::temp_dir(), "xtask-sweep-test").unwrap();
        let dead = parent.path().join("run-4294967295");
        let mine = ScratchDir::new(parent.path(), "run").unwrap();
        let other = parent.path().join("runner-1");
        for dir in [&dead, &other] {
            std::fs::create_dir(dir).unwrap();
        }
        ScratchDir::sweep(parent.path(), "run");
        assert!(!dead.exists());
        assert!(mine.path().exists());
        assert!(other.exists());
    }
}
