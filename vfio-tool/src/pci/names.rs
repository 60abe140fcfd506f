//! The names `lspci -vvv` gives capability ids, for those it names without
//! decoding their fields.

/// The name of standard capability `id` when it has a fixed one, as
/// `lspci -vvv` prints it after the offset. `None` for the ids whose line
/// carries fields or that have detail lines (power management, MSI,
/// MSI-X, PCI Express, vendor specific, PCI Advanced Features, ...), which
/// [`decode`](super::decode) words itself.
pub fn standard_name(id: u8) -> Option<&'static str> {
    Some(match id {
        0x00 => "Null",
        0x03 => "Vital Product Data",
        0x06 => "CompactPCI hot-swap <?>",
        0x0B => "CompactPCI central resource control <?>",
        0x0C => "Hot-plug capable",
        0x0E => "AGP3 <?>",
        0x0F => "Secure device <?>",
        _ => return None,
    })
}

/// The name of PCI Express extended capability `id` when it has a fixed
/// one, as `lspci -vvv` prints it after the offset and version. `None` for
/// an id lspci does not know and for those whose line carries fields
/// (serial number, vendor specific, designated vendor-specific).
pub fn extended_name(id: u16) -> Option<&'static str> {
    Some(match id {
        0x00 => "Null",
        0x01 => "Advanced Error Reporting",
        0x02 | 0x09 => "Virtual Channel",
        0x04 => "Power Budgeting <?>",
        0x05 => "Root Complex Link",
        0x06 => "Root Complex Internal Link <?>",
        0x07 => "Root Complex Event Collector Endpoint Association",
        0x08 => "Multi-Function Virtual Channel <?>",
        0x0A => "Root Complex Register Block <?>",
        0x0D => "Access Control Services",
        0x0E => "Alternative Routing-ID Interpretation (ARI)",
        0x0F => "Address Translation Service (ATS)",
        0x10 => "Single Root I/O Virtualization (SR-IOV)",
        0x11 => "Multi-Root I/O Virtualization <?>",
        0x12 => "Multicast",
        0x13 => "Page Request Interface (PRI)",
        0x15 => "Physical Resizable BAR",
        0x16 => "Dynamic Power Allocation <?>",
        0x17 => "Transaction Processing Hints",
        0x18 => "Latency Tolerance Reporting",
        0x19 => "Secondary PCI Express",
        0x1A => "Protocol Multiplexing <?>",
        0x1B => "Process Address Space ID (PASID)",
        0x1C => "LN Requester <?>",
        0x1D => "Downstream Port Containment",
        0x1E => "L1 PM Substates",
        0x1F => "Precision Time Measurement",
        0x20 => "PCI Express over M_PHY <?>",
        0x21 => "FRS Queueing <?>",
        0x22 => "Readiness Time Reporting <?>",
        0x24 => "Virtual Resizable BAR",
        0x25 => "Data Link Feature <?>",
        0x26 => "Physical Layer 16.0 GT/s <?>",
        0x27 => "Lane Margining at the Receiver <?>",
        0x28 => "Hierarchy ID <?>",
        0x29 => "Native PCIe Enclosure Management <?>",
        0x2E => "Data Object Exchange",
        _ => return None,
    })
}
