//! A blocking `Read` over a running fill, so a layer is analysed while it downloads: the scan
//! of an image on its first pull overlaps the transfer instead of following it.
//!
//! It only hands out bytes the fill's progress says are readable; the last byte is released
//! only once the whole blob is verified, so reaching end-of-file means the bytes were the
//! digest's. Callers that stop early must [`FillReader::finish`] to wait for that verdict.

use crate::registry::fill::{Fill, Phase, Progress};
use std::io::{self, Read};
use std::sync::Arc;
use tokio::runtime::Handle;
use tokio::sync::watch;

/// Largest read asked of the fill at once.
const CHUNK: usize = 256 << 10;

/// Reads a fill from the start; use on a blocking thread (it blocks on the runtime `handle`).
pub struct FillReader {
    fill: Arc<Fill>,
    progress: watch::Receiver<Progress>,
    pos: u64,
    handle: Handle,
}

impl FillReader {
    /// A reader at offset 0 of `fill`.
    pub fn new(fill: Arc<Fill>, handle: Handle) -> Self {
        FillReader {
            progress: fill.watch(),
            fill,
            pos: 0,
            handle,
        }
    }

    /// Reads to the end (discarding), so the caller knows the blob verified.
    pub fn finish(&mut self) -> io::Result<u64> {
        io::copy(self, &mut io::sink())
    }
}

impl Read for FillReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let p = self.progress.borrow_and_update().clone();
            if let Phase::Failed(msg) = &p.phase {
                return Err(io::Error::other(format!(
                    "fetching the layer failed: {msg}"
                )));
            }
            let readable = p.readable();
            if self.pos < readable {
                let want = buf.len().min(CHUNK).min((readable - self.pos) as usize);
                let bytes = self.handle.block_on(self.fill.read(self.pos, want))?;
                if bytes.is_empty() {
                    return Err(io::Error::other("the fill returned no bytes"));
                }
                let n = bytes.len().min(buf.len());
                buf[..n].copy_from_slice(&bytes[..n]);
                self.pos += n as u64;
                return Ok(n);
            }
            if p.phase == Phase::Done {
                return Ok(0);
            }
            let changed = self.handle.block_on(self.progress.changed());
            if changed.is_err() {
                // The fill is gone; what it last published is final.
                let last = self.progress.borrow().clone();
                return match last.phase {
                    Phase::Done if self.pos < last.readable() => continue,
                    Phase::Done => Ok(0),
                    Phase::Failed(msg) => Err(io::Error::other(format!(
                        "fetching the layer failed: {msg}"
                    ))),
                    _ => Err(io::Error::other("the layer's fill ended without finishing")),
                };
            }
        }
    }
}
