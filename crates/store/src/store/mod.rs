//! The blob store: content-addressed, immutable blobs (layers, configs and manifests) behind
//! [`BlobStore`], with the filesystem backend [`FsStore`] (`blobs/<algorithm>/<2 hex>/<hex>`)
//! and the S3 backend [`S3Store`] (`object/`).
//!
//! The interface is what an object-store backend can implement too:
//! * reads go through a [`BlobReader`]: positional, async for the request path (the filesystem
//!   backend runs its large reads on the blocking pool), blocking for callers already on a
//!   blocking thread (scanner, scrub);
//! * writes go through a [`BlobWriter`]: bytes at offsets, a reader for clients tailing the
//!   fill, then `commit` under a digest the caller verified, or `abort` (also on drop). Nothing
//!   half-written is ever visible under a digest. Fills stage locally: the filesystem writer
//!   writes a temp file in the store's own `tmp/` (same filesystem, so the commit is an fsync
//!   and an atomic rename); a remote backend would stage locally too and upload at commit, which
//!   fills run after clients already have their bytes;
//! * the store keeps its own [`Usage`] (counted at open, updated on commit, delete and
//!   quarantine); an observer (the metrics) hears every change.
//!
//! Metadata calls (`stat`, `open`, `begin`, `list`, `delete`, `quarantine`) and the writer's
//! calls block: run them on the blocking pool. `tmp/` is emptied at start-up: whatever is there
//! belonged to a process that died mid-fill.

mod fs;
pub mod object;

pub use fs::FsStore;
pub use object::S3Store;

use crate::oci::Digest;
use async_trait::async_trait;
use bytes::Bytes;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Creates a new staging file for a fill in `dir`, named so that no two fills (of this or of
/// another process) can collide.
pub(crate) fn new_staging_file(dir: &Path, counter: &AtomicU64) -> io::Result<(PathBuf, File)> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(
        "fill-{}-{n}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

/// Storage for verified blobs and manifests.
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a stored blob, if present.
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>>;
    /// Opens a stored blob for positional reads.
    fn open(&self, digest: &Digest) -> io::Result<Option<StoredBlob>>;
    /// Starts writing a new blob (a fill or a manifest).
    fn begin(&self) -> io::Result<Box<dyn BlobWriter>>;
    /// Removes a blob (GC); absent is not an error.
    fn delete(&self, digest: &Digest) -> io::Result<()>;
    /// Every stored blob with its size.
    fn list(&self) -> io::Result<Vec<(Digest, u64)>>;
    /// Moves a blob whose bytes do not match its name out of the way (scrub).
    fn quarantine(&self, digest: &Digest) -> io::Result<()>;
    /// Bytes and blobs held now, as the store counts them.
    fn usage(&self) -> Usage;
    /// A short-lived URL clients may fetch the stored blob from directly, when the backend
    /// offers one and redirects are configured.
    fn presign(&self, _digest: &Digest) -> io::Result<Option<String>> {
        Ok(None)
    }
    /// Whether other nodes may read and write the same blobs (a bucket), so that what this
    /// store lacks is lacking for every replica sharing the index.
    fn shared(&self) -> bool {
        false
    }
}

/// Positional reads of a blob's bytes.
#[async_trait]
pub trait BlobReader: Send + Sync {
    /// Reads exactly `len` bytes at `pos` (the caller knows they are there).
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes>;
    /// Reads up to `buf.len()` bytes at `pos`, blocking the thread; 0 at the end.
    fn read_blocking(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize>;
    /// The local file holding the bytes, when there is one (the server can then send it with
    /// `sendfile`); `None` for remote backends.
    fn file(&self) -> Option<Arc<File>> {
        None
    }
}

/// A blob being written. Dropped without `commit`, it is aborted.
pub trait BlobWriter: Send + Sync {
    /// Writes `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// A reader of the bytes written so far, for clients tailing a fill; it stays valid after
    /// the commit (and after an abort, for bytes already written).
    fn reader(&self) -> io::Result<Arc<dyn BlobReader>>;
    /// Makes the bytes visible under `digest`, which the caller verified (durably: for the
    /// filesystem, fsync and an atomic rename). A digest already stored is left as it is.
    fn commit(self: Box<Self>, digest: &Digest) -> io::Result<()>;
    /// Discards the bytes.
    fn abort(self: Box<Self>);
}

/// An open stored blob.
pub struct StoredBlob {
    /// Its size in bytes.
    pub size: u64,
    /// Its bytes.
    pub reader: Arc<dyn BlobReader>,
}

impl StoredBlob {
    /// A blocking `std::io::Read` over the whole blob, for callers on blocking threads.
    pub fn into_read(self) -> BlobRead {
        BlobRead {
            reader: self.reader,
            pos: 0,
            size: self.size,
        }
    }
}

/// Sequential blocking reads of a stored blob.
pub struct BlobRead {
    reader: Arc<dyn BlobReader>,
    pos: u64,
    size: u64,
}

impl io::Read for BlobRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size.saturating_sub(self.pos);
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.reader.read_blocking(self.pos, &mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// What the store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes in stored blobs.
    pub bytes: u64,
    /// Stored blobs.
    pub blobs: u64,
}

/// Hears every change of a store's usage.
pub type UsageObserver = Box<dyn Fn(Usage) + Send + Sync>;

/// A store's running usage count, shared with its writers; backends update it as blobs come
/// and go, and it tells the observer.
#[derive(Default)]
pub struct UsageCounter {
    usage: Mutex<Usage>,
    observer: OnceLock<UsageObserver>,
}

impl UsageCounter {
    /// A counter starting at `usage`.
    pub fn new(usage: Usage) -> Self {
        UsageCounter {
            usage: Mutex::new(usage),
            observer: OnceLock::new(),
        }
    }

    /// The current usage.
    pub fn get(&self) -> Usage {
        *self.usage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the observer (once) and tells it the current usage.
    pub fn observe(&self, f: UsageObserver) {
        let u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        f(*u);
        let _ = self.observer.set(f);
    }

    /// Replaces the count with a fresh one (a full listing of a store other processes also
    /// write to), telling the observer.
    pub fn reset(&self, usage: Usage) {
        let mut u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        *u = usage;
        if let Some(f) = self.observer.get() {
            f(*u);
        }
    }

    /// Runs `op` (a commit, delete or move) and counts what it reports: `Some((+1, bytes))`
    /// for a blob that appeared, `Some((-1, bytes))` for one that went, `None` for no change.
    /// Ops run one at a time, so checking for a blob and changing it is one step for the count.
    pub fn update<T>(
        &self,
        op: impl FnOnce() -> io::Result<(T, Option<(i64, u64)>)>,
    ) -> io::Result<T> {
        let mut u = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let (out, change) = op()?;
        if let Some((blobs, bytes)) = change {
            if blobs >= 0 {
                u.blobs += blobs as u64;
                u.bytes += bytes;
            } else {
                u.blobs = u.blobs.saturating_sub(blobs.unsigned_abs());
                u.bytes = u.bytes.saturating_sub(bytes);
            }
            // Told under the lock, so the observer hears changes in order (it must be cheap).
            if let Some(f) = self.observer.get() {
                f(*u);
            }
        }
        Ok(out)
    }
}

/// Writes small verified content (manifests) in one go: staged, committed.
pub fn put_bytes(store: &dyn BlobStore, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
    if store.stat(digest)?.is_some() {
        return Ok(());
    }
    let w = store.begin()?;
    w.write_at(bytes, 0)?;
    w.commit(digest)
}

/// Reads small content (manifests) whole.
pub fn read_bytes(store: &dyn BlobStore, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
    let Some(b) = store.open(digest)? else {
        return Ok(None);
    };
    let mut buf = Vec::with_capacity(b.size as usize);
    io::Read::read_to_end(&mut b.into_read(), &mut buf)?;
    Ok(Some(buf))
}
