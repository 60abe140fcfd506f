//! Byte access to RAM that other threads and devices share, through aligned
//! 64-bit atomic words: the one implementation both backends' DMA memory
//! uses.
//!
//! DMA memory is read and written through `&self` from any thread while a
//! device reads and writes it too. Plain or volatile copies from two threads
//! would be a data race, which Rust's memory model makes undefined
//! behaviour; atomic accesses are not. Every access here is an aligned
//! `AtomicU64` load, store or compare-exchange, and nothing else ever
//! touches the words: no access of another size overlaps them, so no
//! mixed-size atomic accesses arise either (the memory model leaves those
//! undefined when they race). A bulk copy moves whole words in its aligned
//! middle and reads or read-modify-writes the partial words at its ends, so
//! other bytes of those words are never overwritten, even by a racing
//! writer. Each whole aligned word of a copy is moved by one access, so an
//! aligned 8-byte field is never torn.
//!
//! The caller picks the ordering of the word accesses: `Relaxed` for the
//! CPU's data moves (which order nothing: the order of a driver's
//! DMA-memory accesses relative to its doorbell writes and completion reads
//! is the driver's to state with the [`DmaMemory`](crate::DmaMemory)
//! barriers), `Acquire` loads and `Release` stores where each word access
//! must also order (a simulated device's side of DMA).

use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes per word.
pub const WORD: usize = 8;

/// Where byte `offset` lives: the word index and the byte within the word.
#[inline]
fn locate(offset: usize) -> (usize, usize) {
    (offset / WORD, offset % WORD)
}

/// Whether `len` bytes at `offset` lie within `words`.
#[inline]
pub fn fits(words: &[AtomicU64], offset: usize, len: usize) -> bool {
    offset
        .checked_add(len)
        .is_some_and(|end| end <= words.len().saturating_mul(WORD))
}

/// Writes `part` into the word at bytes `within..within + part.len()`,
/// leaving its other bytes as they are at that moment.
#[inline]
fn merge(w: &AtomicU64, within: usize, part: &[u8], order: Ordering) {
    let merge = |old: u64| {
        let mut bytes = old.to_ne_bytes();
        bytes[within..within + part.len()].copy_from_slice(part);
        Some(u64::from_ne_bytes(bytes))
    };
    // `merge` always returns Some, so this cannot fail.
    let _ = w.fetch_update(order, Ordering::Relaxed, merge);
}

/// Copies `buf.len()` bytes at byte `offset` out of `words`, each word with
/// one load of ordering `order` (`Relaxed` or `Acquire`).
///
/// # Panics
///
/// If the range does not lie within `words` (callers check it first), or
/// for a store-only `order`.
#[inline]
pub fn read(words: &[AtomicU64], offset: usize, buf: &mut [u8], order: Ordering) {
    assert!(fits(words, offset, buf.len()), "unchecked word access");
    let (mut index, within) = locate(offset);
    let mut rest = buf;
    if within != 0 && !rest.is_empty() {
        let n = (WORD - within).min(rest.len());
        let bytes = words[index].load(order).to_ne_bytes();
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&bytes[within..within + n]);
        rest = tail;
        index += 1;
    }
    let whole = rest.len() / WORD;
    let (middle, tail) = rest.split_at_mut(whole * WORD);
    for (chunk, w) in middle
        .chunks_exact_mut(WORD)
        .zip(&words[index..index + whole])
    {
        chunk.copy_from_slice(&w.load(order).to_ne_bytes());
    }
    if !tail.is_empty() {
        let bytes = words[index + whole].load(order).to_ne_bytes();
        let n = tail.len();
        tail.copy_from_slice(&bytes[..n]);
    }
}

/// Copies `data` into `words` at byte `offset`. Whole words are stored;
/// partial words are compare-exchanged, leaving their other bytes as they
/// are at that moment. `order` is the stores' ordering (`Relaxed` or
/// `Release`).
///
/// # Panics
///
/// If the range does not lie within `words` (callers check it first), or
/// for a load-only `order`.
#[inline]
pub fn write(words: &[AtomicU64], offset: usize, data: &[u8], order: Ordering) {
    assert!(fits(words, offset, data.len()), "unchecked word access");
    let (mut index, within) = locate(offset);
    let mut rest = data;
    if within != 0 && !rest.is_empty() {
        let n = (WORD - within).min(rest.len());
        let (head, tail) = rest.split_at(n);
        merge(&words[index], within, head, order);
        rest = tail;
        index += 1;
    }
    let whole = rest.len() / WORD;
    let (middle, tail) = rest.split_at(whole * WORD);
    for (chunk, w) in middle.chunks_exact(WORD).zip(&words[index..index + whole]) {
        let mut bytes = [0; WORD];
        bytes.copy_from_slice(chunk);
        w.store(u64::from_ne_bytes(bytes), order);
    }
    if !tail.is_empty() {
        merge(&words[index + whole], 0, tail, order);
    }
}

/// Reads the `N` bytes at `offset`, which lie within one word: one load of
/// ordering `order`.
///
/// # Panics
///
/// If they do not (`offset` not aligned to `N`, with `N` a power of two of
/// at most 8, is the caller's check), or lie past `words`.
#[inline]
pub fn load<const N: usize>(words: &[AtomicU64], offset: usize, order: Ordering) -> [u8; N] {
    let (index, within) = locate(offset);
    assert!(within + N <= WORD, "an access straddling two words");
    let bytes = words[index].load(order).to_ne_bytes();
    let mut out = [0; N];
    out.copy_from_slice(&bytes[within..within + N]);
    out
}

/// Writes `value` at `offset`, which with its `N` bytes lies within one
/// word: one store of ordering `order` for a whole word, else one
/// compare-exchange loop that leaves the word's other bytes as they are.
///
/// # Panics
///
/// As [`load`].
#[inline]
pub fn store<const N: usize>(words: &[AtomicU64], offset: usize, value: [u8; N], order: Ordering) {
    let (index, within) = locate(offset);
    assert!(within + N <= WORD, "an access straddling two words");
    let w = &words[index];
    if N == WORD {
        let mut bytes = [0; WORD];
        bytes.copy_from_slice(&value);
        w.store(u64::from_ne_bytes(bytes), order);
        return;
    }
    merge(w, within, &value, order);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const R: Ordering = Ordering::Relaxed;

    fn words(n: usize) -> Vec<AtomicU64> {
        (0..n).map(|_| AtomicU64::new(0)).collect()
    }

    #[test]
    fn copies_round_trip_at_every_offset_and_length() {
        let w = words(4);
        let pattern: Vec<u8> = (1..=32).collect();
        for offset in 0..32 {
            for len in 0..=32 - offset {
                write(&w, 0, &[0; 32], R);
                write(&w, offset, &pattern[..len], R);
                let mut all = [0u8; 32];
                read(&w, 0, &mut all, R);
                let mut expect = [0u8; 32];
                expect[offset..offset + len].copy_from_slice(&pattern[..len]);
                assert_eq!(all, expect, "offset {offset} len {len}");
                let mut back = vec![0u8; len];
                read(&w, offset, &mut back, R);
                assert_eq!(back, &pattern[..len]);
            }
        }
    }

    #[test]
    fn single_word_loads_and_stores_touch_only_their_bytes() {
        let w = words(2);
        store(&w, 8, 0x0102_0304_0506_0708u64.to_ne_bytes(), R);
        store(&w, 10, 0xbeefu16.to_ne_bytes(), R);
        store(&w, 15, [0xaa], R);
        store(&w, 4, 0xdead_beefu32.to_ne_bytes(), R);
        assert_eq!(
            u64::from_ne_bytes(load(&w, 8, R)),
            u64::from_ne_bytes({
                let mut b = 0x0102_0304_0506_0708u64.to_ne_bytes();
                b[2..4].copy_from_slice(&0xbeefu16.to_ne_bytes());
                b[7] = 0xaa;
                b
            })
        );
        assert_eq!(u32::from_ne_bytes(load(&w, 4, R)), 0xdead_beef);
        assert_eq!(load::<4>(&w, 0, R), [0; 4]);
        let mut all = [0u8; 16];
        read(&w, 0, &mut all, R);
        assert_eq!(all[4..8], 0xdead_beefu32.to_ne_bytes());
    }

    #[test]
    #[should_panic(expected = "an access straddling two words")]
    fn a_load_straddling_words_panics() {
        load::<4>(&words(2), 6, R);
    }

    #[test]
    fn bounds_use_checked_arithmetic() {
        let w = words(2);
        assert!(fits(&w, 0, 16));
        assert!(fits(&w, 16, 0));
        assert!(!fits(&w, 9, 8));
        assert!(!fits(&w, usize::MAX, 2));
    }

    #[test]
    #[should_panic(expected = "unchecked word access")]
    fn an_unchecked_copy_past_the_end_panics() {
        read(&words(1), 4, &mut [0; 8], R);
    }

    /// Two threads writing interleaved 3-byte blocks, which share words
    /// and straddle word boundaries, while a third reads: no byte written by
    /// one is lost to the other's partial-word writes, and reads see only
    /// values that were written. Small enough for Miri, which checks the
    /// accesses for data races.
    #[test]
    fn two_writers_sharing_words_never_lose_each_others_bytes() {
        const BLOCKS: usize = 10;
        let w = Arc::new(words(4));
        let rounds: u8 = if cfg!(miri) { 20 } else { 200 };
        let lane_of = |byte: usize| (byte / 3) % 2;
        let writers: Vec<_> = [0usize, 1]
            .into_iter()
            .map(|lane| {
                let w = w.clone();
                std::thread::spawn(move || {
                    for round in 0..rounds {
                        let v = round.wrapping_mul(2) | lane as u8;
                        for block in (lane..BLOCKS).step_by(2) {
                            write(&w, block * 3, &[v; 3], R);
                        }
                    }
                })
            })
            .collect();
        let reader = {
            let w = w.clone();
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    let mut buf = [0u8; BLOCKS * 3];
                    read(&w, 0, &mut buf, R);
                    for (i, b) in buf.iter().enumerate() {
                        // Untouched yet, or a value of the byte's own lane.
                        assert!(
                            *b == 0 || usize::from(b & 1) == lane_of(i),
                            "byte {i} = {b}"
                        );
                    }
                }
            })
        };
        for t in writers {
            t.join().unwrap();
        }
        reader.join().unwrap();
        let mut buf = [0u8; BLOCKS * 3];
        read(&w, 0, &mut buf, R);
        let last = (rounds - 1).wrapping_mul(2);
        for (i, b) in buf.iter().enumerate() {
            assert_eq!(*b, last | lane_of(i) as u8, "byte {i}");
        }
    }
}
