//! [`DeviceProfile::validate`]: every rule a profile must keep before the
//! mock replays it.

use crate::chain;
use crate::error::ProfileError;
use crate::format::{BarKindProfile, DeviceProfile, FORMAT, PciIds, RegionCapProfile, VERSION};

/// The config region's index.
const CONFIG: usize = 7;

impl DeviceProfile {
    /// Checks the profile is whole and agrees with itself: format and
    /// version; config space 256 or 4096 bytes with both masks as long and
    /// no writable bit unprobed; the IDs as config space has them; both
    /// capability lists in bounds, dword-aligned and free of loops; one
    /// region entry per index below `num_regions` and one IRQ entry per
    /// index below `num_irqs`, in order, with the config region as long as
    /// config space; and one BAR entry per present BAR region, agreeing
    /// with its region and its BAR register.
    pub fn validate(&self) -> Result<(), ProfileError> {
        if self.format != FORMAT {
            return Err(ProfileError::Format {
                found: Some(self.format.clone()),
            });
        }
        if self.version != VERSION {
            return Err(ProfileError::Version {
                found: Some(self.version.to_string()),
            });
        }
        self.validate_config()?;
        self.validate_regions()?;
        self.validate_irqs()?;
        self.validate_bars()
    }

    fn validate_config(&self) -> Result<(), ProfileError> {
        let config = self.config.bytes.as_slice();
        let len = config.len();
        if len != 256 && len != 4096 {
            return Err(ProfileError::ConfigLength { len });
        }
        for (mask, bytes) in [
            ("writable", &self.config.writable),
            ("probed", &self.config.probed),
        ] {
            if bytes.len() != len {
                return Err(ProfileError::MaskLength {
                    mask,
                    len: bytes.len(),
                    expected: len,
                });
            }
        }
        let masks = self
            .config
            .writable
            .as_slice()
            .iter()
            .zip(self.config.probed.as_slice());
        for (offset, (w, p)) in masks.enumerate() {
            if w & !p != 0 {
                return Err(ProfileError::WritableNotProbed {
                    offset,
                    bits: w & !p,
                });
            }
        }
        let ids = PciIds::from_config(config).ok_or(ProfileError::ConfigLength { len })?;
        for (field, found, config) in [
            ("vendor", u32::from(self.ids.vendor), u32::from(ids.vendor)),
            ("device", u32::from(self.ids.device), u32::from(ids.device)),
            (
                "subsystem_vendor",
                u32::from(self.ids.subsystem_vendor),
                u32::from(ids.subsystem_vendor),
            ),
            (
                "subsystem_device",
                u32::from(self.ids.subsystem_device),
                u32::from(ids.subsystem_device),
            ),
            ("class", self.ids.class, ids.class),
            (
                "revision",
                u32::from(self.ids.revision),
                u32::from(ids.revision),
            ),
        ] {
            if found != config {
                return Err(ProfileError::IdMismatch {
                    field,
                    found,
                    config,
                });
            }
        }
        chain::standard(config)?;
        chain::extended(config)?;
        Ok(())
    }

    fn validate_regions(&self) -> Result<(), ProfileError> {
        let bad = |reason: String| ProfileError::RegionTable { reason };
        if self.regions.len() != self.device.num_regions as usize {
            return Err(bad(format!(
                "{} entries, but the device info says {} regions",
                self.regions.len(),
                self.device.num_regions
            )));
        }
        for (i, r) in self.regions.iter().enumerate() {
            if r.index as usize != i {
                return Err(bad(format!("entry {i} is for index {}", r.index)));
            }
            if r.refused.is_some() && (r.flags != 0 || r.size != 0 || !r.caps.is_empty()) {
                return Err(bad(format!(
                    "index {i} was refused but has flags, a size or caps"
                )));
            }
            for cap in &r.caps {
                if let RegionCapProfile::SparseMmap { areas } = cap {
                    for a in areas {
                        if a.offset.checked_add(a.size).is_none_or(|end| end > r.size) {
                            return Err(bad(format!(
                                "index {i} has a sparse area {:#x}+{:#x} past its {:#x} bytes",
                                a.offset, a.size, r.size
                            )));
                        }
                    }
                }
            }
        }
        let config_len = self.config.bytes.len() as u64;
        match self.regions.get(CONFIG) {
            Some(r) if r.size == config_len => Ok(()),
            Some(r) => Err(bad(format!(
                "the config region is {:#x} bytes, config space {config_len:#x}",
                r.size
            ))),
            None => Err(bad("there is no config region (index 7)".into())),
        }
    }

    fn validate_irqs(&self) -> Result<(), ProfileError> {
        let bad = |reason: String| ProfileError::IrqTable { reason };
        if self.irqs.len() != self.device.num_irqs as usize {
            return Err(bad(format!(
                "{} entries, but the device info says {} IRQ indexes",
                self.irqs.len(),
                self.device.num_irqs
            )));
        }
        for (i, q) in self.irqs.iter().enumerate() {
            if q.index as usize != i {
                return Err(bad(format!("entry {i} is for index {}", q.index)));
            }
            if q.refused.is_some() && (q.flags != 0 || q.count != 0) {
                return Err(bad(format!(
                    "index {i} was refused but has flags or vectors"
                )));
            }
        }
        Ok(())
    }

    fn validate_bars(&self) -> Result<(), ProfileError> {
        let config = self.config.bytes.as_slice();
        let mut previous: Option<u32> = None;
        for bar in &self.bars {
            let bad = |reason: String| ProfileError::Bar {
                index: bar.index,
                reason,
            };
            if bar.index > 5 {
                return Err(bad("not a BAR index (0..=5)".into()));
            }
            if previous.is_some_and(|p| p >= bar.index) {
                return Err(bad("out of order or listed twice".into()));
            }
            previous = Some(bar.index);
            let region = self
                .regions
                .get(bar.index as usize)
                .ok_or_else(|| bad("has no region entry".into()))?;
            if region.size != bar.size {
                return Err(bad(format!(
                    "is {:#x} bytes, its region {:#x}",
                    bar.size, region.size
                )));
            }
            if !bar.size.is_power_of_two() {
                return Err(bad(format!("size {:#x} is not a power of two", bar.size)));
            }
            let mmap = region.flags & (1 << 2) != 0;
            if bar.mmappable != mmap {
                return Err(bad("mmappable disagrees with its region's flags".into()));
            }
            let at = 0x10 + 4 * bar.index as usize;
            let low = config.get(at).copied().unwrap_or(0);
            let kind = BarKindProfile::from_register(low);
            if kind != bar.kind {
                return Err(bad(format!(
                    "is {:?}, but its BAR register says {kind:?}",
                    bar.kind
                )));
            }
            if bar.prefetchable != (kind != BarKindProfile::Io && low & 0x8 != 0) {
                return Err(bad("prefetchable disagrees with its BAR register".into()));
            }
            if kind == BarKindProfile::Memory64 {
                let upper = self.regions.get(bar.index as usize + 1);
                if bar.index == 5 || upper.is_none_or(|r| r.size != 0) {
                    return Err(bad(
                        "is 64-bit, but the next region is not its empty upper half".into(),
                    ));
                }
            }
            if let Some(contents) = &bar.contents {
                if contents.len() as u64 != bar.size {
                    return Err(bad(format!(
                        "contents are {:#x} bytes, the BAR {:#x}",
                        contents.len(),
                        bar.size
                    )));
                }
            }
        }
        for (i, r) in self.regions.iter().take(6).enumerate() {
            if r.size != 0 && !self.bars.iter().any(|b| b.index as usize == i) {
                return Err(ProfileError::Bar {
                    index: i as u32,
                    reason: format!("region {i} is present but has no BAR entry"),
                });
            }
        }
        Ok(())
    }
}
