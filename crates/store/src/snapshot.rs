//! The lifecycle snapshot: every repository, manifest, reference, blob, image and tag of the
//! index in one read transaction, streamed row by row into a [`SnapshotSink`] (on a separate
//! read-only connection, SQLite stepped on a second thread while the sink builds).

use super::index::SqliteIndex;
use rusqlite::{Connection, OpenFlags};
use std::sync::mpsc;

/// One `images` row as the snapshot reports it. Its text is borrowed from the reader's buffer
/// and digests stay as the index spells them: a million-row snapshot allocates and parses
/// nothing per row (the lifecycle graph interns SHA-256 digests by their bytes; a [`Digest`]
/// is made only where lifecycle evaluates or reports an image).
///
/// [`Digest`]: crate::oci::Digest
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow<'a> {
    /// Repository id (see [`SnapshotSink::repository`]).
    pub repo_id: i64,
    /// Manifest digest.
    pub digest: &'a str,
    /// When first cached (unix ms).
    pub first_cached_ms: i64,
    /// When last pulled (unix ms), if ever.
    pub last_pulled_ms: Option<i64>,
    /// Pulls recorded.
    pub pull_count: u64,
    /// `standard` or `archive`.
    pub storage_class: &'a str,
    /// When archived (unix ms).
    pub transitioned_at_ms: Option<i64>,
}

/// Receives a snapshot row by row, so large indexes are never copied as strings.
pub trait SnapshotSink {
    /// A repository.
    fn repository(&mut self, id: i64, upstream: &str, name: &str);
    /// A manifest: digest, media type, byte length, when recorded (ms).
    fn manifest(&mut self, digest: &str, media_type: &str, size: u64, cached_at_ms: i64);
    /// A reference from a manifest to a child manifest, config or layer.
    fn reference(
        &mut self,
        manifest: &str,
        child: &str,
        kind: &str,
        size: Option<u64>,
        platform: Option<&str>,
    );
    /// A committed blob (manifests included): digest, size, when committed (ms).
    fn blob(&mut self, digest: &str, size: u64, cached_at_ms: i64);
    /// An image.
    fn image(&mut self, row: &ImageRow<'_>);
    /// A tag of an image.
    fn tag(&mut self, repo_id: i64, digest: &str, tag: &str);
}

/// Reads the whole snapshot of `index` into `sink`.
pub(super) fn read(index: &SqliteIndex, sink: &mut dyn SnapshotSink) -> rusqlite::Result<()> {
    match reader(index) {
        Some(mut c) => read_snapshot_pipelined(&mut c, sink),
        None => index.with_conn(|c| read_snapshot_pipelined(c, sink)),
    }
}

/// A separate read-only connection to the index file, so a long snapshot does not hold
/// the request path's connection; `None` for an in-memory index.
fn reader(index: &SqliteIndex) -> Option<Connection> {
    let path = index.path()?;
    let c = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ok()?;
    c.busy_timeout(std::time::Duration::from_secs(5)).ok()?;
    // A snapshot reads every table once: map the file instead of copying page by page.
    c.execute_batch("PRAGMA mmap_size = 1073741824").ok()?;
    Some(c)
}

/// A span of [`Batch::text`].
#[derive(Clone, Copy)]
struct Span(u32, u32);

/// One snapshot row, its text in the batch's arena.
enum Rec {
    Repository(i64, Span, Span),
    Manifest(Span, Span, u64, i64),
    Reference(Span, Span, Span, Option<u64>, Option<Span>),
    Blob(Span, u64, i64),
    Image {
        repo_id: i64,
        digest: Span,
        first_cached_ms: i64,
        last_pulled_ms: Option<i64>,
        pull_count: u64,
        storage_class: Span,
        transitioned_at_ms: Option<i64>,
    },
    Tag(i64, Span, Span),
}

/// Rows handed from the reading thread to the sink's, text copied into one reused buffer.
#[derive(Default)]
struct Batch {
    text: String,
    recs: Vec<Rec>,
}

/// Rows a batch holds before it is handed over.
const BATCH_ROWS: usize = 4096;

impl Batch {
    fn put(&mut self, s: &str) -> Span {
        let start = self.text.len() as u32;
        self.text.push_str(s);
        Span(start, self.text.len() as u32)
    }

    fn get(&self, s: Span) -> &str {
        &self.text[s.0 as usize..s.1 as usize]
    }

    fn replay(&self, sink: &mut dyn SnapshotSink) {
        for r in &self.recs {
            match *r {
                Rec::Repository(id, up, name) => sink.repository(id, self.get(up), self.get(name)),
                Rec::Manifest(d, mt, size, at) => {
                    sink.manifest(self.get(d), self.get(mt), size, at)
                }
                Rec::Reference(m, c, k, size, p) => sink.reference(
                    self.get(m),
                    self.get(c),
                    self.get(k),
                    size,
                    p.map(|p| self.get(p)),
                ),
                Rec::Blob(d, size, at) => sink.blob(self.get(d), size, at),
                Rec::Image {
                    repo_id,
                    digest,
                    first_cached_ms,
                    last_pulled_ms,
                    pull_count,
                    storage_class,
                    transitioned_at_ms,
                } => sink.image(&ImageRow {
                    repo_id,
                    digest: self.get(digest),
                    first_cached_ms,
                    last_pulled_ms,
                    pull_count,
                    storage_class: self.get(storage_class),
                    transitioned_at_ms,
                }),
                Rec::Tag(repo, d, t) => sink.tag(repo, self.get(d), self.get(t)),
            }
        }
    }
}

/// The reading thread's sink: buffers rows and hands full batches over.
struct Forward {
    batch: Batch,
    full: mpsc::SyncSender<Batch>,
    free: mpsc::Receiver<Batch>,
    /// The receiving side is gone (it panicked): rows are dropped.
    closed: bool,
}

impl Forward {
    fn push(&mut self, r: Rec) {
        self.batch.recs.push(r);
        if self.batch.recs.len() >= BATCH_ROWS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.recs.is_empty() || self.closed {
            self.batch.recs.clear();
            self.batch.text.clear();
            return;
        }
        let next = self.free.try_recv().unwrap_or_default();
        let full = std::mem::replace(&mut self.batch, next);
        self.closed = self.full.send(full).is_err();
    }
}

impl SnapshotSink for Forward {
    fn repository(&mut self, id: i64, upstream: &str, name: &str) {
        let r = Rec::Repository(id, self.batch.put(upstream), self.batch.put(name));
        self.push(r);
    }
    fn manifest(&mut self, digest: &str, media_type: &str, size: u64, cached_at_ms: i64) {
        let (d, m) = (self.batch.put(digest), self.batch.put(media_type));
        self.push(Rec::Manifest(d, m, size, cached_at_ms));
    }
    fn reference(
        &mut self,
        manifest: &str,
        child: &str,
        kind: &str,
        size: Option<u64>,
        platform: Option<&str>,
    ) {
        let b = &mut self.batch;
        let r = Rec::Reference(
            b.put(manifest),
            b.put(child),
            b.put(kind),
            size,
            platform.map(|p| b.put(p)),
        );
        self.push(r);
    }
    fn blob(&mut self, digest: &str, size: u64, cached_at_ms: i64) {
        let d = self.batch.put(digest);
        self.push(Rec::Blob(d, size, cached_at_ms));
    }
    fn image(&mut self, r: &ImageRow<'_>) {
        let (digest, storage_class) = (self.batch.put(r.digest), self.batch.put(r.storage_class));
        self.push(Rec::Image {
            repo_id: r.repo_id,
            digest,
            first_cached_ms: r.first_cached_ms,
            last_pulled_ms: r.last_pulled_ms,
            pull_count: r.pull_count,
            storage_class,
            transitioned_at_ms: r.transitioned_at_ms,
        });
    }
    fn tag(&mut self, repo_id: i64, digest: &str, tag: &str) {
        let (d, t) = (self.batch.put(digest), self.batch.put(tag));
        self.push(Rec::Tag(repo_id, d, t));
    }
}

/// [`read_snapshot`] on a second thread while this one feeds `sink`: stepping SQLite and
/// building the catalog each took about half of a snapshot, so overlapping them nearly halves
/// it. The sink sees the same rows in the same order.
fn read_snapshot_pipelined(
    c: &mut Connection,
    sink: &mut dyn SnapshotSink,
) -> rusqlite::Result<()> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(2);
    let (free_tx, free_rx) = mpsc::channel::<Batch>();
    // Reborrowed for the scope, so a failed spawn can still read on this thread.
    let conn = &mut *c;
    let done = std::thread::scope(|s| {
        let reader = std::thread::Builder::new()
            .name("index-snapshot".into())
            .spawn_scoped(s, move || {
                let mut fwd = Forward {
                    batch: Batch::default(),
                    full: full_tx,
                    free: free_rx,
                    closed: false,
                };
                let r = read_snapshot(conn, &mut fwd);
                fwd.flush();
                r
            });
        let reader = match reader {
            Ok(r) => r,
            // No thread to be had: read on this one.
            Err(_) => return None,
        };
        for mut b in full_rx {
            b.replay(sink);
            b.recs.clear();
            b.text.clear();
            // The reader may have finished; then the batch is just dropped.
            let _ = free_tx.send(b);
        }
        Some(
            reader
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p)),
        )
    });
    match done {
        Some(r) => r,
        None => read_snapshot(c, sink),
    }
}

fn read_snapshot(c: &mut Connection, sink: &mut dyn SnapshotSink) -> rusqlite::Result<()> {
    // One read transaction: in WAL mode every SELECT below sees the same database state.
    let tx = c.transaction()?;
    {
        let mut st = tx.prepare("SELECT id, upstream, name FROM repositories")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            sink.repository(r.get(0)?, r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str()?);
        }
        let mut st = tx.prepare("SELECT digest, media_type, size, cached_at FROM manifests")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            sink.manifest(
                r.get_ref(0)?.as_str()?,
                r.get_ref(1)?.as_str()?,
                r.get::<_, i64>(2)?.max(0) as u64,
                r.get(3)?,
            );
        }
        let mut st =
            tx.prepare("SELECT manifest, child, kind, size, platform FROM manifest_refs")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            sink.reference(
                r.get_ref(0)?.as_str()?,
                r.get_ref(1)?.as_str()?,
                r.get_ref(2)?.as_str()?,
                r.get::<_, Option<i64>>(3)?.map(|s| s.max(0) as u64),
                r.get_ref(4)?.as_str_or_null()?,
            );
        }
        let mut st = tx.prepare("SELECT digest, size, cached_at FROM blobs")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            sink.blob(
                r.get_ref(0)?.as_str()?,
                r.get::<_, i64>(1)?.max(0) as u64,
                r.get(2)?,
            );
        }
        let mut st = tx.prepare(
            "SELECT repo_id, digest, first_cached, last_pulled, pull_count, storage_class,
                    transitioned_at FROM images",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            sink.image(&ImageRow {
                repo_id: r.get(0)?,
                digest: r.get_ref(1)?.as_str()?,
                first_cached_ms: r.get(2)?,
                last_pulled_ms: r.get(3)?,
                pull_count: r.get::<_, i64>(4)?.max(0) as u64,
                storage_class: r.get_ref(5)?.as_str()?,
                transitioned_at_ms: r.get(6)?,
            });
        }
        let mut st = tx.prepare("SELECT repo_id, digest, tag FROM tags")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            sink.tag(r.get(0)?, r.get_ref(1)?.as_str()?, r.get_ref(2)?.as_str()?);
        }
    }
    tx.commit()
}
