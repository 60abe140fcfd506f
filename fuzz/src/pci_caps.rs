//! `pci_caps`: PCI and PCI Express capability lists in config space.
//!
//! Input: config space bytes as a device presents them, cut to 4096 bytes
//! (the size of PCI Express config space; shorter inputs are conventional or
//! truncated config spaces).
//!
//! Checked, besides "never panics":
//! - every capability returned lies inside the buffer, in its area
//!   (0x40..0x100 or 0x100..0x1000), dword-aligned, with its id read from
//!   the bytes at its offset, with no offset returned twice and no more
//!   entries than the area holds;
//! - the list follows the pointers from 0x34 (or 0x100) link by link;
//! - `find` / `find_extended` return the first match of the full list, and
//!   fail exactly when the list does;
//! - `msix` and `msi` decode the capability `find` points at, which fits
//!   below 0x100 and inside the buffer, with fields in their legal ranges.

use std::collections::HashSet;
use vfio_core::parse::pci_caps::{
    EXTENDED_END, EXTENDED_START, MAX_EXTENDED, MAX_STANDARD, STANDARD_START, capabilities,
    extended_capabilities, find, find_extended, id, msi, msix,
};

/// The longest config space the target looks at.
pub const MAX_CONFIG: usize = EXTENDED_END;

/// The target.
pub fn pci_caps(data: &[u8]) {
    let config = &data[..data.len().min(MAX_CONFIG)];
    check_standard(config);
    check_extended(config);
    check_msix(config);
    check_msi(config);
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn check_standard(config: &[u8]) {
    let list = capabilities(config);
    if let Ok(caps) = &list {
        assert!(caps.len() <= MAX_STANDARD, "{} capabilities", caps.len());
        let has_list = u16_at(config, 0x06).is_some_and(|s| s & (1 << 4) != 0);
        if !has_list {
            assert!(caps.is_empty());
        }
        let mut seen = HashSet::new();
        // The pointer at 0x34, then each capability's next pointer.
        let mut expect_next = config.get(0x34).map(|p| p & 0xFC);
        for cap in caps {
            let at = usize::from(cap.offset);
            assert!(seen.insert(cap.offset), "offset {at:#x} returned twice");
            assert!((STANDARD_START..EXTENDED_START).contains(&at));
            assert_eq!(at % 4, 0);
            assert!(
                at + 2 <= config.len(),
                "header at {at:#x} outside the buffer"
            );
            assert_eq!(config[at], cap.id);
            assert_eq!(
                expect_next,
                Some(cap.offset),
                "list does not follow the chain"
            );
            expect_next = Some(config[at + 1] & 0xFC);
        }
        if let Some(last) = caps.last() {
            assert_eq!(
                config[usize::from(last.offset) + 1] & 0xFC,
                0,
                "list ended early"
            );
        }
    }

    // `find` agrees with the list, for the ids present and a few absent ones.
    let mut ids: Vec<u8> = vec![id::PM, id::MSI, id::PCIE, id::MSIX, 0x00, 0xFF];
    if let Ok(caps) = &list {
        ids.extend(caps.iter().map(|c| c.id));
    }
    for want in ids {
        match (&list, find(config, want)) {
            (Ok(caps), Ok(found)) => assert_eq!(
                found,
                caps.iter().find(|c| c.id == want).map(|c| c.offset),
                "find({want:#x})"
            ),
            (Err(_), Err(_)) => {}
            (l, f) => panic!("capabilities {l:?} but find({want:#x}) {f:?}"),
        }
    }
}

fn check_extended(config: &[u8]) {
    let list = extended_capabilities(config);
    if let Ok(caps) = &list {
        assert!(caps.len() <= MAX_EXTENDED);
        if config.len() <= EXTENDED_START {
            assert!(caps.is_empty());
        }
        let mut seen = HashSet::new();
        let mut expect = EXTENDED_START;
        for cap in caps {
            let at = usize::from(cap.offset);
            assert!(seen.insert(cap.offset), "offset {at:#x} returned twice");
            assert!((EXTENDED_START..EXTENDED_END).contains(&at));
            assert_eq!(at % 4, 0);
            assert_eq!(at, expect, "list does not follow the chain");
            let header = u32_at(config, at).expect("header inside the buffer");
            assert_eq!(u32::from(cap.id), header & 0xFFFF);
            assert_eq!(u32::from(cap.version), (header >> 16) & 0xF);
            expect = ((header >> 20) & 0xFFC) as usize;
        }
        if caps.is_empty() && config.len() > EXTENDED_START {
            let header = u32_at(config, EXTENDED_START);
            assert!(
                matches!(header, Some(0 | u32::MAX)),
                "empty list under {header:x?}"
            );
        } else if !caps.is_empty() {
            assert_eq!(expect, 0, "list ended early");
        }
    }
    let mut ids = vec![0x0001, 0x0010, 0xFFFF];
    if let Ok(caps) = &list {
        ids.extend(caps.iter().map(|c| c.id));
    }
    for want in ids {
        match (&list, find_extended(config, want)) {
            (Ok(caps), Ok(found)) => {
                assert_eq!(found, caps.iter().find(|c| c.id == want).map(|c| c.offset))
            }
            (Err(_), Err(_)) => {}
            (l, f) => panic!("extended capabilities {l:?} but find_extended({want:#x}) {f:?}"),
        }
    }
}

fn check_msix(config: &[u8]) {
    let decoded = msix(config);
    let found = find(config, id::MSIX);
    match (&found, &decoded) {
        (Err(_), Err(_)) | (Ok(None), Ok(None)) => {}
        (Ok(Some(at)), Ok(Some(cap))) => {
            let at = usize::from(*at);
            assert!(at + 12 <= config.len().min(EXTENDED_START));
            let control = u16_at(config, at + 2).unwrap();
            let table = u32_at(config, at + 4).unwrap();
            let pba = u32_at(config, at + 8).unwrap();
            assert!((1..=2048).contains(&cap.table_size));
            assert_eq!(cap.table_size, (control & 0x7FF) + 1);
            assert!(cap.table_bar <= 5 && cap.pba_bar <= 5);
            assert_eq!(u32::from(cap.table_bar), table & 7);
            assert_eq!(u32::from(cap.pba_bar), pba & 7);
            assert_eq!(cap.table_offset, table & !7);
            assert_eq!(cap.pba_offset, pba & !7);
            assert_eq!(cap.enabled, control & 0x8000 != 0);
            assert_eq!(cap.function_masked, control & 0x4000 != 0);
        }
        // Found but undecodable: it must really be short or name a missing BAR.
        (Ok(Some(at)), Err(_)) => {
            let at = usize::from(*at);
            let fits = at + 12 <= config.len().min(EXTENDED_START);
            let bars_ok = fits
                && u32_at(config, at + 4).unwrap() & 7 <= 5
                && u32_at(config, at + 8).unwrap() & 7 <= 5;
            assert!(!bars_ok, "msix refused a well-formed capability at {at:#x}");
        }
        (f, d) => panic!("find(MSIX) {f:?} but msix {d:?}"),
    }
}

fn check_msi(config: &[u8]) {
    let decoded = msi(config);
    let found = find(config, id::MSI);
    let expected_len = |control: u16| match (control & (1 << 7) != 0, control & (1 << 8) != 0) {
        (false, false) => 10,
        (true, false) => 14,
        (false, true) => 20,
        (true, true) => 24,
    };
    match (&found, &decoded) {
        (Err(_), Err(_)) | (Ok(None), Ok(None)) => {}
        (Ok(Some(at)), Ok(Some(cap))) => {
            let at = usize::from(*at);
            let control = u16_at(config, at + 2).unwrap();
            assert!(at + expected_len(control) <= config.len().min(EXTENDED_START));
            assert!([1, 2, 4, 8, 16, 32].contains(&cap.vectors_capable));
            assert_eq!(cap.vectors_capable, 1 << ((control >> 1) & 7));
            assert_eq!(cap.is_64bit, control & (1 << 7) != 0);
            assert_eq!(cap.per_vector_masking, control & (1 << 8) != 0);
            assert_eq!(cap.enabled, control & 1 != 0);
        }
        (Ok(Some(at)), Err(_)) => {
            let at = usize::from(*at);
            let well_formed = u16_at(config, at + 2).is_some_and(|control| {
                at + expected_len(control) <= config.len().min(EXTENDED_START)
                    && (control >> 1) & 7 <= 5
            });
            assert!(
                !well_formed,
                "msi refused a well-formed capability at {at:#x}"
            );
        }
        (f, d) => panic!("find(MSI) {f:?} but msi {d:?}"),
    }
}
