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

    /// A minimal ELF64 x86-64 header followed by one program header of type `kind`.
    fn elf_with_segment(kind: u32) -> Vec<u8> {
        let mut elf = vec![0u8; 64 + 56];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2; // 64-bit
        elf[5] = 1; // little-endian
        elf[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf[64..68].copy_from_slice(&kind.to_le_bytes());
        elf
    }

    #[test]
    fn accepts_static_and_rejects_dynamic() {
        const PT_LOAD: u32 = 1;
        assert!(check(&elf_with_segment(PT_LOAD)).is_ok());
        let err = check(&elf_with_segment(PT_INTERP)).unwrap_err().to_string();
        assert!(err.contains("dynamically linked"), "{err}");
    }

    #[test]
    fn rejects_truncated_program_headers() {
        let mut elf = elf_with_segment(1);
        elf.truncate(66);
        assert!(check(&elf).is_err());
    }
}
