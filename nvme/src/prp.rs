//! Physical Region Page entries for a transfer: PRP1, PRP2, and the PRP
//! list PRP2 points at when the transfer spans more than two pages.

use crate::buffer::PAGE_SIZE;

/// Entries in one PRP list page: the longest list the driver builds (it
/// never chains list pages, so a transfer covers at most
/// `1 + PRP_LIST_ENTRIES` pages).
pub const PRP_LIST_ENTRIES: usize = PAGE_SIZE / 8;

/// The PRPs of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prps {
    /// PRP1: the first byte.
    pub prp1: u64,
    /// PRP2 as the transfer needs it, before the list's IOVA is known:
    /// `None` with an empty list for a transfer in one page.
    pub prp2: Option<u64>,
    /// The list entries, when the transfer spans more than two pages
    /// (PRP2 is then the list page's IOVA).
    pub list: Vec<u64>,
}

/// The PRPs of `len` bytes (at least 1) from IOVA `start`, which must be
/// dword-aligned, in memory contiguous to the device; `None` when the
/// transfer needs more than one list page.
#[cfg(test)]
pub(crate) fn prps(start: u64, len: usize) -> Option<Prps> {
    let page = PAGE_SIZE as u64;
    let first_page = start - start % page;
    prps_by_page(start, len, |i| first_page + page * (i + 1))
}

/// The PRPs of `len` bytes (at least 1) from device address `start`, which
/// must be dword-aligned, where `next(i)` is the device address of the
/// `i`-th page after the first; `None` when the transfer needs more than
/// one list page.
pub(crate) fn prps_by_page(start: u64, len: usize, next: impl Fn(u64) -> u64) -> Option<Prps> {
    let page = PAGE_SIZE as u64;
    let first_len = page - start % page;
    if len as u64 <= first_len {
        return Some(Prps {
            prp1: start,
            prp2: None,
            list: Vec::new(),
        });
    }
    let rest = len as u64 - first_len;
    let pages = rest.div_ceil(page);
    if pages == 1 {
        return Some(Prps {
            prp1: start,
            prp2: Some(next(0)),
            list: Vec::new(),
        });
    }
    if pages > PRP_LIST_ENTRIES as u64 {
        return None;
    }
    Some(Prps {
        prp1: start,
        prp2: None,
        list: (0..pages).map(&next).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_needs_only_prp1() {
        assert_eq!(
            prps(0x10_0000, 4096),
            Some(Prps {
                prp1: 0x10_0000,
                prp2: None,
                list: vec![]
            })
        );
        assert_eq!(prps(0x10_0ffc, 4).unwrap().prp2, None);
    }

    #[test]
    fn two_pages_put_the_second_in_prp2() {
        let p = prps(0x10_0200, 4096).unwrap();
        assert_eq!((p.prp1, p.prp2), (0x10_0200, Some(0x10_1000)));
        let p = prps(0x10_0000, 8192).unwrap();
        assert_eq!(p.prp2, Some(0x10_1000));
        assert!(p.list.is_empty());
    }

    #[test]
    fn more_pages_go_to_a_list_of_page_addresses() {
        let p = prps(0x10_0800, 3 * 4096).unwrap();
        assert_eq!(p.prp1, 0x10_0800);
        assert_eq!(p.list, [0x10_1000, 0x10_2000, 0x10_3000]);
        let p = prps(0x20_0000, 4096 * (1 + PRP_LIST_ENTRIES)).unwrap();
        assert_eq!(p.list.len(), PRP_LIST_ENTRIES);
        assert_eq!(prps(0x20_0000, 4096 * (2 + PRP_LIST_ENTRIES)), None);
    }
}
