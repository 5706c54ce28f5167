//! Where scan results live: tables of their own in the index database, reached through a
//! connection of their own (SQLite in WAL mode lets it work beside the index's). The index hands
//! them out ([`SqliteIndex::scans`]) as a [`ScanIndex`], so the scanner never names a file.
//!
//! - `scan_layers`: one analysis per (layer digest, analyzer version), so a layer shared by
//!   many images is read once, and a new analyzer redoes it.
//! - `scan_inventories`: per image manifest digest, its layers and merged inventory; written
//!   once per scan, only read by a rematch.
//! - `scan_results`: per image manifest digest, the latest findings with the hash of the
//!   vulnerability data they were matched against; a rematch rewrites only these small rows.
//!
//! `scan_results.analyzer_version` is the analyzer that made the stored inventory (0: before
//! the column existed, i.e. an older release); older inventories are redone in the background
//! (see `upgrade.rs`).
//!
//! A rescan after the data changed reads only these two tables. Rows go when the index drops
//! the manifest (foreign key cascade, e.g. lifecycle expiry or scrub).

use crate::oci::Digest;
use crate::SqliteIndex;
use breakwater_scan::findings::severity_counts;
use breakwater_scan::layer::{LayerAnalysis, ANALYZER_VERSION};
use breakwater_scan::osv::Severity;
use breakwater_scan::record::{ImageScan, Outdated, Rematched, ScanStatus};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::sync::{Arc, Mutex};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS scan_layers (
    digest TEXT NOT NULL,
    analyzer_version INTEGER NOT NULL,
    analysis TEXT NOT NULL,
    analyzed_at INTEGER NOT NULL,
    PRIMARY KEY (digest, analyzer_version)
);
CREATE TABLE IF NOT EXISTS scan_inventories (
    digest TEXT PRIMARY KEY REFERENCES manifests(digest) ON DELETE CASCADE,
    layers TEXT NOT NULL,
    inventory TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scan_results (
    digest TEXT PRIMARY KEY REFERENCES scan_inventories(digest) ON DELETE CASCADE,
    upstream TEXT NOT NULL,
    repository TEXT NOT NULL,
    status TEXT NOT NULL,
    description TEXT NOT NULL,
    findings TEXT NOT NULL,
    critical INTEGER NOT NULL DEFAULT 0,
    high INTEGER NOT NULL DEFAULT 0,
    medium INTEGER NOT NULL DEFAULT 0,
    low INTEGER NOT NULL DEFAULT 0,
    undefined INTEGER NOT NULL DEFAULT 0,
    scanned_at INTEGER NOT NULL,
    matched_at INTEGER NOT NULL,
    db_hash TEXT,
    db_updated_at INTEGER,
    analyzer_version INTEGER NOT NULL DEFAULT 0
);
";

/// Why a scan-table operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ScanStoreError {
    /// A database operation failed.
    #[error("scan store {op} failed: {source}")]
    Db {
        /// The operation (`image lookup`, `store layer`, …).
        op: &'static str,
        /// The database error (SQLite or PostgreSQL).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Scan data could not be encoded as JSON for storage.
    #[error("cannot encode scan data: {0}")]
    Encode(#[source] serde_json::Error),
    /// A stored JSON column could not be decoded.
    #[error("stored scan of {digest} has an unreadable {column}: {source}")]
    Decode {
        /// The image the row is about.
        digest: String,
        /// The column (`layers`, `inventory`, `findings`).
        column: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The index lives in memory, so no second connection can reach its tables.
    #[error("the scan tables need the index's database file; this index is in memory")]
    InMemoryIndex,
}

type Result<T> = std::result::Result<T, ScanStoreError>;

/// The scan-table operations the scanner needs; the index backend provides them.
pub trait ScanIndex: Send + Sync + 'static {
    /// The current analyzer's analysis of a layer, if stored (unreadable rows count as absent).
    fn layer(&self, digest: &Digest) -> Result<Option<LayerAnalysis>>;
    /// Stores a layer's analysis.
    fn put_layer(&self, digest: &Digest, a: &LayerAnalysis, now_ms: i64) -> Result<()>;
    /// The stored scan of an image manifest.
    fn image(&self, digest: &Digest) -> Result<Option<ImageScan>>;
    /// Stores (replacing) an image's scan, as made by the current analyzer.
    fn put_image(&self, s: &ImageScan) -> Result<()>;
    /// Up to `limit` stored scans not yet matched against data with `hash`, in digest order
    /// after `after` (paging keeps memory bounded however many images are cached).
    fn unmatched(&self, hash: &str, after: Option<&Digest>, limit: usize)
        -> Result<Vec<ImageScan>>;
    /// Up to `limit` stored scans made by an analyzer older than the current one, oldest scan
    /// first, after the (`scanned_at`, digest) position `after`.
    fn outdated(&self, after: Option<(i64, &Digest)>, limit: usize) -> Result<Vec<Outdated>>;
    /// Records rematched findings for many images in one transaction.
    fn update_matches(
        &self,
        updates: &[Rematched],
        db_hash: &str,
        db_updated_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<()>;
    /// Findings per severity over every stored image (for the gauge).
    fn totals(&self) -> Result<[(Severity, i64); 5]>;
    /// Drops analyses of layers no cached manifest references any more, and of old analyzers.
    fn prune_layers(&self) -> Result<usize>;
}

impl SqliteIndex {
    /// The scan tables of this index's database, through a connection of their own.
    pub(crate) fn open_scans(&self) -> Result<Arc<dyn ScanIndex>> {
        let path = self.path().ok_or(ScanStoreError::InMemoryIndex)?;
        Ok(Arc::new(ScanStore::open(path)?))
    }
}

/// The scan tables in the SQLite index database.
pub struct ScanStore {
    conn: Mutex<Connection>,
}

fn err(op: &'static str) -> impl Fn(rusqlite::Error) -> ScanStoreError {
    move |source| ScanStoreError::Db {
        op,
        source: Box::new(source),
    }
}

pub(crate) fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(ScanStoreError::Encode)
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    digest: &Digest,
    column: &'static str,
    text: &str,
) -> Result<T> {
    serde_json::from_str(text).map_err(|source| ScanStoreError::Decode {
        digest: digest.to_string(),
        column,
        source,
    })
}

/// A digest column; a malformed one is a conversion error, as the index reports them.
fn digest_at(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Digest> {
    let s: String = r.get(i)?;
    Digest::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The columns `RawImage::read` reads, from `scan_results r JOIN scan_inventories i`.
pub(crate) const IMAGE_COLUMNS: &str =
    "r.digest, r.upstream, r.repository, r.status, r.description, i.layers, i.inventory, \
     r.findings, r.scanned_at, r.matched_at, r.db_hash, r.db_updated_at";
pub(crate) const IMAGE_FROM: &str = "scan_results r JOIN scan_inventories i ON i.digest = r.digest";

/// An image row before its JSON columns are decoded (outside the connection's lock).
struct RawImage {
    scan: ImageScan,
    layers: String,
    inventory: String,
    findings: String,
}

impl RawImage {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(RawImage {
            scan: ImageScan {
                digest: digest_at(r, 0)?,
                upstream: r.get(1)?,
                repository: r.get(2)?,
                status: ScanStatus::parse(&r.get::<_, String>(3)?),
                description: r.get(4)?,
                layers: Vec::new(),
                inventory: Default::default(),
                findings: Vec::new(),
                scanned_at_ms: r.get(8)?,
                matched_at_ms: r.get(9)?,
                db_hash: r.get(10)?,
                db_updated_at_ms: r.get(11)?,
            },
            layers: r.get(5)?,
            inventory: r.get(6)?,
            findings: r.get(7)?,
        })
    }

    fn decode(self) -> Result<ImageScan> {
        let mut s = self.scan;
        s.layers = decode(&s.digest, "layers", &self.layers)?;
        s.inventory = decode(&s.digest, "inventory", &self.inventory)?;
        s.findings = decode(&s.digest, "findings", &self.findings)?;
        Ok(s)
    }
}

/// Adds `scan_results.analyzer_version` to a table made by a release without it; the rows
/// there read as 0 (older than any analyzer), so they are redone.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info('scan_results') WHERE name = 'analyzer_version'")?
        .exists([])?;
    if !has {
        conn.execute_batch(
            "ALTER TABLE scan_results ADD COLUMN analyzer_version INTEGER NOT NULL DEFAULT 0",
        )?;
    }
    Ok(())
}

impl ScanStore {
    /// Opens the index database at `path` and creates the scan tables if missing.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let mut conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err("open"))?;
        // The index writes this file from its own connection: as there, transactions take the
        // write lock at BEGIN, so a read-then-write one waits for the other instead of failing.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        // As the index's own connection: WAL needs no fsync per commit for consistency.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(err("open"))?;
        conn.execute_batch(SCHEMA).map_err(err("create schema"))?;
        migrate(&conn).map_err(err("migrate schema"))?;
        Ok(ScanStore {
            conn: Mutex::new(conn),
        })
    }

    /// Runs `f` with the connection; its error is reported as operation `op`.
    fn db<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c).map_err(err(op))
    }
}

impl ScanIndex for ScanStore {
    fn layer(&self, digest: &Digest) -> Result<Option<LayerAnalysis>> {
        let text: Option<String> = self.db("layer lookup", |c| {
            c.query_row(
                "SELECT analysis FROM scan_layers WHERE digest = ?1 AND analyzer_version = ?2",
                params![digest.to_string(), ANALYZER_VERSION],
                |r| r.get(0),
            )
            .optional()
        })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn put_layer(&self, digest: &Digest, a: &LayerAnalysis, now_ms: i64) -> Result<()> {
        let text = json(a)?;
        self.db("store layer", |c| {
            c.execute(
                "INSERT OR REPLACE INTO scan_layers (digest, analyzer_version, analysis, analyzed_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![digest.to_string(), a.analyzer_version, text, now_ms],
            )
            .map(|_| ())
        })
    }

    fn image(&self, digest: &Digest) -> Result<Option<ImageScan>> {
        self.db("image lookup", |c| {
            c.query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE r.digest = ?1"),
                params![digest.to_string()],
                RawImage::read,
            )
            .optional()
        })?
        .map(RawImage::decode)
        .transpose()
    }

    /// The scanner merges only analyses of [`ANALYZER_VERSION`], so the row records it.
    fn put_image(&self, s: &ImageScan) -> Result<()> {
        let (layers, inventory, findings) =
            (json(&s.layers)?, json(&s.inventory)?, json(&s.findings)?);
        let n = severity_counts(&s.findings);
        let digest = s.digest.to_string();
        self.db("store image scan", |c| {
            let tx = c.transaction()?;
            // UPSERT, not REPLACE: a REPLACE would delete the row and cascade to its results.
            tx.execute(
                "INSERT INTO scan_inventories (digest, layers, inventory) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO UPDATE SET layers = excluded.layers, inventory = excluded.inventory",
                params![digest, layers, inventory],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO scan_results (digest, upstream, repository, status, description,
                   findings, critical, high, medium, low, undefined,
                   scanned_at, matched_at, db_hash, db_updated_at, analyzer_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    digest, s.upstream, s.repository, s.status.as_str(), s.description,
                    findings,
                    n[&Severity::Critical] as i64, n[&Severity::High] as i64,
                    n[&Severity::Medium] as i64, n[&Severity::Low] as i64,
                    n[&Severity::Undefined] as i64,
                    s.scanned_at_ms, s.matched_at_ms, s.db_hash, s.db_updated_at_ms,
                    ANALYZER_VERSION
                ],
            )?;
            tx.commit()
        })
    }

    fn unmatched(
        &self,
        hash: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> Result<Vec<ImageScan>> {
        let after = after.map(Digest::to_string).unwrap_or_default();
        let raw = self.db("list unmatched", |c| {
            let mut st = c.prepare(&format!(
                "SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM}
                 WHERE (r.db_hash IS NULL OR r.db_hash != ?1) AND r.digest > ?2
                 ORDER BY r.digest LIMIT ?3"
            ))?;
            let rows = st.query_map(params![hash, after, limit as i64], RawImage::read)?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raw.into_iter().map(RawImage::decode).collect()
    }

    fn outdated(&self, after: Option<(i64, &Digest)>, limit: usize) -> Result<Vec<Outdated>> {
        let (at, after) = match after {
            Some((at, d)) => (at, d.to_string()),
            None => (i64::MIN, String::new()),
        };
        let raw = self.db("list outdated", |c| {
            let mut st = c.prepare(
                "SELECT r.digest, r.upstream, r.repository, i.layers, r.scanned_at
                 FROM scan_results r JOIN scan_inventories i ON i.digest = r.digest
                 WHERE r.analyzer_version < ?1
                   AND (r.scanned_at > ?2 OR (r.scanned_at = ?2 AND r.digest > ?3))
                 ORDER BY r.scanned_at, r.digest LIMIT ?4",
            )?;
            let rows = st.query_map(params![ANALYZER_VERSION, at, after, limit as i64], |r| {
                Ok((
                    Outdated {
                        digest: digest_at(r, 0)?,
                        repo: crate::RepoKey {
                            upstream: r.get(1)?,
                            name: r.get(2)?,
                        },
                        layers: Vec::new(),
                        scanned_at_ms: r.get(4)?,
                    },
                    r.get::<_, String>(3)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
        })?;
        raw.into_iter()
            .map(|(mut o, layers)| {
                o.layers = decode(&o.digest, "layers", &layers)?;
                Ok(o)
            })
            .collect()
    }

    fn update_matches(
        &self,
        updates: &[Rematched],
        db_hash: &str,
        db_updated_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<()> {
        let encoded = updates
            .iter()
            .map(|u| Ok((u, json(&u.findings)?, severity_counts(&u.findings))))
            .collect::<Result<Vec<_>>>()?;
        self.db("update findings", |c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare(
                    "UPDATE scan_results SET findings = ?2, status = ?3, description = ?4,
                       critical = ?5, high = ?6, medium = ?7, low = ?8, undefined = ?9,
                       matched_at = ?10, db_hash = ?11, db_updated_at = ?12
                     WHERE digest = ?1",
                )?;
                for (u, findings, n) in &encoded {
                    st.execute(params![
                        u.digest.to_string(),
                        findings,
                        u.status.as_str(),
                        u.description,
                        n[&Severity::Critical] as i64,
                        n[&Severity::High] as i64,
                        n[&Severity::Medium] as i64,
                        n[&Severity::Low] as i64,
                        n[&Severity::Undefined] as i64,
                        now_ms,
                        db_hash,
                        db_updated_at_ms
                    ])?;
                }
            }
            tx.commit()
        })
    }

    fn totals(&self) -> Result<[(Severity, i64); 5]> {
        self.db("sum findings", |c| {
            c.query_row(
                "SELECT COALESCE(SUM(critical),0), COALESCE(SUM(high),0), COALESCE(SUM(medium),0),
                        COALESCE(SUM(low),0), COALESCE(SUM(undefined),0) FROM scan_results",
                [],
                |r| {
                    Ok([
                        (Severity::Critical, r.get(0)?),
                        (Severity::High, r.get(1)?),
                        (Severity::Medium, r.get(2)?),
                        (Severity::Low, r.get(3)?),
                        (Severity::Undefined, r.get(4)?),
                    ])
                },
            )
        })
    }

    /// An image whose inventory an old analyzer made does not need its layers' analyses: its
    /// upgrade rescan reads its layers from the blob store again, and its stored inventory
    /// stays meanwhile.
    fn prune_layers(&self) -> Result<usize> {
        self.db("prune layers", |c| {
            c.execute(
                "DELETE FROM scan_layers WHERE analyzer_version != ?1
                   OR digest NOT IN (SELECT child FROM manifest_refs)",
                params![ANALYZER_VERSION],
            )
        })
    }
}

#[cfg(test)]
#[path = "scans_tests.rs"]
mod tests;
