//! Blob fills: one upstream download per missing digest, detached from any client, that every
//! requester (late ones too) tails as bytes land in the staging file.
//!
//! The last byte is released only after the digest is verified, so a client can never complete a
//! response with bad bytes: on a mismatch or an upstream failure every reader is cut short and
//! nothing is committed. That rule lives in [`FillReader`], the one way to read a fill (server
//! responses, the scanner). Failures are typed ([`FillError`]); what a client is told about one
//! is decided in `error.rs`. A broken upstream stream is resumed with `Range` and the same hash.
//!
//! Fills stage through the store's [`BlobWriter`] (for the filesystem store, a temp file in the
//! store) and commit under the digest once verified; when the store refuses writes (disk full)
//! the rest of the bytes are relayed to readers from a bounded window in memory (`spill.rs`).

mod error;
mod reader;
mod source;
mod spill;

pub use error::FillError;
pub use reader::{FillReader, CHUNK};

use crate::cache::store::{BlobReader, BlobWriter};
use crate::cache::{BlobStore, Index};
use crate::metrics::Metrics;
use crate::oci::{Digest, Hasher, RepoName};
use crate::upstream::{Upstream, UpstreamError};
use bytes::BytesMut;
use futures_util::StreamExt;
use spill::Spill;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Bytes gathered before one write to the staging file: few syscalls, bounded memory.
const WRITE_CHUNK: usize = 512 * 1024;
/// Upstream attempts for one fill (the first plus resumes).
const MAX_ATTEMPTS: u32 = 4;

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
    /// Bytes written to the staging file (or held in memory when the store refused them).
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
    progress: watch::Receiver<Progress>,
    file: Arc<dyn BlobReader>,
    spill: Arc<Mutex<Spill>>,
}

impl Fill {
    /// A receiver of progress updates (readers go through [`FillReader`]).
    fn watch(&self) -> watch::Receiver<Progress> {
        self.progress.clone()
    }

    /// Reads up to `len` bytes at `pos` (from the staging file, or from memory for bytes the
    /// store could not take). Only [`FillReader`] calls this, for bytes `Progress` says are
    /// there.
    async fn read(&self, pos: u64, len: usize) -> Result<bytes::Bytes, FillError> {
        let len = {
            let spill = self.spill.lock().unwrap_or_else(|p| p.into_inner());
            match spill.file_end {
                Some(end) if pos >= end => return spill.read(pos, len),
                Some(end) => len.min((end - pos) as usize),
                None => len,
            }
        };
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
        let spill = Arc::new(Mutex::new(Spill::default()));
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            progress: rx,
            file,
            spill: spill.clone(),
        });
        running.insert(digest.clone(), fill.clone());
        let job = FillJob {
            ctx: ctx.clone(),
            upstream,
            repo,
            client,
            digest: digest.clone(),
            writer,
            spill,
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
    spill: Arc<Mutex<Spill>>,
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
            spill,
            tx,
            running,
        } = self;
        let mut sink = Sink {
            writer: Some(writer),
            spill: spill.clone(),
            metrics: ctx.metrics.clone(),
        };
        let mut source = source::Source::choose(ctx.cluster.clone(), &digest).await;
        let outcome = download(
            &ctx,
            (&upstream, &mut source),
            (&repo, client.as_deref()),
            &digest,
            &mut sink,
            &tx,
        )
        .await;
        let mut committed = false;
        let uncached = spill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .file_end
            .is_some();
        match outcome {
            Ok(size) => {
                // Verified: release the last byte now. Durability (fsync + rename) follows while
                // the fill stays joinable, so clients never wait on the disk flush.
                tx.send_modify(|p| {
                    p.written = size;
                    p.total = Some(size);
                    p.phase = Phase::Done;
                });
                if let (false, Some(writer)) = (uncached, sink.writer.take()) {
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
            Err(e) => {
                tracing::warn!(%digest, upstream = %upstream.name, "fill failed: {e}");
                tx.send_modify(|p| p.phase = Phase::Failed(e));
            }
        }
        // Nothing half-written is kept: a failed or uncached fill's staging is discarded.
        if let Some(w) = sink.writer.take() {
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

/// Where a fill's bytes go: the store's writer, or memory once the store refuses writes.
struct Sink {
    /// Lent to the blocking pool for each write; `None` only after a write task failed.
    writer: Option<Box<dyn BlobWriter>>,
    spill: Arc<Mutex<Spill>>,
    metrics: Arc<Metrics>,
}

/// Streams the blob into the staging file, resuming on breaks; returns the verified size.
async fn download(
    ctx: &FillContext,
    (upstream, source): (&Upstream, &mut source::Source),
    (repo, client): (&RepoName, Option<&crate::config::Credentials>),
    digest: &Digest,
    sink: &mut Sink,
    tx: &watch::Sender<Progress>,
) -> Result<u64, FillError> {
    let mut hasher = Hasher::new(digest.algorithm());
    let mut offset: u64 = 0;
    let mut total: Option<u64> = None;
    let mut attempt = 0;
    let fetched = ctx
        .metrics
        .bytes_fetched
        .with_label_values(&[&upstream.name]);
    loop {
        attempt += 1;
        let from_peer = source.is_peer();
        let fetched_resp = source.fetch(upstream, (repo, client), digest, offset).await;
        if from_peer && !source.is_peer() {
            // Took over from a failed peer: upstream gets its full share of attempts.
            attempt = 1;
        }
        // Bytes relayed by a peer were fetched from upstream once, by that peer.
        let upstream_bytes = !source.is_peer();
        let resp = match fetched_resp {
            Ok(r) => r,
            Err(e) => {
                if attempt < MAX_ATTEMPTS && retryable(&e) && offset > 0 {
                    backoff(attempt).await;
                    continue;
                }
                return Err(FillError::Upstream(e));
            }
        };
        // A resume must continue exactly where we stopped; anything else restarts cleanly.
        let resumed = offset > 0
            && resp.status().as_u16() == 206
            && content_range_start(&resp) == Some(offset);
        if offset > 0 && !resumed {
            hasher = Hasher::new(digest.algorithm());
            offset = 0;
        }
        if total.is_none() {
            total = if resumed {
                content_range_total(&resp)
            } else {
                resp.content_length()
            };
            tx.send_modify(|p| {
                p.total = total;
                p.phase = Phase::Streaming;
            });
        }
        let mut stream = resp.bytes_stream();
        let mut buf = BytesMut::with_capacity(WRITE_CHUNK);
        let mut broken = None;
        loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    if total.is_some_and(|t| offset + (buf.len() + chunk.len()) as u64 > t) {
                        return Err(FillError::Oversize {
                            announced: total.unwrap_or(0),
                        });
                    }
                    hasher.update(&chunk);
                    if upstream_bytes {
                        fetched.inc_by(chunk.len() as u64);
                    }
                    buf.extend_from_slice(&chunk);
                    if buf.len() >= WRITE_CHUNK {
                        offset = flush(sink, &mut buf, offset, tx).await?;
                    }
                }
                Some(Err(e)) => {
                    broken = Some(crate::upstream::token::describe(&e));
                    break;
                }
                None => break,
            }
        }
        let end = offset + buf.len() as u64;
        if broken.is_none() && total.is_none_or(|t| t == end) {
            // Complete. The last bytes are published only once verified: a peer's bad blob
            // smaller than one write chunk then never reaches a reader.
            let got = hasher.clone().finish();
            if &got == digest {
                return flush(sink, &mut buf, offset, tx).await;
            }
            if spilling(sink) || !source.refuse_peer(digest, &got).await {
                ctx.metrics.verification_failures.inc();
                return Err(FillError::DigestMismatch {
                    expected: digest.clone(),
                    got,
                });
            }
            // A peer's bytes: discard them all and fetch the blob from upstream, from byte 0.
            (hasher, offset, attempt) = (Hasher::new(digest.algorithm()), 0, 0);
            buf.clear();
            tx.send_modify(|p| {
                p.written = 0;
                p.restarts += 1;
            });
            continue;
        }
        offset = flush(sink, &mut buf, offset, tx).await?;
        match broken {
            None => {
                if attempt >= MAX_ATTEMPTS {
                    return Err(FillError::Truncated {
                        offset,
                        total: total.unwrap_or(0),
                    });
                }
            }
            Some(reason) => {
                if attempt >= MAX_ATTEMPTS {
                    return Err(FillError::Broken { offset, reason });
                }
                tracing::info!(%digest, offset, "upstream stream broke ({reason}); resuming");
            }
        }
        backoff(attempt).await;
    }
}

/// Whether the store refused writes and the fill relays from memory (it cannot start over).
fn spilling(sink: &Sink) -> bool {
    let spill = sink.spill.lock().unwrap_or_else(|p| p.into_inner());
    spill.file_end.is_some()
}

fn retryable(e: &UpstreamError) -> bool {
    // CDN URLs expire (401/403) and connections drop: ask again; a 404 is an answer.
    e.is_outage() || matches!(e.status(), Some(401 | 403))
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
}

async fn flush(
    sink: &mut Sink,
    buf: &mut BytesMut,
    offset: u64,
    tx: &watch::Sender<Progress>,
) -> Result<u64, FillError> {
    if buf.is_empty() {
        return Ok(offset);
    }
    // Hand the full buffer off and start a fresh one at full size (split() would leave an empty
    // buffer that regrows by doubling, copying along the way).
    let data = std::mem::replace(buf, BytesMut::with_capacity(WRITE_CHUNK)).freeze();
    let n = data.len() as u64;
    let spilling = sink
        .spill
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .file_end
        .is_some();
    if spilling {
        sink.spill
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(offset, data);
    } else {
        let (w, d) = (sink.writer.take(), data.clone());
        let (w, written) = tokio::task::spawn_blocking(move || {
            let r = match &w {
                Some(w) => w.write_at(&d, offset),
                None => Err(std::io::Error::other("the writer was lost")),
            };
            (w, r)
        })
        .await
        .map_err(|e| FillError::Store(format!("write task failed: {e}")))?;
        sink.writer = w;
        if let Err(e) = written {
            // Disk full or failing: keep relaying from memory, commit nothing.
            write_error(
                &sink.metrics,
                &format!("writing the staging file at byte {offset}: {e}"),
            );
            let mut spill = sink.spill.lock().unwrap_or_else(|p| p.into_inner());
            spill.file_end = Some(offset);
            spill.push(offset, data);
        }
    }
    let end = offset + n;
    tx.send_modify(|p| p.written = p.written.max(end));
    Ok(end)
}

fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

fn content_range_total(resp: &reqwest::Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    v.rsplit('/').next()?.trim().parse().ok()
}
