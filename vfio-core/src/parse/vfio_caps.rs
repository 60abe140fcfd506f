//! The capability chains the kernel appends to VFIO info structures.
//!
//! `VFIO_DEVICE_GET_REGION_INFO` and `VFIO_IOMMU_GET_INFO` may return more than
//! their fixed structure: a chain of capabilities, each starting with an
//! 8-byte header (`u16 id`, `u16 version`, `u32 next`, little-endian). Every
//! offset — the info structure's `cap_offset` and each header's `next` — counts
//! from the start of the info structure, i.e. index 0 of the buffer handed to
//! these functions, and 0 ends the chain.
//!
//! Pass the buffer cut to the `argsz` the kernel reported: bytes after the
//! last capability count as that capability's data.
//!
//! The `encode_*` functions build the same bytes, for the simulated backend
//! and for round-trip tests.

use super::ParseError;
use super::bytes::{u16_at, u32_at, u64_at};
use crate::info::{IovaRange, RegionCap, SparseArea};

/// Size of a capability header.
pub const CAP_HEADER_LEN: usize = 8;
/// Size of `struct vfio_region_info`; its capabilities start at or after this.
pub const REGION_INFO_LEN: usize = 32;
/// Size of `struct vfio_iommu_type1_info`; its capabilities start at or after this.
pub const IOMMU_INFO_LEN: usize = 24;
/// The longest chain [`walk`] accepts. Real chains hold a handful of capabilities.
pub const MAX_CHAIN: usize = 64;

/// `VFIO_REGION_INFO_CAP_SPARSE_MMAP`.
pub const REGION_CAP_SPARSE_MMAP: u16 = 1;
/// `VFIO_REGION_INFO_CAP_TYPE`.
pub const REGION_CAP_TYPE: u16 = 2;
/// `VFIO_REGION_INFO_CAP_MSIX_MAPPABLE`.
pub const REGION_CAP_MSIX_MAPPABLE: u16 = 3;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE`.
pub const IOMMU_CAP_IOVA_RANGE: u16 = 1;
/// `VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION` (recognised and ignored).
pub const IOMMU_CAP_MIGRATION: u16 = 2;
/// `VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL`.
pub const IOMMU_CAP_DMA_AVAIL: u16 = 3;
/// The only version of each capability above that this module decodes; other
/// versions are treated as unknown capabilities.
pub const DECODED_VERSION: u16 = 1;

const CHAIN: &str = "VFIO capability chain";
const REGION: &str = "VFIO region info capability";
const IOMMU: &str = "VFIO IOMMU info capability";

/// Size of one sparse-mmap area or one IOVA range: two `u64`s.
const PAIR_LEN: usize = 16;

/// One capability of a chain, not yet decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawCap<'a> {
    /// Capability id (its meaning depends on the info structure).
    pub id: u16,
    /// Capability version.
    pub version: u16,
    /// Where the header starts, from the start of the info structure.
    pub offset: u32,
    /// The bytes after the header, up to the nearest capability of the chain
    /// that starts after this one, or to the end of the buffer when none does.
    /// Any padding the kernel put between capabilities is included.
    pub data: &'a [u8],
}

/// The decoded capabilities of `VFIO_IOMMU_GET_INFO` (type1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IommuCaps {
    /// `IOVA_RANGE`: the usable IOVA ranges, if the kernel reported them.
    pub iova_ranges: Option<Vec<IovaRange>>,
    /// `DMA_AVAIL`: how many more DMA mappings may be created, if reported.
    pub dma_avail: Option<u32>,
}

/// Walks the chain starting at `first` in `info`.
///
/// Capabilities must start at or after `header_len` (the size of the fixed
/// info structure: [`REGION_INFO_LEN`] or [`IOMMU_INFO_LEN`]). `first == 0`
/// means no chain. Errors on: a header that runs past the buffer, an offset
/// inside the fixed structure, an offset visited twice (a loop), two
/// capabilities whose headers overlap, and a chain longer than [`MAX_CHAIN`].
/// Capabilities are returned in chain order; the chain need not be sorted
/// by offset, nor aligned.
pub fn walk(info: &[u8], first: u32, header_len: usize) -> Result<Vec<RawCap<'_>>, ParseError> {
    // (offset, id, version) in chain order.
    let mut headers: Vec<(usize, u16, u16)> = Vec::new();
    let mut next = first;
    let mut from: Option<usize> = None;
    while next != 0 {
        let offset = usize::try_from(next).map_err(|_| {
            ParseError::at(
                CHAIN,
                next.into(),
                format!("offset {next:#x} does not fit in usize"),
            )
        })?;
        let here = || match from {
            Some(prev) => format!("capability at {prev:#x} points to {offset:#x}"),
            None => format!("first capability at {offset:#x}"),
        };
        if offset < header_len {
            return Err(ParseError::at(
                CHAIN,
                next.into(),
                format!("{} inside the {header_len}-byte info structure", here()),
            ));
        }
        if let Some(prev) = from.filter(|_| headers.iter().any(|h| h.0 == offset)) {
            return Err(ParseError::at(
                CHAIN,
                prev as u64,
                format!("capability at {prev:#x} points back to {offset:#x}: loop"),
            ));
        }
        if headers.len() >= MAX_CHAIN {
            return Err(ParseError::at(
                CHAIN,
                next.into(),
                format!("more than {MAX_CHAIN} capabilities"),
            ));
        }
        let (Some(id), Some(version), Some(link)) = (
            u16_at(info, offset),
            u16_at(info, offset.saturating_add(2)),
            u32_at(info, offset.saturating_add(4)),
        ) else {
            return Err(ParseError::at(
                CHAIN,
                next.into(),
                format!(
                    "{}, whose {CAP_HEADER_LEN}-byte header runs past the end of the buffer at {:#x}",
                    here(),
                    info.len()
                ),
            ));
        };
        headers.push((offset, id, version));
        from = Some(offset);
        next = link;
    }

    let mut starts: Vec<usize> = headers.iter().map(|h| h.0).collect();
    starts.sort_unstable();
    let mut caps = Vec::with_capacity(headers.len());
    for &(offset, id, version) in &headers {
        // Offsets are distinct, so the first start above `offset` is the next one.
        let after = starts.partition_point(|&s| s <= offset);
        let end = starts.get(after).copied().unwrap_or(info.len());
        let data_start = offset.saturating_add(CAP_HEADER_LEN);
        let data = info.get(data_start..end).ok_or_else(|| {
            ParseError::at(
                CHAIN,
                offset as u64,
                format!(
                    "capability at {offset:#x} has an {CAP_HEADER_LEN}-byte header but the next capability starts at {end:#x}"
                ),
            )
        })?;
        caps.push(RawCap {
            id,
            version,
            // `offset` came from a u32.
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
            data,
        });
    }
    Ok(caps)
}

/// Decodes the capability chain of a `struct vfio_region_info` buffer
/// (`first` is its `cap_offset` field).
///
/// Sparse-mmap, type and MSI-X-mappable capabilities of version 1 are
/// decoded; everything else is kept as [`RegionCap::Unknown`]. A decodable
/// capability whose data is too short for what it declares is an error,
/// as is a sparse-mmap area whose end does not fit in a `u64`.
pub fn region_caps(info: &[u8], first: u32) -> Result<Vec<RegionCap>, ParseError> {
    walk(info, first, REGION_INFO_LEN)?
        .into_iter()
        .map(region_cap)
        .collect()
}

fn region_cap(cap: RawCap<'_>) -> Result<RegionCap, ParseError> {
    if cap.version != DECODED_VERSION {
        return Ok(unknown(cap));
    }
    match cap.id {
        REGION_CAP_SPARSE_MMAP => {
            let areas = pairs(REGION, "sparse-mmap", &cap)?;
            let areas = areas
                .into_iter()
                .enumerate()
                .map(|(i, (offset, size))| {
                    if offset.checked_add(size).is_none() {
                        return Err(ParseError::at(
                            REGION,
                            cap.offset.into(),
                            format!(
                                "sparse-mmap area {i} at {offset:#x} of size {size:#x} ends past 2^64"
                            ),
                        ));
                    }
                    Ok(SparseArea { offset, size })
                })
                .collect::<Result<_, _>>()?;
            Ok(RegionCap::SparseMmap(areas))
        }
        REGION_CAP_TYPE => match (u32_at(cap.data, 0), u32_at(cap.data, 4)) {
            (Some(ty), Some(subtype)) => Ok(RegionCap::Type { ty, subtype }),
            _ => Err(short(REGION, "type", &cap, 8)),
        },
        REGION_CAP_MSIX_MAPPABLE => Ok(RegionCap::MsixMappable),
        _ => Ok(unknown(cap)),
    }
}

fn unknown(cap: RawCap<'_>) -> RegionCap {
    RegionCap::Unknown {
        id: cap.id,
        version: cap.version,
        data: cap.data.to_vec(),
    }
}

fn short(what: &'static str, name: &str, cap: &RawCap<'_>, needed: usize) -> ParseError {
    let total = CAP_HEADER_LEN.saturating_add(needed);
    let have = CAP_HEADER_LEN.saturating_add(cap.data.len());
    ParseError::at(
        what,
        cap.offset.into(),
        format!(
            "{name} capability at {:#x} needs {total} bytes but only {have} are before the next capability or the end",
            cap.offset
        ),
    )
}

/// Decodes `u32 count; u32 reserved; struct { u64 a; u64 b; } items[count]`,
/// checking that `count` items fit in the capability's data before allocating.
fn pairs(what: &'static str, name: &str, cap: &RawCap<'_>) -> Result<Vec<(u64, u64)>, ParseError> {
    let count = u32_at(cap.data, 0).ok_or_else(|| short(what, name, cap, 8))?;
    let needed = usize::try_from(count)
        .ok()
        .and_then(|n| n.checked_mul(PAIR_LEN))
        .and_then(|n| n.checked_add(8));
    let Some(needed) = needed.filter(|&n| n <= cap.data.len()) else {
        return Err(ParseError::at(
            what,
            cap.offset.into(),
            format!(
                "{name} capability at {:#x} declares {count} entries of {PAIR_LEN} bytes but has only {} bytes of data",
                cap.offset,
                cap.data.len()
            ),
        ));
    };
    let mut out = Vec::with_capacity(needed / PAIR_LEN);
    let mut at = 8usize;
    while at < needed {
        match (u64_at(cap.data, at), u64_at(cap.data, at.saturating_add(8))) {
            (Some(a), Some(b)) => out.push((a, b)),
            // Unreachable: `needed <= data.len()` was checked above.
            _ => return Err(short(what, name, cap, needed)),
        }
        at = at.saturating_add(PAIR_LEN);
    }
    Ok(out)
}

/// Decodes the capability chain of a `struct vfio_iommu_type1_info` buffer
/// (`first` is its `cap_offset` field).
///
/// IOVA-range and DMA-available capabilities of version 1 are decoded;
/// migration and unknown capabilities (and other versions) are ignored.
/// Errors, besides those of [`walk`]: a decoded capability too short for
/// what it declares, an IOVA range whose start is above its end, and a
/// decoded capability appearing twice (which copy to believe is ambiguous).
pub fn iommu_caps(info: &[u8], first: u32) -> Result<IommuCaps, ParseError> {
    let mut caps = IommuCaps::default();
    for cap in walk(info, first, IOMMU_INFO_LEN)? {
        if cap.version != DECODED_VERSION {
            continue;
        }
        match cap.id {
            IOMMU_CAP_IOVA_RANGE => {
                let ranges = pairs(IOMMU, "IOVA range", &cap)?
                    .into_iter()
                    .enumerate()
                    .map(|(i, (start, end))| {
                        if start > end {
                            return Err(ParseError::at(
                                IOMMU,
                                cap.offset.into(),
                                format!(
                                    "IOVA range {i} starts at {start:#x}, after its end {end:#x}"
                                ),
                            ));
                        }
                        Ok(IovaRange { start, end })
                    })
                    .collect::<Result<_, _>>()?;
                set_once(&mut caps.iova_ranges, ranges, "IOVA range", &cap)?;
            }
            IOMMU_CAP_DMA_AVAIL => {
                let avail =
                    u32_at(cap.data, 0).ok_or_else(|| short(IOMMU, "DMA-available", &cap, 4))?;
                set_once(&mut caps.dma_avail, avail, "DMA-available", &cap)?;
            }
            _ => {}
        }
    }
    Ok(caps)
}

fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    name: &str,
    cap: &RawCap<'_>,
) -> Result<(), ParseError> {
    if slot.is_some() {
        return Err(ParseError::at(
            IOMMU,
            cap.offset.into(),
            format!("second {name} capability at {:#x}", cap.offset),
        ));
    }
    *slot = Some(value);
    Ok(())
}

/// Encodes region capabilities as a chain whose first header sits at
/// absolute offset `base` (the bytes to append after a `base`-byte prefix;
/// the info structure's `cap_offset` is then `base`, or 0 when `caps` is
/// empty, in which case the result is empty).
///
/// Capabilities are packed back to back in order, each `next` absolute, the
/// last one 0. `region_caps(prefix ++ encode_region_caps(caps, base), base)`
/// gives back `caps` for any `base >= 32`, provided no [`RegionCap::Unknown`]
/// carries the id and version of a capability that is decoded. A
/// capability that would start past `u32::MAX` ends the chain (it and the
/// rest are dropped).
pub fn encode_region_caps(caps: &[RegionCap], base: u32) -> Vec<u8> {
    let bodies = caps.iter().map(|cap| match cap {
        RegionCap::SparseMmap(areas) => (
            REGION_CAP_SPARSE_MMAP,
            DECODED_VERSION,
            encode_pairs(areas.iter().map(|a| (a.offset, a.size))),
        ),
        RegionCap::Type { ty, subtype } => {
            let mut data = ty.to_le_bytes().to_vec();
            data.extend_from_slice(&subtype.to_le_bytes());
            (REGION_CAP_TYPE, DECODED_VERSION, data)
        }
        RegionCap::MsixMappable => (REGION_CAP_MSIX_MAPPABLE, DECODED_VERSION, Vec::new()),
        RegionCap::Unknown { id, version, data } => (*id, *version, data.clone()),
    });
    encode_chain(bodies.collect(), base)
}

/// Encodes IOMMU capabilities as a chain whose first header sits at absolute
/// offset `base` (see [`encode_region_caps`]): the IOVA-range capability if
/// present, then the DMA-available one (padded to 8 bytes, as the kernel
/// keeps capabilities 8-byte aligned). `iommu_caps(prefix ++ bytes, base)`
/// gives back `caps` for any `base >= 24` when every range has `start <= end`.
pub fn encode_iommu_caps(caps: &IommuCaps, base: u32) -> Vec<u8> {
    let mut bodies = Vec::new();
    if let Some(ranges) = &caps.iova_ranges {
        bodies.push((
            IOMMU_CAP_IOVA_RANGE,
            DECODED_VERSION,
            encode_pairs(ranges.iter().map(|r| (r.start, r.end))),
        ));
    }
    if let Some(avail) = caps.dma_avail {
        let mut data = avail.to_le_bytes().to_vec();
        data.extend_from_slice(&[0; 4]);
        bodies.push((IOMMU_CAP_DMA_AVAIL, DECODED_VERSION, data));
    }
    encode_chain(bodies, base)
}

fn encode_pairs(items: impl ExactSizeIterator<Item = (u64, u64)>) -> Vec<u8> {
    let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
    let mut data = Vec::with_capacity(items.len().saturating_mul(PAIR_LEN).saturating_add(8));
    data.extend_from_slice(&count.to_le_bytes());
    data.extend_from_slice(&[0; 4]);
    for (a, b) in items.take(count as usize) {
        data.extend_from_slice(&a.to_le_bytes());
        data.extend_from_slice(&b.to_le_bytes());
    }
    data
}

fn encode_chain(bodies: Vec<(u16, u16, Vec<u8>)>, base: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let count = bodies.len();
    for (i, (id, version, data)) in bodies.into_iter().enumerate() {
        let next = if i + 1 == count {
            0
        } else {
            u64::from(base)
                .checked_add(out.len() as u64)
                .and_then(|n| n.checked_add(CAP_HEADER_LEN as u64))
                .and_then(|n| n.checked_add(data.len() as u64))
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0)
        };
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&data);
        if next == 0 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A zeroed info structure of `len` bytes followed by `chain`.
    fn info(len: usize, chain: &[u8]) -> Vec<u8> {
        let mut v = vec![0; len];
        v.extend_from_slice(chain);
        v
    }

    fn header(id: u16, version: u16, next: u32) -> Vec<u8> {
        let mut v = id.to_le_bytes().to_vec();
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&next.to_le_bytes());
        v
    }

    #[test]
    fn no_chain_is_empty() {
        assert_eq!(walk(&[0; 32], 0, 32).unwrap(), vec![]);
        assert_eq!(region_caps(&[], 0).unwrap(), vec![]);
        assert_eq!(iommu_caps(&[0; 24], 0).unwrap(), IommuCaps::default());
    }

    #[test]
    fn walks_a_chain_and_bounds_each_capability_data() {
        // Cap A at 0x20 (4 data bytes) -> cap B at 0x2c (2 data bytes, end).
        let mut chain = header(7, 1, 0x2c);
        chain.extend_from_slice(&[1, 2, 3, 4]);
        chain.extend_from_slice(&header(8, 2, 0));
        chain.extend_from_slice(&[5, 6]);
        let buf = info(32, &chain);
        let caps = walk(&buf, 0x20, 32).unwrap();
        assert_eq!(
            caps,
            vec![
                RawCap {
                    id: 7,
                    version: 1,
                    offset: 0x20,
                    data: &[1, 2, 3, 4]
                },
                RawCap {
                    id: 8,
                    version: 2,
                    offset: 0x2c,
                    data: &[5, 6]
                },
            ]
        );
    }

    #[test]
    fn data_stops_at_the_nearest_following_capability_even_out_of_order() {
        // Chain order 0x30 -> 0x20, so 0x20's data must stop at 0x30.
        let mut buf = vec![0; 0x40];
        buf[0x20..0x28].copy_from_slice(&header(1, 9, 0));
        buf[0x30..0x38].copy_from_slice(&header(2, 9, 0x20));
        let caps = walk(&buf, 0x30, 32).unwrap();
        assert_eq!(caps[0].offset, 0x30);
        assert_eq!(caps[0].data.len(), 8);
        assert_eq!(caps[1].offset, 0x20);
        assert_eq!(caps[1].data.len(), 8);
    }

    #[test]
    fn a_loop_is_an_error() {
        let mut buf = vec![0; 0x40];
        buf[0x20..0x28].copy_from_slice(&header(1, 9, 0x30));
        buf[0x30..0x38].copy_from_slice(&header(2, 9, 0x20));
        let e = walk(&buf, 0x20, 32).unwrap_err();
        assert_eq!(e.reason(), "capability at 0x30 points back to 0x20: loop");
        assert_eq!(e.offset(), Some(0x30));
        // A capability pointing at itself.
        buf[0x20..0x28].copy_from_slice(&header(1, 9, 0x20));
        assert!(walk(&buf, 0x20, 32).unwrap_err().reason().ends_with("loop"));
    }

    #[test]
    fn a_header_past_the_buffer_is_an_error() {
        let buf = info(32, &[0; 7]);
        let e = walk(&buf, 32, 32).unwrap_err();
        assert!(
            e.reason()
                .contains("runs past the end of the buffer at 0x27"),
            "{e}"
        );
        assert!(walk(&buf, 0x1000, 32).is_err());
        assert!(walk(&buf, u32::MAX, 32).is_err());
        // A `next` that points past the end.
        let buf = info(32, &header(1, 1, 0x60));
        let e = walk(&buf, 32, 32).unwrap_err();
        assert_eq!(e.offset(), Some(0x60));
        assert!(
            e.reason().starts_with("capability at 0x20 points to 0x60"),
            "{e}"
        );
    }

    #[test]
    fn an_offset_inside_the_info_structure_is_an_error() {
        let buf = info(32, &header(1, 1, 0));
        let e = walk(&buf, 8, 32).unwrap_err();
        assert!(
            e.reason().contains("inside the 32-byte info structure"),
            "{e}"
        );
        let buf = info(32, &header(1, 1, 0x10));
        assert!(walk(&buf, 32, 32).is_err());
        // The IOMMU structure is 24 bytes: 24 is fine there, not for a region.
        let buf = info(24, &[0; 16]);
        assert!(walk(&buf, 24, 24).is_ok());
        assert!(walk(&buf, 24, 32).is_err());
    }

    #[test]
    fn overlapping_headers_are_an_error() {
        // The capability at 0x20 points to 0x26, inside its own header; the
        // header bytes read at 0x26 (id 0, version 0, next 0) end the chain.
        let mut buf = vec![0; 0x40];
        buf[0x20..0x28].copy_from_slice(&header(1, 9, 0x26));
        let e = walk(&buf, 0x20, 32).unwrap_err();
        assert_eq!(
            e.reason(),
            "capability at 0x20 has an 8-byte header but the next capability starts at 0x26"
        );
    }

    #[test]
    fn a_chain_longer_than_the_bound_is_an_error() {
        let n = MAX_CHAIN + 1;
        let mut chain = Vec::new();
        for i in 0..n {
            let next = if i + 1 == n {
                0
            } else {
                32 + 8 * (i as u32 + 1)
            };
            chain.extend_from_slice(&header(0x99, 1, next));
        }
        let buf = info(32, &chain);
        let e = walk(&buf, 32, 32).unwrap_err();
        assert!(e.reason().contains("more than 64"), "{e}");
        // One fewer is fine.
        let mut short = info(32, &chain[..chain.len() - 8]);
        let last = short.len() - 8;
        short[last + 4..last + 8].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(walk(&short, 32, 32).unwrap().len(), MAX_CHAIN);
    }

    #[test]
    fn decodes_region_capabilities() {
        let mut chain = header(REGION_CAP_SPARSE_MMAP, 1, 32 + 48);
        chain.extend_from_slice(&2u32.to_le_bytes());
        chain.extend_from_slice(&[0; 4]);
        for v in [0u64, 0x1000, 0x3000, 0x1000] {
            chain.extend_from_slice(&v.to_le_bytes());
        }
        chain.extend_from_slice(&header(REGION_CAP_TYPE, 1, 32 + 48 + 16));
        chain.extend_from_slice(&0x8086_0000u32.to_le_bytes());
        chain.extend_from_slice(&3u32.to_le_bytes());
        chain.extend_from_slice(&header(REGION_CAP_MSIX_MAPPABLE, 1, 32 + 48 + 16 + 8));
        chain.extend_from_slice(&header(REGION_CAP_TYPE, 2, 0));
        chain.extend_from_slice(&[0xaa]);
        let caps = region_caps(&info(32, &chain), 32).unwrap();
        assert_eq!(
            caps,
            vec![
                RegionCap::SparseMmap(vec![
                    SparseArea {
                        offset: 0,
                        size: 0x1000
                    },
                    SparseArea {
                        offset: 0x3000,
                        size: 0x1000
                    },
                ]),
                RegionCap::Type {
                    ty: 0x8086_0000,
                    subtype: 3
                },
                RegionCap::MsixMappable,
                RegionCap::Unknown {
                    id: REGION_CAP_TYPE,
                    version: 2,
                    data: vec![0xaa]
                },
            ]
        );
    }

    #[test]
    fn nr_areas_larger_than_the_data_is_an_error_not_an_allocation() {
        let mut chain = header(REGION_CAP_SPARSE_MMAP, 1, 0);
        chain.extend_from_slice(&u32::MAX.to_le_bytes());
        chain.extend_from_slice(&[0; 4 + 16]);
        let e = region_caps(&info(32, &chain), 32).unwrap_err();
        assert_eq!(e.offset(), Some(32));
        assert!(e.reason().contains("declares 4294967295 entries"), "{e}");
        // Exactly two areas declared, one present.
        let mut chain = header(REGION_CAP_SPARSE_MMAP, 1, 0);
        chain.extend_from_slice(&2u32.to_le_bytes());
        chain.extend_from_slice(&[0; 4 + 16]);
        assert!(region_caps(&info(32, &chain), 32).is_err());
        // No room for nr_areas at all.
        let chain = header(REGION_CAP_SPARSE_MMAP, 1, 0);
        assert!(region_caps(&info(32, &chain), 32).is_err());
    }

    #[test]
    fn truncated_type_cap_and_wrapping_area_are_errors() {
        let mut chain = header(REGION_CAP_TYPE, 1, 0);
        chain.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0]);
        let e = region_caps(&info(32, &chain), 32).unwrap_err();
        assert!(e.reason().contains("needs 16 bytes but only 15"), "{e}");

        let mut chain = header(REGION_CAP_SPARSE_MMAP, 1, 0);
        chain.extend_from_slice(&1u32.to_le_bytes());
        chain.extend_from_slice(&[0; 4]);
        chain.extend_from_slice(&u64::MAX.to_le_bytes());
        chain.extend_from_slice(&1u64.to_le_bytes());
        assert!(region_caps(&info(32, &chain), 32).is_err());
    }

    #[test]
    fn decodes_iommu_capabilities_and_ignores_the_rest() {
        let mut chain = header(IOMMU_CAP_MIGRATION, 1, 24 + 32);
        chain.extend_from_slice(&[0; 24]);
        chain.extend_from_slice(&header(IOMMU_CAP_IOVA_RANGE, 1, 24 + 32 + 48));
        chain.extend_from_slice(&2u32.to_le_bytes());
        chain.extend_from_slice(&[0; 4]);
        for v in [0u64, 0xfedf_ffff, 0xfef0_0000, u64::MAX] {
            chain.extend_from_slice(&v.to_le_bytes());
        }
        chain.extend_from_slice(&header(IOMMU_CAP_DMA_AVAIL, 1, 24 + 32 + 48 + 12));
        chain.extend_from_slice(&65535u32.to_le_bytes());
        chain.extend_from_slice(&header(0x77, 1, 0));
        let caps = iommu_caps(&info(24, &chain), 24).unwrap();
        assert_eq!(
            caps,
            IommuCaps {
                iova_ranges: Some(vec![
                    IovaRange {
                        start: 0,
                        end: 0xfedf_ffff
                    },
                    IovaRange {
                        start: 0xfef0_0000,
                        end: u64::MAX
                    },
                ]),
                dma_avail: Some(65535),
            }
        );
    }

    #[test]
    fn iommu_errors() {
        // Too many ranges for the data.
        let mut chain = header(IOMMU_CAP_IOVA_RANGE, 1, 0);
        chain.extend_from_slice(&3u32.to_le_bytes());
        chain.extend_from_slice(&[0; 4 + 32]);
        assert!(iommu_caps(&info(24, &chain), 24).is_err());
        // A range that ends before it starts.
        let mut chain = header(IOMMU_CAP_IOVA_RANGE, 1, 0);
        chain.extend_from_slice(&1u32.to_le_bytes());
        chain.extend_from_slice(&[0; 4]);
        chain.extend_from_slice(&2u64.to_le_bytes());
        chain.extend_from_slice(&1u64.to_le_bytes());
        let e = iommu_caps(&info(24, &chain), 24).unwrap_err();
        assert!(
            e.reason().contains("starts at 0x2, after its end 0x1"),
            "{e}"
        );
        // DMA_AVAIL twice, and DMA_AVAIL with no value.
        let mut chain = header(IOMMU_CAP_DMA_AVAIL, 1, 24 + 12);
        chain.extend_from_slice(&1u32.to_le_bytes());
        chain.extend_from_slice(&header(IOMMU_CAP_DMA_AVAIL, 1, 0));
        chain.extend_from_slice(&2u32.to_le_bytes());
        let e = iommu_caps(&info(24, &chain), 24).unwrap_err();
        assert!(
            e.reason()
                .contains("second DMA-available capability at 0x24"),
            "{e}"
        );
        let chain = header(IOMMU_CAP_DMA_AVAIL, 1, 0);
        assert!(iommu_caps(&info(24, &chain), 24).is_err());
    }

    #[test]
    fn encoding_packs_with_absolute_next_offsets() {
        let bytes = encode_region_caps(
            &[
                RegionCap::MsixMappable,
                RegionCap::Type { ty: 1, subtype: 2 },
            ],
            32,
        );
        assert_eq!(&bytes[..8], &header(REGION_CAP_MSIX_MAPPABLE, 1, 40)[..]);
        assert_eq!(&bytes[8..16], &header(REGION_CAP_TYPE, 1, 0)[..]);
        assert_eq!(bytes.len(), 24);
        assert!(encode_region_caps(&[], 32).is_empty());
        assert!(encode_iommu_caps(&IommuCaps::default(), 24).is_empty());
    }

    fn region_cap_strategy() -> impl Strategy<Value = RegionCap> {
        prop_oneof![
            prop::collection::vec((any::<u64>(), any::<u64>()), 0..6).prop_map(|v| {
                RegionCap::SparseMmap(
                    v.into_iter()
                        .map(|(offset, size)| SparseArea {
                            offset,
                            size: size.min(u64::MAX - offset),
                        })
                        .collect(),
                )
            }),
            (any::<u32>(), any::<u32>()).prop_map(|(ty, subtype)| RegionCap::Type { ty, subtype }),
            Just(RegionCap::MsixMappable),
            (
                any::<u16>(),
                any::<u16>(),
                prop::collection::vec(any::<u8>(), 0..40)
            )
                .prop_filter("decodable id", |(id, version, _)| {
                    !((1..=3).contains(id) && *version == DECODED_VERSION)
                })
                .prop_map(|(id, version, data)| RegionCap::Unknown { id, version, data }),
        ]
    }

    fn check_walk_invariants(buf: &[u8], header_len: usize, caps: &[RawCap<'_>]) {
        assert!(caps.len() <= MAX_CHAIN);
        for (i, cap) in caps.iter().enumerate() {
            let off = cap.offset as usize;
            assert!(off >= header_len);
            assert!(off + CAP_HEADER_LEN <= buf.len());
            assert_eq!(u16_at(buf, off), Some(cap.id));
            // `data` is the slice right after the header.
            let start = off + CAP_HEADER_LEN;
            assert_eq!(&buf[start..start + cap.data.len()], cap.data);
            for other in &caps[i + 1..] {
                assert_ne!(other.offset, cap.offset);
                let o = other.offset as usize;
                // No other capability starts inside this one's header or data.
                assert!(!(off..start + cap.data.len()).contains(&o));
            }
        }
    }

    proptest! {
        #[test]
        fn region_caps_round_trip(caps in prop::collection::vec(region_cap_strategy(), 0..6), base in 32u32..80) {
            let buf = info(base as usize, &encode_region_caps(&caps, base));
            let first = if caps.is_empty() { 0 } else { base };
            prop_assert_eq!(region_caps(&buf, first).unwrap(), caps);
        }

        #[test]
        fn iommu_caps_round_trip(
            ranges in prop::option::of(prop::collection::vec((any::<u64>(), any::<u64>()), 0..6)),
            dma_avail in prop::option::of(any::<u32>()),
            base in 24u32..64,
        ) {
            let caps = IommuCaps {
                iova_ranges: ranges.map(|v| {
                    v.into_iter().map(|(a, b)| IovaRange { start: a.min(b), end: a.max(b) }).collect()
                }),
                dma_avail,
            };
            let bytes = encode_iommu_caps(&caps, base);
            let first = if bytes.is_empty() { 0 } else { base };
            prop_assert_eq!(iommu_caps(&info(base as usize, &bytes), first).unwrap(), caps);
        }

        #[test]
        fn walk_never_panics_and_keeps_its_invariants(
            buf in prop::collection::vec(any::<u8>(), 0..256),
            first in any::<u32>(),
            near in 0u32..256,
            header_len in 0usize..40,
        ) {
            for first in [first, near] {
                if let Ok(caps) = walk(&buf, first, header_len) {
                    check_walk_invariants(&buf, header_len, &caps);
                    prop_assert_eq!(caps.is_empty(), first == 0);
                }
            }
        }

        #[test]
        fn walk_of_small_offsets_chains_never_panics(
            links in prop::collection::vec((any::<u16>(), 0u32..96), 1..24),
            first in 0u32..96,
        ) {
            // Dense, loop-prone chains: headers every 8 bytes pointing anywhere.
            let mut buf = vec![0u8; 32];
            for (id, next) in &links {
                buf.extend_from_slice(&header(*id, 1, *next));
            }
            if let Ok(caps) = walk(&buf, first, 32) {
                check_walk_invariants(&buf, 32, &caps);
            }
            let _ = region_caps(&buf, first);
            let _ = iommu_caps(&buf, first);
        }

        #[test]
        fn region_and_iommu_caps_never_panic(
            buf in prop::collection::vec(any::<u8>(), 0..256),
            first in 0u32..256,
        ) {
            if let Ok(caps) = region_caps(&buf, first) {
                prop_assert!(caps.len() <= MAX_CHAIN);
                for cap in caps {
                    if let RegionCap::SparseMmap(areas) = cap {
                        prop_assert!(areas.len() * PAIR_LEN <= buf.len());
                        prop_assert!(areas.iter().all(|a| a.offset.checked_add(a.size).is_some()));
                    }
                }
            }
            if let Ok(caps) = iommu_caps(&buf, first) {
                for r in caps.iova_ranges.unwrap_or_default() {
                    prop_assert!(r.start <= r.end);
                }
            }
        }
    }
}
