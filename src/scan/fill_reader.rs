//! A blocking `Read` over a running fill, so a layer is analysed while it downloads: the scan
//! of an image on its first pull overlaps the transfer instead of following it.
//!
//! A thin bridge over [`crate::registry::fill::FillReader`], which holds the last byte until
//! the blob verified: reaching end-of-file means the bytes were the digest's. Callers that stop
//! early must [`BlockingFillReader::finish`] to wait for that verdict.

use crate::registry::fill::{Fill, FillReader};
use bytes::{Buf, Bytes};
use std::io::{self, Read};
use std::sync::Arc;
use tokio::runtime::Handle;

/// Reads a fill from the start; use on a blocking thread (it blocks on the runtime `handle`).
pub struct BlockingFillReader {
    inner: FillReader,
    /// What is left of the last chunk.
    chunk: Bytes,
    handle: Handle,
}

impl BlockingFillReader {
    /// A reader at offset 0 of `fill`.
    pub fn new(fill: Arc<Fill>, handle: Handle) -> Self {
        BlockingFillReader {
            inner: FillReader::new(fill, 0, None),
            chunk: Bytes::new(),
            handle,
        }
    }

    /// Reads to the end (discarding), so the caller knows the blob verified.
    pub fn finish(&mut self) -> io::Result<u64> {
        let mut n = std::mem::take(&mut self.chunk).len() as u64;
        while let Some(c) = self.next()? {
            n += c.len() as u64;
        }
        Ok(n)
    }

    fn next(&mut self) -> io::Result<Option<Bytes>> {
        self.handle
            .block_on(self.inner.next_chunk())
            .map_err(|e| io::Error::other(format!("fetching the layer failed: {e}")))
    }
}

impl Read for BlockingFillReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunk.is_empty() {
            match self.next()? {
                Some(c) => self.chunk = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
