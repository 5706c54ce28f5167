//! [`LifecycleIndex`] on PostgreSQL: the snapshot (one repeatable-read transaction, rows
//! streamed), image removal and archiving, the GC re-check of one blob, pins and policies —
//! the queries of `images.rs` in PostgreSQL's dialect.

use super::{digest, PgError, PgIndex};
use crate::images::{
    Claim, ClaimLimits, ImageKey, ImageRow, LifecycleIndex, PinRow, RemovedImage, SnapshotSink,
    StoredPolicy,
};
use crate::index::IndexError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::Transaction;

type Result<T> = std::result::Result<T, IndexError>;

/// As `images.rs`'s `ORPHAN_MANIFEST`.
const ORPHAN_MANIFEST: &str = "DELETE FROM manifests WHERE digest = $1
    AND NOT EXISTS (SELECT 1 FROM images WHERE digest = $1)
    AND NOT EXISTS (SELECT 1 FROM manifest_refs r JOIN images i ON i.digest = r.manifest
                    WHERE r.child = $1)";

/// As `images.rs`'s `REFERENCED_SINCE`.
const REFERENCED_SINCE: &str = "WITH RECURSIVE up(d) AS (
        SELECT $1::text COLLATE \"C\"
        UNION SELECT r.manifest FROM manifest_refs r JOIN up ON r.child = up.d)
    SELECT EXISTS (SELECT 1 FROM up JOIN manifests m ON m.digest = up.d WHERE m.cached_at >= $2)
        OR EXISTS (SELECT 1 FROM up JOIN images i ON i.digest = up.d WHERE i.first_cached >= $2)
        OR EXISTS (SELECT 1 FROM images WHERE digest = $1)";

/// Streams one query's rows into `each` without holding them all.
fn stream(
    tx: &mut Transaction<'_>,
    sql: &str,
    mut each: impl FnMut(&postgres::Row),
) -> std::result::Result<(), PgError> {
    let mut rows = tx.query_raw(sql, std::iter::empty::<&dyn ToSql>())?;
    while let Some(r) = rows.next()? {
        each(&r);
    }
    Ok(())
}

fn snapshot(
    tx: &mut Transaction<'_>,
    sink: &mut dyn SnapshotSink,
) -> std::result::Result<(), PgError> {
    let size = |v: i64| v.max(0) as u64;
    stream(tx, "SELECT id, upstream, name FROM repositories", |r| {
        sink.repository(r.get(0), r.get(1), r.get(2))
    })?;
    stream(
        tx,
        "SELECT digest, media_type, size, cached_at FROM manifests",
        |r| sink.manifest(r.get(0), r.get(1), size(r.get(2)), r.get(3)),
    )?;
    stream(
        tx,
        "SELECT manifest, child, kind, size, platform FROM manifest_refs",
        |r| {
            let s: Option<i64> = r.get(3);
            sink.reference(r.get(0), r.get(1), r.get(2), s.map(size), r.get(4))
        },
    )?;
    stream(tx, "SELECT digest, size, cached_at FROM blobs", |r| {
        sink.blob(r.get(0), size(r.get(1)), r.get(2))
    })?;
    stream(
        tx,
        "SELECT repo_id, digest, first_cached, last_pulled, pull_count, storage_class,
                transitioned_at FROM images",
        |r| {
            sink.image(&ImageRow {
                repo_id: r.get(0),
                digest: r.get(1),
                first_cached_ms: r.get(2),
                last_pulled_ms: r.get(3),
                pull_count: size(r.get(4)),
                storage_class: r.get(5),
                transitioned_at_ms: r.get(6),
            })
        },
    )?;
    stream(tx, "SELECT repo_id, digest, tag FROM tags", |r| {
        sink.tag(r.get(0), r.get(1), r.get(2))
    })
}

fn claim(
    tx: &mut Transaction<'_>,
    d: &str,
    size: u64,
    l: &ClaimLimits,
) -> std::result::Result<Claim, PgError> {
    // The row lock serialises two replicas' GC on the same blob; a fill's `record_blob` of a
    // new blob meanwhile hits the primary key instead.
    let cached: Option<i64> = tx
        .query_opt(
            "SELECT cached_at FROM blobs WHERE digest = $1 FOR UPDATE",
            &[&d],
        )?
        .map(|r| r.get(0));
    match cached {
        None => {
            tx.execute(
                "INSERT INTO blobs (digest, size, cached_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&d, &(size as i64), &l.now_ms],
            )?;
            Ok(Claim::Adopted)
        }
        Some(t) if t > l.committed_after_ms => Ok(Claim::Recent),
        Some(_) => {
            let referenced: bool = tx
                .query_one(REFERENCED_SINCE, &[&d, &l.recorded_since_ms])?
                .get(0);
            let is_manifest: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM manifests WHERE digest = $1)",
                    &[&d],
                )?
                .get(0);
            if referenced || (is_manifest && tx.execute(ORPHAN_MANIFEST, &[&d])? == 0) {
                // The caller rolls back (drops the transaction) for this outcome.
                return Ok(Claim::Referenced);
            }
            tx.execute("DELETE FROM blobs WHERE digest = $1", &[&d])?;
            Ok(Claim::Forgotten {
                manifest: is_manifest,
            })
        }
    }
}

fn remove(
    tx: &mut Transaction<'_>,
    images: &[ImageKey],
) -> std::result::Result<Vec<RemovedImage>, PgError> {
    let mut out = Vec::with_capacity(images.len());
    let tags_of =
        tx.prepare("SELECT tag FROM tags WHERE repo_id = $1 AND digest = $2 ORDER BY tag")?;
    let del_tags = tx.prepare("DELETE FROM tags WHERE repo_id = $1 AND digest = $2")?;
    let del_image = tx.prepare("DELETE FROM images WHERE repo_id = $1 AND digest = $2")?;
    for k in images {
        let d = k.digest.to_string();
        let tags = tx
            .query(&tags_of, &[&k.repo_id, &d])?
            .iter()
            .map(|r| r.get(0))
            .collect();
        tx.execute(&del_tags, &[&k.repo_id, &d])?;
        if tx.execute(&del_image, &[&k.repo_id, &d])? == 0 {
            continue;
        }
        out.push(RemovedImage {
            key: k.clone(),
            tags,
            manifest_removed: false,
        });
    }
    // As on SQLite: a removed parent may orphan a child listed before it; repeat until stable.
    let del_manifest = tx.prepare(ORPHAN_MANIFEST)?;
    loop {
        let mut progress = false;
        for r in out.iter_mut().filter(|r| !r.manifest_removed) {
            r.manifest_removed = tx.execute(&del_manifest, &[&r.key.digest.to_string()])? > 0;
            progress |= r.manifest_removed;
        }
        if !progress {
            break;
        }
    }
    Ok(out)
}

impl LifecycleIndex for PgIndex {
    fn snapshot(&self, sink: &mut dyn SnapshotSink) -> Result<()> {
        self.db("read lifecycle snapshot", |c| {
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            snapshot(&mut tx, sink)?;
            tx.commit()?;
            Ok(())
        })
    }

    fn remove_images(&self, images: &[ImageKey]) -> Result<Vec<RemovedImage>> {
        self.db("remove images", |c| {
            let mut tx = c.transaction()?;
            let out = remove(&mut tx, images)?;
            tx.commit()?;
            Ok(out)
        })
    }

    fn set_storage_class(
        &self,
        images: &[ImageKey],
        class: &str,
        at_ms: Option<i64>,
    ) -> Result<usize> {
        self.db("set storage class", |c| {
            let mut tx = c.transaction()?;
            let st = tx.prepare(
                "UPDATE images SET storage_class = $3, transitioned_at = $4
                 WHERE repo_id = $1 AND digest = $2",
            )?;
            let mut n = 0;
            for k in images {
                n += tx.execute(&st, &[&k.repo_id, &k.digest.to_string(), &class, &at_ms])?;
            }
            tx.commit()?;
            Ok(n as usize)
        })
    }

    fn restore_images(&self, images: &[(ImageKey, i64)]) -> Result<usize> {
        self.db("restore images", |c| {
            let mut tx = c.transaction()?;
            let st = tx.prepare(
                "UPDATE images SET storage_class = 'standard', transitioned_at = NULL,
                   first_cached = $3
                 WHERE repo_id = $1 AND digest = $2 AND storage_class = 'archive'",
            )?;
            let mut n = 0;
            for (k, at) in images {
                n += tx.execute(&st, &[&k.repo_id, &k.digest.to_string(), at])?;
            }
            tx.commit()?;
            Ok(n as usize)
        })
    }

    fn claim_for_deletion(&self, d: &str, size: u64, limits: &ClaimLimits) -> Result<Claim> {
        self.db("re-check blob for GC", |c| {
            let mut tx = c.transaction()?;
            let outcome = claim(&mut tx, d, size, limits)?;
            if outcome != Claim::Referenced {
                tx.commit()?;
            }
            Ok(outcome)
        })
    }

    fn forget_missing_blobs(&self, digests: &[String], before_ms: i64) -> Result<usize> {
        self.db("forget missing blobs", |c| {
            let mut tx = c.transaction()?;
            let st = tx.prepare("DELETE FROM blobs WHERE digest = $1 AND cached_at < $2")?;
            let mut n = 0;
            for d in digests {
                n += tx.execute(&st, &[d, &before_ms])?;
            }
            tx.commit()?;
            Ok(n as usize)
        })
    }

    fn pins(&self) -> Result<Vec<PinRow>> {
        self.db("list pins", |c| {
            c.query(
                "SELECT target, repository, digest, created_ms, note FROM pins ORDER BY target",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(PinRow {
                    target: r.get(0),
                    repository: r.get(1),
                    digest: r.get::<_, Option<&str>>(2).map(digest).transpose()?,
                    created_ms: r.get(3),
                    note: r.get(4),
                })
            })
            .collect()
        })
    }

    fn put_pin(&self, p: &PinRow) -> Result<()> {
        self.db("add pin", |c| {
            c.execute(
                "INSERT INTO pins (target, repository, digest, created_ms, note)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (target) DO UPDATE SET note = excluded.note",
                &[
                    &p.target,
                    &p.repository,
                    &p.digest.as_ref().map(|d| d.to_string()),
                    &p.created_ms,
                    &p.note,
                ],
            )?;
            Ok(())
        })
    }

    fn remove_pin(&self, target: &str) -> Result<bool> {
        self.db("remove pin", |c| {
            Ok(c.execute("DELETE FROM pins WHERE target = $1", &[&target])? > 0)
        })
    }

    fn policies(&self) -> Result<Vec<StoredPolicy>> {
        self.db("list lifecycle policies", |c| {
            Ok(c.query(
                "SELECT scope, policy, updated_ms FROM lifecycle_policies ORDER BY scope",
                &[],
            )?
            .iter()
            .map(|r| StoredPolicy {
                scope: r.get(0),
                policy: r.get(1),
                updated_ms: r.get(2),
            })
            .collect())
        })
    }

    fn put_policy(&self, scope: &str, policy: &str, now_ms: i64) -> Result<()> {
        self.db("set lifecycle policy", |c| {
            c.execute(
                "INSERT INTO lifecycle_policies (scope, policy, updated_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (scope) DO UPDATE SET policy = excluded.policy,
                   updated_ms = excluded.updated_ms",
                &[&scope, &policy, &now_ms],
            )?;
            Ok(())
        })
    }

    fn remove_policy(&self, scope: &str) -> Result<bool> {
        self.db("remove lifecycle policy", |c| {
            Ok(c.execute("DELETE FROM lifecycle_policies WHERE scope = $1", &[&scope])? > 0)
        })
    }
}
