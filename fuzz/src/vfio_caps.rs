//! `vfio_caps`: the capability chains of VFIO region and IOMMU info buffers.
//!
//! Input: the bytes of an info buffer as the kernel returns it. The region
//! interpretation takes `cap_offset` from bytes 12..16 (its place in
//! `struct vfio_region_info`), the IOMMU one from bytes 16..20 (its place in
//! `struct vfio_iommu_type1_info`), so a seed is a real kernel answer.
//!
//! Checked, besides "never panics":
//! - [`walk`] accepts exactly the chains an independent reference walk
//!   accepts, and what it returns follows the chain link by link;
//! - [`region_caps`] and [`iommu_caps`] agree with a reference decode of the
//!   raw capabilities, accepting and refusing the same inputs;
//! - what parses re-encodes ([`encode_region_caps`], [`encode_iommu_caps`])
//!   to bytes that parse back to the same value, and re-encoding is stable.

use std::collections::BTreeSet;
use vfio_core::parse::vfio_caps::{
    CAP_HEADER_LEN, DECODED_VERSION, IOMMU_CAP_DMA_AVAIL, IOMMU_CAP_IOVA_RANGE, IOMMU_INFO_LEN,
    IommuCaps, MAX_CHAIN, REGION_CAP_MSIX_MAPPABLE, REGION_CAP_SPARSE_MMAP, REGION_CAP_TYPE,
    REGION_INFO_LEN, RawCap, encode_iommu_caps, encode_region_caps, iommu_caps, region_caps, walk,
};
use vfio_core::{IovaRange, RegionCap, SparseArea};

/// Where `cap_offset` sits in `struct vfio_region_info`.
pub const REGION_CAP_OFFSET_AT: usize = 12;
/// Where `cap_offset` sits in `struct vfio_iommu_type1_info`.
pub const IOMMU_CAP_OFFSET_AT: usize = 16;

/// The target.
pub fn vfio_caps(data: &[u8]) {
    let region_first = u32_at(data, REGION_CAP_OFFSET_AT).unwrap_or(0);
    let iommu_first = u32_at(data, IOMMU_CAP_OFFSET_AT).unwrap_or(0);

    for (first, header_len) in [
        (region_first, REGION_INFO_LEN),
        (iommu_first, IOMMU_INFO_LEN),
        (region_first, 0),
    ] {
        check_walk(data, first, header_len);
    }
    check_region(data, region_first);
    check_iommu(data, iommu_first);
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(buf: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buf.get(at..at + 2)?.try_into().ok()?))
}

fn u64_at(buf: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(at..at + 8)?.try_into().ok()?))
}

/// The header offsets of a valid chain in chain order, or `None` when the
/// chain must be refused. Written from the rules in `walk`'s docs, not its code.
fn reference_walk(buf: &[u8], first: u32, header_len: usize) -> Option<Vec<usize>> {
    let mut order = Vec::new();
    let mut next = first;
    while next != 0 {
        let off = next as usize;
        if off < header_len || order.contains(&off) || order.len() == MAX_CHAIN {
            return None;
        }
        if off.checked_add(CAP_HEADER_LEN)? > buf.len() {
            return None;
        }
        order.push(off);
        next = u32_at(buf, off + 4)?;
    }
    let sorted: BTreeSet<usize> = order.iter().copied().collect();
    let sorted: Vec<usize> = sorted.into_iter().collect();
    if sorted.windows(2).any(|w| w[1] < w[0] + CAP_HEADER_LEN) {
        return None;
    }
    Some(order)
}

fn check_walk(buf: &[u8], first: u32, header_len: usize) {
    let got = walk(buf, first, header_len);
    let want = reference_walk(buf, first, header_len);
    let caps = match (got, want) {
        (Ok(caps), Some(order)) => {
            let offsets: Vec<usize> = caps.iter().map(|c| c.offset as usize).collect();
            assert_eq!(offsets, order, "walk order differs from the chain");
            caps
        }
        (Err(_), None) => return,
        (Ok(caps), None) => panic!("walk accepted an invalid chain: {caps:?}"),
        (Err(e), Some(order)) => panic!("walk refused a valid chain {order:x?}: {e}"),
    };
    assert!(caps.len() <= MAX_CHAIN);
    assert_eq!(caps.is_empty(), first == 0);
    let starts: BTreeSet<usize> = caps.iter().map(|c| c.offset as usize).collect();
    for cap in &caps {
        let off = cap.offset as usize;
        assert!(off >= header_len);
        assert_eq!(u16_at(buf, off), Some(cap.id));
        assert_eq!(u16_at(buf, off + 2), Some(cap.version));
        let start = off + CAP_HEADER_LEN;
        let end = starts.range(off + 1..).next().copied().unwrap_or(buf.len());
        assert_eq!(
            cap.data,
            &buf[start..end],
            "data of the capability at {off:#x}"
        );
    }
}

/// What `region_caps` must make of one raw capability.
fn reference_region_cap(cap: &RawCap<'_>) -> Option<RegionCap> {
    let unknown = || RegionCap::Unknown {
        id: cap.id,
        version: cap.version,
        data: cap.data.to_vec(),
    };
    if cap.version != DECODED_VERSION {
        return Some(unknown());
    }
    Some(match cap.id {
        REGION_CAP_SPARSE_MMAP => {
            let pairs = reference_pairs(cap.data)?;
            let mut areas = Vec::new();
            for (offset, size) in pairs {
                offset.checked_add(size)?;
                areas.push(SparseArea { offset, size });
            }
            RegionCap::SparseMmap(areas)
        }
        REGION_CAP_TYPE => RegionCap::Type {
            ty: u32_at(cap.data, 0)?,
            subtype: u32_at(cap.data, 4)?,
        },
        REGION_CAP_MSIX_MAPPABLE => RegionCap::MsixMappable,
        _ => unknown(),
    })
}

/// `u32 count; u32 reserved; (u64, u64) items[count]`, all inside `data`.
fn reference_pairs(data: &[u8]) -> Option<Vec<(u64, u64)>> {
    let count = u32_at(data, 0)? as usize;
    if 8 + count.checked_mul(16)? > data.len() {
        return None;
    }
    (0..count)
        .map(|i| Some((u64_at(data, 8 + 16 * i)?, u64_at(data, 16 + 16 * i)?)))
        .collect()
}

fn with_prefix(base: u32, chain: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; base as usize];
    buf.extend_from_slice(chain);
    buf
}

fn check_region(buf: &[u8], first: u32) {
    let got = region_caps(buf, first);
    let want = walk(buf, first, REGION_INFO_LEN).ok().and_then(|raw| {
        raw.iter()
            .map(reference_region_cap)
            .collect::<Option<Vec<_>>>()
    });
    let caps = match (got, want) {
        (Ok(caps), Some(want)) => {
            assert_eq!(caps, want);
            caps
        }
        (Err(_), None) => return,
        (Ok(caps), None) => panic!("region_caps accepted what it must refuse: {caps:?}"),
        (Err(e), Some(want)) => panic!("region_caps refused {want:?}: {e}"),
    };

    // Round trip: at the smallest legal base, and at the input's own offset.
    let mut bases = vec![REGION_INFO_LEN as u32];
    if first as usize >= REGION_INFO_LEN && first <= 4096 {
        bases.push(first);
    }
    for base in bases {
        let chain = encode_region_caps(&caps, base);
        assert_eq!(chain.is_empty(), caps.is_empty());
        let first = if chain.is_empty() { 0 } else { base };
        let encoded = with_prefix(base, &chain);
        let again = region_caps(&encoded, first)
            .unwrap_or_else(|e| panic!("encoded region caps {caps:?} do not parse: {e}"));
        assert_eq!(again, caps, "region caps round trip at base {base:#x}");
        assert_eq!(
            encode_region_caps(&again, base),
            chain,
            "re-encoding is stable"
        );
    }
}

/// What `iommu_caps` must make of a walked chain.
fn reference_iommu(raw: &[RawCap<'_>]) -> Option<IommuCaps> {
    let mut caps = IommuCaps::default();
    for cap in raw.iter().filter(|c| c.version == DECODED_VERSION) {
        match cap.id {
            IOMMU_CAP_IOVA_RANGE => {
                let mut ranges = Vec::new();
                for (start, end) in reference_pairs(cap.data)? {
                    if start > end {
                        return None;
                    }
                    ranges.push(IovaRange { start, end });
                }
                if caps.iova_ranges.replace(ranges).is_some() {
                    return None;
                }
            }
            IOMMU_CAP_DMA_AVAIL => {
                let avail = u32_at(cap.data, 0)?;
                if caps.dma_avail.replace(avail).is_some() {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(caps)
}

fn check_iommu(buf: &[u8], first: u32) {
    let got = iommu_caps(buf, first);
    let want = walk(buf, first, IOMMU_INFO_LEN)
        .ok()
        .and_then(|raw| reference_iommu(&raw));
    let caps = match (got, want) {
        (Ok(caps), Some(want)) => {
            assert_eq!(caps, want);
            caps
        }
        (Err(_), None) => return,
        (Ok(caps), None) => panic!("iommu_caps accepted what it must refuse: {caps:?}"),
        (Err(e), Some(want)) => panic!("iommu_caps refused {want:?}: {e}"),
    };
    let base = IOMMU_INFO_LEN as u32;
    let chain = encode_iommu_caps(&caps, base);
    let first = if chain.is_empty() { 0 } else { base };
    let again = iommu_caps(&with_prefix(base, &chain), first)
        .unwrap_or_else(|e| panic!("encoded IOMMU caps {caps:?} do not parse: {e}"));
    assert_eq!(again, caps, "IOMMU caps round trip");
    assert_eq!(
        encode_iommu_caps(&again, base),
        chain,
        "re-encoding is stable"
    );
}
