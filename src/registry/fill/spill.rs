//! Bytes a fill could not write to the store (disk full, I/O error), kept in a bounded window
//! in memory for readers.

use super::FillError;
use bytes::Bytes;
use std::collections::VecDeque;

/// When the store cannot be written, bytes past the last good write are relayed to readers from
/// memory; this bounds that window (a reader that falls further behind is cut).
const SPILL_WINDOW: usize = 64 * 1024 * 1024;

/// Bytes that could not be written to the store.
#[derive(Default)]
pub(super) struct Spill {
    /// Where the staging file stops holding good bytes; `None` while writes succeed.
    pub(super) file_end: Option<u64>,
    /// Chunks from `file_end` on, by offset.
    chunks: VecDeque<(u64, Bytes)>,
    /// Bytes held in `chunks`.
    held: usize,
    /// Offsets below this were dropped from the window.
    dropped_to: u64,
}

impl Spill {
    pub(super) fn push(&mut self, offset: u64, data: Bytes) {
        self.held += data.len();
        self.chunks.push_back((offset, data));
        while self.held > SPILL_WINDOW {
            let Some((off, c)) = self.chunks.pop_front() else {
                break;
            };
            self.held -= c.len();
            self.dropped_to = off + c.len() as u64;
        }
    }

    pub(super) fn read(&self, pos: u64, len: usize) -> Result<Bytes, FillError> {
        if pos < self.dropped_to {
            return Err(FillError::ReaderFellBehind);
        }
        for (off, c) in &self.chunks {
            let end = off + c.len() as u64;
            if pos >= *off && pos < end {
                let from = (pos - off) as usize;
                return Ok(c.slice(from..(from + len).min(c.len())));
            }
        }
        Err(FillError::Store("bytes not yet received".into()))
    }
}
