//! The index: what the cache holds and what it knows about it — repositories, tags → digests with
//! the time they were last confirmed upstream, manifests with their media type and references,
//! per-image first-cached / last-pulled / pull count, blob sizes.
//!
//! SQLite in WAL mode is the embedded default. Callers run these synchronous methods on the
//! blocking pool. The index is written only after the content it describes is committed to the
//! store, so after any crash it may miss an entry but never points at a missing blob.

use super::events::{Event, EventQuery};
use crate::oci::manifest::Reference as ManifestRef;
use crate::oci::Digest;
pub use crate::oci::RepoKey;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What the index knows of a tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRecord {
    /// The manifest digest it pointed at when last confirmed.
    pub digest: Digest,
    /// When upstream last confirmed it (unix ms).
    pub confirmed_at_ms: i64,
}

/// What the index knows of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    /// Its digest.
    pub digest: Digest,
    /// The upstream's `Content-Type`.
    pub media_type: String,
    /// Byte length.
    pub size: u64,
}

/// A pull to add to an image's statistics.
#[derive(Debug, Clone)]
pub struct Pull {
    /// Repository pulled from.
    pub repo: RepoKey,
    /// Manifest digest served.
    pub digest: Digest,
    /// Number of pulls in this batch.
    pub count: u64,
    /// Time of the latest (unix ms).
    pub at_ms: i64,
}

/// Index errors are database errors (SQLite or PostgreSQL); the message names the operation.
#[derive(Debug, thiserror::Error)]
#[error("index {op} failed: {source}")]
pub struct IndexError {
    op: &'static str,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl IndexError {
    /// Wraps a database error for operation `op`.
    pub fn new(
        op: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        IndexError {
            op,
            source: source.into(),
        }
    }
}

type Result<T> = std::result::Result<T, IndexError>;

/// The operations the request path needs from an index.
pub trait Index: Send + Sync + 'static {
    /// The scan tables kept beside this index (the scanner's store), on a connection of their own.
    fn scans(
        &self,
    ) -> std::result::Result<
        std::sync::Arc<dyn crate::scans::ScanIndex>,
        crate::scans::ScanStoreError,
    >;
    /// The tag's record, if cached.
    fn tag(&self, repo: &RepoKey, tag: &str) -> Result<Option<TagRecord>>;
    /// The manifest's record, if cached.
    fn manifest(&self, digest: &Digest) -> Result<Option<ManifestRecord>>;
    /// Records a cached manifest (already in the store) for a repository, optionally under a tag.
    fn record_manifest(
        &self,
        repo: &RepoKey,
        manifest: &ManifestRecord,
        refs: &[ManifestRef],
        tag: Option<&str>,
        now_ms: i64,
    ) -> Result<()>;
    /// Upstream confirmed the tag still points where it did.
    fn confirm_tag(&self, repo: &RepoKey, tag: &str, now_ms: i64) -> Result<()>;
    /// Upstream says the tag is gone.
    fn remove_tag(&self, repo: &RepoKey, tag: &str) -> Result<()>;
    /// Records a committed blob.
    fn record_blob(&self, digest: &Digest, size: u64, now_ms: i64) -> Result<()>;
    /// The largest size a cached manifest declares for `digest` (`None`: none does): a fill
    /// of it accepts no more bytes than that.
    fn declared_size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Whether `digest` belongs to `repo`: fetched or confirmed for it, a manifest cached for it,
    /// or referenced (through any depth of indexes) by one. Knowing a digest is not enough.
    fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool>;
    /// Notes that upstream holds `digest` in `repo` (a fill for it verified, or a HEAD confirmed).
    fn link(&self, repo: &RepoKey, digest: &Digest, now_ms: i64) -> Result<()>;
    /// Adds pull statistics.
    fn record_pulls(&self, pulls: &[Pull]) -> Result<()>;
    /// Cached tags of a repository, sorted.
    fn tags(&self, repo: &RepoKey) -> Result<Vec<String>>;
    /// Every cached repository, sorted.
    fn repositories(&self) -> Result<Vec<RepoKey>>;
    /// Removes blob records whose files are gone (scrub repair); returns how many.
    fn forget_blobs(&self, digests: &[Digest]) -> Result<usize>;
    /// Every blob record (digest, size).
    fn blob_records(&self) -> Result<Vec<(Digest, u64)>>;
    /// Records (and logs) events.
    fn record_events(&self, events: &[Event]) -> Result<()>;
    /// Lists events, newest first.
    fn events(&self, q: &EventQuery) -> Result<Vec<Event>>;
    /// Lifecycle, quota and GC operations (see `cache::images`).
    fn lifecycle(&self) -> &dyn super::images::LifecycleIndex;
    /// Cached referrers answers (see `cache::referrers`).
    fn referrers(&self) -> &dyn super::referrers::ReferrersIndex;
    /// Reads for outage readiness (see `cache::readiness`).
    fn readiness(&self) -> &dyn super::readiness::ReadinessIndex;
}

/// The embedded SQLite index.
pub struct SqliteIndex {
    conn: Mutex<Connection>,
    /// The database file (`None`: in memory); the scan tables open their own connection to it.
    path: Option<PathBuf>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS repositories (
    id INTEGER PRIMARY KEY,
    upstream TEXT NOT NULL,
    name TEXT NOT NULL,
    UNIQUE (upstream, name)
);
CREATE TABLE IF NOT EXISTS manifests (
    digest TEXT PRIMARY KEY,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    cached_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS manifest_refs (
    manifest TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
    child TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER,
    platform TEXT,
    PRIMARY KEY (manifest, child, kind)
);
CREATE INDEX IF NOT EXISTS manifest_refs_child ON manifest_refs (child);
CREATE TABLE IF NOT EXISTS images (
    repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
    first_cached INTEGER NOT NULL,
    last_pulled INTEGER,
    pull_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, digest)
);
CREATE TABLE IF NOT EXISTS tags (
    repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    confirmed_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, tag)
);
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    cached_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS repo_links (
    repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    linked_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
";

/// Walks up from a digest through the manifests that reference it (the `manifest_refs_child`
/// index makes this cheap) and asks whether any of them is an image of the repository.
const LINKED: &str = "
WITH RECURSIVE up(d) AS (
    SELECT ?2
    UNION
    SELECT r.manifest FROM manifest_refs r JOIN up ON r.child = up.d
)
SELECT EXISTS (SELECT 1 FROM repo_links WHERE repo_id = ?1 AND digest = ?2)
    OR EXISTS (SELECT 1 FROM images WHERE repo_id = ?1 AND digest IN (SELECT d FROM up))";

fn wrap(op: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError {
    move |source| IndexError::new(op, source)
}

impl SqliteIndex {
    /// Opens (creating) the index file.
    pub fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path).map_err(wrap("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(wrap("open"))?;
        // The scan store writes this file from its own connection, and SQLite fails (without
        // waiting) a transaction that read and then wants to write: take the lock at BEGIN.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        Self::with_schema(conn, Some(path))
    }

    /// An in-memory index (tests).
    pub fn in_memory() -> Result<Self> {
        let conn = Connection::open_in_memory().map_err(wrap("open"))?;
        Self::with_schema(conn, None)
    }

    /// Creates or migrates the tables on a fresh connection.
    fn with_schema(conn: Connection, path: Option<&Path>) -> Result<Self> {
        conn.execute_batch(SCHEMA).map_err(wrap("create schema"))?;
        conn.execute_batch(super::events::SCHEMA)
            .map_err(wrap("create schema"))?;
        super::images::migrate(&conn).map_err(wrap("migrate schema"))?;
        super::referrers::migrate(&conn).map_err(wrap("migrate schema"))?;
        Ok(SqliteIndex {
            conn: Mutex::new(conn),
            path: path.map(Path::to_path_buf),
        })
    }

    /// The database file, unless the index is in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Runs `f` with the connection (for modules that own their own tables and queries).
    pub fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }
}

pub(crate) fn repo_id(c: &Connection, repo: &RepoKey) -> rusqlite::Result<i64> {
    c.execute(
        "INSERT OR IGNORE INTO repositories (upstream, name) VALUES (?1, ?2)",
        params![repo.upstream, repo.name],
    )?;
    c.query_row(
        "SELECT id FROM repositories WHERE upstream = ?1 AND name = ?2",
        params![repo.upstream, repo.name],
        |r| r.get(0),
    )
}

fn parse_digest(s: String) -> rusqlite::Result<Digest> {
    Digest::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

impl Index for SqliteIndex {
    fn scans(
        &self,
    ) -> std::result::Result<
        std::sync::Arc<dyn crate::scans::ScanIndex>,
        crate::scans::ScanStoreError,
    > {
        self.open_scans()
    }

    fn tag(&self, repo: &RepoKey, tag: &str) -> Result<Option<TagRecord>> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT t.digest, t.confirmed_at FROM tags t JOIN repositories r ON r.id = t.repo_id
                 WHERE r.upstream = ?1 AND r.name = ?2 AND t.tag = ?3",
                params![repo.upstream, repo.name, tag],
                |r| {
                    Ok(TagRecord {
                        digest: parse_digest(r.get(0)?)?,
                        confirmed_at_ms: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(wrap("tag lookup"))
        })
    }

    fn manifest(&self, digest: &Digest) -> Result<Option<ManifestRecord>> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT media_type, size FROM manifests WHERE digest = ?1",
                params![digest.to_string()],
                |r| {
                    Ok(ManifestRecord {
                        digest: digest.clone(),
                        media_type: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()
            .map_err(wrap("manifest lookup"))
        })
    }

    fn record_manifest(
        &self,
        repo: &RepoKey,
        m: &ManifestRecord,
        refs: &[ManifestRef],
        tag: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            let d = m.digest.to_string();
            tx.execute(
                "INSERT OR IGNORE INTO manifests (digest, media_type, size, cached_at) VALUES (?1, ?2, ?3, ?4)",
                params![d, m.media_type, m.size as i64, now_ms],
            )?;
            for r in refs {
                tx.execute(
                    "INSERT OR IGNORE INTO manifest_refs (manifest, child, kind, size, platform) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![d, r.digest.to_string(), r.kind.as_str(), r.size.map(|s| s as i64), r.platform],
                )?;
            }
            let id = repo_id(&tx, repo)?;
            tx.execute(
                "INSERT OR IGNORE INTO images (repo_id, digest, first_cached) VALUES (?1, ?2, ?3)",
                params![id, d, now_ms],
            )?;
            if let Some(t) = tag {
                tx.execute(
                    "INSERT INTO tags (repo_id, tag, digest, confirmed_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (repo_id, tag) DO UPDATE SET digest = excluded.digest, confirmed_at = excluded.confirmed_at",
                    params![id, t, d, now_ms],
                )?;
            }
            tx.commit()
        })
        .map_err(wrap("record manifest"))
    }

    fn confirm_tag(&self, repo: &RepoKey, tag: &str, now_ms: i64) -> Result<()> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE tags SET confirmed_at = ?4 WHERE tag = ?3 AND repo_id =
                 (SELECT id FROM repositories WHERE upstream = ?1 AND name = ?2)",
                params![repo.upstream, repo.name, tag, now_ms],
            )
            .map(|_| ())
            .map_err(wrap("confirm tag"))
        })
    }

    fn remove_tag(&self, repo: &RepoKey, tag: &str) -> Result<()> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM tags WHERE tag = ?3 AND repo_id =
                 (SELECT id FROM repositories WHERE upstream = ?1 AND name = ?2)",
                params![repo.upstream, repo.name, tag],
            )
            .map(|_| ())
            .map_err(wrap("remove tag"))
        })
    }

    fn record_blob(&self, digest: &Digest, size: u64, now_ms: i64) -> Result<()> {
        self.with_conn(|c| {
            c.execute(
                "INSERT OR IGNORE INTO blobs (digest, size, cached_at) VALUES (?1, ?2, ?3)",
                params![digest.to_string(), size as i64, now_ms],
            )
            .map(|_| ())
            .map_err(wrap("record blob"))
        })
    }

    fn declared_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT MAX(size) FROM manifest_refs WHERE child = ?1",
                params![digest.to_string()],
                |r| r.get::<_, Option<i64>>(0),
            )
            .map(|s| s.map(|s| s.max(0) as u64))
            .map_err(wrap("declared size"))
        })
    }

    fn linked(&self, repo: &RepoKey, digest: &Digest) -> Result<bool> {
        self.with_conn(|c| {
            let id: Option<i64> = c
                .query_row(
                    "SELECT id FROM repositories WHERE upstream = ?1 AND name = ?2",
                    params![repo.upstream, repo.name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(wrap("link lookup"))?;
            let Some(id) = id else { return Ok(false) };
            c.query_row(LINKED, params![id, digest.to_string()], |r| r.get(0))
                .map_err(wrap("link lookup"))
        })
    }

    fn link(&self, repo: &RepoKey, digest: &Digest, now_ms: i64) -> Result<()> {
        self.with_conn(|c| {
            let id = repo_id(c, repo).map_err(wrap("link"))?;
            c.execute(
                "INSERT INTO repo_links (repo_id, digest, linked_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (repo_id, digest) DO NOTHING",
                params![id, digest.to_string(), now_ms],
            )
            .map_err(wrap("link"))?;
            Ok(())
        })
    }

    fn record_pulls(&self, pulls: &[Pull]) -> Result<()> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            for p in pulls {
                let id = repo_id(&tx, &p.repo)?;
                tx.execute(
                    "UPDATE images SET pull_count = pull_count + ?3,
                       last_pulled = MAX(COALESCE(last_pulled, 0), ?4)
                     WHERE repo_id = ?1 AND digest = ?2",
                    params![id, p.digest.to_string(), p.count as i64, p.at_ms],
                )?;
            }
            tx.commit()
        })
        .map_err(wrap("record pulls"))
    }

    fn tags(&self, repo: &RepoKey) -> Result<Vec<String>> {
        self.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT t.tag FROM tags t JOIN repositories r ON r.id = t.repo_id
                 WHERE r.upstream = ?1 AND r.name = ?2 ORDER BY t.tag",
            )?;
            let rows = st.query_map(params![repo.upstream, repo.name], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(wrap("list tags"))
    }

    fn repositories(&self) -> Result<Vec<RepoKey>> {
        self.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT upstream, name FROM repositories r
                 WHERE EXISTS (SELECT 1 FROM images i WHERE i.repo_id = r.id)
                 ORDER BY upstream, name",
            )?;
            let rows = st.query_map([], |r| {
                Ok(RepoKey {
                    upstream: r.get(0)?,
                    name: r.get(1)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<RepoKey>>>()
        })
        .map_err(wrap("list repositories"))
    }

    fn forget_blobs(&self, digests: &[Digest]) -> Result<usize> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            for d in digests {
                let s = d.to_string();
                n += tx.execute("DELETE FROM blobs WHERE digest = ?1", params![s])?;
                // A manifest whose bytes are gone cannot be served: drop it (and, by cascade, its
                // images); tags pointing at it are dropped too and will be refetched.
                n += tx.execute("DELETE FROM tags WHERE digest = ?1", params![s])?;
                n += tx.execute("DELETE FROM manifests WHERE digest = ?1", params![s])?;
            }
            tx.commit()?;
            Ok(n)
        })
        .map_err(wrap("forget blobs"))
    }

    fn blob_records(&self) -> Result<Vec<(Digest, u64)>> {
        self.with_conn(|c| {
            let mut st = c.prepare("SELECT digest, size FROM blobs")?;
            let rows = st.query_map([], |r| {
                Ok((parse_digest(r.get(0)?)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(wrap("list blobs"))
    }

    fn record_events(&self, events: &[Event]) -> Result<()> {
        self.insert_events(events)
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        self.query_events(q)
    }

    fn lifecycle(&self) -> &dyn super::images::LifecycleIndex {
        self
    }

    fn referrers(&self) -> &dyn super::referrers::ReferrersIndex {
        self
    }

    fn readiness(&self) -> &dyn super::readiness::ReadinessIndex {
        self
    }
}

#[cfg(test)]
mod tests;
