//! iommufd: `/dev/iommu`, the objects of an iommufd context (IOASes, bound
//! devices, the hardware page tables attaching creates) and the IOVA
//! bookkeeping of an IOAS, as Linux 6.12's `drivers/iommu/iommufd` runs
//! them for devices behind QEMU's intel-iommu.
//!
//! Each rule names the kernel function it comes from. The mock's iommufd is
//! a memfd, so that a device's `VFIO_DEVICE_BIND_IOMMUFD` can tell an
//! iommufd from any other file by the file itself, as the kernel compares
//! `f_op`: live contexts are kept by the memfd's `(st_dev, st_ino)`.

use crate::fault::Faults;
use crate::group::GroupCore;
use crate::host::{HostInner, MockBackend};
use crate::iommu::{Access, DmaMap, IommuGeometry, Outcome};
use crate::memory::{DmaBuffer, MockDmaMemory, PAGE_SIZE};
use nix::errno::Errno;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use vfio_core::access::check_range;
use vfio_core::{DmaFlags, DmaSpace, Error, Ioas, IommuFd, IovaRange, Operation, Result};

/// Where a group's devices find the IOAS they DMA through.
pub(crate) type DomainSlot = Arc<Mutex<Option<Arc<IoasCore>>>>;

/// `PAGE_SIZE`.
const PAGE: u64 = PAGE_SIZE as u64;
/// `HPAGE_SIZE` on x86-64 (the guest kernels have transparent huge pages),
/// the most alignment a kernel-chosen IOVA is given.
const HPAGE: u64 = 2 << 20;
// A domain's aperture ends at the host IOMMU's last IOVA
// (`paging_domain_alloc`: `__DOMAIN_MAX_ADDR(gaw)`), and each attached
// device reserves intel-iommu's `IOMMU_RESV_MSI` window
// (`iopt_table_add_domain`, `iopt_table_enforce_dev_resv_regions`; QEMU
// has no RMRR), both from the host's `IommuGeometry`. Seen on Linux 6.12
// under QEMU's 39-bit VT-d: an IOAS with edu attached reports
// [0, 0xfedfffff] and [0xfef00000, 0x7fffffffff].
/// An intel-iommu domain's smallest page (`1 << __ffs(pgsize_bitmap)`).
const DOMAIN_PAGE: u64 = 4096;

/// `IOMMU_IOAS_MAP` with `IOMMU_IOAS_MAP_FIXED_IOVA` clear and set.
#[derive(Debug, Clone, Copy)]
enum At {
    Anywhere,
    Fixed(u64),
}

/// Who reserved a range of an IOAS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// The aperture of a hardware page table's domain.
    Domain(u32),
    /// A device's reserved regions, while it is attached.
    Device(u32),
}

#[derive(Debug)]
struct Reserved {
    start: u64,
    last: u64,
    owner: Owner,
}

/// `struct io_pagetable`: the areas, the reserved ranges and the domains of
/// one IOAS.
#[derive(Debug, Default)]
struct Iopt {
    areas: DmaMap,
    reserved: Vec<Reserved>,
    /// The hardware page tables (intel-iommu domains) filled from it.
    domains: Vec<u32>,
}

/// The address a buffer is taken to have in the process: aligned to 2 MiB
/// when its length is a multiple of 2 MiB (a hugetlb mapping, or an
/// anonymous one the kernel places on a THP boundary, Linux 6.7 on), else
/// to its page size, and no more. Only its alignment matters, to
/// `iopt_alloc_iova`.
// Unconfirmed: where vfio-linux's mmap lands is the kernel's choice; a
// buffer it happens to align more than this gets a more aligned
// kernel-chosen IOVA on the kernel than on the mock, when the mapping is
// longer than that alignment.
fn user_address(buffer: &DmaBuffer, offset: usize) -> u64 {
    let base = if buffer.len() as u64 % HPAGE == 0 {
        HPAGE
    } else {
        buffer.page_size() as u64
    };
    base.wrapping_add(offset as u64)
}

/// `__alloc_iova_check_range`: the first IOVA from `start` with the
/// alignment and page offset asked for at which `length` bytes end by `last`.
fn fit(start: u64, last: u64, length: u64, alignment: u64, page_offset: u64) -> Option<u64> {
    let aligned = (start.checked_add(alignment - 1)? & !(alignment - 1)) | page_offset;
    if aligned >= last || last - aligned < length - 1 {
        return None;
    }
    Some(aligned)
}

impl Iopt {
    /// `iova_alignment`: 1 for a table that fills no domain (`iopt_init_table`),
    /// else the largest smallest page of its domains
    /// (`iopt_calculate_iova_alignment`).
    fn alignment(&self) -> u64 {
        if self.domains.is_empty() {
            1
        } else {
            DOMAIN_PAGE
        }
    }

    fn reserved_in(&self, start: u64, last: u64) -> bool {
        self.reserved
            .iter()
            .any(|r| r.start <= last && start <= r.last)
    }

    /// `iopt_reserve_iova`: EADDRINUSE where an area lies.
    fn reserve(&mut self, start: u64, last: u64, owner: Owner) -> std::result::Result<(), Errno> {
        if self.areas.first_in(start, last).is_some() {
            return Err(Errno::EADDRINUSE);
        }
        self.reserved.push(Reserved { start, last, owner });
        Ok(())
    }

    fn unreserve(&mut self, owner: Owner) {
        self.reserved.retain(|r| r.owner != owner);
    }

    /// The holes between the reserved ranges (and the areas, with `areas`)
    /// within `[lo, hi]`, as `(first, last)`.
    fn holes(&self, lo: u64, hi: u64, areas: bool) -> Vec<(u64, u64)> {
        let mut used: Vec<(u64, u64)> = self.reserved.iter().map(|r| (r.start, r.last)).collect();
        if areas {
            used.extend(self.areas.areas().map(|(s, n, _)| (s, s + (n - 1))));
        }
        used.retain(|&(s, l)| s <= hi && lo <= l);
        used.sort_unstable();
        let mut holes = Vec::new();
        let mut cur = Some(lo);
        for (s, l) in used {
            let Some(c) = cur else { break };
            if s > c {
                holes.push((c, s - 1));
            }
            if l >= c {
                cur = l.checked_add(1).filter(|&n| n <= hi);
            }
        }
        if let Some(c) = cur {
            if c <= hi {
                holes.push((c, hi));
            }
        }
        holes
    }

    /// `IOMMU_IOAS_IOVA_RANGES`: the holes of the reserved ranges.
    fn ranges(&self) -> Vec<IovaRange> {
        self.holes(0, u64::MAX, false)
            .into_iter()
            .map(|(start, end)| IovaRange { start, end })
            .collect()
    }

    /// `iopt_alloc_iova`: the lowest free IOVA from `PAGE_SIZE` up with the
    /// alignment of the length (a power of two at most `HPAGE_SIZE`,
    /// and no more than the user address has) and the user address's page
    /// offset.
    fn alloc_iova(&self, uptr: u64, length: u64) -> std::result::Result<u64, Errno> {
        let page_offset = uptr % PAGE;
        if length == 0 || length >= u64::MAX / 2 {
            return Err(Errno::EOVERFLOW);
        }
        let mut alignment = length.next_power_of_two();
        if uptr != 0 {
            alignment = alignment.min(1 << uptr.trailing_zeros());
        }
        alignment = alignment.min(HPAGE);
        if alignment < self.alignment() {
            return Err(Errno::EINVAL);
        }
        let (lo, hi) = (PAGE, u64::MAX - PAGE);
        if fit(lo, hi, length, alignment, page_offset).is_none() {
            return Err(Errno::ENOSPC);
        }
        self.holes(lo, hi, true)
            .into_iter()
            .find_map(|(s, l)| fit(s, l, length, alignment, page_offset))
            .ok_or(Errno::ENOSPC)
    }

    /// `iopt_check_iova`.
    fn check_iova(&self, iova: u64, length: u64) -> std::result::Result<(), Errno> {
        if iova & (self.alignment() - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let last = iova.checked_add(length - 1).ok_or(Errno::EOVERFLOW)?;
        if self.reserved_in(iova, last) {
            return Err(Errno::EINVAL);
        }
        if self.areas.first_in(iova, last).is_some() {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// `iopt_map_user_pages` from `iopt_alloc_pages` on: the IOVA mapped.
    fn map(
        &mut self,
        buffer: Arc<DmaBuffer>,
        offset: usize,
        length: u64,
        at: At,
        flags: DmaFlags,
    ) -> std::result::Result<u64, Errno> {
        // iopt_alloc_pages.
        if length == 0 || length > u64::MAX - PAGE {
            return Err(Errno::EINVAL);
        }
        // iopt_alloc_area_pages.
        let alignment = self.alignment();
        if length & (alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        let uptr = user_address(&buffer, offset);
        let iova = match at {
            At::Anywhere => self.alloc_iova(uptr, length)?,
            At::Fixed(iova) => {
                self.check_iova(iova, length)?;
                iova
            }
        };
        // iopt_insert_area.
        if (uptr % PAGE) & (alignment - 1) != 0 {
            return Err(Errno::EINVAL);
        }
        self.areas.insert(iova, length, buffer, offset, flags);
        Ok(iova)
    }

    /// `iopt_unmap_iova_range`: unmaps the areas inside `[start, last]` in
    /// IOVA order, stopping with ENOENT at one that reaches out of it (the
    /// areas before it stay unmapped). Returns the bytes unmapped.
    fn unmap(&mut self, mut start: u64, last: u64) -> (u64, std::result::Result<(), Errno>) {
        let mut unmapped = 0u64;
        while let Some((first, size)) = self.areas.first_in(start, last) {
            let area_last = first + (size - 1);
            if first < start || area_last > last {
                return (unmapped, Err(Errno::ENOENT));
            }
            self.areas.remove(first);
            unmapped = unmapped.saturating_add(size);
            if area_last >= last {
                break;
            }
            start = area_last + 1;
        }
        (unmapped, Ok(()))
    }

    /// `iopt_table_add_domain` for hardware page table `hwpt`: every area
    /// must suit the domain's page size, and none may lie beyond its
    /// aperture (EADDRINUSE).
    fn add_domain(&mut self, hwpt: u32, last_iova: u64) -> std::result::Result<(), Errno> {
        let alignment = DOMAIN_PAGE.max(self.alignment());
        if alignment != self.alignment() {
            let mask = alignment - 1;
            if self
                .areas
                .areas()
                .any(|(s, n, off)| s & mask != 0 || n & mask != 0 || off & mask != 0)
            {
                return Err(Errno::EADDRINUSE);
            }
        }
        if last_iova < u64::MAX {
            self.reserve(last_iova + 1, u64::MAX, Owner::Domain(hwpt))?;
        }
        self.domains.push(hwpt);
        Ok(())
    }

    /// `iopt_table_remove_domain`.
    fn remove_domain(&mut self, hwpt: u32) {
        self.domains.retain(|&d| d != hwpt);
        self.unreserve(Owner::Domain(hwpt));
    }
}

/// `struct iommufd_ioas`, shared with the devices that DMA through it.
#[derive(Debug, Default)]
pub(crate) struct IoasCore {
    iopt: Mutex<Iopt>,
}

impl IoasCore {
    /// A device's DMA through the IOAS's areas, as through type1's mappings.
    pub(crate) fn dma(&self, iova: u64, access: Access<'_>) -> Outcome {
        self.iopt.lock().areas.access(iova, access)
    }
}

/// One object of an iommufd context (`ictx->objects`).
#[derive(Debug)]
enum Obj {
    Ioas(Arc<IoasCore>),
    /// A bound device: its driver holds it until unbind.
    Device,
    /// An automatically created hardware page table of IOAS `ioas`, made
    /// `seq`-th (`ioas->hwpt_list` order).
    Hwpt {
        ioas: u32,
        core: Arc<IoasCore>,
        seq: u64,
    },
}

/// `struct iommufd_group`: an IOMMU group with devices bound to the context.
#[derive(Debug)]
struct IGroup {
    /// Where the group's devices find the IOAS they DMA through.
    slot: DomainSlot,
    /// The hardware page table the group is attached to.
    hwpt: Option<u32>,
    /// The attached devices (`device_list`), by object id.
    attached: BTreeSet<u32>,
    /// Bound devices.
    bound: u32,
}

#[derive(Debug, Default)]
struct CtxState {
    objects: BTreeMap<u32, Obj>,
    groups: BTreeMap<u32, IGroup>,
    next_seq: u64,
    /// The host IOMMU's address width and reserved ranges, which every
    /// domain's aperture and every attached device's reservations follow.
    geometry: IommuGeometry,
}

/// Reserves the device's reserved regions (intel-iommu's `IOMMU_RESV_MSI`
/// window, the interrupt range, and whatever else the host's geometry
/// reserves) in `iopt`, undoing its own part on failure.
fn reserve_device(
    iopt: &mut Iopt,
    geometry: &IommuGeometry,
    devid: u32,
) -> std::result::Result<(), Errno> {
    for r in &geometry.reserved {
        if let Err(e) = iopt.reserve(r.start, r.end, Owner::Device(devid)) {
            iopt.unreserve(Owner::Device(devid));
            return Err(e);
        }
    }
    Ok(())
}

impl CtxState {
    /// `xa_alloc` in an `XA_FLAGS_ALLOC1` array with `xa_limit_31b`: the
    /// lowest free id from 1, freed ids included.
    fn alloc_id(&self) -> std::result::Result<u32, Errno> {
        let mut want = 1u32;
        for &id in self.objects.keys() {
            if id != want {
                break;
            }
            want += 1;
        }
        if want > i32::MAX as u32 {
            return Err(Errno::EBUSY);
        }
        Ok(want)
    }

    fn hwpt_core(&self, hwpt: u32) -> Option<(u32, Arc<IoasCore>)> {
        match self.objects.get(&hwpt) {
            Some(Obj::Hwpt { ioas, core, .. }) => Some((*ioas, core.clone())),
            _ => None,
        }
    }

    fn hwpt_in_use(&self, hwpt: u32) -> bool {
        self.groups.values().any(|g| g.hwpt == Some(hwpt))
    }

    /// `iommufd_hw_pagetable_put` of an automatic page table: destroyed
    /// with its domain once no group is attached to it.
    fn put_hwpt(&mut self, hwpt: u32) {
        if self.hwpt_in_use(hwpt) {
            return;
        }
        if let Some(Obj::Hwpt { core, .. }) = self.objects.remove(&hwpt) {
            core.iopt.lock().remove_domain(hwpt);
        }
    }

    /// `iommufd_hw_pagetable_attach` of a device not attached yet.
    fn do_attach(&mut self, devid: u32, group: u32, hwpt: u32) -> std::result::Result<(), Errno> {
        let (_, core) = self.hwpt_core(hwpt).ok_or(Errno::ENOENT)?;
        let g = self.groups.get_mut(&group).ok_or(Errno::EINVAL)?;
        if g.hwpt.is_some_and(|h| h != hwpt) {
            return Err(Errno::EINVAL);
        }
        // iommufd_device_attach_reserved_iova.
        reserve_device(&mut core.iopt.lock(), &self.geometry, devid)?;
        if g.attached.is_empty() {
            g.hwpt = Some(hwpt);
            *g.slot.lock() = Some(core);
        }
        g.attached.insert(devid);
        Ok(())
    }

    /// `iommufd_device_do_replace` of an attached device's group.
    fn do_replace(&mut self, devid: u32, group: u32, hwpt: u32) -> std::result::Result<(), Errno> {
        let (new_ioas, new_core) = self.hwpt_core(hwpt).ok_or(Errno::ENOENT)?;
        let g = self.groups.get(&group).ok_or(Errno::EINVAL)?;
        let Some(old) = g.hwpt else {
            return Err(Errno::EINVAL);
        };
        if !g.attached.contains(&devid) {
            return Err(Errno::EINVAL);
        }
        if old == hwpt {
            return Ok(());
        }
        let (old_ioas, old_core) = self.hwpt_core(old).ok_or(Errno::EINVAL)?;
        let devices: Vec<u32> = g.attached.iter().copied().collect();
        if new_ioas != old_ioas {
            let mut iopt = new_core.iopt.lock();
            for &d in &devices {
                if let Err(e) = reserve_device(&mut iopt, &self.geometry, d) {
                    for &d in &devices {
                        iopt.unreserve(Owner::Device(d));
                    }
                    return Err(e);
                }
            }
            drop(iopt);
            let mut iopt = old_core.iopt.lock();
            for &d in &devices {
                iopt.unreserve(Owner::Device(d));
            }
        }
        if let Some(g) = self.groups.get_mut(&group) {
            g.hwpt = Some(hwpt);
            *g.slot.lock() = Some(new_core);
        }
        self.put_hwpt(old);
        Ok(())
    }

    /// `iommufd_device_change_pt`: attach (or, attached, replace) to
    /// `pt_id`, returning the hardware page table's id.
    fn attach(&mut self, devid: u32, group: u32, pt_id: u32) -> std::result::Result<u32, Errno> {
        let attached = self
            .groups
            .get(&group)
            .is_some_and(|g| g.attached.contains(&devid));
        let step = |s: &mut Self, hwpt| {
            if attached {
                s.do_replace(devid, group, hwpt)
            } else {
                s.do_attach(devid, group, hwpt)
            }
        };
        let core = match self.objects.get(&pt_id) {
            None => return Err(Errno::ENOENT),
            Some(Obj::Device) => return Err(Errno::EINVAL),
            Some(Obj::Hwpt { .. }) => return step(self, pt_id).map(|()| pt_id),
            Some(Obj::Ioas(core)) => core.clone(),
        };
        // iommufd_device_auto_get_domain: an automatic page table of the
        // IOAS that takes the device, else a new one. EINVAL is
        // "incompatible": the next is tried.
        let mut existing: Vec<(u64, u32)> = self
            .objects
            .iter()
            .filter_map(|(&id, o)| match o {
                Obj::Hwpt { ioas, seq, .. } if *ioas == pt_id => Some((*seq, id)),
                _ => None,
            })
            .collect();
        existing.sort_unstable();
        for (_, hwpt) in existing {
            match step(self, hwpt) {
                Ok(()) => return Ok(hwpt),
                Err(Errno::EINVAL) => continue,
                Err(e) => return Err(e),
            }
        }
        let hwpt = self.alloc_id()?;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.objects.insert(
            hwpt,
            Obj::Hwpt {
                ioas: pt_id,
                core: core.clone(),
                seq,
            },
        );
        let abort = |s: &mut Self| {
            s.objects.remove(&hwpt);
        };
        if attached {
            // iommufd_hwpt_paging_alloc adds the domain, then the replace.
            let added = core.iopt.lock().add_domain(hwpt, self.geometry.last_iova());
            if let Err(e) = added {
                abort(self);
                return Err(e);
            }
            if let Err(e) = self.do_replace(devid, group, hwpt) {
                core.iopt.lock().remove_domain(hwpt);
                abort(self);
                return Err(e);
            }
        } else {
            // Immediate attachment: the device first, then the domain.
            self.do_attach(devid, group, hwpt)
                .inspect_err(|_| abort(self))?;
            let added = core.iopt.lock().add_domain(hwpt, self.geometry.last_iova());
            if let Err(e) = added {
                self.undo_attach(devid, group);
                abort(self);
                return Err(e);
            }
        }
        Ok(hwpt)
    }

    /// Takes an attached device off its page table, leaving the table.
    fn undo_attach(&mut self, devid: u32, group: u32) -> Option<u32> {
        let g = self.groups.get_mut(&group)?;
        if !g.attached.remove(&devid) {
            return None;
        }
        let hwpt = g.hwpt?;
        if g.attached.is_empty() {
            g.hwpt = None;
            *g.slot.lock() = None;
        }
        if let Some((_, core)) = self.hwpt_core(hwpt) {
            core.iopt.lock().unreserve(Owner::Device(devid));
        }
        Some(hwpt)
    }

    /// `iommufd_device_detach`: the device's reserved ranges go, the group
    /// is detached with its last device, and an automatic page table no
    /// group uses is destroyed. Nothing happens to a device not attached.
    fn detach(&mut self, devid: u32, group: u32) {
        if let Some(hwpt) = self.undo_attach(devid, group) {
            self.put_hwpt(hwpt);
        }
    }
}

/// The context of an open `/dev/iommu` (`struct iommufd_ctx`). The file
/// lives as long as the context: a bound device holds it, as the kernel's
/// `iommufd_ctx_get` holds the file.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// The memfd standing for the file.
    file: File,
    key: (u64, u64),
    /// Unique among contexts: the DMA owner of the groups it binds.
    id: u64,
    host: Weak<HostInner>,
    faults: Arc<Faults>,
    state: Mutex<CtxState>,
}

/// The live contexts by their file's `(st_dev, st_ino)`.
static LIVE: Mutex<BTreeMap<(u64, u64), Weak<Ctx>>> = parking_lot::const_mutex(BTreeMap::new());

static NEXT_CTX: AtomicU64 = AtomicU64::new(1);

fn file_key(fd: BorrowedFd<'_>) -> std::result::Result<(u64, u64), Errno> {
    let st = nix::sys::stat::fstat(fd)?;
    Ok((st.st_dev as u64, st.st_ino as u64))
}

impl Drop for Ctx {
    fn drop(&mut self) {
        // The file closes after this, so its inode is not reused meanwhile.
        let mut live = LIVE.lock();
        if live.get(&self.key).is_some_and(|w| w.strong_count() == 0) {
            live.remove(&self.key);
        }
    }
}

impl Ctx {
    /// `iommufd_fops_open`.
    pub(crate) fn open(host: &Arc<HostInner>) -> std::result::Result<Arc<Self>, Errno> {
        let fd = nix::sys::memfd::memfd_create(
            c"vfio-mock-iommufd",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC,
        )?;
        let key = file_key(fd.as_fd())?;
        let ctx = Arc::new(Self {
            file: File::from(fd),
            key,
            id: NEXT_CTX.fetch_add(1, Ordering::Relaxed),
            host: Arc::downgrade(host),
            faults: host.faults.clone(),
            state: Mutex::new(CtxState {
                geometry: host.geometry.clone(),
                ..CtxState::default()
            }),
        });
        LIVE.lock().insert(key, Arc::downgrade(&ctx));
        Ok(ctx)
    }

    /// `iommufd_ctx_from_fd`: EBADF for a closed fd, EBADFD for a file that
    /// is not an iommufd (of this host: another host's is a file this host's
    /// kernel never made).
    pub(crate) fn from_fd(
        fd: BorrowedFd<'_>,
        host: &Arc<HostInner>,
    ) -> std::result::Result<Arc<Self>, Errno> {
        let key = file_key(fd).map_err(|_| Errno::EBADF)?;
        let ctx = LIVE
            .lock()
            .get(&key)
            .and_then(Weak::upgrade)
            .ok_or(Errno::EBADFD)?;
        if !std::ptr::eq(ctx.host.as_ptr(), Arc::as_ptr(host)) {
            return Err(Errno::EBADFD);
        }
        Ok(ctx)
    }

    /// The context's unique id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    fn fault(&self, op: Operation) -> Result<()> {
        match self.faults.take(op) {
            Some(errno) => Err(Error::from_errno(op, errno)),
            None => Ok(()),
        }
    }

    /// `iommufd_device_bind`, after the DMA ownership claim: the device's
    /// object id.
    pub(crate) fn bind(&self, group: &GroupCore) -> std::result::Result<u32, Errno> {
        let mut s = self.state.lock();
        let devid = s.alloc_id()?;
        s.objects.insert(devid, Obj::Device);
        s.groups
            .entry(group.number)
            .or_insert_with(|| IGroup {
                slot: group.domain.clone(),
                hwpt: None,
                attached: BTreeSet::new(),
                bound: 0,
            })
            .bound += 1;
        Ok(devid)
    }

    /// `iommufd_device_unbind` (with the detach `vfio_iommufd_physical_unbind`
    /// does first).
    fn unbind(&self, devid: u32, group: u32) {
        let mut s = self.state.lock();
        s.detach(devid, group);
        s.objects.remove(&devid);
        if let Some(g) = s.groups.get_mut(&group) {
            g.bound = g.bound.saturating_sub(1);
            if g.bound == 0 {
                s.groups.remove(&group);
            }
        }
    }

    pub(crate) fn attach(
        &self,
        devid: u32,
        group: u32,
        pt_id: u32,
    ) -> std::result::Result<u32, Errno> {
        self.state.lock().attach(devid, group, pt_id)
    }

    pub(crate) fn detach(&self, devid: u32, group: u32) {
        self.state.lock().detach(devid, group);
    }

    /// `iommufd_get_ioas`: ENOENT for an id that is no IOAS.
    fn ioas(&self, id: u32) -> std::result::Result<Arc<IoasCore>, Errno> {
        match self.state.lock().objects.get(&id) {
            Some(Obj::Ioas(core)) => Ok(core.clone()),
            _ => Err(Errno::ENOENT),
        }
    }
}

/// A device's binding to an iommufd (`VFIO_DEVICE_BIND_IOMMUFD`), undone
/// when the device file closes (`vfio_df_unbind_iommufd`).
#[derive(Debug)]
pub(crate) struct Binding {
    pub ctx: Arc<Ctx>,
    pub devid: u32,
    pub group: Arc<GroupCore>,
}

impl Drop for Binding {
    fn drop(&mut self) {
        self.ctx.unbind(self.devid, self.group.number);
        self.group.release_dma_owner();
        self.group.unblock_for_cdev();
    }
}

/// An open `/dev/iommu`.
#[derive(Debug)]
pub struct MockIommuFd {
    ctx: Arc<Ctx>,
}

impl MockIommuFd {
    pub(crate) fn new(ctx: Arc<Ctx>) -> Self {
        Self { ctx }
    }
}

impl AsFd for MockIommuFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ctx.file.as_fd()
    }
}

impl IommuFd<MockBackend> for MockIommuFd {
    fn alloc_ioas(&self) -> Result<MockIoas> {
        self.ctx.fault(Operation::AllocIoas)?;
        let mut s = self.ctx.state.lock();
        let id = s
            .alloc_id()
            .map_err(|e| Error::from_errno(Operation::AllocIoas, e))?;
        s.objects.insert(id, Obj::Ioas(Arc::default()));
        Ok(MockIoas {
            ctx: self.ctx.clone(),
            id,
        })
    }

    /// `iommufd_object_remove`: ENOENT for an id that names nothing, EBUSY
    /// for an object something holds: an IOAS with a hardware page table
    /// (a device attached), a bound device, an attached page table.
    fn destroy(&self, id: u32) -> Result<()> {
        self.ctx.fault(Operation::Destroy)?;
        destroy(&self.ctx, id)
    }
}

fn destroy(ctx: &Ctx, id: u32) -> Result<()> {
    let err = |e| Error::from_errno(Operation::Destroy, e).with_target(format_args!("object {id}"));
    let mut s = ctx.state.lock();
    let busy = match s.objects.get(&id) {
        None => return Err(err(Errno::ENOENT)),
        Some(Obj::Ioas(_)) => s
            .objects
            .values()
            .any(|o| matches!(o, Obj::Hwpt { ioas, .. } if *ioas == id)),
        Some(Obj::Device) => true,
        Some(Obj::Hwpt { .. }) => s.hwpt_in_use(id),
    };
    if busy {
        return Err(err(Errno::EBUSY));
    }
    s.objects.remove(&id);
    Ok(())
}

/// An I/O address space of an iommufd. Dropping it destroys it
/// (`IOMMU_DESTROY` of its id), which is refused while a device is
/// attached to it: it then goes with the iommufd.
#[derive(Debug)]
pub struct MockIoas {
    ctx: Arc<Ctx>,
    id: u32,
}

impl Drop for MockIoas {
    fn drop(&mut self) {
        let _ = destroy(&self.ctx, self.id);
    }
}

impl MockIoas {
    fn err(&self, op: Operation, errno: Errno) -> Error {
        Error::from_errno(op, errno).with_target(format_args!("IOAS {}", self.id))
    }

    fn core(&self, op: Operation) -> Result<Arc<IoasCore>> {
        self.ctx.ioas(self.id).map_err(|e| self.err(op, e))
    }

    /// `iommufd_ioas_map`, in its order of checks.
    fn map(
        &self,
        memory: &MockDmaMemory,
        offset: usize,
        size: u64,
        at: At,
        flags: DmaFlags,
    ) -> Result<u64> {
        // As for a container: a range past the buffer is refused before the
        // kernel sees it, with the errno pinning would give.
        check_range(
            Operation::MapDma,
            memory.buffer.len() as u64,
            offset as u64,
            size,
        )
        .map_err(|e| {
            Error::from_errno(Operation::MapDma, Errno::EFAULT)
                .with_detail(e.detail().unwrap_or("past the buffer"))
        })?;
        self.ctx.fault(Operation::MapDma)?;
        let target = |e| match at {
            At::Fixed(iova) => self
                .err(Operation::MapDma, e)
                .with_detail(format_args!("iova {iova:#x}+{size:#x}")),
            At::Anywhere => self
                .err(Operation::MapDma, e)
                .with_detail(format_args!("{size:#x} bytes anywhere")),
        };
        let rw = DmaFlags::READ.bits() | DmaFlags::WRITE.bits();
        // Unconfirmed: a flag iommufd has no bit for (type1's VADDR) is
        // taken as an unknown IOMMU_IOAS_MAP flag: EOPNOTSUPP.
        if flags.bits() & !rw != 0 {
            return Err(target(Errno::EOPNOTSUPP));
        }
        let iova = match at {
            At::Fixed(iova) => iova,
            At::Anywhere => 0,
        };
        if iova == u64::MAX || size == u64::MAX {
            return Err(target(Errno::EOVERFLOW));
        }
        if flags.bits() & rw == 0 {
            return Err(target(Errno::EINVAL));
        }
        let core = self.core(Operation::MapDma)?;
        let mut iopt = core.iopt.lock();
        iopt.map(memory.buffer.clone(), offset, size, at, flags)
            .map_err(target)
    }
}

impl DmaSpace<MockBackend> for MockIoas {
    fn translates(&self) -> bool {
        true
    }

    /// The holes between the reserved ranges: all of the 64-bit space for
    /// an IOAS no device is attached to; with a device behind QEMU's
    /// intel-iommu, the domain's aperture less the MSI window, the ranges
    /// a type1 container reports on the same machine.
    fn iova_ranges(&self) -> Result<Vec<IovaRange>> {
        self.ctx.fault(Operation::IovaRanges)?;
        Ok(self.core(Operation::IovaRanges)?.iopt.lock().ranges())
    }

    /// Every power of two from the IOAS's alignment up.
    fn iova_page_sizes(&self) -> Result<u64> {
        Ok(!(self.iova_alignment()? - 1))
    }

    /// `IOMMU_IOAS_MAP` with `IOMMU_IOAS_MAP_FIXED_IOVA`: EFAULT past the
    /// buffer (before the kernel); EOPNOTSUPP for a flag iommufd lacks;
    /// EOVERFLOW for an IOVA or size of `u64::MAX` or a range past the top;
    /// EINVAL without READ or WRITE, for a size of 0, or a size, IOVA or
    /// buffer offset off the IOAS's alignment, or a range touching a
    /// reserved range (the MSI window, past the aperture); EEXIST for an
    /// overlap; ENOENT once the IOAS is destroyed.
    fn map_dma_raw(
        &self,
        memory: &MockDmaMemory,
        offset: usize,
        size: u64,
        iova: u64,
        flags: DmaFlags,
    ) -> Result<()> {
        self.map(memory, offset, size, At::Fixed(iova), flags)
            .map(drop)
    }

    /// `iommufd_ioas_unmap`: EOVERFLOW for an IOVA or length of `u64::MAX`
    /// (but for the unmap-all pair), EINVAL for a length of 0, ENOENT when
    /// nothing is unmapped or the range ends inside a mapping. In that last
    /// case the mappings before it are unmapped all the same, and the
    /// count of their bytes is lost, as the kernel reports no length with
    /// an error.
    fn unmap_dma(&self, iova: u64, size: u64) -> Result<u64> {
        self.ctx.fault(Operation::UnmapDma)?;
        let err = |e| {
            self.err(Operation::UnmapDma, e)
                .with_detail(format_args!("iova {iova:#x}+{size:#x}"))
        };
        let core = self.core(Operation::UnmapDma)?;
        let mut iopt = core.iopt.lock();
        if iova == 0 && size == u64::MAX {
            // iopt_unmap_all: success with nothing mapped.
            let (unmapped, result) = iopt.unmap(0, u64::MAX);
            return result.map(|()| unmapped).map_err(err);
        }
        if iova == u64::MAX || size == u64::MAX {
            return Err(err(Errno::EOVERFLOW));
        }
        // iopt_unmap_iova.
        if size == 0 {
            return Err(err(Errno::EINVAL));
        }
        let last = iova
            .checked_add(size - 1)
            .ok_or_else(|| err(Errno::EOVERFLOW))?;
        let (unmapped, result) = iopt.unmap(iova, last);
        result.map_err(err)?;
        if unmapped == 0 {
            return Err(err(Errno::ENOENT));
        }
        Ok(unmapped)
    }

    fn unmap_all(&self) -> Result<u64> {
        self.unmap_dma(0, u64::MAX)
    }
}

impl Ioas<MockBackend> for MockIoas {
    fn id(&self) -> u32 {
        self.id
    }

    /// `out_iova_alignment`: 1 with nothing attached (`iopt_init_table`),
    /// 4096 (intel-iommu's smallest page) with a device attached.
    fn iova_alignment(&self) -> Result<u64> {
        self.ctx.fault(Operation::IovaRanges)?;
        Ok(self.core(Operation::IovaRanges)?.iopt.lock().alignment())
    }

    /// `IOMMU_IOAS_MAP` at the IOVA `iopt_alloc_iova` picks: the lowest
    /// hole from 4 KiB up that takes the size, aligned to the smaller of its
    /// power of two (at most 2 MiB) and the buffer address's alignment
    /// (`docs/kernel-semantics.md` has the details). ENOSPC when none does;
    /// the other errnos are [`map_dma_raw`](DmaSpace::map_dma_raw)'s.
    fn map_dma_anywhere_raw(
        &self,
        memory: &MockDmaMemory,
        offset: usize,
        size: u64,
        flags: DmaFlags,
    ) -> Result<u64> {
        self.map(memory, offset, size, At::Anywhere, flags)
    }
}
