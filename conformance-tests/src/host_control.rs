//! What a case may ask of the host beyond VFIO calls: removing a device, as
//! an administrator writing its sysfs `remove` does, and bringing it back;
//! reading the IOMMU's fault records, as an administrator reads them in the
//! kernel log.

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

    /// Brings a removed `device` back with a rescan, bound to whatever
    /// driver the kernel picks, and waits until that is `driver` (its name
    /// under `/sys/bus/pci/drivers`): for a device a case removed that is
    /// not vfio-pci's. Nothing to do by default (a host whose devices come
    /// back for each case, as the mock's do).
    fn rescan(&self, device: &PciAddress, driver: &str) -> Result<()> {
        let _ = (device, driver);
        Ok(())
    }

    /// Every DMA remapping fault the host's IOMMU has reported so far,
    /// oldest first. A case takes the list before and after a DMA and looks
    /// at what was added.
    fn iommu_faults(&self) -> Result<Vec<IommuFaultRecord>>;

    /// Sets the host's pool of reserved 2 MiB hugetlb pages to `pages`
    /// (`/proc/sys/vm/nr_hugepages`) and returns how many it now has: the
    /// kernel may give fewer than asked.
    fn reserve_huge_pages(&self, pages: u64) -> Result<u64>;

    /// Called before a case makes a device DMA that the IOMMU will refuse:
    /// waits, where the host's log is rate-limited, until the fault's
    /// record is sure to be printed. No wait by default.
    fn pace_fault(&self) {}
}

/// A DMA remapping fault as an administrator sees it: intel-iommu prints
/// `DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault addr 0x900000
/// [fault reason 0x05] PTE Write access is not set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IommuFaultRecord {
    /// The device whose DMA was refused (the requester id).
    pub requester: PciAddress,
    /// The page of the faulting address.
    pub page: u64,
    /// True for a DMA write, false for a read.
    pub write: bool,
    /// The VT-d fault reason code.
    pub reason: u8,
}

impl IommuFaultRecord {
    /// Parses one intel-iommu fault line of the kernel log (with or without
    /// the `DMAR: ` prefix); `None` for any other line.
    pub fn parse_kernel_line(line: &str) -> Option<Self> {
        let write = if line.contains("[DMA Write") {
            true
        } else if line.contains("[DMA Read") {
            false
        } else {
            return None;
        };
        let after = |key: &str| line.find(key).map(|i| &line[i + key.len()..]);
        let bdf = after("Request device [")?;
        let bdf = bdf.get(..bdf.find(']')?)?;
        let (bus, rest) = bdf.split_once(':')?;
        let (dev, func) = rest.split_once('.')?;
        let hex = |s: &str| -> Option<u64> {
            let end = s.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(s.len());
            u64::from_str_radix(s.get(..end)?, 16).ok()
        };
        let requester = PciAddress::new(
            0,
            u8::try_from(hex(bus)?).ok()?,
            u8::try_from(hex(dev)?).ok()?,
            u8::try_from(hex(func)?).ok()?,
        )?;
        let page = hex(after("fault addr 0x")?)?;
        let reason = u8::try_from(hex(after("[fault reason 0x")?)?).ok()?;
        Some(Self {
            requester,
            page,
            write,
            reason,
        })
    }
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

    fn iommu_faults(&self) -> Result<Vec<IommuFaultRecord>> {
        bail!("this host's kernel log is not the suite's to read")
    }

    fn reserve_huge_pages(&self, _pages: u64) -> Result<u64> {
        bail!("this host's hugetlb pool is not the suite's to change")
    }
}

/// The real kernel's sysfs: `remove`, `rescan`, `driver_override` and
/// `drivers_probe` under `/sys/bus/pci` (needs root), and its log,
/// `/dev/kmsg`, for the IOMMU's fault lines.
#[derive(Debug)]
pub struct SysfsHostControl {
    pci: PathBuf,
    kmsg: PathBuf,
    nr_hugepages: PathBuf,
    /// When the latest faults were paced, oldest first.
    faults: parking_lot::Mutex<std::collections::VecDeque<Instant>>,
}

/// intel-iommu rate-limits its fault messages: ten in any 5 s window
/// (the printk ratelimit defaults), and each fault takes three of them (the
/// status line, the record, the check that ends its loop). So at most
/// three faults may fall in any window this long (with a margin) for every
/// record to reach the log.
const FAULT_WINDOW: Duration = Duration::from_millis(5_500);
/// Faults that may fall in one [`FAULT_WINDOW`].
const FAULTS_PER_WINDOW: usize = 3;

/// How long a rescan may take to bring a device back and bind it.
const RESCAN_TIMEOUT: Duration = Duration::from_secs(10);

impl SysfsHostControl {
    /// Controls the devices under `sysfs` (normally `/sys`), reads the
    /// kernel log from `kmsg` (normally `/dev/kmsg`) and sizes the hugetlb
    /// pool under `procfs` (normally `/proc`).
    pub fn new(sysfs: &Path, kmsg: &Path, procfs: &Path) -> Self {
        Self {
            pci: sysfs.join("bus/pci"),
            kmsg: kmsg.to_owned(),
            nr_hugepages: procfs.join("sys/vm/nr_hugepages"),
            faults: parking_lot::Mutex::default(),
        }
    }

    /// Every record of the kernel's log buffer, read from `/dev/kmsg`
    /// without blocking: each read gives one record,
    /// `PRIORITY,SEQUENCE,TIMESTAMP,FLAGS;MESSAGE`.
    fn kernel_log(&self) -> Result<Vec<String>> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&self.kmsg)
            .with_context(|| format!("opening {}", self.kmsg.display()))?;
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let record = String::from_utf8_lossy(&buf[..n]);
                    if let Some((_, message)) = record.split_once(';') {
                        lines.push(message.lines().next().unwrap_or("").to_owned());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // EPIPE: records were overwritten before being read; the
                // next read goes on from the oldest left.
                Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("reading {}", self.kmsg.display()));
                }
            }
        }
        Ok(lines)
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
    fn pace_fault(&self) {
        // The last FAULTS_PER_WINDOW faults: the oldest of them must be a
        // window old before another may come.
        let mut faults = self.faults.lock();
        if faults.len() == FAULTS_PER_WINDOW {
            if let Some(oldest) = faults.pop_front() {
                if let Some(wait) = FAULT_WINDOW.checked_sub(oldest.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        faults.push_back(Instant::now());
    }

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

    fn rescan(&self, device: &PciAddress, driver: &str) -> Result<()> {
        let dir = self.pci.join("devices").join(device.to_string());
        if !dir.exists() {
            Self::write(&self.pci.join("rescan"), "1")?;
            Self::wait_for("the device did not come back", || dir.exists())?;
        }
        let wanted = self.pci.join("drivers").join(driver);
        Self::wait_for("its driver did not bind it", || {
            std::fs::canonicalize(dir.join("driver"))
                .ok()
                .zip(std::fs::canonicalize(&wanted).ok())
                .is_some_and(|(a, b)| a == b)
        })
    }

    fn reserve_huge_pages(&self, pages: u64) -> Result<u64> {
        Self::write(&self.nr_hugepages, &pages.to_string())?;
        let now = std::fs::read_to_string(&self.nr_hugepages)
            .with_context(|| format!("reading {}", self.nr_hugepages.display()))?;
        now.trim()
            .parse()
            .with_context(|| format!("{} reads {now:?}", self.nr_hugepages.display()))
    }

    fn iommu_faults(&self) -> Result<Vec<IommuFaultRecord>> {
        Ok(self
            .kernel_log()?
            .iter()
            .filter_map(|l| IommuFaultRecord::parse_kernel_line(l))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intel_iommu_fault_lines_parse_and_others_do_not() {
        let line = "DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault addr 0x900000 \
                    [fault reason 0x05] PTE Write access is not set";
        assert_eq!(
            IommuFaultRecord::parse_kernel_line(line),
            Some(IommuFaultRecord {
                requester: PciAddress::new(0, 0, 2, 0).unwrap(),
                page: 0x90_0000,
                write: true,
                reason: 5,
            })
        );
        let read = "DMAR: [DMA Read NO_PASID] Request device [01:1f.7] fault addr 0xa01000 \
                    [fault reason 0x06] PTE Read access is not set";
        let r = IommuFaultRecord::parse_kernel_line(read).unwrap();
        assert_eq!(
            (r.requester.to_string(), r.write, r.reason),
            ("0000:01:1f.7".into(), false, 6)
        );
        assert_eq!(
            IommuFaultRecord::parse_kernel_line("DMAR: DRHD: handling fault status reg 2"),
            None
        );
    }
}
