//! How numbers and byte arrays are spelled in a profile: hex, so a file
//! reads like `lspci -xxx` and diffs a row at a time.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Bytes per row of a [`HexBytes`].
pub const ROW: usize = 16;

/// A byte array written as rows of 16 bytes, each prefixed by its offset:
/// `"000: 36 1b 10 00 07 05 10 00 02 02 08 01 00 00 00 00"`. The offset is
/// in hex, as wide as the last row's needs (at least three digits); the last
/// row may be shorter. Reading checks every offset, so a row dropped or
/// moved in an edit is refused.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HexBytes(pub Vec<u8>);

impl HexBytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.0
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn width(len: usize) -> usize {
        let last = len.saturating_sub(1);
        let digits = (usize::BITS - last.leading_zeros()).div_ceil(4) as usize;
        digits.max(3)
    }

    /// The rows, as they are serialized.
    pub fn rows(&self) -> Vec<String> {
        let width = Self::width(self.0.len());
        self.0
            .chunks(ROW)
            .enumerate()
            .map(|(i, chunk)| {
                let mut row = format!("{:0width$x}:", i * ROW);
                for b in chunk {
                    row.push_str(&format!(" {b:02x}"));
                }
                row
            })
            .collect()
    }

    /// Parses rows as [`rows`](Self::rows) writes them.
    pub fn from_rows<S: AsRef<str>>(rows: &[S]) -> Result<Self, String> {
        let mut bytes = Vec::with_capacity(rows.len() * ROW);
        let mut short_row = None;
        for (i, row) in rows.iter().enumerate() {
            let row = row.as_ref();
            if let Some(prev) = short_row {
                return Err(format!(
                    "row {prev} has fewer than {ROW} bytes but is not the last"
                ));
            }
            let (offset, rest) = row
                .split_once(':')
                .ok_or_else(|| format!("row {i} ({row:?}) has no `offset:` prefix"))?;
            let offset = usize::from_str_radix(offset.trim(), 16)
                .map_err(|_| format!("row {i} has offset {offset:?}, not hex"))?;
            if offset != i * ROW {
                return Err(format!(
                    "row {i} is at offset {offset:#x}, expected {:#x}",
                    i * ROW
                ));
            }
            let mut n = 0;
            for byte in rest.split_whitespace() {
                if byte.len() != 2 {
                    return Err(format!("row {i} has {byte:?}, not a two-digit hex byte"));
                }
                let b = u8::from_str_radix(byte, 16)
                    .map_err(|_| format!("row {i} has {byte:?}, not a hex byte"))?;
                bytes.push(b);
                n += 1;
            }
            if n == 0 || n > ROW {
                return Err(format!("row {i} has {n} bytes, not 1..={ROW}"));
            }
            if n < ROW {
                short_row = Some(i);
            }
        }
        Ok(Self(bytes))
    }
}

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexBytes({} bytes)", self.0.len())
    }
}

impl From<Vec<u8>> for HexBytes {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.rows().serialize(s)
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rows = Vec::<String>::deserialize(d)?;
        Self::from_rows(&rows).map_err(D::Error::custom)
    }
}

/// Serde helpers writing an unsigned integer as a `0x` hex string.
pub(crate) mod num {
    use super::*;

    pub(crate) fn serialize<T, S>(value: &T, s: S) -> Result<S::Ok, S::Error>
    where
        T: Copy + Into<u64>,
        S: Serializer,
    {
        s.serialize_str(&format!("{:#x}", (*value).into()))
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: TryFrom<u64>,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        let digits = text
            .strip_prefix("0x")
            .ok_or_else(|| D::Error::custom(format!("{text:?} is not a 0x hex number")))?;
        let value = u64::from_str_radix(digits, 16)
            .map_err(|_| D::Error::custom(format!("{text:?} is not a 0x hex number")))?;
        T::try_from(value).map_err(|_| {
            D::Error::custom(format!(
                "{text:?} does not fit in {} bits",
                std::mem::size_of::<T>() * 8
            ))
        })
    }
}

/// Serde helpers writing an ID as a `0x` hex string of fixed width, as
/// lspci spells IDs: 2 digits for a `u8`, 4 for a `u16`, 6 for a class code.
pub(crate) mod id {
    use super::*;

    pub(crate) fn serialize<T, S>(value: &T, s: S) -> Result<S::Ok, S::Error>
    where
        T: Copy + Into<u64>,
        S: Serializer,
    {
        // A class code is the one u32 ID, and has 24 bits.
        let width = match std::mem::size_of::<T>() {
            1 => 2,
            2 => 4,
            _ => 6,
        };
        s.serialize_str(&format!("0x{:0width$x}", (*value).into()))
    }

    pub(crate) use super::num::deserialize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_name_their_offsets() {
        let bytes = HexBytes((0..=40u8).collect());
        let rows = bytes.rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            rows[0],
            "000: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f"
        );
        assert_eq!(rows[2], "020: 20 21 22 23 24 25 26 27 28");
        assert_eq!(HexBytes::from_rows(&rows), Ok(bytes));
    }

    #[test]
    fn a_moved_or_short_row_is_refused() {
        let mut rows = HexBytes(vec![0; 48]).rows();
        rows.swap(0, 1);
        assert!(HexBytes::from_rows(&rows).unwrap_err().contains("offset"));
        let rows = ["000: 00 01", "010: 02"];
        assert!(
            HexBytes::from_rows(&rows)
                .unwrap_err()
                .contains("not the last")
        );
        assert!(HexBytes::from_rows(&["000: 0g"]).is_err());
        assert!(HexBytes::from_rows(&["000:"]).is_err());
    }

    #[test]
    fn wide_arrays_get_wider_offsets() {
        let rows = HexBytes(vec![0; 0x10000]).rows();
        assert!(rows[0x0fff].starts_with("fff0:"));
        let rows = HexBytes(vec![0; 0x10010]).rows();
        assert!(rows[0x1000].starts_with("10000:"));
    }
}
