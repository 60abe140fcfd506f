//! Device profiles captured through vfio-pci in the project's QEMU guest,
//! committed under `vfio-mock/profiles/linux-<series>/<name>.json`, and the
//! guest's devices the mock replays from them.
//!
//! Each device was captured on each kernel the mock imitates
//! (`cargo run -p conformance-tests -- --capture-profiles vfio-mock/profiles`
//! boots the guest on both and writes them): the two captures differ only
//! in what the kernels do differently (Linux 6.1 reports MSI and MSI-X as
//! `NORESIZE`), so a host replays the capture of the kernel it imitates.
//! The conformance suite checks every profile against a fresh capture on
//! the real kernel (`capture_matches_the_committed_profile[NAME]`) and runs
//! the device-agnostic cases on each device on both backends.

use crate::host::KernelVersion;
use std::sync::OnceLock;
use vfio_core::PciAddress;
use vfio_profile::DeviceProfile;

/// A QEMU device of the guest that the mock replays from its profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedDevice {
    /// The device's name: its profile's file name, the guest's
    /// `VFIO_GUEST_<NAME>`, and the label of the conformance cases run on it.
    pub name: &'static str,
    /// The QEMU device it was captured from.
    pub qemu: &'static str,
    /// Its slot on the guest's root bus (function 0).
    pub slot: u8,
    /// Its IOMMU group in the guest (with an IOMMU).
    pub group: u32,
    /// Its no-IOMMU group in the guest booted without an IOMMU.
    pub noiommu_group: u32,
}

impl CapturedDevice {
    /// Where the guest has it: 0000:00:`slot`.0.
    pub fn address(&self) -> PciAddress {
        PciAddress::new(0, 0, self.slot, 0).expect("a root-bus slot below 32 is a valid address")
    }

    /// Its profile as captured on `kernel`.
    pub fn profile(&self, kernel: KernelVersion) -> &'static DeviceProfile {
        let i = CAPTURED
            .iter()
            .position(|d| d.name == self.name)
            .expect("a device of CAPTURED");
        let set = match kernel {
            KernelVersion::V6_1 => &PROFILES_6_1,
            KernelVersion::V6_12 => &PROFILES_6_12,
        };
        &set.get_or_init(|| parse_all(kernel))[i]
    }
}

/// The guest's captured devices, at 00:06.0 to 00:0a.0, each alone in its
/// group and bound to vfio-pci, in the order the guest binds them.
pub const CAPTURED: [CapturedDevice; 5] = [
    CapturedDevice {
        name: "e1000e",
        qemu: "e1000e",
        slot: 6,
        group: 5,
        noiommu_group: 4,
    },
    CapturedDevice {
        name: "virtio_net",
        qemu: "virtio-net-pci",
        slot: 7,
        group: 6,
        noiommu_group: 5,
    },
    CapturedDevice {
        name: "xhci",
        qemu: "qemu-xhci",
        slot: 8,
        group: 7,
        noiommu_group: 6,
    },
    CapturedDevice {
        name: "ivshmem",
        qemu: "ivshmem-plain",
        slot: 9,
        group: 8,
        noiommu_group: 7,
    },
    CapturedDevice {
        name: "testdev",
        qemu: "pci-testdev",
        slot: 10,
        group: 9,
        noiommu_group: 8,
    },
];

/// The committed JSON of each device of [`CAPTURED`], in its order, on `kernel`.
pub fn profile_texts(kernel: KernelVersion) -> [&'static str; 5] {
    macro_rules! texts {
        ($dir:literal) => {
            [
                include_str!(concat!("../../profiles/", $dir, "/e1000e.json")),
                include_str!(concat!("../../profiles/", $dir, "/virtio_net.json")),
                include_str!(concat!("../../profiles/", $dir, "/xhci.json")),
                include_str!(concat!("../../profiles/", $dir, "/ivshmem.json")),
                include_str!(concat!("../../profiles/", $dir, "/testdev.json")),
            ]
        };
    }
    match kernel {
        KernelVersion::V6_1 => texts!("linux-6.1"),
        KernelVersion::V6_12 => texts!("linux-6.12"),
    }
}

static PROFILES_6_1: OnceLock<Vec<DeviceProfile>> = OnceLock::new();
static PROFILES_6_12: OnceLock<Vec<DeviceProfile>> = OnceLock::new();

/// Parses the committed profiles of `kernel` (once per process: hosts are
/// built many times). They are part of the crate, and a test parses them,
/// so a failure here is a broken build.
fn parse_all(kernel: KernelVersion) -> Vec<DeviceProfile> {
    profile_texts(kernel)
        .iter()
        .zip(&CAPTURED)
        .map(|(text, d)| {
            DeviceProfile::from_json(text).unwrap_or_else(|e| {
                panic!(
                    "the committed profile of {} on Linux {} is refused: {e}",
                    d.name,
                    kernel.series()
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_committed_profile_parses_validates_and_names_its_kernel_and_address() {
        for kernel in [KernelVersion::V6_1, KernelVersion::V6_12] {
            for d in CAPTURED {
                let p = d.profile(kernel);
                p.validate().unwrap();
                assert_eq!(crate::profile_kernel(p), Some(kernel), "{}", d.name);
                assert_eq!(p.source.pci_address, d.address().to_string());
                assert_eq!(p.source.driver, "vfio-pci");
                assert_eq!(
                    p.to_json(),
                    profile_texts(kernel)[CAPTURED.iter().position(|c| c == &d).unwrap()]
                );
            }
        }
    }

    #[test]
    fn the_kernels_captures_differ_only_in_the_release_and_msi_noresize() {
        for d in CAPTURED {
            let (old, new) = (
                d.profile(KernelVersion::V6_1),
                d.profile(KernelVersion::V6_12),
            );
            let mut old = old.clone();
            old.source.kernel_release = new.source.kernel_release.clone();
            for (q, n) in old.irqs.iter_mut().zip(&new.irqs) {
                // VFIO_IRQ_INFO_NORESIZE: 6.1 sets it on MSI and MSI-X.
                if q.flags != n.flags {
                    assert_eq!(q.flags & !0x8, n.flags, "{} irq {}", d.name, q.index);
                    q.flags = n.flags;
                }
            }
            assert_eq!(&old, new, "{}", d.name);
        }
    }
}
