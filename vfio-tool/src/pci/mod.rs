//! PCI config space decoded for people: the header fields and the
//! capability lists, named and worded as `lspci -vvv` words them.
//!
//! The lists are walked by `vfio_core::parse::pci_caps` (bounds-checked,
//! loop-safe); this module only gives each capability its name and the
//! detail lines `lspci -vvv` prints for it. Each detail line [`decode`]
//! gives is one `lspci -vvv` prints too, word for word, and a capability
//! marked [`Capability::details_complete`] has all of them (the test
//! `lspci_agreement` holds it to that on every device it can reach); where
//! lspci prints more lines, this prints fewer, never different ones. The
//! differences are listed in the crate docs.

mod caps;
mod express;
mod extended;
mod header;
mod names;
mod regs;

pub use caps::{Capability, CapabilityList, decode, decode_at};
pub use header::{Bar, Header, header};
pub use names::{extended_name, standard_name};
