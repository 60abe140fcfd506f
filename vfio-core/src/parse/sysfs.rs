//! Small values read from sysfs: IOMMU group links and hex ids.

use super::ParseError;
use std::path::{Component, Path};

const GROUP: &str = "iommu_group link";
const HEX: &str = "sysfs hex id";

/// The group number a device's `iommu_group` link points to, from the link's
/// target (e.g. `../../../../kernel/iommu_groups/12` gives 12).
///
/// The last path component must be a plain decimal `u32`: ASCII digits only
/// (no sign, no spaces), not overflowing. Errors when the target is empty,
/// is the root or ends in `..`, or its last component is not UTF-8 or not
/// decimal. Trailing `/` and `.` components are ignored, as `Path` does.
pub fn group_number_from_link(target: &Path) -> Result<u32, ParseError> {
    let shown = target.display();
    let last = match target.components().next_back() {
        Some(Component::Normal(name)) => name,
        Some(_) => {
            return Err(ParseError::new(
                GROUP,
                format!("`{shown}` does not end in a group number"),
            ));
        }
        None => return Err(ParseError::new(GROUP, "the link target is empty")),
    };
    let name = last.to_str().ok_or_else(|| {
        ParseError::new(GROUP, format!("last component of `{shown}` is not UTF-8"))
    })?;
    decimal_u32(name).ok_or_else(|| {
        ParseError::new(
            GROUP,
            format!(
                "last component `{name}` of `{shown}` is not a decimal group number below 2^32"
            ),
        )
    })
}

fn decimal_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The value of a sysfs `vendor`, `device`, `subsystem_*` or `class` file,
/// e.g. `0x8086\n`: surrounding whitespace is trimmed, then a lowercase `0x`
/// prefix and 1 to 8 hex digits (either case) are required.
pub fn parse_hex_id(s: &str) -> Result<u32, ParseError> {
    let trimmed = s.trim();
    let digits = trimmed
        .strip_prefix("0x")
        .ok_or_else(|| ParseError::new(HEX, format!("`{trimmed}` has no 0x prefix")))?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ParseError::new(
            HEX,
            format!("`{trimmed}` is not 0x followed by 1 to 8 hex digits"),
        ));
    }
    u32::from_str_radix(digits, 16).map_err(|e| ParseError::new(HEX, format!("`{trimmed}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    #[test]
    fn group_numbers_come_from_the_last_component() {
        let ok = |p: &str| group_number_from_link(Path::new(p)).unwrap();
        assert_eq!(ok("../../../../kernel/iommu_groups/12"), 12);
        assert_eq!(ok("/sys/kernel/iommu_groups/0"), 0);
        assert_eq!(ok("7"), 7);
        assert_eq!(ok("../../kernel/iommu_groups/4294967295"), u32::MAX);
    }

    #[test]
    fn wrong_links_are_errors() {
        for bad in [
            "",
            "/",
            "..",
            "../../kernel/iommu_groups/..",
            "../../kernel/iommu_groups/seven",
            "../../kernel/iommu_groups/+7",
            "../../kernel/iommu_groups/-7",
            "../../kernel/iommu_groups/ 7",
            "../../kernel/iommu_groups/7 ",
            "../../kernel/iommu_groups/0x7",
            "../../kernel/iommu_groups/4294967296",
            "../../kernel/iommu_groups/٣",
            "../../devices/pci0000:00/0000:00:03.0",
        ] {
            assert!(
                group_number_from_link(Path::new(bad)).is_err(),
                "{bad:?} parsed"
            );
        }
        let e = group_number_from_link(Path::new("../iommu_groups/seven")).unwrap_err();
        assert_eq!(e.what(), "iommu_group link");
        assert!(e.reason().contains("`seven`"), "{e}");
        let e = group_number_from_link(Path::new("")).unwrap_err();
        assert_eq!(e.reason(), "the link target is empty");
    }

    #[test]
    fn non_utf8_group_is_an_error() {
        let mut p = PathBuf::from("../kernel/iommu_groups");
        p.push(OsStr::from_bytes(b"1\xff"));
        let e = group_number_from_link(&p).unwrap_err();
        assert!(e.reason().contains("not UTF-8"), "{e}");
    }

    #[test]
    fn hex_ids() {
        assert_eq!(parse_hex_id("0x8086\n").unwrap(), 0x8086);
        assert_eq!(parse_hex_id("  0x010802 ").unwrap(), 0x010802);
        assert_eq!(parse_hex_id("0xFFFFFFFF").unwrap(), u32::MAX);
        for bad in [
            "",
            "\n",
            "8086",
            "0x",
            "0X8086",
            "0x+8086",
            "0x-1",
            "0x123456789",
            "0x80 86",
            "0xg",
        ] {
            assert!(parse_hex_id(bad).is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn group_link_round_trips(n in any::<u32>(), depth in 0usize..6) {
            let link = format!("{}kernel/iommu_groups/{n}", "../".repeat(depth));
            prop_assert_eq!(group_number_from_link(Path::new(&link)).unwrap(), n);
        }

        #[test]
        fn group_link_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let path = Path::new(OsStr::from_bytes(&bytes));
            if let Ok(n) = group_number_from_link(path) {
                // Only a last component made of digits that spell `n` is accepted.
                let last = path.file_name().unwrap().as_bytes();
                prop_assert!(last.iter().all(u8::is_ascii_digit));
                prop_assert_eq!(std::str::from_utf8(last).unwrap().parse::<u32>().unwrap(), n);
            }
        }

        #[test]
        fn group_link_never_panics_on_strings(s in "\\PC{0,30}") {
            if let Ok(n) = group_number_from_link(Path::new(&s)) {
                prop_assert!(s.contains(&n.to_string()));
            }
        }

        #[test]
        fn hex_ids_round_trip_and_never_panic(v in any::<u32>(), s in "\\PC{0,14}") {
            prop_assert_eq!(parse_hex_id(&format!("0x{v:04x}\n")).unwrap(), v);
            if let Ok(parsed) = parse_hex_id(&s) {
                prop_assert!(s.trim().starts_with("0x"));
                prop_assert_eq!(u32::from_str_radix(&s.trim()[2..], 16).unwrap(), parsed);
            }
        }
    }
}
