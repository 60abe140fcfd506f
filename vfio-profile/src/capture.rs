//! [`capture`]: a profile of an opened device, through any backend.

use crate::error::ProfileError;
use crate::format::{
    BarKindProfile, BarProfile, ConfigProfile, DeviceInfoProfile, DeviceProfile, FORMAT,
    IrqProfile, PciIds, RegionCapProfile, RegionProfile, Source, VERSION,
};
use crate::hex::HexBytes;
use crate::probe::probe_plan;
use vfio_core::{Device, IrqIndex, RegionFlags, VfioBackend, access, region};

/// What [`capture`] records beyond what it always does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureOptions {
    /// The profile's `source` block, as the caller knows it: capture
    /// invents none of it.
    pub source: Source,
    /// Also read every BAR whole through the device file. Off in
    /// [`CaptureOptions::new`]: reading a register can have side effects (a
    /// FIFO pops, a status clears), so ask only for a device known to be
    /// safe to read.
    pub bar_contents: bool,
}

impl CaptureOptions {
    /// Options with `source` and no BAR contents.
    pub fn new(source: Source) -> Self {
        Self {
            source,
            bar_contents: false,
        }
    }

    /// Asks for the BARs' contents too.
    #[must_use]
    pub fn with_bar_contents(mut self) -> Self {
        self.bar_contents = true;
        self
    }
}

fn device_error(step: impl Into<String>) -> impl FnOnce(vfio_core::Error) -> ProfileError {
    let step = step.into();
    move |source| ProfileError::Device { step, source }
}

/// Captures what `device` shows through vfio-pci: device info, every
/// region's and IRQ index's info, config space with its writable bits, the
/// BAR layout, and with [`CaptureOptions::bar_contents`] the BARs' bytes.
/// `B` names the backend: `capture::<LinuxBackend>(&device, &options)`.
///
/// Writability is probed one config byte at a time: the bits
/// [`probe_plan`] allows are written inverted, the byte is read back, and
/// the old value written again and checked. The bits the plan leaves out
/// are never written and are marked unprobed. If a call fails, or a byte
/// does not read back as it was, every byte changed so far has already
/// been restored and the capture fails.
///
/// The device should not be in use meanwhile: capture writes config space
/// (restoring it), and another user's write between a probe and its
/// restore would be undone.
pub fn capture<B: VfioBackend>(
    device: &B::Device,
    options: &CaptureOptions,
) -> Result<DeviceProfile, ProfileError> {
    let info = device
        .info()
        .map_err(device_error("VFIO_DEVICE_GET_INFO"))?;
    let mut regions = Vec::with_capacity(info.num_regions as usize);
    for index in 0..info.num_regions {
        regions.push(match device.region_info(index) {
            Ok(r) => RegionProfile {
                index,
                refused: None,
                flags: r.flags.bits(),
                size: r.size,
                caps: r
                    .caps
                    .iter()
                    .map(RegionCapProfile::from_cap)
                    .collect::<Result<_, _>>()?,
            },
            Err(e) => match e.errno() {
                Some(errno) => RegionProfile {
                    index,
                    refused: Some(errno as i32),
                    flags: 0,
                    size: 0,
                    caps: Vec::new(),
                },
                None => return Err(device_error(format!("region {index} info"))(e)),
            },
        });
    }
    let mut irqs = Vec::with_capacity(info.num_irqs as usize);
    for index in 0..info.num_irqs {
        irqs.push(match device.irq_info(IrqIndex(index)) {
            Ok(q) => IrqProfile {
                index,
                refused: None,
                flags: q.flags.bits(),
                count: q.count,
            },
            Err(e) => match e.errno() {
                Some(errno) => IrqProfile {
                    index,
                    refused: Some(errno as i32),
                    flags: 0,
                    count: 0,
                },
                None => return Err(device_error(format!("IRQ index {index} info"))(e)),
            },
        });
    }

    let config_len = regions.get(region::CONFIG as usize).map_or(0, |r| r.size);
    let config_len = usize::try_from(config_len)
        .ok()
        .filter(|&l| l == 256 || l == 4096)
        .ok_or(ProfileError::ConfigLength {
            len: config_len as usize,
        })?;
    let mut config = vec![0u8; config_len];
    access::read_exact::<B, _>(device, region::CONFIG, 0, &mut config)
        .map_err(device_error("reading config space"))?;
    let ids = PciIds::from_config(&config).ok_or(ProfileError::ConfigLength { len: config_len })?;
    let probed = probe_plan(&config)?;
    let writable = probe_writable::<B>(device, &config, &probed)?;

    let mut bars = Vec::new();
    for index in 0..6u32 {
        let Some(r) = regions.get(index as usize).filter(|r| r.size != 0) else {
            continue;
        };
        let low = config.get(0x10 + 4 * index as usize).copied().unwrap_or(0);
        let kind = BarKindProfile::from_register(low);
        let contents = if options.bar_contents {
            let len = usize::try_from(r.size).map_err(|_| ProfileError::Unrepresentable {
                what: format!("BAR {index} of {:#x} bytes in memory", r.size),
            })?;
            let mut bytes = vec![0u8; len];
            access::read_exact::<B, _>(device, index, 0, &mut bytes)
                .map_err(device_error(format!("reading BAR {index}")))?;
            Some(HexBytes(bytes))
        } else {
            None
        };
        bars.push(BarProfile {
            index,
            size: r.size,
            kind,
            prefetchable: kind != BarKindProfile::Io && low & 0x8 != 0,
            mmappable: RegionFlags(r.flags).contains(RegionFlags::MMAP),
            contents,
        });
    }

    let profile = DeviceProfile {
        format: FORMAT.to_owned(),
        version: VERSION,
        source: options.source.clone(),
        ids,
        device: DeviceInfoProfile {
            flags: info.flags.bits(),
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
            caps: None,
        },
        regions,
        irqs,
        config: ConfigProfile {
            bytes: HexBytes(config),
            writable: HexBytes(writable),
            probed: HexBytes(probed),
        },
        bars,
    };
    profile.validate()?;
    Ok(profile)
}

/// Probes the bits `plan` allows, byte by byte, restoring each byte before
/// the next: the writable bits found.
fn probe_writable<B: VfioBackend>(
    device: &B::Device,
    config: &[u8],
    plan: &[u8],
) -> Result<Vec<u8>, ProfileError> {
    let mut writable = vec![0u8; config.len()];
    for (at, (&value, &mask)) in config.iter().zip(plan).enumerate() {
        if mask == 0 {
            continue;
        }
        let offset = at as u64;
        let write = |byte: u8| access::write_all::<B, _>(device, region::CONFIG, offset, &[byte]);
        let read = || -> vfio_core::Result<u8> {
            let mut b = [0u8];
            access::read_exact::<B, _>(device, region::CONFIG, offset, &mut b)?;
            Ok(b[0])
        };
        let step = || format!("probing config byte {at:#x}");
        let probed = write(value ^ mask).and_then(|()| read());
        // Put the byte back whatever happened, then check it.
        let restored = write(value).and_then(|()| read());
        let seen = probed.map_err(device_error(step()))?;
        let back = restored.map_err(device_error(format!("restoring config byte {at:#x}")))?;
        if back != value {
            return Err(ProfileError::NotRestored {
                offset: at,
                expected: value,
                found: back,
            });
        }
        writable[at] = (seen ^ value) & mask;
    }
    Ok(writable)
}
