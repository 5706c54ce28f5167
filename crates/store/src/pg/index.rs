//! [`Index`], events, referrers and the readiness reads on PostgreSQL: the SQLite queries of
//! `index.rs`, `events.rs`, `referrers.rs` and `readiness.rs` in PostgreSQL's dialect.

use super::{digest, PgError, PgIndex};
use crate::events::{Event, EventQuery};
use crate::index::{Index, IndexError, ManifestRecord, Pull, RepoKey, TagRecord};
use crate::oci::manifest::{RefKind, Reference as ManifestRef};
use crate::oci::Digest;
use crate::readiness::{PulledImage, ReadinessIndex};
use crate::referrers::{ReferrersIndex, ReferrersRecord};
use postgres::GenericClient;
use std::collections::HashMap;
use std::sync::Arc;

type Result<T> = std::result::Result<T, IndexError>;

/// As `index.rs`'s `LINKED`: walk up from the digest through the manifests referencing it.
const LINKED: &str = "
WITH RECURSIVE up(d) AS (
    SELECT $2::text COLLATE \"C\"
    UNION
    SELECT r.manifest FROM manifest_refs r JOIN up ON r.child = up.d
)
SELECT EXISTS (SELECT 1 FROM repo_links WHERE repo_id = $1 AND digest = $2)
    OR EXISTS (SELECT 1 FROM images WHERE repo_id = $1 AND digest IN (SELECT d FROM up))";

/// The id of `repo`, created if new.
pub(super) fn repo_id(
    c: &mut impl GenericClient,
    repo: &RepoKey,
) -> std::result::Result<i64, PgError> {
    let made = c.query_opt(
        "INSERT INTO repositories (upstream, name) VALUES ($1, $2)
         ON CONFLICT (upstream, name) DO NOTHING RETURNING id",
        &[&repo.upstream, &repo.name],
    )?;
    if let Some(r) = made {
        return Ok(r.get(0));
    }
    Ok(c.query_one(
        "SELECT id FROM repositories WHERE upstream = $1 AND name = $2",
        &[&repo.upstream, &repo.name],
    )?
    .get(0))
}

fn known_repo(
    c: &mut impl GenericClient,
    repo: &RepoKey,
) -> std::result::Result<Option<i64>, PgError> {
    Ok(c.query_opt(
        "SELECT id FROM repositories WHERE upstream = $1 AND name = $2",
        &[&repo.upstream, &repo.name],
    )?
    .map(|r| r.get(0)))
}

impl Index for PgIndex {
    fn scans(
        &self,
    ) -> std::result::Result<Arc<dyn crate::scans::ScanIndex>, crate::scans::ScanStoreError> {
        Ok(Arc::new(super::scans::PgScans::new(self.pool.clone())))
    }

    fn tag(&self, repo: &RepoKey, tag: &str) -> Result<Option<TagRecord>> {
        self.db("tag lookup", |c| {
            let row = c.query_opt(
                "SELECT t.digest, t.confirmed_at FROM tags t JOIN repositories r ON r.id = t.repo_id
                 WHERE r.upstream = $1 AND r.name = $2 AND t.tag = $3",
                &[&repo.upstream, &repo.name, &tag],
            )?;
            row.map(|r| {
                Ok(TagRecord {
                    digest: digest(r.get(0))?,
                    confirmed_at_ms: r.get(1),
                })
            })
            .transpose()
        })
    }

    fn manifest(&self, d: &Digest) -> Result<Option<ManifestRecord>> {
        self.db("manifest lookup", |c| {
            let row = c.query_opt(
                "SELECT media_type, size FROM manifests WHERE digest = $1",
                &[&d.to_string()],
            )?;
            Ok(row.map(|r| ManifestRecord {
                digest: d.clone(),
                media_type: r.get(0),
                size: r.get::<_, i64>(1) as u64,
            }))
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
        self.db("record manifest", |c| {
            let mut tx = c.transaction()?;
            let d = m.digest.to_string();
            tx.execute(
                "INSERT INTO manifests (digest, media_type, size, cached_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT DO NOTHING",
                &[&d, &m.media_type, &(m.size as i64), &now_ms],
            )?;
            for r in refs {
                tx.execute(
                    "INSERT INTO manifest_refs (manifest, child, kind, size, platform)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    &[
                        &d,
                        &r.digest.to_string(),
                        &r.kind.as_str(),
                        &r.size.map(|s| s as i64),
                        &r.platform,
                    ],
                )?;
            }
            let id = repo_id(&mut tx, repo)?;
            tx.execute(
                "INSERT INTO images (repo_id, digest, first_cached) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&id, &d, &now_ms],
            )?;
            if let Some(t) = tag {
                tx.execute(
                    "INSERT INTO tags (repo_id, tag, digest, confirmed_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (repo_id, tag) DO UPDATE SET digest = excluded.digest,
                       confirmed_at = excluded.confirmed_at",
                    &[&id, &t, &d, &now_ms],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn confirm_tag(&self, repo: &RepoKey, tag: &str, now_ms: i64) -> Result<()> {
        self.db("confirm tag", |c| {
            c.execute(
                "UPDATE tags SET confirmed_at = $4 WHERE tag = $3 AND repo_id =
                 (SELECT id FROM repositories WHERE upstream = $1 AND name = $2)",
                &[&repo.upstream, &repo.name, &tag, &now_ms],
            )?;
            Ok(())
        })
    }

    fn remove_tag(&self, repo: &RepoKey, tag: &str) -> Result<()> {
        self.db("remove tag", |c| {
            c.execute(
                "DELETE FROM tags WHERE tag = $3 AND repo_id =
                 (SELECT id FROM repositories WHERE upstream = $1 AND name = $2)",
                &[&repo.upstream, &repo.name, &tag],
            )?;
            Ok(())
        })
    }

    fn record_blob(&self, d: &Digest, size: u64, now_ms: i64) -> Result<()> {
        self.db("record blob", |c| {
            c.execute(
                "INSERT INTO blobs (digest, size, cached_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&d.to_string(), &(size as i64), &now_ms],
            )?;
            Ok(())
        })
    }

    fn declared_size(&self, d: &Digest) -> Result<Option<u64>> {
        self.db("declared size", |c| {
            let row = c.query_one(
                "SELECT MAX(size) FROM manifest_refs WHERE child = $1",
                &[&d.to_string()],
            )?;
            Ok(row.get::<_, Option<i64>>(0).map(|s| s.max(0) as u64))
        })
    }

    fn linked(&self, repo: &RepoKey, d: &Digest) -> Result<bool> {
        self.db("link lookup", |c| {
            let Some(id) = known_repo(c, repo)? else {
                return Ok(false);
            };
            Ok(c.query_one(LINKED, &[&id, &d.to_string()])?.get(0))
        })
    }

    fn link(&self, repo: &RepoKey, d: &Digest, now_ms: i64) -> Result<()> {
        self.db("link", |c| {
            let id = repo_id(c, repo)?;
            c.execute(
                "INSERT INTO repo_links (repo_id, digest, linked_at) VALUES ($1, $2, $3)
                 ON CONFLICT (repo_id, digest) DO NOTHING",
                &[&id, &d.to_string(), &now_ms],
            )?;
            Ok(())
        })
    }

    fn record_pulls(&self, pulls: &[Pull]) -> Result<()> {
        self.db_once("record pulls", |c| {
            let mut tx = c.transaction()?;
            for p in pulls {
                let id = repo_id(&mut tx, &p.repo)?;
                tx.execute(
                    "UPDATE images SET pull_count = pull_count + $3,
                       last_pulled = GREATEST(COALESCE(last_pulled, 0), $4)
                     WHERE repo_id = $1 AND digest = $2",
                    &[&id, &p.digest.to_string(), &(p.count as i64), &p.at_ms],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn tags(&self, repo: &RepoKey) -> Result<Vec<String>> {
        self.db("list tags", |c| {
            Ok(c.query(
                "SELECT t.tag FROM tags t JOIN repositories r ON r.id = t.repo_id
                 WHERE r.upstream = $1 AND r.name = $2 ORDER BY t.tag",
                &[&repo.upstream, &repo.name],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
        })
    }

    fn repositories(&self) -> Result<Vec<RepoKey>> {
        self.db("list repositories", |c| {
            Ok(c.query(
                "SELECT upstream, name FROM repositories r
                 WHERE EXISTS (SELECT 1 FROM images i WHERE i.repo_id = r.id)
                 ORDER BY upstream, name",
                &[],
            )?
            .iter()
            .map(|r| RepoKey {
                upstream: r.get(0),
                name: r.get(1),
            })
            .collect())
        })
    }

    fn forget_blobs(&self, digests: &[Digest]) -> Result<usize> {
        self.db("forget blobs", |c| {
            let mut tx = c.transaction()?;
            let mut n = 0;
            for d in digests {
                let s = d.to_string();
                n += tx.execute("DELETE FROM blobs WHERE digest = $1", &[&s])?;
                // As SQLite: a manifest whose bytes are gone goes, with its tags and images.
                n += tx.execute("DELETE FROM tags WHERE digest = $1", &[&s])?;
                n += tx.execute("DELETE FROM manifests WHERE digest = $1", &[&s])?;
            }
            tx.commit()?;
            Ok(n as usize)
        })
    }

    fn blob_records(&self) -> Result<Vec<(Digest, u64)>> {
        self.db("list blobs", |c| {
            c.query("SELECT digest, size FROM blobs", &[])?
                .iter()
                .map(|r| Ok((digest(r.get(0))?, r.get::<_, i64>(1) as u64)))
                .collect()
        })
    }

    fn record_events(&self, events: &[Event]) -> Result<()> {
        for e in events {
            e.log();
        }
        self.db_once("record events", |c| {
            let mut tx = c.transaction()?;
            let st = tx.prepare(
                "INSERT INTO events (at_ms, kind, reason, upstream, repository, digest, tags, bytes, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )?;
            for e in events {
                let tags = serde_json::to_string(&e.tags).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    &st,
                    &[
                        &e.at_ms,
                        &e.kind.as_str(),
                        &e.reason,
                        &e.upstream,
                        &e.repository,
                        &e.digest,
                        &tags,
                        &(e.bytes as i64),
                        &e.detail,
                    ],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn events(&self, q: &EventQuery) -> Result<Vec<Event>> {
        let limit = q.limit.unwrap_or(100).min(10_000) as i64;
        self.db("list events", |c| {
            let rows = c.query(
                "SELECT id, at_ms, kind, reason, upstream, repository, digest, tags, bytes, detail
                 FROM events
                 WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR repository = $2)
                   AND ($3::bigint IS NULL OR at_ms >= $3) AND ($5::text IS NULL OR upstream = $5)
                 ORDER BY id DESC LIMIT $4",
                &[&q.kind, &q.repository, &q.since_ms, &limit, &q.upstream],
            )?;
            rows.iter()
                .map(|r| {
                    let kind: &str = r.get(2);
                    Ok(Event {
                        id: r.get(0),
                        at_ms: r.get(1),
                        kind: kind.parse().map_err(|e| PgError::Data(format!("{e}")))?,
                        reason: r.get(3),
                        upstream: r.get(4),
                        repository: r.get(5),
                        digest: r.get(6),
                        tags: serde_json::from_str(r.get(7)).unwrap_or_default(),
                        bytes: r.get::<_, i64>(8) as u64,
                        detail: r.get(9),
                    })
                })
                .collect()
        })
    }

    fn lifecycle(&self) -> &dyn crate::images::LifecycleIndex {
        self
    }

    fn referrers(&self) -> &dyn ReferrersIndex {
        self
    }

    fn readiness(&self) -> &dyn ReadinessIndex {
        self
    }
}

impl ReferrersIndex for PgIndex {
    fn referrers_of(&self, repo: &RepoKey, subject: &Digest) -> Result<Option<ReferrersRecord>> {
        self.db("read referrers", |c| {
            Ok(c.query_opt(
                "SELECT f.body, f.fetched_at FROM referrers f
                 JOIN repositories r ON r.id = f.repo_id
                 WHERE r.upstream = $1 AND r.name = $2 AND f.subject = $3",
                &[&repo.upstream, &repo.name, &subject.to_string()],
            )?
            .map(|r| ReferrersRecord {
                body: r.get(0),
                fetched_at_ms: r.get(1),
            }))
        })
    }

    fn record_referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
        record: &ReferrersRecord,
    ) -> Result<()> {
        self.db("record referrers", |c| {
            let mut tx = c.transaction()?;
            let id = repo_id(&mut tx, repo)?;
            tx.execute(
                "INSERT INTO referrers (repo_id, subject, body, fetched_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (repo_id, subject) DO UPDATE SET body = $3, fetched_at = $4",
                &[
                    &id,
                    &subject.to_string(),
                    &record.body,
                    &record.fetched_at_ms,
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
    }
}

fn ref_kind(s: &str) -> Option<RefKind> {
    match s {
        "manifest" => Some(RefKind::Manifest),
        "config" => Some(RefKind::Config),
        "layer" => Some(RefKind::Layer),
        _ => None,
    }
}

/// A digest readiness can use; an unparseable one is skipped and logged, as on SQLite.
fn usable(s: &str) -> Option<Digest> {
    let d = Digest::parse(s).ok();
    if d.is_none() {
        tracing::warn!(
            digest = s,
            "index holds an unparseable digest; readiness skips it"
        );
    }
    d
}

impl ReadinessIndex for PgIndex {
    fn pulled_since(&self, since_ms: i64) -> Result<Vec<PulledImage>> {
        self.db("readiness read", |c| {
            // One snapshot for the three reads.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let mut images = Vec::new();
            let mut at: HashMap<(i64, String), usize> = HashMap::new();
            for r in tx.query(
                "SELECT i.repo_id, r.upstream, r.name, i.digest, m.media_type, i.last_pulled
                 FROM images i JOIN repositories r ON r.id = i.repo_id
                 JOIN manifests m ON m.digest = i.digest
                 WHERE i.last_pulled >= $1 ORDER BY r.upstream, r.name, i.digest",
                &[&since_ms],
            )? {
                let d: String = r.get(3);
                let Some(parsed) = usable(&d) else { continue };
                at.insert((r.get(0), d), images.len());
                images.push(PulledImage {
                    repo: RepoKey {
                        upstream: r.get(1),
                        name: r.get(2),
                    },
                    digest: parsed,
                    media_type: r.get(4),
                    last_pulled_ms: r.get(5),
                    refs: Vec::new(),
                    tags: Vec::new(),
                });
            }
            for r in tx.query(
                "SELECT i.repo_id, i.digest, f.child, f.kind, f.size, f.platform
                 FROM images i JOIN manifest_refs f ON f.manifest = i.digest
                 WHERE i.last_pulled >= $1",
                &[&since_ms],
            )? {
                let Some(&i) = at.get(&(r.get(0), r.get(1))) else {
                    continue;
                };
                let (Some(d), Some(k)) = (usable(r.get(2)), ref_kind(r.get(3))) else {
                    continue;
                };
                images[i].refs.push(ManifestRef {
                    digest: d,
                    kind: k,
                    size: r.get::<_, Option<i64>>(4).map(|s| s as u64),
                    platform: r.get(5),
                });
            }
            for r in tx.query(
                "SELECT i.repo_id, i.digest, t.tag, t.confirmed_at
                 FROM images i JOIN tags t ON t.repo_id = i.repo_id AND t.digest = i.digest
                 WHERE i.last_pulled >= $1 ORDER BY t.tag",
                &[&since_ms],
            )? {
                if let Some(&i) = at.get(&(r.get(0), r.get(1))) {
                    images[i].tags.push((r.get(2), r.get(3)));
                }
            }
            tx.commit()?;
            Ok(images)
        })
    }
}
