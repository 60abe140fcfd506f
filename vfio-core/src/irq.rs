//! The arguments of `VFIO_DEVICE_SET_IRQS`.

use std::os::fd::BorrowedFd;

/// `VFIO_IRQ_SET_ACTION_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IrqAction {
    /// Mask the vectors (INTx only on vfio-pci).
    Mask,
    /// Unmask the vectors (INTx only on vfio-pci).
    Unmask,
    /// Bind, unbind, fire or disable the vectors' triggers.
    Trigger,
}

/// `VFIO_IRQ_SET_DATA_*` and the data that goes with it.
#[derive(Debug, Clone, Copy)]
pub enum IrqData<'a> {
    /// `DATA_NONE` for `count` vectors. With [`IrqAction::Trigger`] and a count
    /// of 0 it disables the index; with a count it fires the bound vectors.
    None {
        /// Number of vectors.
        count: u32,
    },
    /// `DATA_BOOL`: one flag per vector, acting on those set.
    Bool(&'a [bool]),
    /// `DATA_EVENTFD`: one eventfd per vector; `None` (fd -1) unbinds that vector.
    Eventfds(&'a [Option<BorrowedFd<'a>>]),
}

impl IrqData<'_> {
    /// How many vectors the call covers.
    pub fn count(&self) -> usize {
        match self {
            Self::None { count } => *count as usize,
            Self::Bool(b) => b.len(),
            Self::Eventfds(f) => f.len(),
        }
    }
}
