//! `register_access`: sequences of register accesses against a mapped BAR0.
//!
//! The input picks a simulated device (QEMU's `edu`, QEMU's NVMe controller,
//! or a plain device whose BAR0 is ordinary memory of 4 KiB to 1 MiB), maps
//! its BAR0 and applies up to 256 operations: reads and writes of 1, 2, 4 or
//! 8 bytes at offsets near the start, near the end or anywhere in `u64`, and
//! `read_region` / `write_region` of 1 to 64 bytes through the device file.
//!
//! Checked, besides "never panics": each mapped access succeeds exactly
//! when [`check_register_access`](vfio_core::access::check_register_access)
//! accepts it (in bounds with checked arithmetic, then naturally aligned),
//! and otherwise fails with [`ErrorKind::OutOfRange`] or
//! [`ErrorKind::Misaligned`], in that order of precedence. A device-file
//! access past the end is `OutOfRange`, and one inside is cut at the end of
//! the BAR. On the plain device every read, mapped or not, returns what a
//! shadow copy of the BAR says was last written there.

use crate::mock::OneDevice;
use arbitrary::{Arbitrary, Unstructured};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use vfio_core::{Device, ErrorKind, MappedRegion, Result, region};
use vfio_mock::{BarSpec, MockDevice, MockRegion, PciDeviceBuilder, profiles};

/// The most operations one input applies.
pub const MAX_OPS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Arbitrary)]
enum Profile {
    Edu,
    Nvme,
    /// BAR0 of `4 KiB << (n % 9)` bytes of plain memory.
    Plain(u8),
}

#[derive(Debug, Arbitrary)]
enum Offset {
    Near(u16),
    FromEnd(u8),
    Any(u64),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Width {
    W1,
    W2,
    W4,
    W8,
}

impl Width {
    fn bytes(self) -> u64 {
        match self {
            Self::W1 => 1,
            Self::W2 => 2,
            Self::W4 => 4,
            Self::W8 => 8,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Op {
    Read(Offset, Width),
    Write(Offset, Width, u64),
    FileRead(Offset, u8),
    FileWrite(Offset, #[arbitrary(with = payload)] Payload),
}

/// The most bytes one device-file write carries.
const MAX_FILE_WRITE: usize = 64;

/// A device-file write's bytes: the first [`MAX_FILE_WRITE`] of a
/// `Vec<u8>`'s decoding, held inline.
#[derive(Debug)]
struct Payload {
    bytes: [u8; MAX_FILE_WRITE],
    len: usize,
}

/// `Vec<u8>`'s `Arbitrary` decoding, read straight from the bytes and cut
/// to [`MAX_FILE_WRITE`]: while a byte with its low bit set (a `true`)
/// comes, the byte after it is an element (0 past the end); the first byte
/// with it clear ends the list and is used up. The same bytes give the
/// same list, and use up the same bytes, as `Vec::<u8>::arbitrary`, with
/// no call per bit and byte and no allocation.
fn payload(u: &mut Unstructured<'_>) -> arbitrary::Result<Payload> {
    let data = u.peek_bytes(u.len()).unwrap_or_default();
    let mut list = Payload {
        bytes: [0; MAX_FILE_WRITE],
        len: 0,
    };
    let mut at = 0;
    while data.get(at).is_some_and(|b| b & 1 == 1) {
        if let Some(slot) = list.bytes.get_mut(list.len) {
            *slot = data.get(at + 1).copied().unwrap_or(0);
            list.len += 1;
        }
        at += 2;
    }
    let used = (at + 1).min(data.len());
    if cfg!(not(fuzzing)) {
        // The replay (built without cargo fuzz's `--cfg fuzzing`) holds
        // this to arbitrary's own decoding on every input.
        let mut theirs = Unstructured::new(data);
        let mut want = Vec::<u8>::arbitrary(&mut theirs).ok();
        if let Some(want) = &mut want {
            want.truncate(MAX_FILE_WRITE);
        }
        assert_eq!(
            (Some(&list.bytes[..list.len]), data.len() - used),
            (want.as_deref(), theirs.len()),
            "payload disagrees with Vec<u8>'s decoding"
        );
    }
    u.bytes(used)?;
    Ok(list)
}

/// What the plain device's BAR0 holds: bytes never written read as 0.
///
/// Kept with the device from one input to the next: [`Shadow::restore`]
/// zeroes every byte the last input may have written, in the BAR and here.
#[derive(Debug)]
struct Shadow {
    bytes: Vec<u8>,
    /// Every in-bounds range a write was attempted on since the last
    /// restore, recorded before the write, so a write that panicked or
    /// failed is restored too.
    touched: Vec<(u64, usize)>,
}

impl Shadow {
    fn new(len: u64) -> Self {
        let len = usize::try_from(len).expect("a plain BAR is at most 1 MiB");
        Self {
            bytes: vec![0; len],
            touched: Vec::new(),
        }
    }

    /// `len` bytes at `offset`, which a successful access has shown is in
    /// bounds.
    fn read(&self, offset: u64, len: u64) -> &[u8] {
        &self.bytes[offset as usize..(offset + len) as usize]
    }

    fn write(&mut self, offset: u64, bytes: &[u8]) {
        let start = offset as usize;
        self.bytes[start..start + bytes.len()].copy_from_slice(bytes);
    }

    /// Notes that a write of `n` bytes at `offset` is about to be made; the
    /// part of it inside the BAR is zeroed at the next restore.
    fn touch(&mut self, offset: u64, n: u64) {
        let len = self.bytes.len() as u64;
        if offset < len {
            let n = n.min(len - offset) as usize;
            self.touched.push((offset, n));
        }
    }

    /// Returns the BAR and this copy to all zeros, the BAR's power-on
    /// state, by writing zeroes over every touched range through the device
    /// file. Plain memory keeps nothing else, so this is what a reset
    /// gives, at the cost of what the last input wrote rather than of every
    /// page the BAR has ever had written (a reset clears each of those).
    fn restore(&mut self, device: &MockDevice) {
        const ZEROES: [u8; 64] = [0; 64];
        for (offset, n) in self.touched.drain(..) {
            let start = offset as usize;
            self.bytes[start..start + n].fill(0);
            for (i, chunk) in (0..n).step_by(ZEROES.len()).enumerate() {
                let piece = (n - chunk).min(ZEROES.len());
                let at = offset + (i * ZEROES.len()) as u64;
                let wrote = device
                    .write_region(region::BAR0, at, &ZEROES[..piece])
                    .expect("zeroing plain BAR memory in bounds");
                assert_eq!(wrote, piece, "zeroing {piece} bytes at {at:#x}");
            }
        }
    }
}

/// The target.
pub fn register_access(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(profile) = Profile::arbitrary(&mut u) else {
        return;
    };
    let profile = match profile {
        Profile::Plain(n) => Profile::Plain(n % 9),
        other => other,
    };
    let opened = opened(profile);
    let (device, bar) = (&opened.device, &opened.bar);
    // Power-on state: BAR memory zeroed, models reset (edu cannot reset,
    // but no check here depends on its registers).
    let mut shadow = opened.shadow.as_ref().map(RefCell::borrow_mut);
    match shadow.as_deref_mut() {
        Some(shadow) => shadow.restore(device),
        None if profile != Profile::Edu => {
            device.reset().expect("resetting a device that can reset");
        }
        None => {}
    }
    let len = bar.len();

    let Ok(ops) = u.arbitrary_iter::<Op>() else {
        return;
    };
    for op in ops.take(MAX_OPS) {
        let Ok(op) = op else { break };
        match op {
            Op::Read(at, width) => {
                let offset = resolve(&at, len);
                let got = read(bar, offset, width);
                check_kind(got.as_ref().err().map(|e| e.kind()), len, offset, width);
                if let (Ok(value), Some(shadow)) = (got, &shadow) {
                    let want = shadow.read(offset, width.bytes());
                    assert_eq!(
                        &value.to_le_bytes()[..want.len()],
                        want,
                        "read at {offset:#x}"
                    );
                }
            }
            Op::Write(at, width, value) => {
                let offset = resolve(&at, len);
                let value = tame_write(profile, offset, width.bytes(), value);
                if let Some(shadow) = &mut shadow {
                    shadow.touch(offset, width.bytes());
                }
                let got = write(bar, offset, width, value);
                check_kind(got.as_ref().err().map(|e| e.kind()), len, offset, width);
                if let (Ok(()), Some(shadow)) = (got, &mut shadow) {
                    shadow.write(offset, &value.to_le_bytes()[..width.bytes() as usize]);
                }
            }
            Op::FileRead(at, n) => {
                let offset = resolve(&at, len);
                let mut buf = [0u8; 64];
                let buf = &mut buf[..usize::from(n % 64) + 1];
                let got = device.read_region(region::BAR0, offset, buf);
                let count = check_file_access(got, len, offset, buf.len());
                if let (Some(count), Some(shadow)) = (count, &shadow) {
                    assert_eq!(buf[..count], *shadow.read(offset, count as u64));
                }
            }
            Op::FileWrite(at, mut payload) => {
                let offset = resolve(&at, len);
                let bytes = &mut payload.bytes[..payload.len];
                if bytes.is_empty() {
                    continue;
                }
                tame_file_write(profile, offset, bytes);
                if let Some(shadow) = &mut shadow {
                    shadow.touch(offset, bytes.len() as u64);
                }
                let got = device.write_region(region::BAR0, offset, bytes);
                let count = check_file_access(got, len, offset, bytes.len());
                if let (Some(count), Some(shadow)) = (count, &mut shadow) {
                    shadow.write(offset, &bytes[..count]);
                }
            }
        }
    }
}

/// A device of one profile, opened, with BAR0 mapped. Fields drop in
/// order: the mapping, the device, then the host.
#[derive(Debug)]
struct Opened {
    bar: MockRegion,
    device: MockDevice,
    /// Kept for the device's sake: its group, container and host.
    _host: OneDevice,
    /// The plain device's shadow of BAR0.
    shadow: Option<RefCell<Shadow>>,
}

thread_local! {
    static OPENED: RefCell<HashMap<Profile, Rc<Opened>>> = RefCell::default();
}

/// The host, the open device and its mapped BAR0 for `profile`, built on
/// first use in this thread.
fn opened(profile: Profile) -> Rc<Opened> {
    OPENED.with(|cache| {
        cache
            .borrow_mut()
            .entry(profile)
            .or_insert_with(|| {
                let builder = match profile {
                    Profile::Edu => profiles::edu(),
                    Profile::Nvme => profiles::nvme(),
                    Profile::Plain(n) => PciDeviceBuilder::new(0x1af4, 0x10f0)
                        .bar(0, BarSpec::memory32(4096 << n))
                        .can_reset(true),
                };
                let host = OneDevice::new(builder);
                let device = host.open();
                let bar = device.map_region(region::BAR0).expect("BAR0 maps");
                let shadow = matches!(profile, Profile::Plain(_))
                    .then(|| RefCell::new(Shadow::new(bar.len())));
                Rc::new(Opened {
                    bar,
                    device,
                    _host: host,
                    shadow,
                })
            })
            .clone()
    })
}

/// `edu` computes `n!` when 0x08 is written, in `n` steps (as QEMU does,
/// though QEMU does it on another thread): a 4-byte write of a large `n`
/// takes seconds. So values written there are cut to 8 bits, which keeps
/// the target fast and loses nothing it checks.
fn tame_write(profile: Profile, offset: u64, width: u64, value: u64) -> u64 {
    if profile == Profile::Edu && offset == EDU_FACTORIAL && width == 4 {
        value & 0xff
    } else {
        value
    }
}

/// The same for a device-file write: one covering 0x08..0x0c reaches the
/// register as a 4-byte write (vfio-pci splits writes into aligned pieces).
fn tame_file_write(profile: Profile, offset: u64, bytes: &mut [u8]) {
    if profile != Profile::Edu || offset > EDU_FACTORIAL {
        return;
    }
    let start = (EDU_FACTORIAL - offset) as usize;
    if let Some(high) = bytes.get_mut(start + 1..start + 4) {
        high.fill(0);
    }
}

/// `edu`'s factorial register.
const EDU_FACTORIAL: u64 = 0x08;

fn resolve(at: &Offset, len: u64) -> u64 {
    match *at {
        Offset::Near(n) => n.into(),
        Offset::FromEnd(n) => len.wrapping_sub(n.into()),
        Offset::Any(n) => n,
    }
}

fn read(bar: &impl MappedRegion, offset: u64, width: Width) -> Result<u64> {
    match width {
        Width::W1 => bar.read_u8(offset).map(u64::from),
        Width::W2 => bar.read_u16(offset).map(u64::from),
        Width::W4 => bar.read_u32(offset).map(u64::from),
        Width::W8 => bar.read_u64(offset),
    }
}

fn write(bar: &impl MappedRegion, offset: u64, width: Width, value: u64) -> Result<()> {
    match width {
        Width::W1 => bar.write_u8(offset, value as u8),
        Width::W2 => bar.write_u16(offset, value as u16),
        Width::W4 => bar.write_u32(offset, value as u32),
        Width::W8 => bar.write_u64(offset, value),
    }
}

/// What a mapped access must do, from the rules alone.
fn expected(len: u64, offset: u64, width: Width) -> Option<ErrorKind> {
    let w = width.bytes();
    match offset.checked_add(w) {
        None => Some(ErrorKind::OutOfRange),
        Some(end) if end > len => Some(ErrorKind::OutOfRange),
        Some(_) if !offset.is_multiple_of(w) => Some(ErrorKind::Misaligned),
        Some(_) => None,
    }
}

fn check_kind(got: Option<ErrorKind>, len: u64, offset: u64, width: Width) {
    let want = expected(len, offset, width);
    assert_eq!(
        got,
        want,
        "{}-byte access at {offset:#x} of a {len:#x}-byte BAR",
        width.bytes()
    );
}

/// A BAR access through the device file: vfio-pci's EINVAL at or past the
/// end, else cut at the end. Returns the byte count on success.
fn check_file_access(got: Result<usize>, len: u64, offset: u64, want: usize) -> Option<usize> {
    if offset >= len {
        let e = got.err().map(|e| (e.kind(), e.errno()));
        assert_eq!(
            e,
            Some((ErrorKind::InvalidArgument, Some(vfio_core::Errno::EINVAL))),
            "file access at {offset:#x}"
        );
        return None;
    }
    let count = got.unwrap_or_else(|e| panic!("file access at {offset:#x} of {len:#x}: {e}"));
    let room = usize::try_from(len - offset).unwrap_or(usize::MAX);
    assert_eq!(count, want.min(room), "count at {offset:#x}");
    Some(count)
}
