//! The object-storage backend: blobs as objects `<prefix>/blobs/<algorithm>/<hex>` on S3 or an
//! S3-compatible server (through the `object_store` crate), bad ones copied to
//! `<prefix>/quarantine/<algorithm>-<hex>`.
//!
//! Fills stage in a local file (clients tail it while upstream streams) and upload at commit,
//! after the caller verified the digest. A PUT (or a completed multipart upload) is atomic, so an
//! object under a digest key is always whole; a failed upload leaves no key. Writes are
//! idempotent: same key, same bytes. Reads are ranged GETs through a read-ahead window.
//!
//! The trait's blocking calls drive `object_store`'s async API on the backend's own small
//! runtime, so its connections never depend on whichever runtime a caller happens to run on.

mod config;
mod hot;
mod reader;

pub use config::{blob_key, digest_of_key, quarantine_key, S3Config, Secret, Sse};

use super::{BlobReader, BlobStore, BlobWriter, StoredBlob, Usage, UsageCounter, UsageObserver};
use crate::oci::Digest;
use config::{builder, join};
use futures_util::TryStreamExt;
use hot::HotTier;
use object_store::aws::AmazonS3;
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use reader::{ObjectReader, StagingReader};
use std::fs::{self, File};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Blobs up to this size go up in one PUT; larger ones as a multipart upload of these parts.
const PART: usize = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// What the store's readers and writers share.
pub(super) struct Inner {
    pub(super) s3: AmazonS3,
    prefix: String,
    // `Some` until drop; shut down in the background so dropping never blocks or panics.
    pub(super) runtime: Option<tokio::runtime::Runtime>,
    hot: Option<HotTier>,
    usage: Arc<UsageCounter>,
}

impl Inner {
    fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.runtime {
            rt.spawn(f);
        }
    }

    pub(super) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("runtime lives until drop")
            .block_on(f)
    }

    fn key(&self, digest: &Digest) -> Key {
        Key::from(blob_key(&self.prefix, digest))
    }

    /// HEAD: the object's size, `None` when absent.
    async fn head(&self, key: &Key) -> io::Result<Option<u64>> {
        match self.s3.head(key).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io::Error::other(e)),
        }
    }

    /// Uploads the staged file under `key`: one PUT, or a multipart upload that is aborted
    /// (leaving no object) when any part fails.
    async fn upload(&self, file: &File, size: u64, key: &Key) -> io::Result<()> {
        if size <= PART as u64 {
            let mut buf = vec![0; size as usize];
            file.read_exact_at(&mut buf, 0)?;
            self.s3
                .put(key, PutPayload::from(buf))
                .await
                .map_err(io::Error::other)?;
            return Ok(());
        }
        let upload = self.s3.put_multipart(key).await.map_err(io::Error::other)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buf = vec![0; PART];
        let mut pos = 0;
        let sent = loop {
            // Parts in flight are bounded; the last one is waited for before completing.
            let limit = if pos < size { PARTS_IN_FLIGHT } else { 0 };
            if let Err(e) = w.wait_for_capacity(limit).await {
                break Err(io::Error::other(e));
            }
            if pos == size {
                break Ok(());
            }
            let n = (size - pos).min(PART as u64) as usize;
            if let Err(e) = file.read_exact_at(&mut buf[..n], pos) {
                break Err(e);
            }
            w.write(&buf[..n]);
            pos += n as u64;
        };
        if let Err(e) = sent {
            // Uploaded parts are dropped; the key was never created.
            let _ = w.abort().await;
            return Err(e);
        }
        // Sends the last partial part and completes (aborting the upload if that fails).
        w.finish().await.map_err(io::Error::other)?;
        Ok(())
    }
}

impl Inner {
    /// Every blob under the prefix with its size.
    async fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let base = Key::from(join(&self.prefix, "blobs"));
        let metas: Vec<_> = self
            .s3
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(io::Error::other)?;
        // Anything that is not a digest key is not ours to report.
        Ok(metas
            .into_iter()
            .filter_map(|m| Some((digest_of_key(&self.prefix, m.location.as_ref())?, m.size)))
            .collect())
    }

    /// Removes (or moves, with `copy_to`) the object of `digest`, uncounting it; `Ok(false)`
    /// when absent. Under the usage lock: GC and scrub are rare, and the count stays exact.
    fn remove(&self, digest: &Digest, copy_to: Option<Key>) -> io::Result<bool> {
        let key = self.key(digest);
        self.usage.update(|| {
            self.block_on(async {
                let Some(size) = self.head(&key).await? else {
                    return Ok((false, None));
                };
                if let Some(dest) = &copy_to {
                    self.s3.copy(&key, dest).await.map_err(io::Error::other)?;
                }
                match self.s3.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                        Ok((true, Some((-1, size))))
                    }
                    Err(e) => Err(io::Error::other(e)),
                }
            })
        })
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The blob store on S3 or an S3-compatible server.
pub struct S3Store {
    inner: Arc<Inner>,
    staging: PathBuf,
    counter: AtomicU64,
    redirect_ttl: Option<Duration>,
}

impl S3Store {
    /// Connects to the bucket (credentials: the config, else the usual AWS variables), stages
    /// fills in `<root>/tmp` (emptied first: leftovers belong to a process that died mid-fill),
    /// opens the local tier at `<root>/hot` when configured, and counts what the bucket holds
    /// under the prefix.
    pub fn open(cfg: &S3Config, root: &Path) -> io::Result<Self> {
        let staging = &root.join("tmp");
        let hot = match cfg.local_cache_bytes {
            Some(limit) => Some(HotTier::open(&root.join("hot"), limit)?),
            None => None,
        };
        let s3 = builder(cfg)
            .build()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        if staging.exists() {
            for e in fs::read_dir(staging)? {
                let _ = fs::remove_file(e?.path());
            }
        }
        fs::create_dir_all(staging)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("objstore")
            .enable_all()
            .build()?;
        let mut inner = Inner {
            s3,
            prefix: cfg.prefix.clone(),
            runtime: Some(runtime),
            hot,
            usage: Arc::default(),
        };
        let listed = inner.block_on(inner.list()).unwrap_or_else(|e| {
            tracing::warn!(bucket = %cfg.bucket, "cannot list the bucket to count it: {e}");
            Vec::new()
        });
        inner.usage = Arc::new(UsageCounter::new(Usage {
            bytes: listed.iter().map(|(_, s)| s).sum(),
            blobs: listed.len() as u64,
        }));
        Ok(S3Store {
            inner: Arc::new(inner),
            staging: staging.to_path_buf(),
            counter: AtomicU64::new(0),
            redirect_ttl: cfg.redirect_ttl,
        })
    }

    /// Sets the observer of usage changes (the metrics) and tells it the current usage.
    pub fn observe_usage(&self, f: UsageObserver) {
        self.inner.usage.observe(f);
    }
}

impl BlobStore for S3Store {
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let inner = &self.inner;
        inner.block_on(inner.head(&inner.key(digest)))
    }

    fn open(&self, digest: &Digest) -> io::Result<Option<StoredBlob>> {
        if let Some(b) = self.inner.hot.as_ref().and_then(|h| h.open_blob(digest)) {
            return Ok(Some(b));
        }
        let Some(size) = self.stat(digest)? else {
            return Ok(None);
        };
        if self
            .inner
            .hot
            .as_ref()
            .is_some_and(|h| h.start_copy(digest, size))
        {
            // Read from the bucket now; the local tier gets its copy in the background.
            let (inner, d) = (self.inner.clone(), digest.clone());
            self.inner.spawn(async move {
                let Some(hot) = &inner.hot else { return };
                match inner.s3.get(&inner.key(&d)).await {
                    Ok(r) => hot.copy(&d, r.into_stream()).await,
                    Err(e) => hot.copy(&d, futures_util::stream::iter([Err(e)])).await,
                }
            });
        }
        Ok(Some(StoredBlob {
            size,
            reader: Arc::new(ObjectReader {
                inner: self.inner.clone(),
                key: self.inner.key(digest),
                size,
                window: Mutex::default(),
            }),
        }))
    }

    fn begin(&self) -> io::Result<Box<dyn BlobWriter>> {
        let (path, file) = super::new_staging_file(&self.staging, &self.counter)?;
        Ok(Box::new(ObjectWriter {
            path,
            file: Arc::new(file),
            inner: self.inner.clone(),
        }))
    }

    fn delete(&self, digest: &Digest) -> io::Result<()> {
        if let Some(h) = &self.inner.hot {
            h.remove(digest);
        }
        self.inner.remove(digest, None).map(|_| ())
    }

    fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let listed = self.inner.block_on(self.inner.list())?;
        // Other replicas add to a shared bucket and this process counts only its own writes:
        // every full listing (each GC run) sets the count to what the bucket holds. A commit
        // racing the listing may be off by one blob until the next one.
        self.inner.usage.reset(Usage {
            blobs: listed.len() as u64,
            bytes: listed.iter().map(|(_, size)| size).sum(),
        });
        Ok(listed)
    }

    fn quarantine(&self, digest: &Digest) -> io::Result<()> {
        if let Some(h) = &self.inner.hot {
            h.remove(digest);
        }
        let dest = Key::from(quarantine_key(&self.inner.prefix, digest));
        if self.inner.remove(digest, Some(dest))? {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{digest} is not stored"),
            ))
        }
    }

    fn usage(&self) -> Usage {
        self.inner.usage.get()
    }

    fn shared(&self) -> bool {
        true
    }

    fn presign(&self, digest: &Digest) -> io::Result<Option<String>> {
        let Some(ttl) = self.redirect_ttl else {
            return Ok(None);
        };
        let key = self.inner.key(digest);
        let url = self
            .inner
            .block_on(self.inner.s3.signed_url(http::Method::GET, &key, ttl))
            .map_err(io::Error::other)?;
        Ok(Some(url.to_string()))
    }
}

/// A local staging file, uploaded under the digest key on commit; removed when dropped
/// (readers keep their open handle, so tailing clients finish after the commit too).
struct ObjectWriter {
    path: PathBuf,
    file: Arc<File>,
    inner: Arc<Inner>,
}

impl BlobWriter for ObjectWriter {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn reader(&self) -> io::Result<Arc<dyn BlobReader>> {
        Ok(Arc::new(StagingReader(self.file.clone())))
    }

    fn commit(self: Box<Self>, digest: &Digest) -> io::Result<()> {
        let size = self.file.metadata()?.len();
        let inner = &self.inner;
        let key = inner.key(digest);
        let stored = inner.block_on(async {
            // Same digest, same bytes: an object already there is not uploaded again.
            if inner.head(&key).await?.is_some() {
                return Ok(false);
            }
            inner.upload(&self.file, size, &key).await?;
            Ok::<_, io::Error>(true)
        });
        match stored {
            // Counted after the upload, not under the lock: fills of one digest are joined,
            // so two commits of the same new digest do not race here.
            Ok(new) => {
                if let Some(h) = &inner.hot {
                    h.keep_staged(&self.path, digest, size);
                }
                inner.usage.update(|| Ok(((), new.then_some((1, size)))))
            }
            Err(e) => {
                tracing::warn!(%digest, "upload to object storage failed, blob not stored: {e}");
                Err(e)
            }
        }
    }

    fn abort(self: Box<Self>) {
        // Drop removes the staging file.
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}
