//! `dma_access`: sequences of CPU accesses to DMA memory through the
//! `DmaMemory` trait, on vfio-mock (whose DMA memory is the same atomic
//! words, through the same provided methods, as vfio-linux's).
//!
//! The input picks a size (1 byte to 16 KiB) and the pages to ask for,
//! then applies up to 256 operations: typed reads and writes of 1, 2, 4 or
//! 8 bytes, acquire loads and release stores of 4 or 8 bytes, byte copies
//! of 0 to 300 bytes and 16-byte object copies, at offsets near the start,
//! near the end or anywhere in `usize`, with the barriers in between.
//!
//! Checked, besides "never panics": the allocation is a whole number of
//! 4 KiB pages covering the size (the host has no hugetlb pages, so
//! `Require` is ENOMEM and `Prefer` falls back); a typed access succeeds
//! exactly when in bounds (checked arithmetic) and naturally aligned, and
//! otherwise fails `OutOfRange` (which wins) or `Misaligned` with no
//! errno; a copy succeeds exactly when in bounds, at any alignment; and
//! every read returns what a shadow copy says was last written there.

use arbitrary::{Arbitrary, Unstructured};
use std::cell::RefCell;
use vfio_core::{DmaMemory, Errno, ErrorKind, HugePages, Result, VfioBackend};
use vfio_mock::MockHost;

/// The most operations one input applies.
pub const MAX_OPS: usize = 256;

#[derive(Debug, Arbitrary)]
enum Pages {
    Never,
    Prefer,
    Require,
}

#[derive(Debug, Arbitrary)]
enum Offset {
    Near(u16),
    FromEnd(u8),
    Any(usize),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
enum Width {
    W1,
    W2,
    W4,
    W8,
}

impl Width {
    fn bytes(self) -> usize {
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
    LoadAcquire(Offset, bool),
    StoreRelease(Offset, bool, u64),
    ReadAt(Offset, u16),
    WriteAt(Offset, Vec<u8>),
    ReadObj(Offset),
    WriteObj(Offset, [u8; 16]),
    Barrier(u8),
}

thread_local! {
    static HOST: RefCell<Option<MockHost>> = const { RefCell::new(None) };
}

/// The target.
pub fn dma_access(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(size), Ok(pages)) = (u16::arbitrary(&mut u), Pages::arbitrary(&mut u)) else {
        return;
    };
    let size = usize::from(size % (16 << 10)) + 1;
    let host = HOST.with(|h| {
        h.borrow_mut()
            .get_or_insert_with(|| MockHost::builder().build().expect("a mock host"))
            .clone()
    });
    let backend = host.backend();
    let pages = match pages {
        Pages::Never => HugePages::Never,
        Pages::Prefer => HugePages::Prefer,
        Pages::Require => {
            let e = backend
                .alloc_dma_with(size, HugePages::Require)
                .expect_err("huge pages from a host with none reserved");
            assert_eq!(
                (e.kind(), e.errno()),
                (ErrorKind::NoSpace, Some(Errno::ENOMEM))
            );
            return;
        }
    };
    let mem = backend.alloc_dma_with(size, pages).expect("DMA memory");
    let len = mem.len();
    assert_eq!(mem.page_size(), 4096);
    assert!(
        len >= size && len - size < 4096 && len % 4096 == 0,
        "{size} -> {len}"
    );
    let mut shadow = vec![0u8; len];

    let Ok(ops) = u.arbitrary_iter::<Op>() else {
        return;
    };
    for op in ops.take(MAX_OPS) {
        let Ok(op) = op else { break };
        match op {
            Op::Read(at, width) => {
                let offset = resolve(&at, len);
                let got = read(&mem, offset, width.bytes());
                check_typed(&got, &shadow, offset, width.bytes());
            }
            Op::Write(at, width, value) => {
                let offset = resolve(&at, len);
                let got = write(&mem, offset, width.bytes(), value);
                check_typed_write(got, &mut shadow, offset, width.bytes(), value);
            }
            Op::LoadAcquire(at, wide) => {
                let offset = resolve(&at, len);
                let (w, got) = if wide {
                    (8, mem.load_acquire_u64(offset))
                } else {
                    (4, mem.load_acquire_u32(offset).map(u64::from))
                };
                check_typed(&got, &shadow, offset, w);
            }
            Op::StoreRelease(at, wide, value) => {
                let offset = resolve(&at, len);
                let (w, got) = if wide {
                    (8, mem.store_release_u64(offset, value))
                } else {
                    (4, mem.store_release_u32(offset, value as u32))
                };
                check_typed_write(got, &mut shadow, offset, w, value);
            }
            Op::ReadAt(at, n) => {
                let offset = resolve(&at, len);
                let mut buf = vec![0u8; usize::from(n % 301)];
                let got = mem.read_at(offset, &mut buf);
                if check_copy(got, len, offset, buf.len()) {
                    assert_eq!(
                        buf,
                        shadow[offset..offset + buf.len()],
                        "read_at {offset:#x}"
                    );
                }
            }
            Op::WriteAt(at, mut bytes) => {
                let offset = resolve(&at, len);
                bytes.truncate(300);
                let got = mem.write_at(offset, &bytes);
                if check_copy(got, len, offset, bytes.len()) {
                    shadow[offset..offset + bytes.len()].copy_from_slice(&bytes);
                }
            }
            Op::ReadObj(at) => {
                let offset = resolve(&at, len);
                let got = mem.read_obj::<[u8; 16]>(offset);
                let ok = got.as_ref().ok().copied();
                if check_copy(got.map(|_| ()), len, offset, 16) {
                    assert_eq!(
                        ok.as_ref().map(|b| &b[..]),
                        Some(&shadow[offset..offset + 16])
                    );
                }
            }
            Op::WriteObj(at, obj) => {
                let offset = resolve(&at, len);
                let got = mem.write_obj(offset, &obj);
                if check_copy(got, len, offset, 16) {
                    shadow[offset..offset + 16].copy_from_slice(&obj);
                }
            }
            Op::Barrier(which) => match which % 5 {
                0 => mem.dma_wmb(),
                1 => mem.dma_rmb(),
                2 => mem.dma_mb(),
                3 => mem.wmb(),
                _ => mem.rmb(),
            },
        }
    }
    let mut all = vec![0u8; len];
    mem.read_at(0, &mut all).expect("reading the whole buffer");
    assert_eq!(all, shadow, "the buffer at the end");
    host.done().expect("no fault planned, none left");
}

fn resolve(at: &Offset, len: usize) -> usize {
    match *at {
        Offset::Near(n) => n.into(),
        Offset::FromEnd(n) => len.wrapping_sub(n.into()),
        Offset::Any(n) => n,
    }
}

fn read(mem: &impl DmaMemory, offset: usize, width: usize) -> Result<u64> {
    match width {
        1 => mem.read_u8(offset).map(u64::from),
        2 => mem.read_u16(offset).map(u64::from),
        4 => mem.read_u32(offset).map(u64::from),
        _ => mem.read_u64(offset),
    }
}

fn write(mem: &impl DmaMemory, offset: usize, width: usize, value: u64) -> Result<()> {
    match width {
        1 => mem.write_u8(offset, value as u8),
        2 => mem.write_u16(offset, value as u16),
        4 => mem.write_u32(offset, value as u32),
        _ => mem.write_u64(offset, value),
    }
}

/// What a typed access must do, from the rules alone.
fn expected(len: usize, offset: usize, width: usize) -> Option<ErrorKind> {
    match offset.checked_add(width) {
        None => Some(ErrorKind::OutOfRange),
        Some(end) if end > len => Some(ErrorKind::OutOfRange),
        Some(_) if !offset.is_multiple_of(width) => Some(ErrorKind::Misaligned),
        Some(_) => None,
    }
}

fn check_kind<T>(got: &Result<T>, len: usize, offset: usize, width: usize) -> bool {
    let want = expected(len, offset, width);
    let kind = got.as_ref().err().map(|e| (e.kind(), e.errno()));
    assert_eq!(
        kind,
        want.map(|k| (k, None)),
        "{width}-byte access at {offset:#x} of {len:#x}"
    );
    want.is_none()
}

fn check_typed(got: &Result<u64>, shadow: &[u8], offset: usize, width: usize) {
    if check_kind(got, shadow.len(), offset, width) {
        let value = *got.as_ref().expect("checked");
        assert_eq!(
            value.to_le_bytes()[..width],
            shadow[offset..offset + width],
            "{width}-byte read at {offset:#x}"
        );
    }
}

fn check_typed_write(got: Result<()>, shadow: &mut [u8], offset: usize, width: usize, value: u64) {
    if check_kind(&got, shadow.len(), offset, width) {
        shadow[offset..offset + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
}

/// A copy: succeeds exactly when in bounds, at any alignment.
fn check_copy(got: Result<()>, len: usize, offset: usize, n: usize) -> bool {
    let fits = offset.checked_add(n).is_some_and(|end| end <= len);
    let kind = got.err().map(|e| (e.kind(), e.errno()));
    let want = (!fits).then_some((ErrorKind::OutOfRange, None));
    assert_eq!(kind, want, "{n}-byte copy at {offset:#x} of {len:#x}");
    fits
}
