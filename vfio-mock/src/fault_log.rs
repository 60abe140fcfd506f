//! The host's record of DMA remapping faults: what an administrator reads
//! in the kernel log when a device's DMA is refused by the IOMMU
//! (`DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault addr 0x...
//! [fault reason 0x05] PTE Write access is not set` on intel-iommu).

use parking_lot::Mutex;
use vfio_core::PciAddress;

/// The direction of a faulting DMA, as the fault record's type bit gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultAccess {
    /// The device read memory (`DMA Read`).
    Read,
    /// The device wrote memory (`DMA Write`).
    Write,
}

/// One DMA remapping fault record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IommuFault {
    /// The requester (source id): the device whose DMA was refused.
    pub requester: PciAddress,
    /// The page of the first refused byte: VT-d records the faulting
    /// address with its low 12 bits clear.
    pub page: u64,
    /// Read or write.
    pub access: FaultAccess,
    /// The VT-d fault reason code.
    pub reason: u8,
}

/// VT-d fault reason: the address is beyond the domain's address width.
pub const REASON_BEYOND_MGAW: u8 = 0x04;
/// VT-d fault reason: a write through an entry without write permission
/// (an unmapped IOVA has no permission at all).
pub const REASON_NO_WRITE: u8 = 0x05;
/// VT-d fault reason: a read through an entry without read permission.
pub const REASON_NO_READ: u8 = 0x06;

impl IommuFault {
    /// The kernel's text for the reason code (intel-iommu's `dma_remap_fault_reasons`).
    pub fn reason_text(&self) -> &'static str {
        match self.reason {
            REASON_BEYOND_MGAW => "Access beyond MGAW",
            REASON_NO_WRITE => "PTE Write access is not set",
            REASON_NO_READ => "PTE Read access is not set",
            _ => "Unknown",
        }
    }
}

impl std::fmt::Display for IommuFault {
    /// The record as Linux 6.1's intel-iommu prints it (after `DMAR: `).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.access {
            FaultAccess::Read => "DMA Read",
            FaultAccess::Write => "DMA Write",
        };
        let a = self.requester;
        write!(
            f,
            "[{kind} NO_PASID] Request device [{:02x}:{:02x}.{}] fault addr {:#x} [fault reason {:#04x}] {}",
            a.bus(),
            a.device(),
            a.function(),
            self.page,
            self.reason,
            self.reason_text()
        )
    }
}

/// How many records the log keeps; later faults are counted, not kept
/// (the kernel rate-limits its fault messages too).
pub(crate) const CAPACITY: usize = 4096;

/// Every fault since the host was built, oldest first.
#[derive(Debug, Default)]
pub(crate) struct FaultLog {
    state: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    records: Vec<IommuFault>,
    dropped: u64,
}

impl FaultLog {
    /// Records a fault.
    pub(crate) fn record(&self, fault: IommuFault) {
        let mut s = self.state.lock();
        if s.records.len() < CAPACITY {
            s.records.push(fault);
        } else {
            s.dropped = s.dropped.saturating_add(1);
        }
    }

    /// The records kept, oldest first, and how many were not kept.
    pub(crate) fn snapshot(&self) -> (Vec<IommuFault>, u64) {
        let s = self.state.lock();
        (s.records.clone(), s.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_prints_as_intel_iommu_logs_it() {
        let fault = IommuFault {
            requester: PciAddress::new(0, 0, 2, 0).unwrap(),
            page: 0x10_1000,
            access: FaultAccess::Write,
            reason: REASON_NO_WRITE,
        };
        assert_eq!(
            fault.to_string(),
            "[DMA Write NO_PASID] Request device [00:02.0] fault addr 0x101000 \
             [fault reason 0x05] PTE Write access is not set"
        );
    }

    #[test]
    fn the_log_keeps_its_capacity_and_counts_the_rest() {
        let log = FaultLog::default();
        let fault = IommuFault {
            requester: PciAddress::new(0, 0, 2, 0).unwrap(),
            page: 0,
            access: FaultAccess::Read,
            reason: REASON_NO_READ,
        };
        for _ in 0..CAPACITY + 3 {
            log.record(fault);
        }
        let (records, dropped) = log.snapshot();
        assert_eq!((records.len(), dropped), (CAPACITY, 3));
    }
}
