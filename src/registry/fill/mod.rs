//! Blob fills: one upstream download per missing digest, detached from any client, that every
//! requester (late ones too) tails as bytes land in the staging file.
//!
//! The last byte is released only after the digest is verified, so a client can never complete a
//! response with bad bytes: on a mismatch or an upstream failure every reader is cut short and
//! nothing is committed. That rule lives in [`FillReader`], the one way to read a fill (server
//! responses, the scanner). Failures are typed ([`FillError`]); what a client is told about one
//! is decided in `error.rs`. A broken upstream stream is resumed with `Range` and the same hash
//! (`download.rs`); received bytes are gathered into reused batches (`batch.rs`).
//!
//! The stages overlap (`pipeline.rs`): the fill task only receives; hashing and the staging
//! writes run on threads of their own, and readers are handed the chunks just received from a
//! bounded window in memory (`ring.rs`), falling back to the staging file when they lag.
//!
//! A fill takes no more bytes than the blob may have (`size.rs`): the size a cached manifest
//! declares for the digest, else `storage.max_blob_bytes`.
//!
//! Fills stage through the store's [`BlobWriter`] (for the filesystem store, a temp file in the
//! store) and commit under the digest once verified; when the store refuses writes (disk full)
//! the rest of the bytes are relayed to readers from a bounded window in memory (`spill.rs`).

mod batch;
mod download;
mod error;
mod pipeline;
mod reader;
mod ring;
mod size;
mod source;
mod spill;

pub use error::FillError;
pub use reader::{FillReader, CHUNK};
pub use size::Limit;

use crate::cache::store::{BlobReader, BlobWriter};
use crate::cache::{BlobStore, Index};
use crate::metrics::Metrics;
use crate::oci::{Digest, RepoName};
use crate::upstream::{Upstream, UpstreamError};
use bytes::Bytes;
use download::download;
use pipeline::{Held, Pipeline};
use size::Cap;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Set once the first store write error has been logged, so a full disk logs once, not per fill.
static WRITE_ERROR_LOGGED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Where a fill is.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Waiting for upstream's response headers.
    Connecting,
    /// Bytes are arriving.
    Streaming,
    /// Verified: every byte may be read. The commit to the store follows (or was skipped when
    /// the store could not be written); the fill leaves the running map once that is settled.
    Done,
    /// Failed. Readers must cut their responses.
    Failed(FillError),
}

/// Progress readers watch.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Bytes received (readable from memory, the staging file, or the spill).
    pub written: u64,
    /// The blob's size, when upstream said.
    pub total: Option<u64>,
    /// The phase.
    pub phase: Phase,
    /// How often the fill discarded its bytes and started over (a peer's bytes failed
    /// verification): a reader that handed out bytes from before a restart must stop.
    pub restarts: u32,
}

/// A running fill.
pub struct Fill {
    /// The digest being filled.
    pub digest: Digest,
    /// The upstream and repository it is fetched for (its success links the digest there).
    fetched_for: (String, RepoName),
    progress: watch::Receiver<Progress>,
    file: Arc<dyn BlobReader>,
    held: Arc<Held>,
    metrics: Arc<Metrics>,
}

impl Fill {
    /// Whether this fill fetches from `upstream` for `repo`: its success links the digest
    /// there, its failure fails every reader, so joining it needs no word from upstream.
    pub fn fetches_for(&self, upstream: &str, repo: &RepoName) -> bool {
        self.fetched_for.0 == upstream && &self.fetched_for.1 == repo
    }

    /// A receiver of progress updates (readers go through [`FillReader`]).
    fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Reads up to `len` bytes at `pos`: from the window of recent chunks, else the staging
    /// file, or memory for bytes the store could not take. Only [`FillReader`] calls this, for
    /// bytes `Progress` says are there.
    async fn read(&self, pos: u64, len: usize) -> Result<Bytes, FillError> {
        let window = {
            let ring = self.held.ring();
            if let Some(b) = ring.get(pos, len) {
                self.metrics.fill_reads.with_label_values(&["memory"]).inc();
                return Ok(b);
            }
            ring.start()
        };
        // Out of the window: those bytes are settled (the window drops no others).
        let settled = self.held.settled.load(Ordering::Acquire);
        let mut len = len.min(settled.saturating_sub(pos) as usize);
        if let Some(start) = window.filter(|&s| s > pos) {
            len = len.min((start - pos) as usize);
        }
        if len == 0 {
            return Err(FillError::Store(format!(
                "byte {pos} of the fill is neither in memory nor written"
            )));
        }
        let len = {
            let spill = self.held.spill();
            match spill.file_end {
                Some(end) if pos >= end => return spill.read(pos, len),
                Some(end) => len.min((end - pos) as usize),
                None => len,
            }
        };
        self.metrics.fill_reads.with_label_values(&["file"]).inc();
        self.file
            .read_at(pos, len)
            .await
            .map_err(|e| FillError::Store(format!("reading the fill failed: {e}")))
    }

    /// Waits until the size is known or the fill ended.
    pub async fn started(&self) -> Progress {
        let mut rx = self.progress.clone();
        loop {
            let p = rx.borrow_and_update().clone();
            if !matches!(p.phase, Phase::Connecting) {
                return p;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone();
            }
        }
    }
}

/// What a fill needs from the rest of the cache.
#[derive(Clone)]
pub struct FillContext {
    /// Where verified blobs go.
    pub store: Arc<dyn BlobStore>,
    /// Where committed blobs are recorded.
    pub index: Arc<dyn Index>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The cluster, when replicas share fills.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// `storage.max_blob_bytes`.
    pub max_blob_bytes: Option<u64>,
}

/// The map of running fills, one per digest.
#[derive(Default)]
pub struct Fills {
    running: Arc<Mutex<HashMap<Digest, Arc<Fill>>>>,
}

impl Fills {
    /// The running fill for `digest`, or a new one started from `upstream`.
    pub fn join_or_start(
        &self,
        ctx: &FillContext,
        upstream: Arc<Upstream>,
        repo: RepoName,
        digest: &Digest,
        client: Option<Arc<crate::config::Credentials>>,
    ) -> std::io::Result<(Arc<Fill>, bool)> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = running.get(digest) {
            return Ok((f.clone(), false));
        }
        let writer = ctx.store.begin()?;
        let file = writer.reader()?;
        let (tx, rx) = watch::channel(Progress {
            written: 0,
            total: None,
            phase: Phase::Connecting,
            restarts: 0,
        });
        let held = Arc::new(Held::default());
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            fetched_for: (upstream.name.clone(), repo.clone()),
            progress: rx,
            file,
            held: held.clone(),
            metrics: ctx.metrics.clone(),
        });
        running.insert(digest.clone(), fill.clone());
        let job = FillJob {
            ctx: ctx.clone(),
            upstream,
            repo,
            client,
            digest: digest.clone(),
            writer,
            held,
            tx,
            running: self.running.clone(),
        };
        ctx.metrics.fills_in_flight.inc();
        tokio::spawn(job.run());
        Ok((fill, true))
    }

    /// The running fill of `digest`, if any (the peer endpoint relays it).
    pub fn get(&self, digest: &Digest) -> Option<Arc<Fill>> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(digest).cloned()
    }

    /// Number of fills running now.
    pub fn len(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no fill runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a fill of `digest` is running (GC never deletes such a blob).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.running
            .lock()
            .map(|m| m.contains_key(digest))
            .unwrap_or(true)
    }
}

struct FillJob {
    ctx: FillContext,
    upstream: Arc<Upstream>,
    repo: RepoName,
    // The starting client's credentials on a `credentials = "client"` upstream.
    client: Option<Arc<crate::config::Credentials>>,
    digest: Digest,
    writer: Box<dyn BlobWriter>,
    held: Arc<Held>,
    tx: watch::Sender<Progress>,
    running: Arc<Mutex<HashMap<Digest, Arc<Fill>>>>,
}

impl FillJob {
    async fn run(self) {
        let FillJob {
            ctx,
            upstream,
            repo,
            client,
            digest,
            writer,
            held,
            tx,
            running,
        } = self;
        let _batches = batch::FillsRunning::enter();
        let mut pipe = Pipeline::start(
            digest.algorithm(),
            writer,
            held.clone(),
            ctx.metrics.clone(),
        );
        let mut cap = Cap::start(ctx.index.clone(), &digest, ctx.max_blob_bytes);
        let mut source = source::Source::choose(ctx.cluster.clone(), &digest).await;
        let outcome = download(
            &ctx,
            (&upstream, &mut source),
            (&repo, client.as_deref()),
            (&digest, &mut cap),
            &mut pipe,
            &tx,
        )
        .await;
        let mut committed = false;
        let verified = match outcome {
            Ok(size) => {
                // Verified: release the last byte now (it is in the window, and every byte that
                // left the window is on the staging file). The rest of the staging writes and
                // durability (fsync + rename) follow while the fill stays joinable, so clients
                // never wait on the disk; nothing is visible under the digest before the fsync.
                tx.send_modify(|p| {
                    p.written = size;
                    p.total = Some(size);
                    p.phase = Phase::Done;
                });
                Some(size)
            }
            Err(e) => {
                // A blob upstream does not have is the client's mistake, not the cache's.
                if matches!(
                    &e,
                    FillError::Upstream(UpstreamError::Status { status: 404, .. })
                ) {
                    tracing::info!(%digest, upstream = %upstream.name, "fill failed: {e}");
                } else {
                    tracing::warn!(%digest, upstream = %upstream.name, "fill failed: {e}");
                }
                tx.send_modify(|p| p.phase = Phase::Failed(e));
                None
            }
        };
        let mut writer = pipe.close().await;
        // A store that refused a write (disk full) holds an incomplete staging file.
        let uncached = held.spill().file_end.is_some();
        if let Some(size) = verified.filter(|_| !uncached) {
            if let Some(writer) = writer.take() {
                let d = digest.clone();
                match tokio::task::spawn_blocking(move || writer.commit(&d)).await {
                    Ok(Ok(())) => {
                        committed = true;
                        let index = ctx.index.clone();
                        let d = digest.clone();
                        // Upstream served it for this repository: that links it there.
                        let repo = crate::cache::RepoKey {
                            upstream: upstream.name.clone(),
                            name: repo.to_string(),
                        };
                        let _ = tokio::task::spawn_blocking(move || {
                            let now = crate::now_ms();
                            index.record_blob(&d, size, now)?;
                            index.link(&repo, &d, now)
                        })
                        .await;
                    }
                    // The verified bytes already reached every client; only caching failed.
                    Ok(Err(e)) => {
                        write_error(&ctx.metrics, &format!("committing {digest} failed: {e}"))
                    }
                    Err(e) => write_error(&ctx.metrics, &format!("commit task failed: {e}")),
                }
            }
        }
        // Nothing half-written is kept: a failed or uncached fill's staging is discarded.
        if let Some(w) = writer {
            w.abort();
        }
        source.finish(committed).await;
        running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&digest);
        ctx.metrics.fills_in_flight.dec();
    }
}

fn write_error(metrics: &Metrics, msg: &str) {
    metrics.store_write_errors.inc();
    if !WRITE_ERROR_LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::error!("store write failed, serving fills uncached until space returns: {msg}");
    }
}
