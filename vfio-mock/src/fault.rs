//! Fault injection: the next N calls of an operation fail with a chosen errno.

use nix::errno::Errno;
use parking_lot::Mutex;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use vfio_core::Operation;

/// Planned failures, consumed in the order they were planned.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// True while any fault is planned: the register-access fast path reads
    /// only this.
    armed: AtomicBool,
    plan: Mutex<Vec<PendingFault>>,
}

/// A planned failure not (or not entirely) used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingFault {
    /// The operation that was to fail.
    pub operation: Operation,
    /// The errno it was to fail with.
    pub errno: Errno,
    /// How many calls were still to fail.
    pub remaining: u32,
}

/// The error of [`MockHost::done`](crate::MockHost::done): faults were
/// planned that no call consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconsumedFaults {
    /// The faults left over, in plan order.
    pub pending: Vec<PendingFault>,
    /// Failures of the mock's own bookkeeping (rewriting its fake
    /// `/proc/interrupts`), which no caller could be told about.
    pub host_errors: Vec<String>,
}

impl fmt::Display for UnconsumedFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in &self.pending {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(
                f,
                "{} call(s) of `{}` were to fail with {} but were never made",
                p.remaining, p.operation, p.errno
            )?;
        }
        for e in &self.host_errors {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "mock host error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnconsumedFaults {}

impl Faults {
    /// Plans `count` failures of `operation` with `errno`, after any already planned.
    pub(crate) fn fail_next(&self, operation: Operation, errno: Errno, count: u32) {
        if count == 0 {
            return;
        }
        let mut plan = self.plan.lock();
        plan.push(PendingFault {
            operation,
            errno,
            remaining: count,
        });
        self.armed.store(true, Ordering::Release);
    }

    /// The errno the current call of `operation` must fail with, if one is planned.
    /// With nothing planned, one atomic load, inlined into hot paths
    /// (register access); the plan itself is searched out of line.
    #[inline(always)]
    pub(crate) fn take(&self, operation: Operation) -> Option<Errno> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        self.take_planned(operation)
    }

    #[inline(never)]
    fn take_planned(&self, operation: Operation) -> Option<Errno> {
        let mut plan = self.plan.lock();
        let at = plan.iter().position(|p| p.operation == operation)?;
        let fault = plan.get_mut(at)?;
        let errno = fault.errno;
        fault.remaining = fault.remaining.saturating_sub(1);
        if fault.remaining == 0 {
            plan.remove(at);
        }
        if plan.is_empty() {
            self.armed.store(false, Ordering::Release);
        }
        Some(errno)
    }

    /// What is still planned.
    pub(crate) fn pending(&self) -> Vec<PendingFault> {
        self.plan.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_consumed_per_operation_in_plan_order() {
        let f = Faults::default();
        assert_eq!(f.take(Operation::OpenDevice), None);
        f.fail_next(Operation::OpenDevice, Errno::ENODEV, 2);
        f.fail_next(Operation::OpenDevice, Errno::EBUSY, 1);
        f.fail_next(Operation::Reset, Errno::EIO, 1);
        assert_eq!(f.take(Operation::SetIrqs), None);
        assert_eq!(f.take(Operation::OpenDevice), Some(Errno::ENODEV));
        assert_eq!(f.take(Operation::OpenDevice), Some(Errno::ENODEV));
        assert_eq!(f.take(Operation::OpenDevice), Some(Errno::EBUSY));
        assert_eq!(f.take(Operation::OpenDevice), None);
        assert_eq!(
            f.pending(),
            vec![PendingFault {
                operation: Operation::Reset,
                errno: Errno::EIO,
                remaining: 1
            }]
        );
        assert_eq!(f.take(Operation::Reset), Some(Errno::EIO));
        assert!(f.pending().is_empty());
        assert!(!f.armed.load(Ordering::Acquire));
    }
}
