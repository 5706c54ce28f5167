//! The one reader of a running fill, for response streaming and the scanner alike.
//!
//! It hands out only bytes the fill's progress says are there, and holds the blob's last byte
//! until the digest verified: a reader that reaches the end has read the digest's bytes, and
//! a failure cuts it short before a client could complete a bad response.

use super::{Fill, FillError, Phase, Progress};
use bytes::Bytes;
use std::sync::Arc;
use tokio::sync::watch;

/// Largest chunk read at once: few syscalls and task hops, little memory per reader.
pub const CHUNK: usize = 256 * 1024;

/// Reads `[start, end)` of a fill (`end = None`: to the blob's end) as bytes land.
pub struct FillReader {
    fill: Arc<Fill>,
    rx: watch::Receiver<Progress>,
    pos: u64,
    start: u64,
    end: Option<u64>,
    /// Progress as of the last chunk handed out.
    seen: Progress,
}

/// How far a reader may read: everything once verified, else all but the last byte written.
fn readable(p: &Progress) -> u64 {
    match p.phase {
        Phase::Done => p.written,
        _ => p.written.saturating_sub(1),
    }
}

impl FillReader {
    /// A reader of `fill` from `start` up to `end` (exclusive; `None`: to the end).
    pub fn new(fill: Arc<Fill>, start: u64, end: Option<u64>) -> Self {
        let rx = fill.watch();
        let seen = rx.borrow().clone();
        FillReader {
            fill,
            rx,
            pos: start,
            start,
            end,
            seen,
        }
    }

    /// Whether everything asked for was handed out (at the end, the blob verified).
    pub fn finished(&self) -> bool {
        match self.end {
            Some(e) => self.pos >= e,
            None => matches!(self.seen.phase, Phase::Done) && self.pos >= self.seen.written,
        }
    }

    /// The next bytes, waiting for them to land; `None` once [`Self::finished`].
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, FillError> {
        loop {
            let p = self.rx.borrow_and_update().clone();
            if let Phase::Failed(e) = &p.phase {
                return Err(e.clone());
            }
            if p.restarts != self.seen.restarts {
                // The bytes handed out so far were discarded: this response cannot be finished.
                if self.pos > self.start {
                    return Err(FillError::Discarded);
                }
                self.seen.restarts = p.restarts;
            }
            let ready = readable(&p);
            let stop = self.end.map_or(ready, |e| e.min(ready));
            self.seen = p;
            if self.pos < stop {
                let len = (stop - self.pos).min(CHUNK as u64) as usize;
                let chunk = match self.fill.read(self.pos, len).await {
                    Ok(c) => c,
                    // The fill discarded its bytes meanwhile: the check above decides.
                    Err(_) if self.rx.borrow().restarts != self.seen.restarts => continue,
                    Err(e) => return Err(e),
                };
                if chunk.is_empty() {
                    return Err(FillError::Store("the fill returned no bytes".into()));
                }
                self.pos += chunk.len() as u64;
                return Ok(Some(chunk));
            }
            if self.finished() {
                return Ok(None);
            }
            if self.rx.changed().await.is_err() {
                // The fill is gone; what it last published is final.
                let last = self.rx.borrow().clone();
                match last.phase {
                    Phase::Done
                        if self.pos < self.end.map_or(last.written, |e| e.min(last.written)) =>
                    {
                        continue
                    }
                    Phase::Done => return Ok(None),
                    Phase::Failed(e) => return Err(e),
                    _ => return Err(FillError::Vanished),
                }
            }
        }
    }
}
