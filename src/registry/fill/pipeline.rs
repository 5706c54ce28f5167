//! The stages of a fill after the receive, overlapped: each received chunk goes to a hashing
//! thread, to a staging-writer thread and into the in-memory window readers tail ([`Ring`]),
//! and the fill task goes straight back to the socket. Neither the hash (~1.3 GB/s with the
//! SHA extensions) nor a staging write blocks the next receive, and the two run on the blocking
//! pool, so on a multi-core machine they use another core than the one receiving and sending.
//!
//! The queues to both threads are bounded (backpressure to the receive when hashing or the disk
//! lags), and so is the window, so a fill holds a few MiB at most whatever its readers do.

use super::ring::Ring;
use super::spill::Spill;
use super::{write_error, FillError};
use crate::cache::store::BlobWriter;
use crate::metrics::Metrics;
use crate::oci::{Algorithm, Digest, Hasher};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Chunks queued to each thread: with 256 KiB chunks, 2 MiB in flight per stage at most.
const QUEUE: usize = 8;

/// Where a fill's received bytes are, for readers: the window, the staging file, or (when the
/// store refused writes) the spill.
#[derive(Default)]
pub(super) struct Held {
    /// The most recent chunks.
    pub(super) ring: Mutex<Ring>,
    /// Bytes the store could not take.
    pub(super) spill: Mutex<Spill>,
    /// Bytes `[0, settled)` are on the staging file or in the spill (the writer has seen them).
    pub(super) settled: AtomicU64,
}

impl Held {
    /// The window, even if a thread panicked holding it (its state stays consistent).
    pub(super) fn ring(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The spill, likewise.
    pub(super) fn spill(&self) -> MutexGuard<'_, Spill> {
        self.spill.lock().unwrap_or_else(|p| p.into_inner())
    }
}

enum HashMsg {
    Data(Bytes),
    /// Start over (a resume the upstream answered from byte 0, or a peer's bytes discarded).
    Reset,
    /// The digest of the bytes so far (the hash goes on).
    Digest(oneshot::Sender<Digest>),
}

enum WriteMsg {
    Data(u64, Bytes),
    /// Answered once every earlier chunk is settled.
    Flush(oneshot::Sender<()>),
}

/// What the writer thread hands back: the writer, unless the thread died.
type WriterBack = Option<Box<dyn BlobWriter>>;

/// The hashing and staging-writer threads of one fill.
pub(super) struct Pipeline {
    hash: mpsc::Sender<HashMsg>,
    write: Option<(mpsc::Sender<WriteMsg>, JoinHandle<WriterBack>)>,
    held: Arc<Held>,
}

fn lost(stage: &str) -> FillError {
    FillError::Store(format!("the fill's {stage} thread stopped"))
}

impl Pipeline {
    /// Starts both threads; `writer` comes back from [`Pipeline::close`].
    pub(super) fn start(
        algorithm: Algorithm,
        writer: Box<dyn BlobWriter>,
        held: Arc<Held>,
        metrics: Arc<Metrics>,
    ) -> Pipeline {
        let (htx, hrx) = mpsc::channel(QUEUE);
        // It ends when the pipeline (the sender) is dropped.
        tokio::task::spawn_blocking(move || hash_loop(algorithm, hrx));
        let (wtx, wrx) = mpsc::channel(QUEUE);
        let h = held.clone();
        let write = tokio::task::spawn_blocking(move || write_loop(writer, wrx, &h, &metrics));
        Pipeline {
            hash: htx,
            write: Some((wtx, write)),
            held,
        }
    }

    /// Hands the chunk at `offset` to the hasher and the writer, and to readers through the
    /// window. Waits only when a thread's queue is full.
    pub(super) async fn push(&mut self, offset: u64, data: Bytes) -> Result<(), FillError> {
        self.to_hasher(HashMsg::Data(data.clone())).await?;
        self.publish(offset, data).await
    }

    /// Hands an already hashed chunk to the writer and to readers (see [`Pipeline::verify`]).
    pub(super) async fn publish(&mut self, offset: u64, data: Bytes) -> Result<(), FillError> {
        self.to_writer(WriteMsg::Data(offset, data.clone())).await?;
        let settled = self.held.settled.load(Ordering::Acquire);
        self.held.ring().push(offset, data, settled);
        Ok(())
    }

    /// Hashes the blob's `last` bytes (not yet published) and returns the digest of every
    /// byte since the last restart: the caller publishes `last` only when it matches.
    pub(super) async fn verify(&mut self, last: Bytes) -> Result<Digest, FillError> {
        if !last.is_empty() {
            self.to_hasher(HashMsg::Data(last)).await?;
        }
        let (ack, got) = oneshot::channel();
        self.to_hasher(HashMsg::Digest(ack)).await?;
        got.await.map_err(|_| lost("hashing"))
    }

    /// Starts over from byte 0 after a resume answered from byte 0: a fresh hash, and a
    /// window emptied once every byte received so far is settled (readers were told about
    /// them; the file holds them, and upstream resends the same bytes).
    pub(super) async fn restart(&mut self) -> Result<(), FillError> {
        self.to_hasher(HashMsg::Reset).await?;
        self.settle().await?;
        self.held.ring().clear();
        Ok(())
    }

    /// Forgets every byte received (a peer's bytes failed verification): a fresh hash, an
    /// empty window, and nothing counted as on the staging file, which is rewritten from 0.
    /// The caller has already told readers (`Progress::restarts`).
    pub(super) async fn discard(&mut self) -> Result<(), FillError> {
        self.to_hasher(HashMsg::Reset).await?;
        self.settle().await?;
        self.held.ring().clear();
        self.held.settled.store(0, Ordering::Release);
        Ok(())
    }

    /// Whether the store refused a write (the fill then relays from memory and cannot start
    /// over), once every chunk handed on so far was written or spilled.
    pub(super) async fn spilling(&mut self) -> Result<bool, FillError> {
        self.settle().await?;
        Ok(self.held.spill().file_end.is_some())
    }

    /// Waits until every chunk handed on so far is settled.
    async fn settle(&mut self) -> Result<(), FillError> {
        let (ack, done) = oneshot::channel();
        self.to_writer(WriteMsg::Flush(ack)).await?;
        done.await.map_err(|_| lost("writer"))
    }

    async fn to_hasher(&self, msg: HashMsg) -> Result<(), FillError> {
        self.hash.send(msg).await.map_err(|_| lost("hashing"))
    }

    async fn to_writer(&self, msg: WriteMsg) -> Result<(), FillError> {
        let (wtx, _) = self.write.as_ref().ok_or_else(|| lost("writer"))?;
        wtx.send(msg).await.map_err(|_| lost("writer"))
    }

    /// Waits for the staging writes to finish and returns the writer (`None`: its thread died,
    /// and with it the staging file).
    pub(super) async fn close(mut self) -> Option<Box<dyn BlobWriter>> {
        let (wtx, handle) = self.write.take()?;
        drop(wtx);
        match handle.await {
            Ok(w) => w,
            Err(e) => {
                tracing::error!("fill writer thread failed: {e}");
                None
            }
        }
    }
}

fn hash_loop(algorithm: Algorithm, mut rx: mpsc::Receiver<HashMsg>) {
    let mut hasher = Hasher::new(algorithm);
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            HashMsg::Data(b) => hasher.update(&b),
            HashMsg::Reset => hasher = Hasher::new(algorithm),
            HashMsg::Digest(ack) => {
                let _ = ack.send(hasher.clone().finish());
            }
        }
    }
}

/// Writes chunks to the staging file in order; once a write fails (disk full) the rest go to
/// the spill window and nothing is committed.
fn write_loop(
    writer: Box<dyn BlobWriter>,
    mut rx: mpsc::Receiver<WriteMsg>,
    held: &Held,
    metrics: &Metrics,
) -> Option<Box<dyn BlobWriter>> {
    while let Some(msg) = rx.blocking_recv() {
        let (offset, data) = match msg {
            WriteMsg::Data(offset, data) => (offset, data),
            WriteMsg::Flush(ack) => {
                let _ = ack.send(());
                continue;
            }
        };
        let end = offset + data.len() as u64;
        let spilling = held.spill().file_end.is_some();
        let written = !spilling
            && match writer.write_at(&data, offset) {
                Ok(()) => true,
                Err(e) => {
                    write_error(
                        metrics,
                        &format!("writing the staging file at byte {offset}: {e}"),
                    );
                    held.spill().file_end = Some(offset);
                    false
                }
            };
        if !written {
            held.spill().push(offset, data);
        }
        held.settled.fetch_max(end, Ordering::Release);
        held.ring().trim(held.settled.load(Ordering::Acquire));
    }
    Some(writer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::BlobStore;
    use crate::cache::FsStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bytes_are_hashed_written_and_held_in_order() {
        let dir = std::env::temp_dir().join(format!("bw-pipeline-{}", std::process::id()));
        let store = FsStore::open(&dir).unwrap();
        let writer = store.begin().unwrap();
        let file = writer.reader().unwrap();
        let held = Arc::new(Held::default());
        let mut p = Pipeline::start(
            Algorithm::Sha256,
            writer,
            held.clone(),
            Arc::new(Metrics::new()),
        );
        let mut all = Vec::new();
        // A false start that is thrown away: the restart resets the hash.
        p.push(0, Bytes::from(vec![9u8; 1000])).await.unwrap();
        p.restart().await.unwrap();
        let mut off = 0u64;
        for i in 0..64u8 {
            let chunk = Bytes::from(vec![i; 256 * 1024 + i as usize]);
            all.extend_from_slice(&chunk);
            p.push(off, chunk.clone()).await.unwrap();
            off += chunk.len() as u64;
        }
        assert_eq!(
            p.verify(Bytes::new()).await.unwrap(),
            Digest::sha256_of(&all)
        );
        let w = p.close().await.expect("the writer comes back");
        assert_eq!(held.settled.load(Ordering::Acquire), off);
        assert!(held.ring().held() <= super::super::ring::RING_WINDOW + 512 * 1024);
        let on_file = file.read_at(0, all.len()).await.unwrap();
        assert!(on_file[..] == all[..], "the staging file holds the bytes");
        w.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
