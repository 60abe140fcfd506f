//! PCI addresses in the kernel's `DDDD:BB:DD.F` form, as vfio-pci names devices.

use std::fmt;
use std::str::FromStr;

/// A PCI function's address: domain, bus, device (0..32) and function (0..8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PciAddress {
    domain: u32,
    bus: u8,
    device: u8,
    function: u8,
}

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a PCI address (expected DDDD:BB:DD.F): {reason}")]
pub struct PciAddressError {
    input: String,
    reason: &'static str,
}

impl PciAddress {
    /// An address from its parts; `None` when device >= 32 or function >= 8.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(Self {
            domain,
            bus,
            device,
            function,
        })
    }

    /// The PCI domain (segment).
    pub fn domain(&self) -> u32 {
        self.domain
    }

    /// The bus number.
    pub fn bus(&self) -> u8 {
        self.bus
    }

    /// The device (slot) number, below 32.
    pub fn device(&self) -> u8 {
        self.device
    }

    /// The function number, below 8.
    pub fn function(&self) -> u8 {
        self.function
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

fn hex_field<T: TryFrom<u32>>(s: &str, max_digits: usize) -> Option<T> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(s, 16)
        .ok()
        .and_then(|v| T::try_from(v).ok())
}

impl FromStr for PciAddress {
    type Err = PciAddressError;

    /// Parses `DDDD:BB:DD.F` (the form sysfs and vfio-pci use) or the short
    /// `BB:DD.F`, which means domain 0. Hex digits of either case.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| PciAddressError {
            input: input.to_owned(),
            reason,
        };
        let (rest, function) = input.rsplit_once('.').ok_or_else(|| err("no `.F`"))?;
        let function: u8 = hex_field(function, 1).ok_or_else(|| err("bad function"))?;
        let mut parts = rest.rsplitn(3, ':');
        let device: u8 = parts
            .next()
            .and_then(|d| hex_field(d, 2))
            .ok_or_else(|| err("bad device"))?;
        let bus: u8 = parts
            .next()
            .and_then(|b| hex_field(b, 2))
            .ok_or_else(|| err("bad bus"))?;
        let domain: u32 = match parts.next() {
            None => 0,
            Some(d) => hex_field(d, 8).ok_or_else(|| err("bad domain"))?,
        };
        Self::new(domain, bus, device, function).ok_or_else(|| err("device >= 32 or function >= 8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_sysfs_form() {
        let a: PciAddress = "0000:00:02.0".parse().unwrap();
        assert_eq!(
            (a.domain(), a.bus(), a.device(), a.function()),
            (0, 0, 2, 0)
        );
        let b: PciAddress = "10000:Af:1f.7".parse().unwrap();
        assert_eq!(
            (b.domain(), b.bus(), b.device(), b.function()),
            (0x10000, 0xaf, 0x1f, 7)
        );
        assert_eq!(b.to_string(), "10000:af:1f.7");
    }

    #[test]
    fn short_form_means_domain_zero() {
        let a: PciAddress = "03:00.1".parse().unwrap();
        assert_eq!(a.to_string(), "0000:03:00.1");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "0000:00:02",
            "0000:00:20.0",
            "0000:00:02.8",
            "0000:100:02.0",
            "0000:00:02.0 ",
            "+000:00:02.0",
            "0000:00::02.0",
            "g000:00:02.0",
            "0:0:0:0.0",
            "123456789:00:00.0",
            "0000:00:02.0\0",
        ] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad:?} parsed");
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(domain in any::<u32>(), bus in any::<u8>(), dev in 0u8..32, func in 0u8..8) {
            let a = PciAddress::new(domain, bus, dev, func).unwrap();
            prop_assert_eq!(a.to_string().parse::<PciAddress>().unwrap(), a);
        }

        #[test]
        fn never_panics_on_any_string(s in ".{0,24}") {
            let _ = s.parse::<PciAddress>();
        }
    }
}
