//! `PciDeviceBuilder`: a simulated PCI function's identity, BARs, config
//! space capabilities and interrupt pin.
//!
//! The builder is checked when the host is built: every mistake is a
//! [`BuildError`], never a panic.

use crate::config_space::{ConfigSpace, reg};
use crate::model::DeviceModel;
use std::fmt;
use vfio_core::parse::pci_caps::id;

/// Size of conventional PCI config space.
pub const CONFIG_SIZE_CONVENTIONAL: usize = 256;
/// Size of PCI Express config space.
pub const CONFIG_SIZE_PCIE: usize = 4096;

/// The PM Control/Status bits a driver may change through vfio-pci on
/// QEMU's devices: the power state and PME Enable.
pub(crate) const PM_CONTROL_WRITABLE: u16 = 0x0103;
/// The PCIe Device Control bits the mock lets a driver change.
pub(crate) const PCIE_DEVCTL_WRITABLE: u16 = 0x7fff;
/// The PCIe Link Control bits the mock lets a driver change.
pub(crate) const PCIE_LNKCTL_WRITABLE: u16 = 0x0fff;

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory.
    Memory32,
    /// 64-bit memory: takes this BAR and the next.
    Memory64,
    /// I/O ports.
    Io,
}

/// One BAR of a simulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarSpec {
    /// Size in bytes: a power of two, at least 16 for memory and 4 for I/O,
    /// and at most 256 bytes for I/O, 2 GiB for 32-bit memory and 1 TiB for
    /// 64-bit memory. A BAR's memory is allocated a page at a time as it is
    /// first written, so a 1 TiB BAR costs kilobytes until used; a larger
    /// size is a [`BuildError`].
    pub size: u64,
    /// What the BAR decodes.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Whether vfio-pci may let the user mmap it (memory BARs only, and only
    /// when at least a page long).
    pub mmappable: bool,
}

impl BarSpec {
    /// A non-prefetchable, mmappable 32-bit memory BAR.
    pub fn memory32(size: u64) -> Self {
        Self {
            size,
            kind: BarKind::Memory32,
            prefetchable: false,
            mmappable: true,
        }
    }

    /// A non-prefetchable, mmappable 64-bit memory BAR.
    pub fn memory64(size: u64) -> Self {
        Self {
            kind: BarKind::Memory64,
            ..Self::memory32(size)
        }
    }

    /// An I/O port BAR (never mmappable).
    pub fn io(size: u64) -> Self {
        Self {
            size,
            kind: BarKind::Io,
            prefetchable: false,
            mmappable: false,
        }
    }

    /// Marks the BAR prefetchable.
    #[must_use]
    pub fn prefetchable(mut self) -> Self {
        self.prefetchable = true;
        self
    }

    /// Marks the BAR as one vfio-pci will not let the user mmap (only
    /// `read_region`/`write_region` reach it).
    #[must_use]
    pub fn not_mmappable(mut self) -> Self {
        self.mmappable = false;
        self
    }

    /// The low flag bits of the BAR register.
    fn flag_bits(&self) -> u32 {
        match self.kind {
            BarKind::Io => 0x1,
            BarKind::Memory32 => u32::from(self.prefetchable) << 3,
            BarKind::Memory64 => 0x4 | (u32::from(self.prefetchable) << 3),
        }
    }
}

/// The MSI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiSpec {
    /// Vectors the device can use: 1, 2, 4, 8, 16 or 32.
    pub vectors: u32,
    /// 64-bit message address.
    pub is_64bit: bool,
    /// Per-vector mask and pending bits.
    pub per_vector_mask: bool,
}

/// The MSI-X capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixSpec {
    /// Table entries (1..=2048).
    pub table_size: u16,
    /// BAR of the table.
    pub table_bar: u8,
    /// Offset of the table in its BAR (8-byte aligned).
    pub table_offset: u32,
    /// BAR of the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the pending-bit array in its BAR (8-byte aligned).
    pub pba_offset: u32,
}

#[derive(Debug, Clone, Copy)]
enum CapKind {
    Pm,
    Msi(MsiSpec),
    Msix(MsixSpec),
    Pcie,
    /// A vendor-specific capability of this many bytes.
    Vendor(u8),
}

impl CapKind {
    fn len(&self) -> usize {
        match self {
            Self::Pm => 8,
            Self::Msi(m) => match (m.is_64bit, m.per_vector_mask) {
                (false, false) => 10,
                (true, false) => 14,
                (false, true) => 20,
                (true, true) => 24,
            },
            Self::Msix(_) => 12,
            Self::Pcie => 0x3c,
            Self::Vendor(len) => usize::from(*len),
        }
    }
}

/// A mistake in a device or host description.
#[derive(Debug)]
pub struct BuildError {
    message: String,
}

impl BuildError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BuildError {}

/// Describes a simulated PCI function.
///
/// ```
/// use vfio_mock::{BarSpec, PciDeviceBuilder};
/// let nic = PciDeviceBuilder::new(0x8086, 0x10d3)
///     .class(0x020000)
///     .bar(0, BarSpec::memory32(128 << 10))
///     .msix(5, 3, 0, 3, 0x2000)
///     .pcie()
///     .interrupt_pin(1);
/// # drop(nic);
/// ```
#[derive(Debug)]
pub struct PciDeviceBuilder {
    pub(crate) vendor: u16,
    pub(crate) device: u16,
    subsystem: (u16, u16),
    class: u32,
    revision: u8,
    bars: [Option<BarSpec>; 6],
    rom_size: u64,
    caps: Vec<(CapKind, Option<u8>)>,
    interrupt_pin: u8,
    interrupt_line: u8,
    command: u16,
    bar_addresses: [Option<u64>; 6],
    can_reset: bool,
    pub(crate) model: Option<Box<dyn DeviceModel>>,
    errors: Vec<String>,
    sparse: Vec<(u32, Vec<vfio_core::SparseArea>)>,
    /// The profile a device replays ([`PciDeviceBuilder::from_profile`]).
    pub(crate) profile: Option<Box<vfio_profile::DeviceProfile>>,
}

/// What the builder produces: the device's fixed description.
#[derive(Debug)]
pub(crate) struct DeviceSpec {
    pub config: ConfigSpace,
    pub bars: [Option<BarSpec>; 6],
    pub rom_size: u64,
    pub is_pcie: bool,
    pub interrupt_pin: u8,
    pub msi: Option<(usize, MsiSpec)>,
    pub msix: Option<(usize, MsixSpec)>,
    /// The config bytes the model answers: a vendor-specific capability's
    /// body, after its ID, next pointer and length.
    pub model_config: Option<std::ops::Range<usize>>,
    pub can_reset: bool,
    /// BARs reporting a sparse-mmap capability, with their areas.
    pub sparse: Vec<(u32, Vec<vfio_core::SparseArea>)>,
    /// What a profiled device answers from its profile.
    pub replay: Option<crate::profile::Replay>,
}

impl PciDeviceBuilder {
    /// A conventional PCI device with these IDs, class 0, no BARs, no
    /// capabilities, no interrupt pin, no reset. Subsystem IDs default to
    /// QEMU's (0x1af4:0x1100).
    pub fn new(vendor: u16, device: u16) -> Self {
        Self {
            vendor,
            device,
            subsystem: (0x1af4, 0x1100),
            class: 0,
            revision: 0,
            bars: [None; 6],
            rom_size: 0,
            caps: Vec::new(),
            interrupt_pin: 0,
            interrupt_line: 0,
            command: 0,
            bar_addresses: [None; 6],
            can_reset: false,
            model: None,
            errors: Vec::new(),
            sparse: Vec::new(),
            profile: None,
        }
    }

    /// Subsystem vendor and device IDs.
    #[must_use]
    pub fn subsystem(mut self, vendor: u16, device: u16) -> Self {
        self.subsystem = (vendor, device);
        self
    }

    /// The 24-bit class code (class, subclass, programming interface).
    #[must_use]
    pub fn class(mut self, class: u32) -> Self {
        self.class = class & 0x00ff_ffff;
        self
    }

    /// The revision ID.
    #[must_use]
    pub fn revision(mut self, revision: u8) -> Self {
        self.revision = revision;
        self
    }

    /// Sets BAR `index` (0..=5). A 64-bit BAR also occupies `index + 1`.
    #[must_use]
    pub fn bar(mut self, index: usize, bar: BarSpec) -> Self {
        if let Some(slot) = self.bars.get_mut(index) {
            *slot = Some(bar);
        } else {
            self.errors.push(format!("BAR index {index} is not 0..=5"));
        }
        self
    }

    /// An expansion ROM of `size` bytes (a power of two, at least 2 KiB).
    #[must_use]
    pub fn rom(mut self, size: u64) -> Self {
        self.rom_size = size;
        self
    }

    /// Adds an MSI capability.
    #[must_use]
    pub fn msi(mut self, vectors: u32, is_64bit: bool, per_vector_mask: bool) -> Self {
        self.caps.push((
            CapKind::Msi(MsiSpec {
                vectors,
                is_64bit,
                per_vector_mask,
            }),
            None,
        ));
        self
    }

    /// Adds an MSI-X capability with `table_size` vectors, the table in BAR
    /// `table_bar` at `table_offset` and the pending-bit array in BAR
    /// `pba_bar` at `pba_offset`.
    #[must_use]
    pub fn msix(
        mut self,
        table_size: u16,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> Self {
        self.caps.push((
            CapKind::Msix(MsixSpec {
                table_size,
                table_bar,
                table_offset,
                pba_bar,
                pba_offset,
            }),
            None,
        ));
        self
    }

    /// Adds a vendor-specific capability (ID 0x09) of `len` bytes, 4 to
    /// 192: its ID, next pointer and length byte are the mock's, and the
    /// `len - 3` bytes after them are the device model's, read and written
    /// through [`DeviceModel::config_read`] and
    /// [`DeviceModel::config_write`]. vfio-pci's config code gives a vendor
    /// capability raw read and write access to the device; no device of the
    /// guest has one, so no conformance case checks it. At most one.
    #[must_use]
    pub fn vendor_capability(mut self, len: u8) -> Self {
        if !(4..=192).contains(&len) {
            self.errors
                .push(format!("vendor capability length {len} is not 4..=192"));
        }
        self.caps.push((CapKind::Vendor(len), None));
        self
    }

    /// Adds a PCI Express (endpoint) capability; config space becomes 4096 bytes.
    #[must_use]
    pub fn pcie(mut self) -> Self {
        self.caps.push((CapKind::Pcie, None));
        self
    }

    /// Adds a power-management capability.
    #[must_use]
    pub fn pm(mut self) -> Self {
        self.caps.push((CapKind::Pm, None));
        self
    }

    /// Places the capability added last at config offset `offset` instead of
    /// the first free one (to copy a real device's layout).
    #[must_use]
    pub fn at(mut self, offset: u8) -> Self {
        if let Some(last) = self.caps.last_mut() {
            last.1 = Some(offset);
        }
        self
    }

    /// The interrupt pin: 0 none, 1..=4 INTA#..INTD#.
    #[must_use]
    pub fn interrupt_pin(mut self, pin: u8) -> Self {
        self.interrupt_pin = pin;
        self
    }

    /// The interrupt line register as firmware left it (the guest's SeaBIOS
    /// writes 11 into both of its devices).
    #[must_use]
    pub fn interrupt_line(mut self, line: u8) -> Self {
        self.interrupt_line = line;
        self
    }

    /// The command register as firmware left it before vfio-pci took the
    /// device (the guest's SeaBIOS leaves I/O, memory and SERR# enable set:
    /// 0x0103). Opening the device adds the decode bits of its BARs.
    #[must_use]
    pub fn command(mut self, command: u16) -> Self {
        self.command = command;
        self
    }

    /// Places BAR `index` at `address` (as firmware assigned it) instead of
    /// the next free address of the host's window.
    #[must_use]
    pub fn bar_address(mut self, index: usize, address: u64) -> Self {
        if let Some(slot) = self.bar_addresses.get_mut(index) {
            *slot = Some(address);
        } else {
            self.errors.push(format!("BAR index {index} is not 0..=5"));
        }
        self
    }

    /// Whether the device has a reset method vfio-pci can use (FLR, PM or
    /// bus reset): sets `VFIO_DEVICE_FLAGS_RESET` and makes
    /// `VFIO_DEVICE_RESET` work.
    #[must_use]
    pub fn can_reset(mut self, can_reset: bool) -> Self {
        self.can_reset = can_reset;
        self
    }

    /// Gives mmappable BAR `bar` a sparse-mmap capability
    /// (`VFIO_REGION_INFO_CAP_SPARSE_MMAP`) with `areas`, in place of the
    /// MSI-X-mappable one: only those parts of it may be mmapped, as a
    /// platform that cannot map the MSI-X table reports it. Reads and
    /// writes through the device file still reach the whole BAR.
    ///
    /// No x86 vfio-pci device reports such a capability (vfio-pci there
    /// reports MSI-X-mappable instead), so this is not checked on a kernel.
    #[must_use]
    pub fn sparse_mmap(mut self, bar: u32, areas: &[vfio_core::SparseArea]) -> Self {
        self.sparse.retain(|(b, _)| *b != bar);
        self.sparse.push((bar, areas.to_vec()));
        self
    }

    /// Registers with side effects (see [`DeviceModel`]).
    #[must_use]
    pub fn model(mut self, model: impl DeviceModel) -> Self {
        self.model = Some(Box::new(model));
        self
    }

    /// Checks the description and lays out config space. `windows` are the
    /// bases the host assigns BARs from: 32-bit memory, 64-bit memory, I/O.
    pub(crate) fn finish(&self, windows: [u64; 3]) -> Result<DeviceSpec, BuildError> {
        if let Some(e) = self.errors.first() {
            return Err(BuildError::new(e.clone()));
        }
        if let Some(profile) = &self.profile {
            return crate::profile::spec(profile);
        }
        let is_pcie = self.caps.iter().any(|(k, _)| matches!(k, CapKind::Pcie));
        let mut config = ConfigSpace::new(if is_pcie {
            CONFIG_SIZE_PCIE
        } else {
            CONFIG_SIZE_CONVENTIONAL
        });
        config.set_u16(reg::VENDOR_ID, self.vendor);
        config.set_u16(reg::DEVICE_ID, self.device);
        config.set(reg::REVISION, &[self.revision]);
        config.set(reg::CLASS_PROG, &self.class.to_le_bytes()[..3]);
        config.set_u16(reg::SUBSYSTEM_VENDOR_ID, self.subsystem.0);
        config.set_u16(reg::SUBSYSTEM_ID, self.subsystem.1);
        if self.interrupt_pin > 4 {
            return Err(BuildError::new(format!(
                "interrupt pin {} is not 0..=4",
                self.interrupt_pin
            )));
        }
        config.set(reg::INTERRUPT_PIN, &[self.interrupt_pin]);
        config.set(reg::INTERRUPT_LINE, &[self.interrupt_line]);
        config.set_u16(reg::COMMAND, self.command & reg::COMMAND_WRITABLE);
        config.set_wmask(reg::COMMAND, &reg::COMMAND_WRITABLE.to_le_bytes());
        // Cache line size sticks; the latency timer of QEMU's endpoints does not.
        config.set_wmask(reg::CACHE_LINE_SIZE, &[0xff]);
        config.set_wmask(reg::INTERRUPT_LINE, &[0xff]);

        self.lay_out_bars(&mut config, windows)?;
        if self.rom_size != 0 {
            if !self.rom_size.is_power_of_two() || self.rom_size < 2048 || self.rom_size > 1 << 31 {
                return Err(BuildError::new(format!(
                    "ROM size {:#x} is not a power of two in 2 KiB..=2 GiB",
                    self.rom_size
                )));
            }
            let mask = (!(self.rom_size - 1) as u32 & 0xffff_f800) | 1;
            config.set_wmask(reg::ROM_ADDRESS, &mask.to_le_bytes());
        }

        let (msi, msix, model_config) = self.lay_out_caps(&mut config)?;
        if let Some((_, m)) = &msix {
            for (bar, offset, len, what) in [
                (
                    m.table_bar,
                    m.table_offset,
                    u64::from(m.table_size) * 16,
                    "table",
                ),
                (
                    m.pba_bar,
                    m.pba_offset,
                    u64::from(m.table_size).div_ceil(64) * 8,
                    "pending-bit array",
                ),
            ] {
                let size = self
                    .bars
                    .get(usize::from(bar))
                    .copied()
                    .flatten()
                    .filter(|b| b.kind != BarKind::Io)
                    .map(|b| b.size)
                    .ok_or_else(|| {
                        BuildError::new(format!(
                            "MSI-X {what} is in BAR {bar}, which is not a memory BAR"
                        ))
                    })?;
                if offset % 8 != 0 || u64::from(offset) + len > size {
                    return Err(BuildError::new(format!(
                        "MSI-X {what} at {offset:#x} ({len:#x} bytes) does not fit, aligned, in BAR {bar} ({size:#x} bytes)"
                    )));
                }
            }
        }

        Ok(DeviceSpec {
            config,
            bars: self.bars,
            rom_size: self.rom_size,
            is_pcie,
            interrupt_pin: self.interrupt_pin,
            msi,
            msix,
            model_config,
            can_reset: self.can_reset,
            sparse: self.sparse.clone(),
            replay: None,
        })
    }

    fn lay_out_bars(&self, config: &mut ConfigSpace, windows: [u64; 3]) -> Result<(), BuildError> {
        let [mut mem32, mut mem64, mut io] = windows;
        let mut upper_of_64 = false;
        for (i, bar) in self.bars.iter().enumerate() {
            let at = reg::BAR0 + 4 * i;
            if upper_of_64 {
                if bar.is_some() {
                    return Err(BuildError::new(format!(
                        "BAR {i} is the upper half of 64-bit BAR {}",
                        i - 1
                    )));
                }
                upper_of_64 = false;
                continue;
            }
            let Some(bar) = bar else {
                continue;
            };
            let min = if bar.kind == BarKind::Io { 4 } else { 16 };
            let max = match bar.kind {
                BarKind::Io => 256,
                BarKind::Memory32 => 1 << 31,
                // The most BarMemory supports cheaply (16 KiB up front).
                BarKind::Memory64 => crate::bar::MAX_BAR_BYTES,
            };
            if !bar.size.is_power_of_two() || bar.size < min || bar.size > max {
                return Err(BuildError::new(format!(
                    "BAR {i} size {:#x} is not a power of two in {min:#x}..={max:#x}",
                    bar.size
                )));
            }
            let window = match bar.kind {
                BarKind::Memory32 => &mut mem32,
                BarKind::Memory64 => &mut mem64,
                BarKind::Io => &mut io,
            };
            let base = match self.bar_addresses.get(i).copied().flatten() {
                Some(address) if address % bar.size == 0 => address,
                Some(address) => {
                    return Err(BuildError::new(format!(
                        "BAR {i} at {address:#x} is not aligned to its size {:#x}",
                        bar.size
                    )));
                }
                None => {
                    let base = window.next_multiple_of(bar.size);
                    *window = base.saturating_add(bar.size);
                    base
                }
            };
            let mask = !(bar.size - 1);
            let flags = bar.flag_bits();
            config.set_u32(at, (base as u32 & mask as u32) | flags);
            let low_mask = mask as u32 & if bar.kind == BarKind::Io { !0x3 } else { !0xf };
            config.set_wmask(at, &low_mask.to_le_bytes());
            if bar.kind == BarKind::Memory64 {
                if i == 5 {
                    return Err(BuildError::new("64-bit BAR 5 has no upper half"));
                }
                config.set_u32(at + 4, (base >> 32) as u32);
                config.set_wmask(at + 4, &((mask >> 32) as u32).to_le_bytes());
                upper_of_64 = true;
            }
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn lay_out_caps(
        &self,
        config: &mut ConfigSpace,
    ) -> Result<
        (
            Option<(usize, MsiSpec)>,
            Option<(usize, MsixSpec)>,
            Option<std::ops::Range<usize>>,
        ),
        BuildError,
    > {
        let mut used = [false; 256];
        used[..0x40].fill(true);
        let mut msi = None;
        let mut msix = None;
        let mut vendor = None;
        for (kind, at) in &self.caps {
            let len = kind.len();
            let offset = match at {
                Some(o) => usize::from(*o),
                None => (0x40..0x100)
                    .step_by(4)
                    .find(|&o| o + len <= 0x100 && used[o..o + len].iter().all(|u| !u))
                    .ok_or_else(|| {
                        BuildError::new("the capabilities do not fit in config space")
                    })?,
            };
            if offset < 0x40
                || offset % 4 != 0
                || offset + len > 0x100
                || used[offset..offset + len].iter().any(|&u| u)
            {
                return Err(BuildError::new(format!(
                    "a {len}-byte capability at {offset:#x} overlaps another or leaves 0x40..0x100"
                )));
            }
            used[offset..offset + len].fill(true);
            // New capabilities go at the head of the list, as QEMU's
            // pci_add_capability links them.
            let head = config.u8_at(reg::CAPABILITY_LIST);
            config.set(offset + 1, &[head]);
            config.set(reg::CAPABILITY_LIST, &[offset as u8]);
            match kind {
                CapKind::Pm => {
                    config.set(offset, &[id::PM]);
                    // Version 1.2; PMCSR: No_Soft_Reset.
                    config.set_u16(offset + 2, 0x0003);
                    config.set_u16(offset + 4, 0x0008);
                    config.set_wmask(offset + 4, &PM_CONTROL_WRITABLE.to_le_bytes());
                }
                CapKind::Msi(m) => {
                    if !m.vectors.is_power_of_two() || m.vectors > 32 {
                        return Err(BuildError::new(format!(
                            "MSI vector count {} is not 1, 2, 4, 8, 16 or 32",
                            m.vectors
                        )));
                    }
                    config.set(offset, &[id::MSI]);
                    let mmc = m.vectors.trailing_zeros() as u16;
                    let control = (mmc << 1)
                        | (u16::from(m.is_64bit) << 7)
                        | (u16::from(m.per_vector_mask) << 8);
                    config.set_u16(offset + 2, control);
                    // vfio-pci virtualizes the low byte of Message Control
                    // and lets the user write all of it (Enable and the
                    // queue size are then fixed up: `PciDevice::write_region`);
                    // the upper byte is the device's, read-only. The address
                    // and data are virtual and wholly writable.
                    config.set_wmask(offset + 2, &[0xff, 0x00]);
                    config.set_wmask(offset + 4, &0xffff_ffffu32.to_le_bytes());
                    let mut next = offset + 8;
                    if m.is_64bit {
                        config.set_wmask(next, &[0xff; 4]);
                        next += 4;
                    }
                    config.set_wmask(next, &[0xff; 2]);
                    if m.per_vector_mask {
                        let bits = if m.vectors == 32 {
                            u32::MAX
                        } else {
                            (1u32 << m.vectors) - 1
                        };
                        config.set_wmask(next + 4, &bits.to_le_bytes());
                    }
                    msi = Some((offset, *m));
                }
                CapKind::Msix(m) => {
                    if !(1..=2048).contains(&m.table_size) {
                        return Err(BuildError::new(format!(
                            "MSI-X table size {} is not 1..=2048",
                            m.table_size
                        )));
                    }
                    if m.table_bar > 5 || m.pba_bar > 5 {
                        return Err(BuildError::new("an MSI-X BAR index is not 0..=5"));
                    }
                    config.set(offset, &[id::MSIX]);
                    // vfio-pci does not virtualize MSI-X: Message Control
                    // reads the device's (Enable follows the ioctls) and
                    // user writes to it are dropped.
                    config.set_u16(offset + 2, m.table_size - 1);
                    config.set_u32(offset + 4, m.table_offset | u32::from(m.table_bar));
                    config.set_u32(offset + 8, m.pba_offset | u32::from(m.pba_bar));
                    msix = Some((offset, *m));
                }
                CapKind::Pcie => {
                    config.set(offset, &[id::PCIE]);
                    // As QEMU presents a PCIe device on q35's root bus:
                    // version 2, a root-complex integrated endpoint.
                    config.set_u16(offset + 2, 0x0092);
                    // Device capabilities: 128-byte max payload, role-based
                    // error reporting, FLR if the device resets.
                    config.set_u32(offset + 4, 0x8000 | (u32::from(self.can_reset) << 28));
                    // Link: 2.5 GT/s x1, L0s; status the same speed and width.
                    config.set_u32(offset + 0x0c, 0x0411);
                    config.set_u16(offset + 0x12, 0x0011);
                    // Device capabilities 2: extended fmt field, end-end TLP prefixes.
                    config.set_u32(offset + 0x24, 0x0030_0000);
                    config.set_wmask(offset + 8, &PCIE_DEVCTL_WRITABLE.to_le_bytes());
                    config.set_wmask(offset + 0x10, &PCIE_LNKCTL_WRITABLE.to_le_bytes());
                }
                CapKind::Vendor(len) => {
                    config.set(offset, &[id::VENDOR]);
                    config.set(offset + 2, &[*len]);
                    vendor = Some(offset + 3..offset + usize::from(*len));
                }
            }
        }
        if self
            .caps
            .iter()
            .filter(|(k, _)| matches!(k, CapKind::Msi(_)))
            .count()
            > 1
            || self
                .caps
                .iter()
                .filter(|(k, _)| matches!(k, CapKind::Msix(_)))
                .count()
                > 1
            || self
                .caps
                .iter()
                .filter(|(k, _)| matches!(k, CapKind::Pcie))
                .count()
                > 1
            || self
                .caps
                .iter()
                .filter(|(k, _)| matches!(k, CapKind::Vendor(_)))
                .count()
                > 1
        {
            return Err(BuildError::new("a capability was added twice"));
        }
        if !self.caps.is_empty() {
            config.set_u16(reg::STATUS, reg::STATUS_CAP_LIST);
        }
        Ok((msi, msix, vendor))
    }
}
