//! Register reads from a config-space slice and the pieces of lspci's
//! wording shared by the capability decoders.

/// The byte at `at`, if read.
pub(super) fn r8(c: &[u8], at: usize) -> Option<u8> {
    c.get(at).copied()
}

/// The little-endian word at `at`, if read.
pub(super) fn r16(c: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([
        *c.get(at)?,
        *c.get(at.checked_add(1)?)?,
    ]))
}

/// The little-endian dword at `at`, if read.
pub(super) fn r32(c: &[u8], at: usize) -> Option<u32> {
    let b = c.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether `len` bytes from `at` were read: lspci prints a register block
/// only when all of it is there.
pub(super) fn has(c: &[u8], at: usize, len: usize) -> bool {
    at.checked_add(len).is_some_and(|end| end <= c.len())
}

/// lspci's `+`/`-` flag.
pub(super) fn flag(set: bool) -> char {
    if set { '+' } else { '-' }
}

/// lspci's flag for bit `n` of `value`.
pub(super) fn bit(value: u32, n: u32) -> char {
    flag(value >> n & 1 == 1)
}

/// Detail lines under a capability, each with how far lspci indents it
/// past the first level: 0 for a register's first line, 1 for the lines
/// that continue it.
#[derive(Debug, Default)]
pub(super) struct Lines {
    pub(super) lines: Vec<String>,
    pub(super) indents: Vec<u8>,
}

impl Lines {
    /// A register's first line.
    pub(super) fn line(&mut self, text: String) {
        self.push(text, 0);
    }

    /// A line continuing the register above.
    pub(super) fn more(&mut self, text: String) {
        self.push(text, 1);
    }

    fn push(&mut self, text: String, indent: u8) {
        // lspci's lines can end in a space (an empty field); shown trimmed.
        self.lines.push(text.trim_end().to_owned());
        self.indents.push(indent);
    }
}

/// A power limit (slot or device), from its 8-bit value and 2-bit scale,
/// in watts as lspci prints it: `25W`, `0.255W`, `>600W`. Values 0xF0..0xFE
/// at scale 1.0 stand for 250 W to 600 W in 25 W steps (PCIe 4.0).
pub(super) fn power_limit(value: u32, scale: u32) -> String {
    if scale == 0 && value == 0xFF {
        return ">600W".to_owned();
    }
    let value = if scale == 0 && (0xF0..=0xFE).contains(&value) {
        250 + 25 * (value - 0xF0)
    } else {
        value
    };
    // lspci multiplies in single precision and prints with `%g`.
    let factor: f32 = [1.0, 0.1, 0.01, 0.001][(scale & 3) as usize];
    format!("{}W", shortest_g(f64::from(value as f32 * factor)))
}

/// `v` (not negative, below 1e6) with six significant digits and no
/// trailing zeros, as C's `%g` prints it.
fn shortest_g(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let exp = v.log10().floor() as i32;
    let decimals = (5 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_limits_read_as_lspci_prints_them() {
        assert_eq!(power_limit(0, 0), "0W");
        assert_eq!(power_limit(25, 0), "25W");
        assert_eq!(power_limit(75, 1), "7.5W");
        assert_eq!(power_limit(255, 3), "0.255W");
        assert_eq!(power_limit(1, 3), "0.001W");
        assert_eq!(power_limit(0xF4, 0), "350W");
        assert_eq!(power_limit(0xFF, 0), ">600W");
        assert_eq!(power_limit(0xFF, 1), "25.5W");
    }
}
