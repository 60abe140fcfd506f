//! The namespace: sparse in-memory storage and its Identify Namespace
//! data, as QEMU 7.2 fills them for the namespace a `-device nvme,drive=`
//! controller makes of its drive (NSID 1, no `nvme-ns` device).

use nvme_spec::identify::IdentifyNamespace;
use std::collections::HashMap;
use zerocopy::FromZeros;

/// Hashes chunk indexes with one multiplication (they are small integers
/// chosen by the driver, and the map is hit for every block moved).
#[derive(Debug, Default, Clone, Copy)]
struct ChunkHasher(u64);

impl std::hash::Hasher for ChunkHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type ChunkHash = std::hash::BuildHasherDefault<ChunkHasher>;

/// Bytes per storage chunk: untouched chunks take no memory and read as 0.
const CHUNK: u64 = 4096;

/// QEMU's eight standard LBA formats `(lbads, metadata bytes)` (`nvme_ns_init`).
const LBA_FORMATS: [(u8, u16); 8] = [
    (9, 0),
    (9, 8),
    (9, 16),
    (9, 64),
    (12, 0),
    (12, 8),
    (12, 16),
    (12, 64),
];

/// A namespace: its geometry and its blocks.
#[derive(Debug)]
pub(super) struct Namespace {
    /// The drive's size in bytes.
    drive_bytes: u64,
    /// The LBA formats `(lbads, metadata bytes)`: QEMU's eight, and the
    /// drive's block size when it is none of them.
    formats: Vec<(u8, u16)>,
    /// Discard granularity: the drive's block size, at least 4 KiB.
    granularity: u64,
    /// FLBAS (the format in use, bits 3:0 and 6:5; MSET, bit 4).
    flbas: u8,
    /// DPS (protection type and location), as Format NVM set it.
    dps: u8,
    /// Logical block size in bytes.
    pub(super) block_size: u64,
    /// Number of logical blocks (NSZE = NCAP = NUSE).
    pub(super) blocks: u64,
    /// Whether a deallocate (Dataset Management) discards data: QEMU passes
    /// it to the drive, which ignores it under `-drive`'s default `discard=ignore`.
    pub(super) discard: bool,
    chunks: HashMap<u64, Box<[u8]>, ChunkHash>,
}

impl Namespace {
    /// A blank namespace over a drive of `drive_bytes` with `block_size`-byte blocks.
    pub(super) fn new(drive_bytes: u64, block_size: u32, discard: bool) -> Self {
        let lbads = block_size.trailing_zeros() as u8;
        let mut formats = LBA_FORMATS.to_vec();
        let index = match formats.iter().position(|f| *f == (lbads, 0)) {
            Some(i) => i,
            None => {
                formats.push((lbads, 0));
                formats.len() - 1
            }
        };
        let mut ns = Self {
            drive_bytes,
            formats,
            granularity: u64::from(block_size).max(4096),
            flbas: index as u8,
            dps: 0,
            block_size: 0,
            blocks: 0,
            discard,
            chunks: HashMap::default(),
        };
        ns.init_format();
        ns
    }

    /// `nvme_ns_init_format`: block size and count from the format in use
    /// (metadata bytes count against the drive, as QEMU lays them out).
    fn init_format(&mut self) {
        let index = usize::from((self.flbas & 0xf) | ((self.flbas >> 5) & 0x3) << 4);
        let (ds, ms) = self.formats.get(index).copied().unwrap_or((9, 0));
        self.block_size = 1 << ds;
        self.blocks = self.drive_bytes / (self.block_size + u64::from(ms));
    }

    /// The protection type in use (DPS bits 2:0).
    pub(super) fn protection(&self) -> u8 {
        self.dps & 0x7
    }

    /// Number of LBA formats.
    pub(super) fn format_count(&self) -> usize {
        self.formats.len()
    }

    /// Metadata bytes of format `index`.
    pub(super) fn metadata_of(&self, index: usize) -> u16 {
        self.formats.get(index).map_or(0, |f| f.1)
    }

    /// Format NVM's effect (`nvme_format_set`): every block zero, the new
    /// format and protection settings in force.
    pub(super) fn format(&mut self, lbaf: u8, mset: u8, pi: u8, pil: u8) {
        self.chunks.clear();
        self.dps = (pil << 3) | pi;
        self.flbas = ((lbaf >> 4) << 5) | (mset << 4) | (lbaf & 0xf);
        self.init_format();
    }

    /// Byte offset and length of `nlb` blocks from `slba`, if in range.
    pub(super) fn span(&self, slba: u64, nlb: u64) -> Option<(u64, u64)> {
        let end = slba.checked_add(nlb)?;
        (end <= self.blocks).then(|| (slba * self.block_size, nlb * self.block_size))
    }

    /// Reads `buf.len()` bytes at byte `offset`.
    pub(super) fn read(&self, offset: u64, buf: &mut [u8]) {
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let (index, within) = (at / CHUNK, (at % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(buf.len() - done);
            let dst = &mut buf[done..done + n];
            match self.chunks.get(&index) {
                Some(c) => dst.copy_from_slice(&c[within..within + n]),
                None => dst.fill(0),
            }
            done += n;
        }
    }

    /// Writes `data` at byte `offset`.
    /// True if the `len` bytes at `offset` lie in one chunk of storage.
    pub(super) fn in_one_chunk(offset: u64, len: usize) -> bool {
        (offset % CHUNK) as usize + len <= CHUNK as usize
    }

    /// The `len` bytes at `offset`, which lie in one chunk
    /// ([`in_one_chunk`](Self::in_one_chunk)): `None` if that chunk reads
    /// as zero (or they do not).
    pub(super) fn chunk_slice(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let (index, within) = (offset / CHUNK, (offset % CHUNK) as usize);
        self.chunks.get(&index)?.get(within..within + len)
    }

    pub(super) fn write(&mut self, offset: u64, data: &[u8]) {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (index, within) = (at / CHUNK, (at % CHUNK) as usize);
            let n = (CHUNK as usize - within).min(data.len() - done);
            let chunk = self
                .chunks
                .entry(index)
                .or_insert_with(|| vec![0u8; CHUNK as usize].into_boxed_slice());
            chunk[within..within + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    /// Zeroes `len` bytes at byte `offset`, freeing whole chunks.
    pub(super) fn zero(&mut self, offset: u64, len: u64) {
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let (index, within) = (at / CHUNK, at % CHUNK);
            let n = (CHUNK - within).min(end - at);
            if n == CHUNK {
                self.chunks.remove(&index);
            } else if let Some(c) = self.chunks.get_mut(&index) {
                c[within as usize..(within + n) as usize].fill(0);
            }
            at += n;
        }
    }

    /// Bytes of memory the written blocks hold.
    pub(super) fn resident_bytes(&self) -> u64 {
        self.chunks.len() as u64 * CHUNK
    }

    /// The Identify Namespace structure (CNS 0x00), as `nvme_ns_init` and
    /// `nvme_ns_init_format` fill it: the eight standard formats (and the
    /// drive's block size appended as a ninth when it is none of them),
    /// NSFEAT with DULBE and the optimal-I/O fields, DLFEAT 1 (deallocated
    /// blocks read as zeroes), metadata capabilities and protection types
    /// advertised but not used, NPDG/NPDA from the 4 KiB discard
    /// granularity, and no EUI-64 or NGUID (QEMU generates an EUI-64 only
    /// for `nvme-ns` devices).
    pub(super) fn identify(&self) -> IdentifyNamespace {
        let mut id = IdentifyNamespace::new_zeroed();
        id.nsze = self.blocks;
        id.ncap = self.blocks;
        id.nuse = self.blocks;
        id.nsfeat = 0x4 | 0x10;
        id.mc = 0x3;
        id.dpc = 0x1f;
        id.dlfeat = 0x1;
        id.dps = self.dps;
        for (i, (ds, ms)) in self.formats.iter().enumerate() {
            id.lbaf[i] = u32::from(*ms) | (u32::from(*ds) << 16);
        }
        id.flbas = self.flbas;
        id.nlbaf = (self.formats.len() - 1) as u8;
        let npdg = (self.granularity / self.block_size).saturating_sub(1) as u16;
        id.npdg = npdg;
        id.npda = npdg;
        id
    }
}
