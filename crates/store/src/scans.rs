//! Where scan results live: tables of their own in the index database, reached through a
//! connection of their own (SQLite in WAL mode lets it work beside the index's).
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

use breakwater_scan::findings::severity_counts;
use breakwater_scan::layer::{LayerAnalysis, ANALYZER_VERSION};
use breakwater_scan::osv::Severity;
use breakwater_scan::record::{ImageScan, Outdated, Rematched, ScanStatus};
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;
use std::sync::Mutex;

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

/// The scan tables.
pub struct ScanStore {
    conn: Mutex<Connection>,
}

type Result<T> = std::result::Result<T, String>;

fn err(op: &'static str) -> impl Fn(rusqlite::Error) -> String {
    move |e| format!("scan store {op} failed: {e}")
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| format!("cannot encode scan data: {e}"))
}

/// The columns `image_row` reads, from `scan_results r JOIN scan_inventories i`.
const IMAGE_COLUMNS: &str =
    "r.digest, r.upstream, r.repository, r.status, r.description, i.layers, i.inventory, \
     r.findings, r.scanned_at, r.matched_at, r.db_hash, r.db_updated_at";
const IMAGE_FROM: &str = "scan_results r JOIN scan_inventories i ON i.digest = r.digest";

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageScan> {
    let decode = |i: usize, text: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, text.into())
    };
    let layers: String = r.get(5)?;
    let inventory: String = r.get(6)?;
    let findings: String = r.get(7)?;
    Ok(ImageScan {
        digest: r.get(0)?,
        upstream: r.get(1)?,
        repository: r.get(2)?,
        status: ScanStatus::parse(&r.get::<_, String>(3)?),
        description: r.get(4)?,
        layers: serde_json::from_str(&layers).map_err(|e| decode(5, e.to_string()))?,
        inventory: serde_json::from_str(&inventory).map_err(|e| decode(6, e.to_string()))?,
        findings: serde_json::from_str(&findings).map_err(|e| decode(7, e.to_string()))?,
        scanned_at_ms: r.get(8)?,
        matched_at_ms: r.get(9)?,
        db_hash: r.get(10)?,
        db_updated_at_ms: r.get(11)?,
    })
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
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path).map_err(err("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err("open"))?;
        // As the index's own connection: WAL needs no fsync per commit for consistency.
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(err("open"))?;
        conn.execute_batch(SCHEMA).map_err(err("create schema"))?;
        migrate(&conn).map_err(err("migrate schema"))?;
        Ok(ScanStore {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut c = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut c)
    }

    /// The current analyzer's analysis of a layer, if stored (unreadable rows count as absent).
    pub fn layer(&self, digest: &str) -> Result<Option<LayerAnalysis>> {
        let text: Option<String> = self.with(|c| {
            c.query_row(
                "SELECT analysis FROM scan_layers WHERE digest = ?1 AND analyzer_version = ?2",
                params![digest, ANALYZER_VERSION],
                |r| r.get(0),
            )
            .optional()
            .map_err(err("layer lookup"))
        })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    /// Stores a layer's analysis.
    pub fn put_layer(&self, digest: &str, a: &LayerAnalysis, now_ms: i64) -> Result<()> {
        let text = json(a)?;
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO scan_layers (digest, analyzer_version, analysis, analyzed_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![digest, a.analyzer_version, text, now_ms],
            )
            .map(|_| ())
            .map_err(err("store layer"))
        })
    }

    /// The stored scan of an image manifest.
    pub fn image(&self, digest: &str) -> Result<Option<ImageScan>> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE r.digest = ?1"),
                params![digest],
                image_row,
            )
            .optional()
            .map_err(err("image lookup"))
        })
    }

    /// Stores (replacing) an image's scan, as made by the current analyzer (the scanner merges
    /// only analyses of [`ANALYZER_VERSION`]).
    pub fn put_image(&self, s: &ImageScan) -> Result<()> {
        let (layers, inventory, findings) =
            (json(&s.layers)?, json(&s.inventory)?, json(&s.findings)?);
        let n = severity_counts(&s.findings);
        self.with(|c| {
            let tx = c.transaction()?;
            // UPSERT, not REPLACE: a REPLACE would delete the row and cascade to its results.
            tx.execute(
                "INSERT INTO scan_inventories (digest, layers, inventory) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO UPDATE SET layers = excluded.layers, inventory = excluded.inventory",
                params![s.digest, layers, inventory],
            )?;
            tx.execute(
                "INSERT OR REPLACE INTO scan_results (digest, upstream, repository, status, description,
                   findings, critical, high, medium, low, undefined,
                   scanned_at, matched_at, db_hash, db_updated_at, analyzer_version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                params![
                    s.digest, s.upstream, s.repository, s.status.as_str(), s.description,
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
        .map_err(err("store image scan"))
    }

    /// Up to `limit` stored scans not yet matched against data with `hash`, in digest order
    /// after `after` (paging keeps memory bounded however many images are cached).
    pub fn unmatched(&self, hash: &str, after: &str, limit: usize) -> Result<Vec<ImageScan>> {
        self.with(|c| {
            let mut st = c
                .prepare(&format!(
                    "SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM}
                     WHERE (r.db_hash IS NULL OR r.db_hash != ?1) AND r.digest > ?2
                     ORDER BY r.digest LIMIT ?3"
                ))
                .map_err(err("list unmatched"))?;
            let rows = st
                .query_map(params![hash, after, limit as i64], image_row)
                .map_err(err("list unmatched"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err("list unmatched"))
        })
    }

    /// Up to `limit` stored scans made by an analyzer older than the current one, oldest scan
    /// first, after the (`scanned_at`, digest) position `after` (paging, as [`Self::unmatched`]).
    pub fn outdated(&self, after: Option<(i64, &str)>, limit: usize) -> Result<Vec<Outdated>> {
        let (at, digest) = after.unwrap_or((i64::MIN, ""));
        self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT r.digest, r.upstream, r.repository, i.layers, r.scanned_at
                     FROM scan_results r JOIN scan_inventories i ON i.digest = r.digest
                     WHERE r.analyzer_version < ?1
                       AND (r.scanned_at > ?2 OR (r.scanned_at = ?2 AND r.digest > ?3))
                     ORDER BY r.scanned_at, r.digest LIMIT ?4",
                )
                .map_err(err("list outdated"))?;
            let rows = st
                .query_map(params![ANALYZER_VERSION, at, digest, limit as i64], |r| {
                    let layers: String = r.get(3)?;
                    Ok(Outdated {
                        digest: r.get(0)?,
                        upstream: r.get(1)?,
                        repository: r.get(2)?,
                        layers: serde_json::from_str(&layers).map_err(|e| {
                            rusqlite::Error::FromSqlConversionFailure(
                                3,
                                rusqlite::types::Type::Text,
                                e.to_string().into(),
                            )
                        })?,
                        scanned_at_ms: r.get(4)?,
                    })
                })
                .map_err(err("list outdated"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(err("list outdated"))
        })
    }

    /// Records rematched findings for many images in one transaction.
    pub fn update_matches(
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
        self.with(|c| {
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
                        u.digest,
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
        .map_err(err("update findings"))
    }

    /// Findings per severity over every stored image (for the gauge).
    pub fn totals(&self) -> Result<[(Severity, i64); 5]> {
        self.with(|c| {
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
            .map_err(err("sum findings"))
        })
    }

    /// Drops analyses of layers no cached manifest references any more, and of old analyzers.
    /// An image whose inventory an old analyzer made does not need them: its upgrade rescan
    /// reads its layers from the blob store again, and its stored inventory stays meanwhile.
    pub fn prune_layers(&self) -> Result<usize> {
        self.with(|c| {
            c.execute(
                "DELETE FROM scan_layers WHERE analyzer_version != ?1
                   OR digest NOT IN (SELECT child FROM manifest_refs)",
                params![ANALYZER_VERSION],
            )
            .map_err(err("prune layers"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{ManifestRecord, RepoKey};
    use crate::oci::Digest;
    use crate::{Index, SqliteIndex};

    fn scan(digest: &Digest, hash: Option<&str>) -> ImageScan {
        ImageScan {
            digest: digest.to_string(),
            upstream: "local".into(),
            repository: "team/app".into(),
            status: ScanStatus::Complete,
            description: "d".into(),
            layers: vec!["sha256:aa".into()],
            inventory: breakwater_scan::inventory::Inventory::default(),
            findings: vec![],
            scanned_at_ms: 1,
            matched_at_ms: 2,
            db_hash: hash.map(str::to_string),
            db_updated_at_ms: None,
        }
    }

    #[test]
    fn rows_follow_the_index_and_rematch_paging_skips_current_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let index = SqliteIndex::open(&path).unwrap();
        let store = ScanStore::open(&path).unwrap();
        let repo = RepoKey {
            upstream: "local".into(),
            name: "team/app".into(),
        };
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        for d in [&a, &b] {
            let m = ManifestRecord {
                digest: d.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 1,
            };
            index.record_manifest(&repo, &m, &[], None, 0).unwrap();
        }
        // A scan of a manifest the index does not hold is refused.
        let orphan = Digest::sha256_of(b"orphan");
        assert!(store.put_image(&scan(&orphan, None)).is_err());

        store.put_image(&scan(&a, Some("old"))).unwrap();
        store.put_image(&scan(&b, Some("new"))).unwrap();
        // Replacing a scan keeps its row (no cascade from the inventory upsert).
        store.put_image(&scan(&a, Some("old"))).unwrap();
        let stale = store.unmatched("new", "", 10).unwrap();
        assert_eq!(stale.len(), 1);
        assert_eq!(stale[0].digest, a.to_string());
        assert_eq!(stale[0].layers, vec!["sha256:aa".to_string()]);
        store
            .update_matches(
                &[Rematched {
                    digest: a.to_string(),
                    findings: vec![],
                    status: ScanStatus::Complete,
                    description: "d".into(),
                }],
                "new",
                None,
                3,
            )
            .unwrap();
        assert!(store.unmatched("new", "", 10).unwrap().is_empty());
        assert_eq!(
            store.image(&a.to_string()).unwrap().unwrap().matched_at_ms,
            3
        );

        // The index dropping the manifest (scrub, lifecycle) drops its scan.
        index.forget_blobs(std::slice::from_ref(&a)).unwrap();
        assert!(store.image(&a.to_string()).unwrap().is_none());
        assert!(store.image(&b.to_string()).unwrap().is_some());
    }

    #[test]
    fn old_results_table_gains_analyzer_version_and_its_rows_are_outdated_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let index = SqliteIndex::open(&path).unwrap();
        let repo = RepoKey {
            upstream: "local".into(),
            name: "team/app".into(),
        };
        let (a, b, c) = (
            Digest::sha256_of(b"a"),
            Digest::sha256_of(b"b"),
            Digest::sha256_of(b"c"),
        );
        for d in [&a, &b, &c] {
            let m = ManifestRecord {
                digest: d.clone(),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                size: 1,
            };
            index.record_manifest(&repo, &m, &[], None, 0).unwrap();
        }
        // The tables as a release before the column made them, with one row.
        let old_schema =
            SCHEMA.replace(",\n    analyzer_version INTEGER NOT NULL DEFAULT 0\n", "\n");
        assert!(!old_schema.contains("DEFAULT 0\n);\n\";"), "column removed");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(&old_schema).unwrap();
            conn.execute(
                "INSERT INTO scan_inventories (digest, layers, inventory) VALUES (?1, '[\"sha256:aa\"]', ?2)",
                params![b.to_string(), json(&breakwater_scan::inventory::Inventory::default()).unwrap()],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO scan_results (digest, upstream, repository, status, description, findings,
                   scanned_at, matched_at) VALUES (?1, 'local', 'team/app', 'COMPLETE', 'd', '[]', 5, 5)",
                params![b.to_string()],
            )
            .unwrap();
        }
        let store = ScanStore::open(&path).unwrap();
        // Opening again does not add it twice.
        drop(ScanStore::open(&path).unwrap());
        let version = |d: &Digest| -> i64 {
            store.with(|c| {
                c.query_row(
                    "SELECT analyzer_version FROM scan_results WHERE digest = ?1",
                    params![d.to_string()],
                    |r| r.get(0),
                )
                .unwrap()
            })
        };
        assert!(
            store.image(&b.to_string()).unwrap().is_some(),
            "old row reads"
        );
        assert_eq!(version(&b), 0, "missing reads as old");

        let mut current = scan(&a, Some("h"));
        current.scanned_at_ms = 1;
        store.put_image(&current).unwrap();
        let mut older = scan(&c, Some("h"));
        older.scanned_at_ms = 9;
        store.put_image(&older).unwrap();
        assert_eq!(version(&c), i64::from(ANALYZER_VERSION));
        // As an older release stored it.
        store.with(|conn| {
            conn.execute(
                "UPDATE scan_results SET analyzer_version = ?1 WHERE digest = ?2",
                params![ANALYZER_VERSION - 1, c.to_string()],
            )
            .unwrap()
        });

        let rows = store.outdated(None, 10).unwrap();
        let digests: Vec<&str> = rows.iter().map(|r| r.digest.as_str()).collect();
        assert_eq!(digests, [b.to_string(), c.to_string()], "oldest first");
        assert_eq!(rows[0].layers, vec!["sha256:aa".to_string()]);
        let page = store.outdated(Some((5, &b.to_string())), 10).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].digest, c.to_string());

        // Redone with the current analyzer: no longer outdated.
        let mut redone = scan(&b, Some("h"));
        redone.scanned_at_ms = 20;
        store.put_image(&redone).unwrap();
        let left = store.outdated(None, 10).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].digest, c.to_string());
    }
}
