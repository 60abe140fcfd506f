//! The typed error every backend returns.
//!
//! An [`Error`] says which [`Operation`] failed, on what (a device name, a
//! group, a path), what [`ErrorKind`] of failure it was, and carries the
//! errno or I/O error underneath as its `source()`. Two backends failing "the
//! same way" means equal [`Error::kind`] and equal [`Error::errno`].

use nix::errno::Errno;
use std::fmt;

/// The result type of this crate family.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, independent of which backend noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The object does not exist (ENOENT, ENODEV, ENXIO).
    NotFound,
    /// The object is in use or in a state that forbids the call (EBUSY).
    Busy,
    /// The kernel or backend rejected an argument (EINVAL; EBADF, EBADFD
    /// for a file descriptor that is not the file the call takes).
    InvalidArgument,
    /// An offset or index lies outside the object it addresses.
    OutOfRange,
    /// An access is not aligned to its width.
    Misaligned,
    /// The operation is not supported here (ENOTTY, EOPNOTSUPP, ENOSYS).
    Unsupported,
    /// The caller lacks the right to do this (EPERM, EACCES).
    PermissionDenied,
    /// The object already exists (EEXIST), e.g. an overlapping DMA mapping.
    AlreadyExists,
    /// A resource is exhausted (ENOSPC, ENOMEM; EMFILE and ENFILE: the
    /// process's or the system's file descriptors).
    NoSpace,
    /// A wait ran out of time.
    TimedOut,
    /// Data read from the kernel, a device or the host did not parse.
    Malformed,
    /// The kernel could not use an address the caller handed it (EFAULT
    /// from `VFIO_IOMMU_MAP_DMA`: a `vaddr` with no mapping behind it, or
    /// memory it cannot pin).
    BadAddress,
    /// Any other I/O failure.
    Io,
}

impl ErrorKind {
    /// The kind a kernel errno stands for, whatever the operation.
    ///
    /// [`Error::from_errno`] uses [`for_operation`](Self::for_operation),
    /// which refines this where one errno means different things in
    /// different calls.
    pub fn from_errno(errno: Errno) -> Self {
        match errno {
            Errno::ENOENT | Errno::ENODEV | Errno::ENXIO => Self::NotFound,
            Errno::EBUSY => Self::Busy,
            // EBADF and EBADFD: a file descriptor argument that is no file, or
            // the wrong kind of file (a bind to something that is not an iommufd).
            Errno::EINVAL | Errno::EBADF | Errno::EBADFD => Self::InvalidArgument,
            Errno::EFAULT | Errno::ERANGE => Self::OutOfRange,
            Errno::ENOTTY | Errno::EOPNOTSUPP | Errno::ENOSYS => Self::Unsupported,
            Errno::EPERM | Errno::EACCES => Self::PermissionDenied,
            Errno::EEXIST => Self::AlreadyExists,
            Errno::ENOSPC | Errno::ENOMEM | Errno::EMFILE | Errno::ENFILE => Self::NoSpace,
            Errno::ETIMEDOUT => Self::TimedOut,
            _ => Self::Io,
        }
    }

    /// The kind `errno` stands for when `op` fails with it.
    ///
    /// EFAULT from `VFIO_IOMMU_MAP_DMA` ([`Operation::MapDma`]) means the
    /// kernel could not pin the user memory named by `vaddr`:
    /// [`BadAddress`](Self::BadAddress). Elsewhere EFAULT keeps its
    /// [`from_errno`](Self::from_errno) kind (vfio-pci fails a config read
    /// that straddles the end of config space with EFAULT: out of range).
    pub fn for_operation(op: Operation, errno: Errno) -> Self {
        match (op, errno) {
            (Operation::MapDma, Errno::EFAULT) => Self::BadAddress,
            _ => Self::from_errno(errno),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::NotFound => "not found",
            Self::Busy => "busy",
            Self::InvalidArgument => "invalid argument",
            Self::OutOfRange => "out of range",
            Self::Misaligned => "misaligned",
            Self::Unsupported => "unsupported",
            Self::PermissionDenied => "permission denied",
            Self::AlreadyExists => "already exists",
            Self::NoSpace => "no space",
            Self::TimedOut => "timed out",
            Self::Malformed => "malformed",
            Self::BadAddress => "bad address",
            Self::Io => "I/O error",
        };
        f.write_str(s)
    }
}

/// The VFIO operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Opening the container (`/dev/vfio/vfio`).
    OpenContainer,
    /// `VFIO_GET_API_VERSION`.
    ApiVersion,
    /// `VFIO_CHECK_EXTENSION`.
    CheckExtension,
    /// `VFIO_SET_IOMMU`.
    SetIommu,
    /// `VFIO_IOMMU_GET_INFO`.
    IommuInfo,
    /// Allocating DMA-able memory.
    AllocDma,
    /// Accessing DMA-able memory from the CPU.
    DmaAccess,
    /// `VFIO_IOMMU_MAP_DMA`.
    MapDma,
    /// `VFIO_IOMMU_UNMAP_DMA`.
    UnmapDma,
    /// Choosing an IOVA for a mapping ([`IovaAllocator`](crate::IovaAllocator)).
    AllocIova,
    /// Opening a group (`/dev/vfio/N`).
    OpenGroup,
    /// `VFIO_GROUP_GET_STATUS`.
    GroupStatus,
    /// `VFIO_GROUP_SET_CONTAINER`.
    SetContainer,
    /// `VFIO_GROUP_UNSET_CONTAINER`.
    UnsetContainer,
    /// `VFIO_GROUP_GET_DEVICE_FD`.
    OpenDevice,
    /// The downstream keep-alive ioctl.
    KeepAlive,
    /// `VFIO_DEVICE_GET_INFO`.
    DeviceInfo,
    /// `VFIO_DEVICE_GET_REGION_INFO`.
    RegionInfo,
    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    IrqInfo,
    /// `VFIO_DEVICE_RESET`.
    Reset,
    /// Reading a region through the device file.
    RegionRead,
    /// Writing a region through the device file.
    RegionWrite,
    /// Mapping a region into memory.
    MapRegion,
    /// A register read from a mapped region.
    RegisterRead,
    /// A register write to a mapped region.
    RegisterWrite,
    /// `VFIO_DEVICE_SET_IRQS`.
    SetIrqs,
    /// Creating an interrupt eventfd.
    CreateInterrupt,
    /// Waiting on or consuming an interrupt eventfd.
    WaitInterrupt,
    /// Looking up a device's IOMMU group in sysfs.
    LookupGroup,
    /// Looking up a vector's Linux irq in /proc/interrupts.
    LookupIrq,
    /// Reading a module parameter.
    ModuleParameter,
    /// Parsing data from the kernel or a device.
    Parse,
    /// Opening `/dev/iommu`.
    OpenIommufd,
    /// Opening a device's VFIO cdev (`/dev/vfio/devices/vfioN`).
    OpenDeviceCdev,
    /// `VFIO_DEVICE_BIND_IOMMUFD`.
    BindIommufd,
    /// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`.
    AttachPt,
    /// `VFIO_DEVICE_DETACH_IOMMUFD_PT`.
    DetachPt,
    /// `IOMMU_IOAS_ALLOC`.
    AllocIoas,
    /// `IOMMU_IOAS_IOVA_RANGES`.
    IovaRanges,
    /// `IOMMU_DESTROY`.
    Destroy,
    /// Looking up the physical address of DMA memory.
    PhysicalAddress,
    /// `VFIO_DEVICE_FEATURE`.
    DeviceFeature,
    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`.
    HotResetInfo,
    /// `VFIO_DEVICE_PCI_HOT_RESET`.
    HotReset,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::OpenContainer => "open container",
            Self::ApiVersion => "get API version",
            Self::CheckExtension => "check extension",
            Self::SetIommu => "set IOMMU type",
            Self::IommuInfo => "get IOMMU info",
            Self::AllocDma => "allocate DMA memory",
            Self::DmaAccess => "access DMA memory",
            Self::MapDma => "map DMA",
            Self::UnmapDma => "unmap DMA",
            Self::AllocIova => "allocate IOVA",
            Self::OpenGroup => "open group",
            Self::GroupStatus => "get group status",
            Self::SetContainer => "set container",
            Self::UnsetContainer => "unset container",
            Self::OpenDevice => "open device",
            Self::KeepAlive => "set keep-alive",
            Self::DeviceInfo => "get device info",
            Self::RegionInfo => "get region info",
            Self::IrqInfo => "get IRQ info",
            Self::Reset => "reset device",
            Self::RegionRead => "read region",
            Self::RegionWrite => "write region",
            Self::MapRegion => "map region",
            Self::RegisterRead => "read register",
            Self::RegisterWrite => "write register",
            Self::SetIrqs => "set IRQs",
            Self::CreateInterrupt => "create interrupt",
            Self::WaitInterrupt => "wait for interrupt",
            Self::LookupGroup => "look up IOMMU group",
            Self::LookupIrq => "look up irq",
            Self::ModuleParameter => "read module parameter",
            Self::Parse => "parse",
            Self::OpenIommufd => "open iommufd",
            Self::OpenDeviceCdev => "open device cdev",
            Self::BindIommufd => "bind iommufd",
            Self::AttachPt => "attach page table",
            Self::DetachPt => "detach page table",
            Self::AllocIoas => "allocate IOAS",
            Self::IovaRanges => "get IOVA ranges",
            Self::Destroy => "destroy iommufd object",
            Self::PhysicalAddress => "look up physical address",
            Self::DeviceFeature => "device feature",
            Self::HotResetInfo => "get hot reset info",
            Self::HotReset => "hot reset",
        };
        f.write_str(s)
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What an errno usually means for `op`, where the errno alone misleads.
fn errno_detail(op: Operation, errno: Errno) -> Option<&'static str> {
    match (op, errno) {
        (Operation::MapDma, Errno::ENOMEM) => Some(
            "the kernel could not pin the pages; the usual cause is the locked-memory \
             limit (RLIMIT_MEMLOCK, `ulimit -l`), which every pinned page counts against",
        ),
        // `vfio_noiommu_ioctl` answers every ioctl but CHECK_EXTENSION so.
        (Operation::MapDma | Operation::UnmapDma, Errno::ENOTTY) => Some(
            "a no-IOMMU container has no IOMMU to program and nothing to map: its \
             devices use physical addresses, which DmaMapping::device_address gives",
        ),
        _ => None,
    }
}

/// A failed VFIO operation.
///
/// `Display` names the operation, the target and the detail; the errno or
/// I/O error that caused it is the [`source`](std::error::Error::source), not
/// repeated in the message.
///
/// The error is one pointer wide (its parts are boxed), so a `Result` of a
/// register value or a `()` is returned in registers: a register access
/// that succeeds pays nothing for the error it might have had.
#[derive(Debug)]
pub struct Error(Box<Inner>);

const _: () = assert!(size_of::<Error>() == size_of::<usize>());

#[derive(Debug)]
struct Inner {
    op: Operation,
    kind: ErrorKind,
    target: Option<String>,
    detail: Option<String>,
    errno: Option<Errno>,
    source: Option<Source>,
}

impl Error {
    /// An error of `kind` with no underlying errno.
    pub fn new(op: Operation, kind: ErrorKind) -> Self {
        Self(Box::new(Inner {
            op,
            kind,
            target: None,
            detail: None,
            errno: None,
            source: None,
        }))
    }

    /// An error the kernel (or a backend imitating it) reported as `errno`,
    /// of the kind [`ErrorKind::for_operation`] gives.
    ///
    /// ENOMEM from `VFIO_IOMMU_MAP_DMA` comes with a detail naming its usual
    /// cause: pinning the pages would exceed the process's locked-memory
    /// limit (`RLIMIT_MEMLOCK`). ENOTTY from a map or unmap is what a
    /// no-IOMMU container answers (`vfio_noiommu_ioctl`), and its detail
    /// says so. Replace either with [`with_detail`](Self::with_detail) if
    /// the caller knows better.
    pub fn from_errno(op: Operation, errno: Errno) -> Self {
        let mut e = Self::new(op, ErrorKind::for_operation(op, errno));
        e.0.errno = Some(errno);
        e.0.source = Some(Box::new(errno));
        e.0.detail = errno_detail(op, errno).map(str::to_owned);
        e
    }

    /// An error from a failed file-system or other I/O call.
    pub fn from_io(op: Operation, err: std::io::Error) -> Self {
        let errno = err.raw_os_error().map(Errno::from_raw);
        let kind = match errno {
            Some(e) => ErrorKind::for_operation(op, e),
            None => match err.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                std::io::ErrorKind::PermissionDenied => ErrorKind::PermissionDenied,
                std::io::ErrorKind::InvalidInput => ErrorKind::InvalidArgument,
                std::io::ErrorKind::InvalidData => ErrorKind::Malformed,
                std::io::ErrorKind::TimedOut => ErrorKind::TimedOut,
                _ => ErrorKind::Io,
            },
        };
        let mut e = Self::new(op, kind);
        e.0.errno = errno;
        e.0.detail = errno.and_then(|e| errno_detail(op, e)).map(str::to_owned);
        e.0.source = Some(Box::new(err));
        e
    }

    /// Names what the operation was applied to (device, group, path).
    #[must_use]
    pub fn with_target(mut self, target: impl fmt::Display) -> Self {
        self.0.target = Some(target.to_string());
        self
    }

    /// Adds a sentence on what exactly was wrong.
    #[must_use]
    pub fn with_detail(mut self, detail: impl fmt::Display) -> Self {
        self.0.detail = Some(detail.to_string());
        self
    }

    /// Attaches an underlying cause (e.g. a parse error).
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        self.0.op
    }

    /// What kind of failure this was.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The errno reported by the kernel (or imitated by a mock), if any.
    pub fn errno(&self) -> Option<Errno> {
        self.0.errno
    }

    /// What the operation was applied to, if recorded.
    pub fn target(&self) -> Option<&str> {
        self.0.target.as_deref()
    }

    /// The detail sentence, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.0.op)?;
        if let Some(target) = &self.0.target {
            write!(f, " for {target}")?;
        }
        write!(f, " ({})", self.0.kind)?;
        if let Some(detail) = &self.0.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn errno_maps_to_kind_and_is_the_source() {
        let e = Error::from_errno(Operation::OpenDevice, Errno::ENODEV).with_target("0000:00:02.0");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.errno(), Some(Errno::ENODEV));
        assert_eq!(
            e.to_string(),
            "open device failed for 0000:00:02.0 (not found)"
        );
        let src = e.source().expect("errno is the source");
        assert_eq!(src.to_string(), Errno::ENODEV.to_string());
    }

    #[test]
    fn io_error_keeps_its_errno() {
        let io = std::io::Error::from_raw_os_error(libc_eacces());
        let e = Error::from_io(Operation::OpenGroup, io);
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert_eq!(e.errno(), Some(Errno::EACCES));
    }

    #[test]
    fn running_out_of_file_descriptors_is_resource_exhaustion() {
        for errno in [Errno::EMFILE, Errno::ENFILE] {
            assert_eq!(ErrorKind::from_errno(errno), ErrorKind::NoSpace);
            let e = Error::from_errno(Operation::CreateInterrupt, errno);
            assert_eq!((e.kind(), e.errno()), (ErrorKind::NoSpace, Some(errno)));
            let io = std::io::Error::from_raw_os_error(errno as i32);
            assert_eq!(
                Error::from_io(Operation::OpenGroup, io).kind(),
                ErrorKind::NoSpace
            );
        }
    }

    #[test]
    fn efault_from_map_dma_is_a_bad_address_elsewhere_it_is_unchanged() {
        let e = Error::from_errno(Operation::MapDma, Errno::EFAULT);
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::BadAddress, Some(Errno::EFAULT))
        );
        assert_eq!(e.to_string(), "map DMA failed (bad address)");
        // vfio-pci's EFAULT for a config read straddling the end of config space.
        let e = Error::from_errno(Operation::RegionRead, Errno::EFAULT);
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::OutOfRange, Some(Errno::EFAULT))
        );
        assert_eq!(ErrorKind::from_errno(Errno::EFAULT), ErrorKind::OutOfRange);
        let io = std::io::Error::from_raw_os_error(Errno::EFAULT as i32);
        assert_eq!(
            Error::from_io(Operation::MapDma, io).kind(),
            ErrorKind::BadAddress
        );
    }

    #[test]
    fn enomem_from_map_dma_names_the_locked_memory_limit() {
        let e =
            Error::from_errno(Operation::MapDma, Errno::ENOMEM).with_target("iova 0x1000+0x1000");
        assert_eq!(
            (e.kind(), e.errno()),
            (ErrorKind::NoSpace, Some(Errno::ENOMEM))
        );
        let detail = e.detail().expect("a detail");
        assert!(detail.contains("RLIMIT_MEMLOCK"), "{detail}");
        assert!(e.to_string().contains("locked-memory limit"), "{e}");
        // Other operations' ENOMEM says nothing it does not know.
        assert_eq!(
            Error::from_errno(Operation::AllocDma, Errno::ENOMEM).detail(),
            None
        );
    }

    fn libc_eacces() -> i32 {
        Errno::EACCES as i32
    }

    #[test]
    fn display_includes_detail_not_source() {
        let e = Error::new(Operation::RegisterRead, ErrorKind::Misaligned)
            .with_detail("offset 0x3 is not aligned to 4 bytes");
        assert_eq!(
            e.to_string(),
            "read register failed (misaligned): offset 0x3 is not aligned to 4 bytes"
        );
        assert!(e.source().is_none());
    }

    #[test]
    fn enotty_from_a_map_or_unmap_points_at_physical_addresses() {
        for op in [Operation::MapDma, Operation::UnmapDma] {
            let e = Error::from_errno(op, Errno::ENOTTY);
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            let detail = e.detail().unwrap();
            assert!(detail.contains("no-IOMMU"), "{detail}");
            assert!(detail.contains("DmaMapping::device_address"), "{detail}");
        }
        assert_eq!(
            Error::from_errno(Operation::Reset, Errno::ENOTTY).detail(),
            None
        );
    }
}
