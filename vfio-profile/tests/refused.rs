//! Broken profiles, each refused with the error that names what is wrong.

mod common;

use common::guest_profile;
use proptest::prelude::*;
use vfio_profile::{DeviceProfile, HexBytes, ProfileError};

/// A profile with `edit` applied to it, then validated.
fn refused(nvme: bool, edit: impl FnOnce(&mut DeviceProfile)) -> ProfileError {
    let mut p = guest_profile(nvme);
    edit(&mut p);
    p.validate().expect_err("the edit breaks the profile")
}

fn set_config(p: &mut DeviceProfile, at: usize, bytes: &[u8]) {
    p.config.bytes.0[at..at + bytes.len()].copy_from_slice(bytes);
}

#[test]
fn the_captured_profiles_are_valid() {
    guest_profile(false).validate().expect("edu");
    guest_profile(true).validate().expect("nvme");
}

#[test]
fn a_profile_of_another_version_is_refused_as_such() {
    let text = guest_profile(false)
        .to_json()
        .replace("\"version\": 1,", "\"version\": 2,");
    let e = DeviceProfile::from_json(&text).unwrap_err();
    assert!(
        matches!(&e, ProfileError::Version { found: Some(v) } if v == "2"),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "profile version 2 is not supported: this library reads version 1"
    );
    // Whatever else the file holds.
    let e = DeviceProfile::from_json(r#"{"format": "vfio-device-profile", "version": "1"}"#)
        .unwrap_err();
    assert!(matches!(e, ProfileError::Version { .. }), "{e}");
    let e = DeviceProfile::from_json(r#"{"format": "lspci", "version": 1}"#).unwrap_err();
    assert!(
        matches!(e, ProfileError::Format { found: Some(ref f) } if f == "lspci"),
        "{e}"
    );
    assert!(matches!(
        DeviceProfile::from_json("[1, 2").unwrap_err(),
        ProfileError::Json(_)
    ));
}

#[test]
fn unknown_fields_and_broken_hex_rows_are_refused() {
    let text = guest_profile(false).to_json();
    let extra = text.replacen("\"version\": 1,", "\"version\": 1,\n  \"extra\": 0,", 1);
    assert!(matches!(
        DeviceProfile::from_json(&extra).unwrap_err(),
        ProfileError::Json(_)
    ));
    let moved = text.replacen("\"010: ", "\"020: ", 1);
    let e = DeviceProfile::from_json(&moved).unwrap_err();
    assert!(matches!(e, ProfileError::Json(_)), "{e}");
    assert!(format!("{:?}", std::error::Error::source(&e)).contains("offset"));
}

/// A change that breaks a profile.
type Edit = Box<dyn FnOnce(&mut DeviceProfile)>;

/// Every broken profile of the table, refused with the variant and offset
/// (or index) that names the fault.
#[test]
fn broken_profiles_are_refused_naming_the_fault() {
    // edu's first capability (MSI) is at 0x40; NVMe has 4096 bytes.
    let cases: Vec<(&str, bool, Edit, &str)> = vec![
        (
            "a capability list that loops",
            false,
            Box::new(|p| set_config(p, 0x41, &[0x40])),
            "PCI capability list broken at 0x41: points back to 0x40: loop",
        ),
        (
            "a capabilities pointer into the header",
            false,
            Box::new(|p| set_config(p, 0x34, &[0x20])),
            "PCI capability list broken at 0x34: points to 0x20, below 0x40",
        ),
        (
            "a misaligned capability",
            false,
            Box::new(|p| set_config(p, 0x41, &[0x51])),
            "PCI capability list broken at 0x41: points to 0x51, not dword-aligned",
        ),
        (
            "an extended capability list that loops",
            true,
            Box::new(|p| set_config(p, 0x100, &0x1001_0001u32.to_le_bytes())),
            "PCI Express extended capability list broken at 0x100: points back to 0x100: loop",
        ),
        (
            "an extended capability below 0x100",
            true,
            Box::new(|p| set_config(p, 0x100, &0x0801_0001u32.to_le_bytes())),
            "PCI Express extended capability list broken at 0x100: points to 0x80, below 0x100",
        ),
        (
            "a misaligned extended capability",
            true,
            Box::new(|p| set_config(p, 0x100, &0x1021_0001u32.to_le_bytes())),
            "PCI Express extended capability list broken at 0x100: points to 0x102, not dword-aligned",
        ),
        (
            "config space of 300 bytes",
            false,
            Box::new(|p| {
                p.config.bytes.0.resize(300, 0);
            }),
            "config space is 300 bytes, not 256 or 4096",
        ),
        (
            "a writable mask of the wrong length",
            false,
            Box::new(|p| p.config.writable = HexBytes(vec![0; 255])),
            "config mask `writable` is 255 bytes, config space 256",
        ),
        (
            "a probed mask of the wrong length",
            true,
            Box::new(|p| p.config.probed = HexBytes(vec![0; 256])),
            "config mask `probed` is 256 bytes, config space 4096",
        ),
        (
            "a writable bit not probed",
            false,
            Box::new(|p| p.config.writable.0[0x06] = 0x01),
            "config byte 0x6 has writable bits 0x01 that were not probed",
        ),
        (
            "IDs that are not config space's",
            false,
            Box::new(|p| p.ids.device = 0x1111),
            "device is 0x1111, but config space has 0x11e8",
        ),
        (
            "a region missing",
            false,
            Box::new(|p| {
                p.regions.pop();
            }),
            "region table: 8 entries, but the device info says 9 regions",
        ),
        (
            "regions out of order",
            false,
            Box::new(|p| p.regions.swap(1, 2)),
            "region table: entry 1 is for index 2",
        ),
        (
            "a config region of the wrong size",
            false,
            Box::new(|p| p.regions[7].size = 4096),
            "region table: the config region is 0x1000 bytes, config space 0x100",
        ),
        (
            "a refused region with a size",
            false,
            Box::new(|p| p.regions[8].size = 16),
            "region table: index 8 was refused but has flags, a size or caps",
        ),
        (
            "an IRQ index too many",
            false,
            Box::new(|p| {
                let extra = p.irqs[4].clone();
                p.irqs.push(extra);
            }),
            "IRQ table: 6 entries, but the device info says 5 IRQ indexes",
        ),
        (
            "a BAR larger than its region",
            false,
            Box::new(|p| p.bars[0].size = 2 << 20),
            "BAR 0: is 0x200000 bytes, its region 0x100000",
        ),
        (
            "a BAR missing",
            false,
            Box::new(|p| {
                p.bars.clear();
            }),
            "BAR 0: region 0 is present but has no BAR entry",
        ),
        (
            "a BAR of the wrong kind",
            true,
            Box::new(|p| p.bars[0].kind = vfio_profile::BarKindProfile::Memory32),
            "BAR 0: is Memory32, but its BAR register says Memory64",
        ),
        (
            "BAR contents of the wrong length",
            false,
            Box::new(|p| p.bars[0].contents = Some(HexBytes(vec![0; 16]))),
            "BAR 0: contents are 0x10 bytes, the BAR 0x100000",
        ),
    ];
    for (what, nvme, edit, message) in cases {
        let e = refused(nvme, edit);
        assert_eq!(e.to_string(), message, "{what}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any bytes in the capability area of config space: validate never
    /// panics, and what it accepts reads back from its JSON unchanged.
    #[test]
    fn any_capability_bytes_are_judged_and_round_trip_if_accepted(
        bytes in proptest::collection::vec(any::<u8>(), 0xc0),
        pointer in any::<u8>(),
    ) {
        let mut p = guest_profile(false);
        p.config.bytes.0[0x34] = pointer;
        p.config.bytes.0[0x40..].copy_from_slice(&bytes);
        if p.validate().is_ok() {
            let back = DeviceProfile::from_json(&p.to_json()).expect("accepted once");
            prop_assert_eq!(back, p);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// A profile's text with bytes changed anywhere: read without a panic,
    /// and anything accepted is valid and writes back as it reads.
    #[test]
    fn corrupted_profile_text_is_refused_or_valid(
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut text = guest_profile(false).to_json().into_bytes();
        for (at, byte) in flips {
            let i = at.index(text.len());
            text[i] = byte;
        }
        let Ok(text) = String::from_utf8(text) else {
            return Ok(());
        };
        if let Ok(p) = DeviceProfile::from_json(&text) {
            p.validate().expect("from_json validates");
            prop_assert_eq!(DeviceProfile::from_json(&p.to_json()).ok(), Some(p));
        }
    }
}
