//! Devices replayed from a captured [`DeviceProfile`]: the device, region
//! and IRQ info, config space and BARs the profile holds, answered as it
//! says.
//!
//! What the profile leaves to the mock: the bits of config space capture
//! did not probe are writable where the mock's own description of
//! vfio-pci makes them so (the command register's decode and bus master
//! bits, PM Control/Status, MSI Message Control's low byte, PCIe Device
//! and Link Control, as [`PciDeviceBuilder`]'s devices have them) and
//! read-only elsewhere; MSI, MSI-X and INTx are wired from the
//! capabilities config space holds and the IRQ info; a BAR holds the
//! profile's contents when it has them (also after every reset), else
//! zeroes; the expansion ROM reads as zeroes.

use crate::bar::BarMemory;
use crate::builder::{
    BarKind, BarSpec, BuildError, DeviceSpec, MsiSpec, MsixSpec, PciDeviceBuilder,
};
use crate::config_space::{ConfigSpace, reg};
use crate::host::{KernelVersion, MockHostBuilder};
use nix::errno::Errno;
use std::sync::Arc;
use vfio_core::parse::pci_caps::{self, id};
use vfio_core::{
    DeviceFlags, DeviceInfo, IrqFlags, IrqIndex, IrqInfo, PciAddress, RegionFlags, RegionInfo,
};
use vfio_profile::{BarKindProfile, DeviceProfile};

/// What a profiled device answers from its profile rather than from its
/// builder's description.
#[derive(Debug, Clone)]
pub(crate) struct Replay {
    pub device: DeviceInfo,
    /// Region info by index, the kernel's refusal where it refused one
    /// (the offset is filled in when asked).
    pub regions: Vec<Result<RegionInfo, Errno>>,
    /// IRQ info by index, or the kernel's refusal.
    pub irqs: Vec<Result<IrqInfo, Errno>>,
    /// Each BAR's contents, where the profile has them.
    pub contents: [Option<Arc<[u8]>>; 6],
}

impl Replay {
    /// The vectors of each of the first five IRQ indexes.
    pub(crate) fn irq_counts(&self) -> [u32; 5] {
        let mut counts = [0; 5];
        for (c, q) in counts.iter_mut().zip(&self.irqs) {
            *c = q.as_ref().map_or(0, |q| q.count);
        }
        counts
    }
}

impl PciDeviceBuilder {
    /// A device that answers every device-info, region-info, IRQ-info and
    /// config-space call as `profile` says, with BARs of its sizes. The
    /// profile is checked ([`DeviceProfile::validate`]) when the host is
    /// built, and a broken one is a [`BuildError`]. Of the builder's other
    /// settings only [`model`](Self::model) applies: a model gives the
    /// replayed device its registers' behaviour.
    ///
    /// What the profile leaves to the mock: the config bits capture did not
    /// probe are writable where the mock's own devices make them so (the
    /// command register's decode and bus master bits, PM Control/Status,
    /// MSI Message Control's low byte, PCIe Device and Link Control) and
    /// read-only elsewhere; MSI, MSI-X and INTx are wired from the
    /// capabilities config space holds and the IRQ info; a BAR holds the
    /// profile's contents when it has them (again after every reset), else
    /// zeroes, and the expansion ROM reads as zeroes; a device-specific
    /// region (index 9 and up) has its info but cannot be read or written;
    /// hot reset and `VFIO_DEVICE_FEATURE` answer as for any mock device.
    /// The IRQ flags are those of the kernel the profile was captured on
    /// ([`profile_kernel`]).
    ///
    /// Not checked on a kernel (the mock's choices where a profile is
    /// silent): the writability given to unprobed bits, and BAR contents
    /// put back at a reset (a real device resets its registers to its own
    /// power-on values, which a capture of a running device need not hold).
    pub fn from_profile(profile: &DeviceProfile) -> Self {
        let mut builder = Self::new(profile.ids.vendor, profile.ids.device);
        builder.profile = Some(Box::new(profile.clone()));
        builder
    }
}

impl PciDeviceBuilder {
    /// A device of the guest replayed from its committed capture
    /// ([`profiles::CAPTURED`](crate::profiles::CAPTURED)) on the kernel the
    /// host imitates, whichever [`MockHostBuilder::kernel`] ends up saying:
    /// [`from_profile`](Self::from_profile) of
    /// [`CapturedDevice::profile`](crate::profiles::CapturedDevice::profile).
    pub fn captured(device: crate::profiles::CapturedDevice) -> Self {
        let ids = device.profile(KernelVersion::V6_1).ids;
        let mut builder = Self::new(ids.vendor, ids.device);
        builder.captured = Some(device);
        builder
    }
}

impl MockHostBuilder {
    /// Adds a device replayed from `profile` at `address` in IOMMU group
    /// `group`, bound to vfio-pci: [`device`](Self::device) with
    /// [`PciDeviceBuilder::from_profile`].
    #[must_use]
    pub fn profiled_device(self, address: PciAddress, group: u32, profile: &DeviceProfile) -> Self {
        self.device(address, group, PciDeviceBuilder::from_profile(profile))
    }
}

impl crate::MockHost {
    /// A host builder for replaying `profile` as it was captured: imitating
    /// the kernel it was captured on ([`profile_kernel`]; Linux 6.1 for a
    /// release the mock does not imitate), with the device at the address
    /// its `source` names, in the IOMMU group it names (group 1 when it
    /// names none). A `source` address that does not parse is a
    /// [`BuildError`]. More devices, or another kernel, can be added to the
    /// builder returned.
    pub fn replaying(profile: &DeviceProfile) -> Result<MockHostBuilder, BuildError> {
        let address: PciAddress = profile.source.pci_address.parse().map_err(|e| {
            BuildError::new(format!(
                "the profile's source address `{}`: {e}",
                profile.source.pci_address
            ))
        })?;
        Ok(Self::builder()
            .kernel(profile_kernel(profile).unwrap_or_default())
            .profiled_device(address, profile.source.iommu_group.unwrap_or(1), profile))
    }
}

/// The mock kernel whose vfio-pci matches the kernel `profile` was captured
/// on (its `source.kernel_release`), if it is one the mock imitates. A
/// host replaying a profile should run that kernel: the IRQ flags a
/// profile holds (MSI-X `NORESIZE`) are that kernel's.
pub fn profile_kernel(profile: &DeviceProfile) -> Option<KernelVersion> {
    KernelVersion::from_release(&profile.source.kernel_release)
}

/// The write mask the mock's own devices give the config bits a profile
/// left unprobed: the command register, PM Control/Status, MSI Message
/// Control's low byte, PCIe Device and Link Control; 0 elsewhere.
fn unprobed_wmask(config: &[u8]) -> Vec<u8> {
    let mut mask = ConfigSpace::new(config.len());
    mask.set_wmask(reg::COMMAND, &reg::COMMAND_WRITABLE.to_le_bytes());
    for cap in pci_caps::capabilities(config).unwrap_or_default() {
        let at = usize::from(cap.offset);
        match cap.id {
            id::PM => mask.set_wmask(at + 4, &crate::builder::PM_CONTROL_WRITABLE.to_le_bytes()),
            id::MSI => mask.set_wmask(at + 2, &[0xff]),
            id::PCIE => {
                mask.set_wmask(at + 8, &crate::builder::PCIE_DEVCTL_WRITABLE.to_le_bytes());
                mask.set_wmask(
                    at + 0x10,
                    &crate::builder::PCIE_LNKCTL_WRITABLE.to_le_bytes(),
                );
            }
            _ => {}
        }
    }
    mask.wmask().to_vec()
}

/// The device spec of a profiled device.
pub(crate) fn spec(profile: &DeviceProfile) -> Result<DeviceSpec, BuildError> {
    profile
        .validate()
        .map_err(|e| BuildError::new(format!("profile refused: {e}")))?;
    let bytes = profile.config.bytes.as_slice();
    let mut config = ConfigSpace::new(bytes.len());
    config.set(0, bytes);
    let defaults = unprobed_wmask(bytes);
    let wmask: Vec<u8> = profile
        .config
        .writable
        .as_slice()
        .iter()
        .zip(profile.config.probed.as_slice())
        .zip(&defaults)
        .map(|((w, p), d)| (w & p) | (d & !p))
        .collect();
    config.set_wmask(0, &wmask);

    let caps = pci_caps::capabilities(bytes)
        .map_err(|e| BuildError::new(format!("profile's capabilities: {e}")))?;
    let offset_of = |cap: u8| {
        caps.iter()
            .find(|c| c.id == cap)
            .map(|c| usize::from(c.offset))
    };
    let msi = match (pci_caps::msi(bytes), offset_of(id::MSI)) {
        (Ok(Some(m)), Some(at)) => Some((
            at,
            MsiSpec {
                vectors: m.vectors_capable,
                is_64bit: m.is_64bit,
                per_vector_mask: m.per_vector_masking,
            },
        )),
        (Err(e), _) => return Err(BuildError::new(format!("profile's MSI capability: {e}"))),
        _ => None,
    };
    let msix = match (pci_caps::msix(bytes), offset_of(id::MSIX)) {
        (Ok(Some(m)), Some(at)) => Some((
            at,
            MsixSpec {
                table_size: m.table_size,
                table_bar: m.table_bar,
                table_offset: m.table_offset,
                pba_bar: m.pba_bar,
                pba_offset: m.pba_offset,
            },
        )),
        (Err(e), _) => return Err(BuildError::new(format!("profile's MSI-X capability: {e}"))),
        _ => None,
    };

    let mut bars = [None; 6];
    let mut contents: [Option<Arc<[u8]>>; 6] = Default::default();
    for bar in &profile.bars {
        if bar.size > crate::bar::MAX_BAR_BYTES {
            return Err(BuildError::new(format!(
                "profile's BAR {} of {:#x} bytes is larger than the mock's {:#x}",
                bar.index,
                bar.size,
                crate::bar::MAX_BAR_BYTES
            )));
        }
        let i = bar.index as usize;
        if let Some(slot) = bars.get_mut(i) {
            *slot = Some(BarSpec {
                size: bar.size,
                kind: match bar.kind {
                    BarKindProfile::Memory32 => BarKind::Memory32,
                    BarKindProfile::Memory64 => BarKind::Memory64,
                    BarKindProfile::Io => BarKind::Io,
                },
                prefetchable: bar.prefetchable,
                mmappable: bar.mmappable,
            });
        }
        if let (Some(slot), Some(c)) = (contents.get_mut(i), &bar.contents) {
            *slot = Some(c.as_slice().into());
        }
    }

    let regions = profile
        .regions
        .iter()
        .map(|r| match r.refused {
            Some(errno) => Err(Errno::from_raw(errno)),
            None => Ok(RegionInfo {
                index: r.index,
                flags: RegionFlags(r.flags),
                size: r.size,
                offset: 0,
                caps: r.caps.iter().map(|c| c.to_cap()).collect(),
            }),
        })
        .collect();
    let irqs = profile
        .irqs
        .iter()
        .map(|q| match q.refused {
            Some(errno) => Err(Errno::from_raw(errno)),
            None => Ok(IrqInfo {
                index: IrqIndex(q.index),
                flags: IrqFlags(q.flags),
                count: q.count,
            }),
        })
        .collect();
    let device = DeviceInfo {
        flags: DeviceFlags(profile.device.flags),
        num_regions: profile.device.num_regions,
        num_irqs: profile.device.num_irqs,
    };
    let rom_size = profile
        .regions
        .get(vfio_core::region::ROM as usize)
        .map_or(0, |r| r.size);
    Ok(DeviceSpec {
        interrupt_pin: config.u8_at(reg::INTERRUPT_PIN),
        config,
        bars,
        rom_size,
        is_pcie: caps.iter().any(|c| c.id == id::PCIE),
        msi,
        msix,
        model_config: None,
        can_reset: device.flags.contains(DeviceFlags::RESET),
        sparse: Vec::new(),
        replay: Some(Replay {
            device,
            regions,
            irqs,
            contents,
        }),
    })
}

/// Writes a profiled device's captured BAR contents into its BARs, all but
/// the MSI-X table and PBA (the mock's own, as vfio-pci's are the kernel's).
pub(crate) fn fill_bars(
    bars: &[Option<Arc<BarMemory>>; 6],
    replay: &Replay,
    msix: Option<&MsixSpec>,
) {
    let structures = |bar: usize| -> [(u64, u64); 2] {
        let Some(m) = msix else {
            return [(0, 0); 2];
        };
        let n = u64::from(m.table_size);
        let table = u64::from(m.table_offset);
        let pba = u64::from(m.pba_offset);
        [
            if usize::from(m.table_bar) == bar {
                (table, table + n * 16)
            } else {
                (0, 0)
            },
            if usize::from(m.pba_bar) == bar {
                (pba, pba + n.div_ceil(64) * 8)
            } else {
                (0, 0)
            },
        ]
    };
    for (i, (memory, contents)) in bars.iter().zip(&replay.contents).enumerate() {
        let (Some(memory), Some(contents)) = (memory, contents) else {
            continue;
        };
        let skip = structures(i);
        for (word, chunk) in contents.chunks(8).enumerate() {
            let at = word as u64 * 8;
            if skip.iter().any(|&(start, end)| at >= start && at < end) {
                continue;
            }
            if chunk.iter().all(|&b| b == 0) {
                continue;
            }
            if chunk.len() == 8 {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                memory.write(at, 8, u64::from_le_bytes(b));
            } else {
                for (j, &b) in chunk.iter().enumerate() {
                    memory.write(at + j as u64, 1, u64::from(b));
                }
            }
        }
    }
}
