//! Where the host's VFIO files live, and the lookups that read them.
//!
//! Nothing below this type names `/sys`, `/proc` or `/dev` directly: a mock
//! host or a test points a [`HostPaths`] at a temporary tree instead.

use crate::error::{Error, ErrorKind, Operation, Result};
use crate::info::IrqIndex;
use crate::parse;
use crate::pci_address::PciAddress;
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// The most bytes [`HostPaths::module_parameter`] reads: a sysfs attribute
/// is at most one page (4 KiB on x86-64; larger pages would only shorten
/// what is accepted on such hosts, never an attribute the kernel writes on
/// 4 KiB-page hosts).
pub const MAX_PARAMETER_LEN: u64 = 4096;

/// The roots of sysfs, procfs and devfs a backend uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    sysfs: PathBuf,
    procfs: PathBuf,
    dev: PathBuf,
}

impl Default for HostPaths {
    /// The real host: `/sys`, `/proc`, `/dev`.
    fn default() -> Self {
        Self::new("/sys", "/proc", "/dev")
    }
}

/// A module parameter VFIO's behaviour depends on, and its value if readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleParameter {
    /// Module name, e.g. `vfio`.
    pub module: &'static str,
    /// Parameter name, e.g. `enable_unsafe_noiommu_mode`.
    pub name: &'static str,
    /// The trimmed value, or `None` when the module or parameter is absent.
    pub value: Option<String>,
}

/// The module parameters worth logging when a VFIO setup misbehaves.
pub const RELEVANT_PARAMETERS: &[(&str, &str)] = &[
    ("vfio", "enable_unsafe_noiommu_mode"),
    ("vfio_iommu_type1", "allow_unsafe_interrupts"),
    ("vfio_iommu_type1", "dma_entry_limit"),
    ("vfio_pci", "ids"),
    ("vfio_pci", "nointxmask"),
    ("vfio_pci", "disable_idle_d3"),
    ("driver", "async_probe"),
];

impl HostPaths {
    /// Paths rooted at the given sysfs, procfs and devfs directories.
    pub fn new(
        sysfs: impl Into<PathBuf>,
        procfs: impl Into<PathBuf>,
        dev: impl Into<PathBuf>,
    ) -> Self {
        Self {
            sysfs: sysfs.into(),
            procfs: procfs.into(),
            dev: dev.into(),
        }
    }

    /// All three roots under one directory: `<root>/sys`, `<root>/proc`, `<root>/dev`.
    pub fn under(root: &Path) -> Self {
        Self::new(root.join("sys"), root.join("proc"), root.join("dev"))
    }

    /// The sysfs root.
    pub fn sysfs(&self) -> &Path {
        &self.sysfs
    }

    /// The procfs root.
    pub fn procfs(&self) -> &Path {
        &self.procfs
    }

    /// The devfs root.
    pub fn dev(&self) -> &Path {
        &self.dev
    }

    /// `/dev/vfio/vfio`.
    pub fn container_path(&self) -> PathBuf {
        self.dev.join("vfio").join("vfio")
    }

    /// `/dev/vfio/<number>`.
    pub fn group_path(&self, number: u32) -> PathBuf {
        self.dev.join("vfio").join(number.to_string())
    }

    /// `/dev/vfio/noiommu-<number>`.
    pub fn noiommu_group_path(&self, number: u32) -> PathBuf {
        self.dev.join("vfio").join(format!("noiommu-{number}"))
    }

    /// `/dev/iommu`.
    pub fn iommufd_path(&self) -> PathBuf {
        self.dev.join("iommu")
    }

    /// `/dev/vfio/devices/<name>`, the node of a VFIO device cdev.
    pub fn device_cdev_path(&self, name: &str) -> PathBuf {
        self.dev.join("vfio").join("devices").join(name)
    }

    /// The name of `address`'s VFIO device cdev (`vfioN`): the one entry of
    /// its sysfs `vfio-dev/` directory, the VFIO device's class device
    /// (Linux 6.1 and later list it; only a kernel with
    /// `CONFIG_VFIO_DEVICE_CDEV` has the `/dev/vfio/devices/vfioN` node for
    /// it). A device with no such directory (not bound to a VFIO driver,
    /// its removal begun, or a kernel before 6.1) is
    /// [`ErrorKind::NotFound`].
    pub fn device_cdev_name(&self, address: &PciAddress) -> Result<String> {
        let dir = self.pci_device_dir(address).join("vfio-dev");
        let entries = fs::read_dir(&dir).map_err(|e| {
            Error::from_io(Operation::OpenDeviceCdev, e)
                .with_target(dir.display())
                .with_detail(
                    "no vfio-dev entry: the device is not bound to a VFIO driver, or the \
                     kernel lacks CONFIG_VFIO_DEVICE_CDEV (Linux 6.6 and later)",
                )
        })?;
        let mut names = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                n.strip_prefix("vfio")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            });
        match (names.next(), names.next()) {
            (Some(name), None) => Ok(name),
            _ => Err(Error::new(Operation::OpenDeviceCdev, ErrorKind::Malformed)
                .with_target(dir.display())
                .with_detail("expected exactly one vfioN entry")),
        }
    }

    /// `/sys/bus/pci/devices/<address>`.
    pub fn pci_device_dir(&self, address: &PciAddress) -> PathBuf {
        self.sysfs.join("bus/pci/devices").join(address.to_string())
    }

    /// `/proc/interrupts`.
    pub fn interrupts_path(&self) -> PathBuf {
        self.procfs.join("interrupts")
    }

    /// The IOMMU group of a PCI device, from its sysfs `iommu_group` link.
    pub fn iommu_group(&self, address: &PciAddress) -> Result<u32> {
        let link = self.pci_device_dir(address).join("iommu_group");
        let target = fs::read_link(&link)
            .map_err(|e| Error::from_io(Operation::LookupGroup, e).with_target(link.display()))?;
        parse::sysfs::group_number_from_link(&target).map_err(|e| {
            Error::new(Operation::LookupGroup, ErrorKind::Malformed)
                .with_target(link.display())
                .with_source(e)
        })
    }

    /// The Linux irq number behind vector `vector` of `index` on `device`, from
    /// /proc/interrupts (the action named e.g. `vfio-msix[3](0000:00:03.0)`,
    /// matched exactly). Not found when the vector is not bound.
    pub fn vector_irq(&self, device: &PciAddress, index: IrqIndex, vector: u32) -> Result<u32> {
        let path = self.interrupts_path();
        let action =
            parse::proc_interrupts::vfio_action_name(index, vector, device).ok_or_else(|| {
                Error::new(Operation::LookupIrq, ErrorKind::InvalidArgument)
                    .with_target(device)
                    .with_detail(format_args!(
                        "{index} vectors are not listed in /proc/interrupts"
                    ))
            })?;
        let file = fs::File::open(&path)
            .map_err(|e| Error::from_io(Operation::LookupIrq, e).with_target(path.display()))?;
        match parse::proc_interrupts::find_irq(BufReader::new(file), &action) {
            Ok(Some(irq)) => Ok(irq),
            Ok(None) => Err(Error::new(Operation::LookupIrq, ErrorKind::NotFound)
                .with_target(device)
                .with_detail(format_args!("no `{action}` in {}", path.display()))),
            Err(e) => Err(Error::new(Operation::LookupIrq, ErrorKind::Malformed)
                .with_target(path.display())
                .with_source(e)),
        }
    }

    /// Reads `/sys/module/<module>/parameters/<name>`, trimmed.
    ///
    /// A sysfs attribute is at most a page long; a file longer than
    /// [`MAX_PARAMETER_LEN`] bytes (under an injected root it could be
    /// anything, `/dev/zero` included) is [`ErrorKind::Malformed`], read no
    /// further than that.
    pub fn module_parameter(&self, module: &str, name: &str) -> Result<String> {
        let path = self
            .sysfs
            .join("module")
            .join(module)
            .join("parameters")
            .join(name);
        let io_err = |e| Error::from_io(Operation::ModuleParameter, e).with_target(path.display());
        let mut value = String::new();
        fs::File::open(&path)
            .and_then(|f| f.take(MAX_PARAMETER_LEN + 1).read_to_string(&mut value))
            .map_err(io_err)?;
        if value.len() as u64 > MAX_PARAMETER_LEN {
            return Err(Error::new(Operation::ModuleParameter, ErrorKind::Malformed)
                .with_target(path.display())
                .with_detail(format_args!(
                    "longer than {MAX_PARAMETER_LEN} bytes, which no sysfs attribute is"
                )));
        }
        Ok(value.trim().to_owned())
    }

    /// Every parameter of [`RELEVANT_PARAMETERS`], with its value where readable.
    pub fn relevant_parameters(&self) -> Vec<ModuleParameter> {
        RELEVANT_PARAMETERS
            .iter()
            .map(|&(module, name)| ModuleParameter {
                module,
                name,
                value: self.module_parameter(module, name).ok(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn addr(s: &str) -> PciAddress {
        s.parse().unwrap()
    }

    fn tree() -> (tempfile::TempDir, HostPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = HostPaths::under(dir.path());
        (dir, paths)
    }

    #[test]
    fn iommu_group_follows_the_sysfs_link() {
        let (_dir, paths) = tree();
        let dev = paths.pci_device_dir(&addr("0000:00:03.0"));
        fs::create_dir_all(&dev).unwrap();
        symlink("../../../kernel/iommu_groups/7", dev.join("iommu_group")).unwrap();
        assert_eq!(paths.iommu_group(&addr("0000:00:03.0")).unwrap(), 7);
    }

    #[test]
    fn iommu_group_of_missing_device_is_not_found() {
        let (_dir, paths) = tree();
        let e = paths.iommu_group(&addr("0000:00:09.0")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn iommu_group_link_that_does_not_parse_is_malformed() {
        let (_dir, paths) = tree();
        let dev = paths.pci_device_dir(&addr("0000:00:03.0"));
        fs::create_dir_all(&dev).unwrap();
        symlink(
            "../../../kernel/iommu_groups/seven",
            dev.join("iommu_group"),
        )
        .unwrap();
        let e = paths.iommu_group(&addr("0000:00:03.0")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
    }

    #[test]
    fn vector_irq_matches_vector_and_device_exactly() {
        let (_dir, paths) = tree();
        fs::create_dir_all(paths.procfs()).unwrap();
        fs::write(
            paths.interrupts_path(),
            "            CPU0       CPU1\n\
             \x20 24:          0          0  IR-PCI-MSIX-0000:00:03.0    0-edge      vfio-msix[1](10000:00:03.0)\n\
             \x20 25:          3          0  IR-PCI-MSIX-0000:00:03.0    1-edge      vfio-msix[10](0000:00:03.0)\n\
             \x20 26:          1          0  IR-PCI-MSIX-0000:00:03.0    1-edge      vfio-msix[1](0000:00:03.0)\n\
             NMI:          0          0   Non-maskable interrupts\n",
        )
        .unwrap();
        let a = addr("0000:00:03.0");
        assert_eq!(paths.vector_irq(&a, IrqIndex::MSIX, 1).unwrap(), 26);
        assert_eq!(paths.vector_irq(&a, IrqIndex::MSIX, 10).unwrap(), 25);
        let e = paths.vector_irq(&a, IrqIndex::MSIX, 2).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn module_parameters_are_read_and_absent_ones_are_none() {
        let (_dir, paths) = tree();
        let p = paths.sysfs().join("module/vfio/parameters");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("enable_unsafe_noiommu_mode"), "N\n").unwrap();
        assert_eq!(
            paths
                .module_parameter("vfio", "enable_unsafe_noiommu_mode")
                .unwrap(),
            "N"
        );
        let all = paths.relevant_parameters();
        assert_eq!(all[0].value.as_deref(), Some("N"));
        assert!(all[1..].iter().all(|p| p.value.is_none()));
    }

    #[test]
    fn an_endless_or_overlong_parameter_file_is_malformed_not_read_to_the_end() {
        let (_dir, paths) = tree();
        let p = paths.sysfs().join("module/vfio/parameters");
        fs::create_dir_all(&p).unwrap();
        // Unbounded before: read_to_string of /dev/zero never ends.
        symlink("/dev/zero", p.join("endless")).unwrap();
        let e = paths.module_parameter("vfio", "endless").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
        let len = MAX_PARAMETER_LEN as usize;
        fs::write(p.join("page"), "y".repeat(len)).unwrap();
        assert_eq!(paths.module_parameter("vfio", "page").unwrap().len(), len);
        fs::write(p.join("long"), "y".repeat(len + 1)).unwrap();
        let e = paths.module_parameter("vfio", "long").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Malformed);
    }
}
