//! Reads of the S3 backend: ranged GETs of stored objects, and the staging file for clients
//! tailing a fill.

use super::Inner;
use crate::store::BlobReader;
use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::ObjectStore as _;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// Bytes one ranged GET fetches ahead, so streaming a blob is a few large requests.
const READ_WINDOW: u64 = 4 * 1024 * 1024;

/// Ranged GETs of a stored object, a window at a time: sequential reads of small chunks cost
/// one request per window.
pub(super) struct ObjectReader {
    pub(super) inner: Arc<Inner>,
    pub(super) key: Key,
    pub(super) size: u64,
    /// The last window fetched: its start and bytes.
    pub(super) window: Mutex<Option<(u64, Bytes)>>,
}

impl ObjectReader {
    /// Bytes at `pos` from the window, when it holds all `len` of them.
    fn cached(&self, pos: u64, len: usize) -> Option<Bytes> {
        let w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let (start, bytes) = w.as_ref()?;
        let off = pos.checked_sub(*start)? as usize;
        (off + len <= bytes.len()).then(|| bytes.slice(off..off + len))
    }

    /// Fetches the window starting at `pos` (at least `len` bytes, when the object has them).
    fn fetch(&self, pos: u64, len: usize) -> impl Future<Output = io::Result<Bytes>> + 'static {
        let end = self.size.min(pos + READ_WINDOW.max(len as u64));
        let (inner, key) = (self.inner.clone(), self.key.clone());
        async move {
            if pos >= end {
                return Ok(Bytes::new());
            }
            inner
                .s3
                .get_range(&key, pos..end)
                .await
                .map_err(io::Error::other)
        }
    }

    fn keep(&self, pos: u64, bytes: &Bytes) {
        *self.window.lock().unwrap_or_else(|p| p.into_inner()) = Some((pos, bytes.clone()));
    }
}

#[async_trait]
impl BlobReader for ObjectReader {
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if let Some(b) = self.cached(pos, len) {
            return Ok(b);
        }
        let rt = self
            .inner
            .runtime
            .as_ref()
            .expect("runtime lives until drop");
        let bytes = rt
            .spawn(self.fetch(pos, len))
            .await
            .map_err(io::Error::other)??;
        if bytes.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("object ends before byte {}", pos + len as u64),
            ));
        }
        self.keep(pos, &bytes);
        Ok(bytes.slice(..len))
    }

    fn read_blocking(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min(self.size.saturating_sub(pos) as usize);
        let bytes = match self.cached(pos, want) {
            Some(b) => b,
            None => {
                let b = self.inner.block_on(self.fetch(pos, want))?;
                self.keep(pos, &b);
                b.slice(..want.min(b.len()))
            }
        };
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

/// Reads of the staging file, for clients tailing a fill.
pub(super) struct StagingReader(pub(super) Arc<File>);

#[async_trait]
impl BlobReader for StagingReader {
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let file = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; len];
            file.read_exact_at(&mut buf, pos)?;
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(io::Error::other)?
    }

    fn read_blocking(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }
}
