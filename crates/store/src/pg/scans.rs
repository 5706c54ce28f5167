//! [`ScanIndex`] on PostgreSQL: the scan tables of `scans.rs` in the same database as the index,
//! on the index's connection pool.

use super::pool::{Pool, Rerun};
use super::{digest, PgError};
use crate::oci::Digest;
use crate::scans::{decode, json, ScanIndex, ScanStoreError, IMAGE_COLUMNS, IMAGE_FROM};
use breakwater_scan::findings::severity_counts;
use breakwater_scan::layer::{LayerAnalysis, ANALYZER_VERSION};
use breakwater_scan::osv::Severity;
use breakwater_scan::record::{ImageScan, Outdated, Rematched, ScanStatus};
use std::sync::Arc;

type Result<T> = std::result::Result<T, ScanStoreError>;

/// The scan tables in the PostgreSQL index.
pub(crate) struct PgScans {
    pool: Arc<Pool>,
}

/// An image row before its JSON columns are decoded (outside the connection).
struct RawImage {
    scan: ImageScan,
    layers: String,
    inventory: String,
    findings: String,
}

impl RawImage {
    /// Reads the [`IMAGE_COLUMNS`] of a row.
    fn read(r: &postgres::Row) -> std::result::Result<Self, PgError> {
        Ok(RawImage {
            scan: ImageScan {
                digest: digest(r.get(0))?,
                upstream: r.get(1),
                repository: r.get(2),
                status: ScanStatus::parse(r.get(3)),
                description: r.get(4),
                layers: Vec::new(),
                inventory: Default::default(),
                findings: Vec::new(),
                scanned_at_ms: r.get(8),
                matched_at_ms: r.get(9),
                db_hash: r.get(10),
                db_updated_at_ms: r.get(11),
            },
            layers: r.get(5),
            inventory: r.get(6),
            findings: r.get(7),
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

fn counts(findings: &[breakwater_scan::findings::VulnFinding]) -> [i64; 5] {
    let n = severity_counts(findings);
    [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
        Severity::Undefined,
    ]
    .map(|s| n[&s] as i64)
}

impl PgScans {
    pub(crate) fn new(pool: Arc<Pool>) -> Self {
        PgScans { pool }
    }

    fn db<T>(
        &self,
        op: &'static str,
        f: impl FnMut(&mut postgres::Client) -> std::result::Result<T, PgError>,
    ) -> Result<T> {
        // Every scan write is an upsert or a delete by key: safe to rerun on a new connection.
        self.pool
            .run(Rerun::Always, f)
            .map_err(|e| ScanStoreError::Db {
                op,
                source: Box::new(e),
            })
    }
}

impl ScanIndex for PgScans {
    fn layer(&self, d: &Digest) -> Result<Option<LayerAnalysis>> {
        let text: Option<String> = self.db("layer lookup", |c| {
            Ok(c.query_opt(
                "SELECT analysis FROM scan_layers WHERE digest = $1 AND analyzer_version = $2",
                &[&d.to_string(), &i64::from(ANALYZER_VERSION)],
            )?
            .map(|r| r.get(0)))
        })?;
        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
    }

    fn put_layer(&self, d: &Digest, a: &LayerAnalysis, now_ms: i64) -> Result<()> {
        let text = json(a)?;
        self.db("store layer", |c| {
            c.execute(
                "INSERT INTO scan_layers (digest, analyzer_version, analysis, analyzed_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (digest, analyzer_version) DO UPDATE
                   SET analysis = excluded.analysis, analyzed_at = excluded.analyzed_at",
                &[
                    &d.to_string(),
                    &i64::from(a.analyzer_version),
                    &text,
                    &now_ms,
                ],
            )?;
            Ok(())
        })
    }

    fn image(&self, d: &Digest) -> Result<Option<ImageScan>> {
        self.db("image lookup", |c| {
            c.query_opt(
                &format!("SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM} WHERE r.digest = $1"),
                &[&d.to_string()],
            )?
            .as_ref()
            .map(RawImage::read)
            .transpose()
        })?
        .map(RawImage::decode)
        .transpose()
    }

    fn put_image(&self, s: &ImageScan) -> Result<()> {
        let (layers, inventory, findings) =
            (json(&s.layers)?, json(&s.inventory)?, json(&s.findings)?);
        let [critical, high, medium, low, undefined] = counts(&s.findings);
        let d = s.digest.to_string();
        self.db("store image scan", |c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO scan_inventories (digest, layers, inventory) VALUES ($1, $2, $3)
                 ON CONFLICT (digest) DO UPDATE SET layers = excluded.layers,
                   inventory = excluded.inventory",
                &[&d, &layers, &inventory],
            )?;
            tx.execute(
                "INSERT INTO scan_results (digest, upstream, repository, status, description,
                   findings, critical, high, medium, low, undefined,
                   scanned_at, matched_at, db_hash, db_updated_at, analyzer_version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                 ON CONFLICT (digest) DO UPDATE SET upstream = excluded.upstream,
                   repository = excluded.repository, status = excluded.status,
                   description = excluded.description, findings = excluded.findings,
                   critical = excluded.critical, high = excluded.high, medium = excluded.medium,
                   low = excluded.low, undefined = excluded.undefined,
                   scanned_at = excluded.scanned_at, matched_at = excluded.matched_at,
                   db_hash = excluded.db_hash, db_updated_at = excluded.db_updated_at,
                   analyzer_version = excluded.analyzer_version",
                &[
                    &d,
                    &s.upstream,
                    &s.repository,
                    &s.status.as_str(),
                    &s.description,
                    &findings,
                    &critical,
                    &high,
                    &medium,
                    &low,
                    &undefined,
                    &s.scanned_at_ms,
                    &s.matched_at_ms,
                    &s.db_hash,
                    &s.db_updated_at_ms,
                    &i64::from(ANALYZER_VERSION),
                ],
            )?;
            tx.commit()?;
            Ok(())
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
            c.query(
                &format!(
                    "SELECT {IMAGE_COLUMNS} FROM {IMAGE_FROM}
                     WHERE (r.db_hash IS NULL OR r.db_hash != $1) AND r.digest > $2
                     ORDER BY r.digest LIMIT $3"
                ),
                &[&hash, &after, &(limit as i64)],
            )?
            .iter()
            .map(RawImage::read)
            .collect::<std::result::Result<Vec<_>, _>>()
        })?;
        raw.into_iter().map(RawImage::decode).collect()
    }

    fn outdated(&self, after: Option<(i64, &Digest)>, limit: usize) -> Result<Vec<Outdated>> {
        let (at, after) = match after {
            Some((at, d)) => (at, d.to_string()),
            None => (i64::MIN, String::new()),
        };
        let raw = self.db("list outdated", |c| {
            c.query(
                "SELECT r.digest, r.upstream, r.repository, i.layers, r.scanned_at
                 FROM scan_results r JOIN scan_inventories i ON i.digest = r.digest
                 WHERE r.analyzer_version < $1
                   AND (r.scanned_at > $2 OR (r.scanned_at = $2 AND r.digest > $3))
                 ORDER BY r.scanned_at, r.digest LIMIT $4",
                &[&i64::from(ANALYZER_VERSION), &at, &after, &(limit as i64)],
            )?
            .iter()
            .map(|r| {
                Ok((
                    Outdated {
                        digest: digest(r.get(0))?,
                        repo: crate::RepoKey {
                            upstream: r.get(1),
                            name: r.get(2),
                        },
                        layers: Vec::new(),
                        scanned_at_ms: r.get(4),
                    },
                    r.get::<_, String>(3),
                ))
            })
            .collect::<std::result::Result<Vec<_>, PgError>>()
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
            .map(|u| Ok((u, json(&u.findings)?, counts(&u.findings))))
            .collect::<Result<Vec<_>>>()?;
        self.db("update findings", |c| {
            let mut tx = c.transaction()?;
            let st = tx.prepare(
                "UPDATE scan_results SET findings = $2, status = $3, description = $4,
                   critical = $5, high = $6, medium = $7, low = $8, undefined = $9,
                   matched_at = $10, db_hash = $11, db_updated_at = $12
                 WHERE digest = $1",
            )?;
            for (u, findings, [critical, high, medium, low, undefined]) in &encoded {
                tx.execute(
                    &st,
                    &[
                        &u.digest.to_string(),
                        findings,
                        &u.status.as_str(),
                        &u.description,
                        critical,
                        high,
                        medium,
                        low,
                        undefined,
                        &now_ms,
                        &db_hash,
                        &db_updated_at_ms,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn totals(&self) -> Result<[(Severity, i64); 5]> {
        self.db("sum findings", |c| {
            // SUM of BIGINT is NUMERIC in PostgreSQL: cast back.
            let r = c.query_one(
                "SELECT COALESCE(SUM(critical),0)::bigint, COALESCE(SUM(high),0)::bigint,
                        COALESCE(SUM(medium),0)::bigint, COALESCE(SUM(low),0)::bigint,
                        COALESCE(SUM(undefined),0)::bigint FROM scan_results",
                &[],
            )?;
            Ok([
                (Severity::Critical, r.get(0)),
                (Severity::High, r.get(1)),
                (Severity::Medium, r.get(2)),
                (Severity::Low, r.get(3)),
                (Severity::Undefined, r.get(4)),
            ])
        })
    }

    fn prune_layers(&self) -> Result<usize> {
        self.db("prune layers", |c| {
            Ok(c.execute(
                "DELETE FROM scan_layers WHERE analyzer_version != $1
                   OR digest NOT IN (SELECT child FROM manifest_refs)",
                &[&i64::from(ANALYZER_VERSION)],
            )? as usize)
        })
    }
}
