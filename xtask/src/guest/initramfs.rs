//! A writer for uncompressed cpio "newc" archives, the format the kernel unpacks as its
//! initramfs.
//!
//! Writing the archive ourselves (rather than with `cpio` from a staging directory) means
//! no root is needed for device nodes and every entry is owned by root, with fixed
//! timestamps, so the same inputs give the same bytes.

use std::collections::BTreeSet;
use std::io::{self, Write};

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// Streams a newc archive into `W`. Parent directories are created on demand.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    dirs: BTreeSet<String>,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    rdev: (u32, u32),
    data: &'a [u8],
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive.
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            next_ino: 1,
            dirs: BTreeSet::new(),
        }
    }

    /// Adds a directory (and its parents), mode 0755.
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let path = normalize(path)?;
        if self.dirs.contains(&path) {
            return Ok(());
        }
        self.parents(&path)?;
        self.entry(Header {
            name: &path,
            mode: S_IFDIR | 0o755,
            nlink: 2,
            rdev: (0, 0),
            data: &[],
        })?;
        self.dirs.insert(path);
        Ok(())
    }

    /// Adds a regular file with permission bits `perm` (e.g. 0o755).
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(Header {
            name: &path,
            mode: S_IFREG | (perm & 0o7777),
            nlink: 1,
            rdev: (0, 0),
            data,
        })
    }

    /// Adds a symbolic link at `path` pointing to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(Header {
            name: &path,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            rdev: (0, 0),
            data: target.as_bytes(),
        })
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(Header {
            name: &path,
            mode: S_IFCHR | (perm & 0o7777),
            nlink: 1,
            rdev: (major, minor),
            data: &[],
        })
    }

    /// Writes the trailer and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        // The trailer carries inode 0 so the kernel's hard-link table is reset.
        self.next_ino = 0;
        self.entry(Header {
            name: "TRAILER!!!",
            mode: 0,
            nlink: 1,
            rdev: (0, 0),
            data: &[],
        })?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn parents(&mut self, path: &str) -> io::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        Ok(())
    }

    fn entry(&mut self, header: Header<'_>) -> io::Result<()> {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let filesize = u32::try_from(header.data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large for cpio"))?;
        let namesize = u32::try_from(header.name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        let fields = [
            ino,
            header.mode,
            0, // uid
            0, // gid
            header.nlink,
            0, // mtime
            filesize,
            0, // devmajor
            0, // devminor
            header.rdev.0,
            header.rdev.1,
            namesize,
            0, // check
        ];
        let mut head = String::with_capacity(110);
        head.push_str("070701");
        for field in fields {
            head.push_str(&format!("{field:08x}"));
        }
        self.put(head.as_bytes())?;
        self.put(header.name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.put(header.data)?;
        self.pad()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0; 3][..4 - rem])?;
        }
        Ok(())
    }
}

/// Strips leading `/` and rejects names the kernel would treat oddly.
fn normalize(path: &str) -> io::Result<String> {
    let trimmed = path.trim_start_matches('/').trim_end_matches('/');
    let bad = trimmed
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if bad || trimmed.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad archive path {path:?}"),
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny newc reader, to check what the writer produced.
    fn entries(archive: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut out = Vec::new();
        let mut pos = 0;
        let field = |pos: usize, i: usize| {
            let s = std::str::from_utf8(&archive[pos + 6 + i * 8..pos + 14 + i * 8]).unwrap();
            u32::from_str_radix(s, 16).unwrap()
        };
        loop {
            assert_eq!(&archive[pos..pos + 6], b"070701");
            let mode = field(pos, 1);
            let size = field(pos, 6) as usize;
            let rdev_major = field(pos, 9);
            let namesize = field(pos, 11) as usize;
            let name_start = pos + 110;
            let name =
                String::from_utf8(archive[name_start..name_start + namesize - 1].to_vec()).unwrap();
            let data_start = (name_start + namesize).next_multiple_of(4);
            let data = archive[data_start..data_start + size].to_vec();
            pos = (data_start + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(pos, archive.len());
                return out;
            }
            out.push((name, mode, rdev_major, data));
        }
    }

    #[test]
    fn writes_parents_files_links_and_nodes() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("/bin/busybox", 0o755, b"abcde").unwrap();
        w.symlink("/bin/sh", "busybox").unwrap();
        w.char_dev("/dev/console", 0o600, 5, 1).unwrap();
        w.dir("/bin").unwrap();
        let archive = w.finish().unwrap();
        assert_eq!(archive.len() % 4, 0);
        let got = entries(&archive);
        let names: Vec<_> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            ["bin", "bin/busybox", "bin/sh", "dev", "dev/console"]
        );
        assert_eq!(got[0].1, S_IFDIR | 0o755);
        assert_eq!(got[1].1, S_IFREG | 0o755);
        assert_eq!(got[1].3, b"abcde");
        assert_eq!(got[2].1, S_IFLNK | 0o777);
        assert_eq!(got[2].3, b"busybox");
        assert_eq!(got[4].1, S_IFCHR | 0o600);
        assert_eq!(got[4].2, 5);
    }

    #[test]
    fn rejects_dot_dot() {
        let mut w = CpioWriter::new(Vec::new());
        assert!(w.file("/a/../b", 0o644, b"").is_err());
        assert!(w.file("a//b", 0o644, b"").is_err());
        assert!(w.file("/", 0o644, b"").is_err());
    }

    #[test]
    fn readable_by_system_cpio_if_present() {
        if crate::cmd::which("cpio").is_none() {
            return;
        }
        let mut w = CpioWriter::new(Vec::new());
        w.file("etc/hello", 0o644, b"hi\n").unwrap();
        w.symlink("etc/link", "hello").unwrap();
        let archive = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "etc\netc/hello\netc/link\n"
        );
    }
}
