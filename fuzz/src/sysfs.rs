//! `sysfs`: IOMMU group links, hex ids and PCI addresses.
//!
//! The input is tried as a link target (any bytes: Linux paths need not be
//! UTF-8), as the text of a sysfs id file, and as a PCI address. Then, read
//! as [`arbitrary`] bytes, values are printed the way the kernel prints them
//! and must parse back.
//!
//! Checked, besides "never panics": what parses is what the documented
//! grammar says (a decimal last component; `0x` and 1 to 8 hex digits;
//! `[DDDD:]BB:DD.F` with device < 32 and function < 8), and printing a parsed
//! PCI address gives a string that parses to the same address.

use arbitrary::{Arbitrary, Unstructured};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};
use vfio_core::PciAddress;
use vfio_core::parse::sysfs::{group_number_from_link, parse_hex_id};

/// The target.
pub fn sysfs(data: &[u8]) {
    check_group_link(Path::new(OsStr::from_bytes(data)));
    let text = String::from_utf8_lossy(data);
    check_hex_id(&text);
    for line in std::iter::once(text.as_ref()).chain(text.lines().take(8)) {
        check_pci_address(line);
    }
    check_round_trips(data);
}

fn check_group_link(target: &Path) {
    let got = group_number_from_link(target);
    let want = match target.components().next_back() {
        Some(Component::Normal(last)) => last.to_str().and_then(|s| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse::<u32>().ok())
                .flatten()
        }),
        _ => None,
    };
    match (got, want) {
        (Ok(n), Some(w)) => assert_eq!(n, w, "group number of {target:?}"),
        (Err(_), None) => {}
        (got, want) => panic!("group_number_from_link({target:?}) = {got:?}, expected {want:?}"),
    }
}

fn check_hex_id(text: &str) {
    let got = parse_hex_id(text);
    let trimmed = text.trim();
    let want = trimmed.strip_prefix("0x").and_then(|digits| {
        (!digits.is_empty() && digits.len() <= 8 && digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
    });
    match (got, want) {
        (Ok(v), Some(w)) => assert_eq!(v, w, "parse_hex_id({text:?})"),
        (Err(_), None) => {}
        (got, want) => panic!("parse_hex_id({text:?}) = {got:?}, expected {want:?}"),
    }
}

fn check_pci_address(text: &str) {
    let Ok(address) = text.parse::<PciAddress>() else {
        return;
    };
    assert!(address.device() < 32 && address.function() < 8);
    let printed = address.to_string();
    assert_eq!(
        printed.parse::<PciAddress>().ok(),
        Some(address),
        "{text:?}"
    );
    // Same fields, whatever the case or padding of the input.
    let (rest, function) = text.rsplit_once('.').expect("parsed, so it has `.F`");
    assert_eq!(
        u32::from_str_radix(function, 16).ok(),
        Some(address.function().into())
    );
    let fields: Vec<&str> = rest.rsplitn(3, ':').collect();
    let hex = |s: &str| u32::from_str_radix(s, 16).ok();
    assert_eq!(hex(fields[0]), Some(address.device().into()));
    assert_eq!(hex(fields[1]), Some(address.bus().into()));
    assert_eq!(
        fields.get(2).map_or(Some(0), |d| hex(d)),
        Some(address.domain())
    );
    // The canonical form is its own printout.
    let widths: Vec<usize> = fields.iter().map(|f| f.len()).collect();
    if widths == [2, 2, 4] && function.len() == 1 && !text.bytes().any(|b| b.is_ascii_uppercase()) {
        assert_eq!(printed, text);
    }
}

#[derive(Debug, Arbitrary)]
struct Values {
    group: u32,
    group_prefix: u8,
    id: u32,
    id_newline: bool,
    address: (u32, u8, u8, u8),
}

fn check_round_trips(data: &[u8]) {
    let Ok(v) = Values::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let prefix = match v.group_prefix % 4 {
        0 => "",
        1 => "../../../../kernel/iommu_groups/",
        2 => "/sys/kernel/iommu_groups/",
        _ => "../iommu_groups/./",
    };
    let link = format!("{prefix}{}", v.group);
    assert_eq!(
        group_number_from_link(Path::new(&link)).ok(),
        Some(v.group),
        "{link}"
    );
    let trailing = format!("{link}/.");
    assert_eq!(
        group_number_from_link(Path::new(&trailing)).ok(),
        Some(v.group)
    );

    let id = if v.id_newline {
        format!("{:#x}\n", v.id)
    } else {
        format!("{:#06x}", v.id)
    };
    assert_eq!(parse_hex_id(&id).ok(), Some(v.id), "{id:?}");

    let (domain, bus, device, function) = v.address;
    if let Some(address) = PciAddress::new(domain, bus, device, function) {
        let printed = address.to_string();
        assert_eq!(printed.parse::<PciAddress>().ok(), Some(address));
        assert_eq!(
            printed.to_uppercase().parse::<PciAddress>().ok(),
            Some(address)
        );
    } else {
        assert!(device >= 32 || function >= 8);
    }
}
