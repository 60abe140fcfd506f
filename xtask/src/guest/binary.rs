//! Checks that the test binary can run in the guest: an x86-64 ELF with no dynamic
//! loader (the initramfs has no libc).

use std::path::Path;

use anyhow::{Context, Result, bail};

const PT_INTERP: u32 = 3;

/// Reads the test binary, failing clearly if it is missing or would not run in the guest.
pub fn load(path: &Path) -> Result<Vec<u8>> {
    if !path.exists() {
        bail!("test binary {} not found", path.display());
    }
    if !path.is_file() {
        bail!("test binary {} is not a regular file", path.display());
    }
    let bytes =
        std::fs::read(path).with_context(|| format!("reading test binary {}", path.display()))?;
    check(&bytes).with_context(|| format!("{} cannot run in the guest", path.display()))?;
    Ok(bytes)
}

/// Accepts static x86-64 ELF executables only.
fn check(elf: &[u8]) -> Result<()> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    if elf[4] != 2 || elf[5] != 1 || u16_at(elf, 0x12) != Some(62) {
        bail!("not a little-endian x86-64 ELF");
    }
    let phoff = u64_at(elf, 0x20).context("truncated ELF header")?;
    let phentsize = u16_at(elf, 0x36).context("truncated ELF header")?;
    let phnum = u16_at(elf, 0x38).context("truncated ELF header")?;
    for i in 0..u64::from(phnum) {
        let at = phoff
            .checked_add(i * u64::from(phentsize))
            .and_then(|at| usize::try_from(at).ok())
            .context("program header offset overflows")?;
        let kind = u32_at(elf, at).context("truncated program headers")?;
        if kind == PT_INTERP {
            bail!(
                "it is dynamically linked, and the guest has no libc; build it with \
                 `cargo xtask build-guest-bin <package> <bin>` \
                 (RUSTFLAGS `-C target-feature=+crt-static`)"
            );
        }
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_elf_and_missing() {
        assert!(check(b"#!/bin/sh\necho hi\n").is_err());
        assert!(load(Path::new("/definitely/not/here")).is_err());
    }

    #[test]
    fn rejects_dynamic_host_binary() {
        // The shell on the host is dynamically linked on every Debian-like system.
        let sh = std::fs::read("/bin/sh").unwrap();
        if sh.get(0x12) == Some(&62) {
            let err = check(&sh).unwrap_err().to_string();
            assert!(err.contains("dynamically linked"), "{err}");
        }
    }
}
