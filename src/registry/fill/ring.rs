//! The most recent bytes of a fill, held in memory so that readers keeping pace are handed the
//! chunks just received (shared `Bytes`: no copy, no read of the staging file, no blocking-pool
//! hop). Bounded: once the window is full the oldest chunks leave, but only chunks the staging
//! file (or the spill window) already holds, so every byte a reader was told about is somewhere.
//! A reader that falls out of the window reads the staging file instead.

use bytes::Bytes;
use std::collections::VecDeque;

/// Bytes of recent chunks kept for tailing readers (more only while the staging writes lag).
pub(super) const RING_WINDOW: usize = 4 * 1024 * 1024;
/// Chunks kept at most: a trickling upstream's tiny chunks must not pile up by the thousand.
const MAX_CHUNKS: usize = 1024;

/// Recent chunks of one fill, contiguous and ordered by offset.
#[derive(Default)]
pub(super) struct Ring {
    chunks: VecDeque<(u64, Bytes)>,
    held: usize,
}

impl Ring {
    /// Appends the chunk at `offset` (the next after the last one), then trims.
    pub(super) fn push(&mut self, offset: u64, data: Bytes, kept_elsewhere: u64) {
        debug_assert!(self.end().is_none_or(|e| e == offset));
        self.held += data.len();
        self.chunks.push_back((offset, data));
        self.trim(kept_elsewhere);
    }

    /// Drops the oldest chunks while over the window (in bytes or chunks), as long as they end at or before
    /// `kept_elsewhere` (the bytes the staging file or the spill window holds).
    pub(super) fn trim(&mut self, kept_elsewhere: u64) {
        while self.held > RING_WINDOW || self.chunks.len() > MAX_CHUNKS {
            match self.chunks.front() {
                Some((off, c)) if off + c.len() as u64 <= kept_elsewhere => {
                    self.held -= c.len();
                    self.chunks.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Up to `len` bytes at `pos`, if the window still holds that byte (one chunk's worth at
    /// most: a slice of it, no copy).
    pub(super) fn get(&self, pos: u64, len: usize) -> Option<Bytes> {
        // The first chunk ending after `pos`.
        let i = self
            .chunks
            .partition_point(|(off, c)| off + c.len() as u64 <= pos);
        let (off, c) = self.chunks.get(i)?;
        if pos < *off {
            return None;
        }
        let from = (pos - off) as usize;
        Some(c.slice(from..(from + len).min(c.len())))
    }

    /// Where the window starts (`None`: empty).
    pub(super) fn start(&self) -> Option<u64> {
        self.chunks.front().map(|(off, _)| *off)
    }

    /// Where the window ends (`None`: empty).
    fn end(&self) -> Option<u64> {
        self.chunks.back().map(|(off, c)| off + c.len() as u64)
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held
    }

    /// Forgets every chunk (a restart from byte 0 once the staging file holds them all).
    pub(super) fn clear(&mut self) {
        self.chunks.clear();
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: usize = 256 * 1024;

    fn chunk(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn readers_get_slices_of_the_chunk_holding_their_position() {
        let mut r = Ring::default();
        r.push(0, chunk(10, 1), 0);
        r.push(10, chunk(5, 2), 0);
        assert_eq!(r.get(0, 100).unwrap(), chunk(10, 1));
        assert_eq!(r.get(7, 100).unwrap(), chunk(3, 1));
        assert_eq!(r.get(10, 2).unwrap(), chunk(2, 2));
        assert_eq!(r.get(14, 9).unwrap(), chunk(1, 2));
        assert!(r.get(15, 1).is_none(), "past the end");
    }

    #[test]
    fn memory_stays_within_the_window_when_the_file_keeps_up() {
        let mut r = Ring::default();
        for i in 0..100u64 {
            let off = i * K as u64;
            // The staging file holds everything before this chunk.
            r.push(off, chunk(K, i as u8), off);
            assert!(r.held() <= RING_WINDOW + K, "held {} bytes", r.held());
        }
        assert!(r.get(0, 1).is_none(), "old chunks left the window");
        assert_eq!(r.get(99 * K as u64, 1).unwrap()[0], 99);
        assert_eq!(r.start(), Some(100 * K as u64 - RING_WINDOW as u64));
    }

    #[test]
    fn chunks_the_file_does_not_hold_yet_are_never_dropped() {
        let mut r = Ring::default();
        for i in 0..40u64 {
            r.push(i * K as u64, chunk(K, i as u8), K as u64);
        }
        // Only the first chunk is on file: everything after it stays readable.
        assert_eq!(r.start(), Some(K as u64));
        assert_eq!(r.held(), 39 * K);
        // The writes catch up: the window shrinks back.
        r.trim(40 * K as u64);
        assert_eq!(r.held(), RING_WINDOW);
        r.clear();
        assert_eq!((r.held(), r.start()), (0, None));
    }
}
