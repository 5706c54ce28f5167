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

use super::{BlobReader, BlobStore, BlobWriter, StoredBlob, Usage, UsageCounter, UsageObserver};
use crate::oci::Digest;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, PutPayload, RetryConfig, WriteMultipart,
};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Blobs up to this size go up in one PUT; larger ones as a multipart upload of these parts.
const PART: usize = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
/// Bytes one ranged GET fetches ahead, so streaming a blob is a few large requests.
const READ_WINDOW: u64 = 4 * 1024 * 1024;

/// A secret string (a secret access key): kept out of `Debug` output and so out of the logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Server-side encryption requested on every upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: keys managed by the storage service (`AES256`).
    Aes256,
    /// SSE-KMS, with a key id or the bucket's default KMS key.
    Kms {
        /// The KMS key id; `None`: the default key.
        key_id: Option<String>,
    },
}

/// Where and how to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server; `None`: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region (S3-compatible servers check it in signatures too); `None`: from the environment.
    pub region: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`); empty: the bucket's root.
    pub prefix: String,
    /// Access key id; `None`: the usual AWS variables or instance credentials.
    pub access_key_id: Option<String>,
    /// Secret access key, with the access key id.
    pub secret_access_key: Option<Secret>,
    /// Virtual-hosted-style addressing (`bucket.host`); off: path style, which loopback and
    /// most self-hosted servers need.
    pub virtual_hosted_style: bool,
    /// Server-side encryption of uploads.
    pub sse: Option<Sse>,
    /// Redirect blob GETs to a presigned URL valid this long; `None`: stream through breakwater.
    pub redirect_ttl: Option<Duration>,
    /// Time allowed for one request (a part of an upload, a ranged GET).
    pub timeout: Duration,
}

/// The object key of a digest under `prefix`.
pub fn blob_key(prefix: &str, digest: &Digest) -> String {
    join(
        prefix,
        &format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex()),
    )
}

/// The key a quarantined digest is moved to.
pub fn quarantine_key(prefix: &str, digest: &Digest) -> String {
    join(
        prefix,
        &format!(
            "quarantine/{}-{}",
            digest.algorithm().as_str(),
            digest.hex()
        ),
    )
}

fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// The digest a listed key names, if it is one of ours (`…/blobs/<algorithm>/<hex>`).
pub fn digest_of_key(prefix: &str, key: &str) -> Option<Digest> {
    let rest = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let (algo, hex) = rest.strip_prefix("blobs/")?.split_once('/')?;
    Digest::parse(&format!("{algo}:{hex}")).ok()
}

/// What the store's readers and writers share.
struct Inner {
    s3: AmazonS3,
    prefix: String,
    // `Some` until drop; shut down in the background so dropping never blocks or panics.
    runtime: Option<tokio::runtime::Runtime>,
    usage: Arc<UsageCounter>,
}

impl Inner {
    fn block_on<F: Future>(&self, f: F) -> F::Output {
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
        while pos < size {
            let n = (size - pos).min(PART as u64) as usize;
            let sent = async {
                w.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                Ok::<_, object_store::Error>(())
            }
            .await;
            if let Err(e) = sent {
                let _ = w.abort().await;
                return Err(io::Error::other(e));
            }
            if let Err(e) = file.read_exact_at(&mut buf[..n], pos) {
                let _ = w.abort().await;
                return Err(e);
            }
            w.write(&buf[..n]);
            pos += n as u64;
        }
        // `finish` aborts the upload itself when a part failed.
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
    /// fills in `staging` (emptied first: leftovers belong to a process that died mid-fill) and
    /// counts what the bucket holds under the prefix.
    pub fn open(cfg: &S3Config, staging: &Path) -> io::Result<Self> {
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

/// The config key of the encryption type (its enum is not exported, its name is).
fn sse_key() -> AmazonS3ConfigKey {
    "aws_server_side_encryption"
        .parse()
        .expect("object_store knows aws_server_side_encryption")
}

/// The client as configured; secrets go to the builder, never to a log line.
fn builder(cfg: &S3Config) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&cfg.bucket)
        .with_virtual_hosted_style_request(cfg.virtual_hosted_style)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(cfg.timeout),
        )
        // Few, quick retries: while the bucket is down a fill streams from upstream anyway, and
        // a request should not hang on storage for minutes.
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: cfg.timeout,
        });
    if let Some(endpoint) = &cfg.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &cfg.region {
        b = b.with_region(region);
    }
    if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        b = b
            .with_access_key_id(id)
            .with_secret_access_key(secret.expose());
    }
    match &cfg.sse {
        None => {}
        Some(Sse::Aes256) => b = b.with_config(sse_key(), "AES256"),
        Some(Sse::Kms { key_id: Some(id) }) => b = b.with_sse_kms_encryption(id),
        Some(Sse::Kms { key_id: None }) => b = b.with_config(sse_key(), "aws:kms"),
    }
    b
}

impl BlobStore for S3Store {
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        let inner = &self.inner;
        inner.block_on(inner.head(&inner.key(digest)))
    }

    fn open(&self, digest: &Digest) -> io::Result<Option<StoredBlob>> {
        let Some(size) = self.stat(digest)? else {
            return Ok(None);
        };
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
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.staging.join(format!(
            "fill-{}-{n}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(Box::new(ObjectWriter {
            path,
            file: Arc::new(file),
            inner: self.inner.clone(),
        }))
    }

    fn delete(&self, digest: &Digest) -> io::Result<()> {
        self.inner.remove(digest, None).map(|_| ())
    }

    fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        self.inner.block_on(self.inner.list())
    }

    fn quarantine(&self, digest: &Digest) -> io::Result<()> {
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

/// Ranged GETs of a stored object, a window at a time: sequential reads of small chunks cost
/// one request per window.
struct ObjectReader {
    inner: Arc<Inner>,
    key: Key,
    size: u64,
    /// The last window fetched: its start and bytes.
    window: Mutex<Option<(u64, Bytes)>>,
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
            Ok(new) => inner.usage.update(|| Ok(((), new.then_some((1, size))))),
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

/// Reads of the staging file, for clients tailing a fill.
struct StagingReader(Arc<File>);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_digests_under_the_prefix_and_back() {
        let d = Digest::sha256_of(b"layer");
        let hex = d.hex();
        assert_eq!(blob_key("", &d), format!("blobs/sha256/{hex}"));
        assert_eq!(blob_key("bw/eu", &d), format!("bw/eu/blobs/sha256/{hex}"));
        assert_eq!(
            quarantine_key("bw", &d),
            format!("bw/quarantine/sha256-{hex}")
        );
        assert_eq!(
            digest_of_key("bw/eu", &blob_key("bw/eu", &d)),
            Some(d.clone())
        );
        assert_eq!(digest_of_key("", &blob_key("", &d)), Some(d.clone()));
        // Keys outside the prefix, quarantined ones and malformed names are not blobs.
        assert_eq!(digest_of_key("bw/eu", &blob_key("bw/us", &d)), None);
        assert_eq!(digest_of_key("bw", &blob_key("bwx", &d)), None);
        assert_eq!(digest_of_key("bw", &quarantine_key("bw", &d)), None);
        assert_eq!(digest_of_key("", "blobs/sha256/nothex"), None);
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
