//! What a case may ask of the host beyond VFIO calls: removing a device, as
//! an administrator writing its sysfs `remove` does, and bringing it back.

use anyhow::{Context, Result, bail};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vfio_core::PciAddress;

/// Host actions a case needs and a backend alone cannot give.
pub trait HostControl: Send + Sync + Debug {
    /// Removes `device` as writing 1 to its sysfs `remove` does, returning
    /// once it is gone (the kernel waits for the user to release it).
    fn remove(&self, device: &PciAddress) -> Result<()>;

    /// Brings a removed `device` back, bound to vfio-pci, so that later
    /// cases find the host as it was.
    fn restore(&self, device: &PciAddress) -> Result<()>;
}

/// A host the suite may not change: cases that need it are not applicable.
#[derive(Debug, Default)]
pub struct NoHostControl;

impl HostControl for NoHostControl {
    fn remove(&self, device: &PciAddress) -> Result<()> {
        bail!("this host may not remove {device}")
    }

    fn restore(&self, _device: &PciAddress) -> Result<()> {
        Ok(())
    }
}

/// The real kernel's sysfs: `remove`, `rescan`, `driver_override` and
/// `drivers_probe` under `/sys/bus/pci` (needs root).
#[derive(Debug)]
pub struct SysfsHostControl {
    pci: PathBuf,
}

/// How long a rescan may take to bring a device back and bind it.
const RESCAN_TIMEOUT: Duration = Duration::from_secs(10);

impl SysfsHostControl {
    /// Controls the devices under `sysfs` (normally `/sys`).
    pub fn new(sysfs: &Path) -> Self {
        Self {
            pci: sysfs.join("bus/pci"),
        }
    }

    fn write(path: &Path, value: &str) -> Result<()> {
        std::fs::write(path, value)
            .with_context(|| format!("writing {value:?} to {}", path.display()))
    }

    /// Polls `ready` every 10 ms until it holds or the rescan timeout passes.
    fn wait_for(what: &str, ready: impl Fn() -> bool) -> Result<()> {
        let start = Instant::now();
        while !ready() {
            if start.elapsed() > RESCAN_TIMEOUT {
                bail!("{what} within {RESCAN_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }
}

impl HostControl for SysfsHostControl {
    fn remove(&self, device: &PciAddress) -> Result<()> {
        Self::write(
            &self
                .pci
                .join("devices")
                .join(device.to_string())
                .join("remove"),
            "1",
        )
    }

    fn restore(&self, device: &PciAddress) -> Result<()> {
        let dir = self.pci.join("devices").join(device.to_string());
        if !dir.exists() {
            Self::write(&self.pci.join("rescan"), "1")?;
            Self::wait_for("the device did not come back", || dir.exists())?;
        }
        let vfio = self.pci.join("drivers/vfio-pci");
        let bound = || {
            std::fs::canonicalize(dir.join("driver"))
                .ok()
                .zip(std::fs::canonicalize(&vfio).ok())
                .is_some_and(|(a, b)| a == b)
        };
        if !bound() {
            Self::write(&dir.join("driver_override"), "vfio-pci")?;
            Self::write(&self.pci.join("drivers_probe"), &device.to_string())?;
            Self::wait_for("vfio-pci did not bind it", bound)?;
        }
        let group =
            std::fs::read_link(dir.join("iommu_group")).context("the device has no IOMMU group")?;
        let node = Path::new("/dev/vfio").join(group.file_name().unwrap_or_default());
        Self::wait_for("its /dev/vfio node did not appear", || node.exists())
    }
}
