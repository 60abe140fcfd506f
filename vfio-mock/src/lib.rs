//! A simulated VFIO host and PCI devices that behave like Linux's vfio-pci.
#![deny(missing_docs)]
