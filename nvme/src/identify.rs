//! Checking what the controller identifies itself as before the driver
//! relies on it.

use crate::buffer::PAGE_SIZE;
use crate::error::{IdentifyProblem, NvmeError, Result};
use crate::prp::PRP_LIST_ENTRIES;
use nvme_spec::identify::{IdentifyController, IdentifyNamespace};

/// The namespace the driver does I/O to, as Identify Namespace describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace identifier.
    pub nsid: u32,
    /// NSZE: the size in logical blocks.
    pub blocks: u64,
    /// NCAP: the capacity in logical blocks.
    pub capacity: u64,
    /// The logical block size in bytes.
    pub block_size: u32,
    /// The LBA format in use (FLBAS).
    pub format_index: usize,
    /// DLFEAT: bits 2:0 say what reading a deallocated block returns.
    pub dlfeat: u8,
}

/// The longest transfer the driver builds PRPs for: one page in PRP1 and
/// one full PRP list.
const PRP_LIMIT: usize = PAGE_SIZE * (1 + PRP_LIST_ENTRIES);

/// The longest transfer the controller takes (MDTS, in 4 KiB pages since
/// CAP.MPSMIN is 0) capped to what one PRP list covers.
pub(crate) fn max_transfer(c: &IdentifyController) -> Result<usize> {
    match c.mdts {
        0 => Ok(PRP_LIMIT),
        m @ 1..=20 => Ok((PAGE_SIZE << m).min(PRP_LIMIT)),
        m => Err(NvmeError::Identify(IdentifyProblem::Mdts(m))),
    }
}

/// Checks the controller structure: entry sizes the driver uses, at least
/// the namespace `nsid`, and a transfer size it can compute.
pub(crate) fn check_controller(c: &IdentifyController, nsid: u32) -> Result<usize> {
    let (min, max) = (c.sqes & 0xf, c.sqes >> 4);
    if min > 6 || max < 6 {
        return Err(NvmeError::Identify(IdentifyProblem::Sqes(c.sqes)));
    }
    let (min, max) = (c.cqes & 0xf, c.cqes >> 4);
    if min > 4 || max < 4 {
        return Err(NvmeError::Identify(IdentifyProblem::Cqes(c.cqes)));
    }
    if c.nn == 0 {
        return Err(NvmeError::Identify(IdentifyProblem::NoNamespaces));
    }
    if nsid > c.nn {
        return Err(NvmeError::Identify(IdentifyProblem::NamespaceAboveNn {
            nsid,
            nn: c.nn,
        }));
    }
    max_transfer(c)
}

/// Checks the namespace structure: some blocks, and a format in range with
/// a block size from 512 bytes to 64 KiB and no metadata.
pub(crate) fn check_namespace(ns: &IdentifyNamespace, nsid: u32) -> Result<Namespace> {
    if ns.nsze == 0 || ns.ncap > ns.nsze {
        return Err(NvmeError::Identify(IdentifyProblem::NamespaceSize {
            nsze: ns.nsze,
            ncap: ns.ncap,
        }));
    }
    let index = ns.format_index();
    if index > usize::from(ns.nlbaf) {
        return Err(NvmeError::Identify(IdentifyProblem::FormatIndex {
            index,
            nlbaf: ns.nlbaf,
        }));
    }
    let format = ns.format();
    let unsupported = NvmeError::Identify(IdentifyProblem::LbaFormat {
        lbads: format.lbads(),
        metadata: format.metadata_size(),
    });
    if !(9..=16).contains(&format.lbads()) || format.metadata_size() != 0 {
        return Err(unsupported);
    }
    Ok(Namespace {
        nsid,
        blocks: ns.nsze,
        capacity: ns.ncap,
        block_size: format.block_size().ok_or(unsupported)?,
        format_index: index,
        dlfeat: ns.dlfeat,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    fn controller() -> IdentifyController {
        let mut c = IdentifyController::new_zeroed();
        c.sqes = 0x66;
        c.cqes = 0x44;
        c.nn = 1;
        c.mdts = 7;
        c
    }

    fn namespace() -> IdentifyNamespace {
        let mut ns = IdentifyNamespace::new_zeroed();
        ns.nsze = 1 << 17;
        ns.ncap = 1 << 17;
        ns.lbaf[0] = 9 << 16;
        ns
    }

    #[test]
    fn a_sane_controller_gives_its_transfer_size() {
        assert_eq!(check_controller(&controller(), 1).unwrap(), 512 << 10);
        let mut c = controller();
        c.mdts = 0;
        assert_eq!(check_controller(&c, 1).unwrap(), PRP_LIMIT);
    }

    #[test]
    fn nonsense_in_identify_controller_is_refused_by_name() {
        let problem = |c: IdentifyController, nsid| match check_controller(&c, nsid) {
            Err(NvmeError::Identify(p)) => p,
            other => panic!("{other:?}"),
        };
        let mut c = controller();
        c.mdts = 40;
        assert_eq!(problem(c, 1), IdentifyProblem::Mdts(40));
        let mut c = controller();
        c.sqes = 0x55;
        assert_eq!(problem(c, 1), IdentifyProblem::Sqes(0x55));
        let mut c = controller();
        c.cqes = 0x55;
        assert_eq!(problem(c, 1), IdentifyProblem::Cqes(0x55));
        let mut c = controller();
        c.nn = 0;
        assert_eq!(problem(c, 1), IdentifyProblem::NoNamespaces);
        assert_eq!(
            problem(controller(), 3),
            IdentifyProblem::NamespaceAboveNn { nsid: 3, nn: 1 }
        );
    }

    #[test]
    fn nonsense_in_identify_namespace_is_refused_by_name() {
        let problem = |ns: IdentifyNamespace| match check_namespace(&ns, 1) {
            Err(NvmeError::Identify(p)) => p,
            other => panic!("{other:?}"),
        };
        let mut ns = namespace();
        ns.nsze = 0;
        ns.ncap = 0;
        assert_eq!(
            problem(ns),
            IdentifyProblem::NamespaceSize { nsze: 0, ncap: 0 }
        );
        let mut ns = namespace();
        ns.flbas = 3;
        assert_eq!(
            problem(ns),
            IdentifyProblem::FormatIndex { index: 3, nlbaf: 0 }
        );
        let mut ns = namespace();
        ns.lbaf[0] = 8 | (12 << 16);
        assert_eq!(
            problem(ns),
            IdentifyProblem::LbaFormat {
                lbads: 12,
                metadata: 8
            }
        );
        let mut ns = namespace();
        ns.lbaf[0] = 0;
        assert_eq!(
            problem(ns),
            IdentifyProblem::LbaFormat {
                lbads: 0,
                metadata: 0
            }
        );
        let good = check_namespace(&namespace(), 1).unwrap();
        assert_eq!((good.blocks, good.block_size), (1 << 17, 512));
    }
}
