//! The index tables and queries lifecycle, quota and GC need: a consistent read snapshot of
//! images, tags, manifests, references and blobs (read in `snapshot`); removal and archiving of
//! images; the GC re-check-and-forget of one blob; pins; lifecycle policies set through the
//! admin API.
//!
//! Schema additions (`images.storage_class`, `images.transitioned_at`, `pins`,
//! `lifecycle_policies`) are applied by [`migrate`] when the index opens, so stores created by
//! earlier versions open unchanged.

use super::index::{IndexError, SqliteIndex};
pub use super::snapshot::{ImageRow, SnapshotSink};
use crate::oci::Digest;
use rusqlite::{params, Connection, OptionalExtension};

type Result<T> = std::result::Result<T, IndexError>;

fn wrap(op: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError {
    move |source| IndexError::new(op, source)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pins (
    target TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    digest TEXT,
    created_ms INTEGER NOT NULL,
    note TEXT
);
CREATE TABLE IF NOT EXISTS lifecycle_policies (
    scope TEXT PRIMARY KEY,
    policy TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
";

/// Creates the lifecycle tables and adds the storage-class columns to `images` if missing.
pub fn migrate(c: &Connection) -> rusqlite::Result<()> {
    c.execute_batch(SCHEMA)?;
    let mut have = Vec::new();
    {
        let mut st = c.prepare("PRAGMA table_info(images)")?;
        let rows = st.query_map([], |r| r.get::<_, String>(1))?;
        for r in rows {
            have.push(r?);
        }
    }
    // ALTER TABLE only for columns an older store lacks; a constant default keeps it cheap.
    if !have.iter().any(|c| c == "storage_class") {
        c.execute_batch(
            "ALTER TABLE images ADD COLUMN storage_class TEXT NOT NULL DEFAULT 'standard'",
        )?;
    }
    if !have.iter().any(|c| c == "transitioned_at") {
        c.execute_batch("ALTER TABLE images ADD COLUMN transitioned_at INTEGER")?;
    }
    Ok(())
}

/// An image row's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageKey {
    /// Repository id.
    pub repo_id: i64,
    /// Manifest digest.
    pub digest: Digest,
}

/// What removing one image row took with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedImage {
    /// The row removed.
    pub key: ImageKey,
    /// Its tags, removed too.
    pub tags: Vec<String>,
    /// Whether the manifest record went as well (no other repository or manifest used it).
    pub manifest_removed: bool,
}

/// Time limits for the GC re-check of one blob.
#[derive(Debug, Clone, Copy)]
pub struct ClaimLimits {
    /// Now (unix ms); blobs without a record are recorded at this time.
    pub now_ms: i64,
    /// Blobs committed after this are in their grace period.
    pub committed_after_ms: i64,
    /// Manifests and images recorded from this time on count as references made during GC.
    pub recorded_since_ms: i64,
}

/// The outcome of the GC re-check of one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The store had it but the index did not: recorded now, collected after its grace period.
    Adopted,
    /// Committed within the grace period.
    Recent,
    /// Referenced by a manifest or image recorded since GC began, or itself an image.
    Referenced,
    /// Records removed: the caller deletes the bytes. `manifest` tells a manifest record went.
    Forgotten {
        /// A manifest record (and its references) was removed too.
        manifest: bool,
    },
}

/// A pin as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PinRow {
    /// `repository@digest` for an image, else a repository pattern.
    pub target: String,
    /// The repository (or pattern).
    pub repository: String,
    /// The image digest; `None` for a pattern pin.
    pub digest: Option<Digest>,
    /// When pinned (unix ms).
    pub created_ms: i64,
    /// Why, as given.
    pub note: Option<String>,
}

/// A lifecycle policy set through the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// `default` or a repository pattern.
    pub scope: String,
    /// The policy JSON as accepted.
    pub policy: String,
    /// When set (unix ms).
    pub updated_ms: i64,
}

/// Lifecycle, quota and GC operations on the index.
pub trait LifecycleIndex: Send + Sync {
    /// Streams one consistent snapshot to `sink`.
    fn snapshot(&self, sink: &mut dyn SnapshotSink) -> Result<()>;
    /// Removes image rows, their tags, and manifest records nothing retained uses any more.
    fn remove_images(&self, images: &[ImageKey]) -> Result<Vec<RemovedImage>>;
    /// Sets the storage class (and transition time) of image rows; returns rows changed.
    fn set_storage_class(
        &self,
        images: &[ImageKey],
        class: &str,
        at_ms: Option<i64>,
    ) -> Result<usize>;
    /// Moves archived image rows back to standard, each with its new first-cached ("pushed")
    /// time: when its bytes were cached again. Returns rows changed.
    fn restore_images(&self, images: &[(ImageKey, i64)]) -> Result<usize>;
    /// Re-checks an unmarked blob and, when it may go, forgets its records in one transaction.
    fn claim_for_deletion(&self, digest: &str, size: u64, limits: &ClaimLimits) -> Result<Claim>;
    /// Drops blob records older than `before_ms` whose bytes are not in the store.
    fn forget_missing_blobs(&self, digests: &[String], before_ms: i64) -> Result<usize>;
    /// Every pin.
    fn pins(&self) -> Result<Vec<PinRow>>;
    /// Adds (or replaces) a pin.
    fn put_pin(&self, pin: &PinRow) -> Result<()>;
    /// Removes a pin; false when there was none.
    fn remove_pin(&self, target: &str) -> Result<bool>;
    /// Every policy set through the admin API.
    fn policies(&self) -> Result<Vec<StoredPolicy>>;
    /// Sets the policy for a scope.
    fn put_policy(&self, scope: &str, policy: &str, now_ms: i64) -> Result<()>;
    /// Removes the policy for a scope; false when there was none.
    fn remove_policy(&self, scope: &str) -> Result<bool>;
}

/// True when a manifest record for `digest` may go: no image uses it and no manifest that is
/// itself an image lists it.
const ORPHAN_MANIFEST: &str = "DELETE FROM manifests WHERE digest = ?1
    AND NOT EXISTS (SELECT 1 FROM images WHERE digest = ?1)
    AND NOT EXISTS (SELECT 1 FROM manifest_refs r JOIN images i ON i.digest = r.manifest
                    WHERE r.child = ?1)";

/// Whether `?1`, or any manifest above it, was recorded (as a manifest or an image) at or after
/// `?2`: such a reference appeared after the mark and must keep the blob.
const REFERENCED_SINCE: &str = "WITH RECURSIVE up(d) AS (
        SELECT ?1 UNION SELECT r.manifest FROM manifest_refs r JOIN up ON r.child = up.d)
    SELECT EXISTS (SELECT 1 FROM up JOIN manifests m ON m.digest = up.d WHERE m.cached_at >= ?2)
        OR EXISTS (SELECT 1 FROM up JOIN images i ON i.digest = up.d WHERE i.first_cached >= ?2)
        OR EXISTS (SELECT 1 FROM images WHERE digest = ?1)";

fn claim(c: &mut Connection, digest: &str, size: u64, l: &ClaimLimits) -> rusqlite::Result<Claim> {
    let tx = c.transaction()?;
    let cached: Option<i64> = tx
        .query_row(
            "SELECT cached_at FROM blobs WHERE digest = ?1",
            params![digest],
            |r| r.get(0),
        )
        .optional()?;
    let outcome = match cached {
        // A fill records its blob just after the commit: a stored blob without a record may be
        // one of those, so it gets a record now and a full grace period.
        None => {
            tx.execute(
                "INSERT OR IGNORE INTO blobs (digest, size, cached_at) VALUES (?1, ?2, ?3)",
                params![digest, size as i64, l.now_ms],
            )?;
            Claim::Adopted
        }
        Some(t) if t > l.committed_after_ms => Claim::Recent,
        Some(_) => {
            let referenced: bool = tx.query_row(
                REFERENCED_SINCE,
                params![digest, l.recorded_since_ms],
                |r| r.get(0),
            )?;
            let is_manifest: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM manifests WHERE digest = ?1)",
                params![digest],
                |r| r.get(0),
            )?;
            // A manifest record that cannot go is still listed by an image's manifest.
            if referenced || (is_manifest && tx.execute(ORPHAN_MANIFEST, params![digest])? == 0) {
                // Dropping the transaction rolls back anything done above.
                return Ok(Claim::Referenced);
            }
            tx.execute("DELETE FROM blobs WHERE digest = ?1", params![digest])?;
            Claim::Forgotten {
                manifest: is_manifest,
            }
        }
    };
    tx.commit()?;
    Ok(outcome)
}

fn remove(c: &mut Connection, images: &[ImageKey]) -> rusqlite::Result<Vec<RemovedImage>> {
    let tx = c.transaction()?;
    let mut out = Vec::with_capacity(images.len());
    {
        let mut tags_of =
            tx.prepare("SELECT tag FROM tags WHERE repo_id = ?1 AND digest = ?2 ORDER BY tag")?;
        let mut del_tags = tx.prepare("DELETE FROM tags WHERE repo_id = ?1 AND digest = ?2")?;
        let mut del_image = tx.prepare("DELETE FROM images WHERE repo_id = ?1 AND digest = ?2")?;
        for k in images {
            let d = k.digest.to_string();
            let tags = tags_of
                .query_map(params![k.repo_id, d], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            del_tags.execute(params![k.repo_id, d])?;
            if del_image.execute(params![k.repo_id, d])? == 0 {
                continue;
            }
            out.push(RemovedImage {
                key: k.clone(),
                tags,
                manifest_removed: false,
            });
        }
        // Removing a parent's record removes its references, which may orphan a child listed
        // before it: repeat until nothing more goes.
        let mut del_manifest = tx.prepare(ORPHAN_MANIFEST)?;
        loop {
            let mut progress = false;
            for r in out.iter_mut().filter(|r| !r.manifest_removed) {
                r.manifest_removed = del_manifest.execute(params![r.key.digest.to_string()])? > 0;
                progress |= r.manifest_removed;
            }
            if !progress {
                break;
            }
        }
    }
    tx.commit()?;
    Ok(out)
}

impl LifecycleIndex for SqliteIndex {
    fn snapshot(&self, sink: &mut dyn SnapshotSink) -> Result<()> {
        super::snapshot::read(self, sink).map_err(wrap("read lifecycle snapshot"))
    }

    fn remove_images(&self, images: &[ImageKey]) -> Result<Vec<RemovedImage>> {
        self.with_conn(|c| remove(c, images))
            .map_err(wrap("remove images"))
    }

    fn set_storage_class(
        &self,
        images: &[ImageKey],
        class: &str,
        at_ms: Option<i64>,
    ) -> Result<usize> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            {
                let mut st = tx.prepare(
                    "UPDATE images SET storage_class = ?3, transitioned_at = ?4
                     WHERE repo_id = ?1 AND digest = ?2",
                )?;
                for k in images {
                    n += st.execute(params![k.repo_id, k.digest.to_string(), class, at_ms])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .map_err(wrap("set storage class"))
    }

    fn restore_images(&self, images: &[(ImageKey, i64)]) -> Result<usize> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            {
                let mut st = tx.prepare(
                    "UPDATE images SET storage_class = 'standard', transitioned_at = NULL,
                       first_cached = ?3
                     WHERE repo_id = ?1 AND digest = ?2 AND storage_class = 'archive'",
                )?;
                for (k, at) in images {
                    n += st.execute(params![k.repo_id, k.digest.to_string(), at])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .map_err(wrap("restore images"))
    }

    fn claim_for_deletion(&self, digest: &str, size: u64, limits: &ClaimLimits) -> Result<Claim> {
        self.with_conn(|c| claim(c, digest, size, limits))
            .map_err(wrap("re-check blob for GC"))
    }

    fn forget_missing_blobs(&self, digests: &[String], before_ms: i64) -> Result<usize> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            let mut n = 0;
            {
                let mut st =
                    tx.prepare("DELETE FROM blobs WHERE digest = ?1 AND cached_at < ?2")?;
                for d in digests {
                    n += st.execute(params![d, before_ms])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
        .map_err(wrap("forget missing blobs"))
    }

    fn pins(&self) -> Result<Vec<PinRow>> {
        self.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT target, repository, digest, created_ms, note FROM pins ORDER BY target",
            )?;
            let rows = st.query_map([], |r| {
                let digest = match r.get_ref(2)?.as_str_or_null()? {
                    Some(d) => Some(Digest::parse(d).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            2,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?),
                    None => None,
                };
                Ok(PinRow {
                    target: r.get(0)?,
                    repository: r.get(1)?,
                    digest,
                    created_ms: r.get(3)?,
                    note: r.get(4)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<PinRow>>>()
        })
        .map_err(wrap("list pins"))
    }

    fn put_pin(&self, p: &PinRow) -> Result<()> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO pins (target, repository, digest, created_ms, note)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (target) DO UPDATE SET note = excluded.note",
                params![
                    p.target,
                    p.repository,
                    p.digest.as_ref().map(Digest::to_string),
                    p.created_ms,
                    p.note
                ],
            )
        })
        .map(|_| ())
        .map_err(wrap("add pin"))
    }

    fn remove_pin(&self, target: &str) -> Result<bool> {
        self.with_conn(|c| c.execute("DELETE FROM pins WHERE target = ?1", params![target]))
            .map(|n| n > 0)
            .map_err(wrap("remove pin"))
    }

    fn policies(&self) -> Result<Vec<StoredPolicy>> {
        self.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT scope, policy, updated_ms FROM lifecycle_policies ORDER BY scope",
            )?;
            let rows = st.query_map([], |r| {
                Ok(StoredPolicy {
                    scope: r.get(0)?,
                    policy: r.get(1)?,
                    updated_ms: r.get(2)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<StoredPolicy>>>()
        })
        .map_err(wrap("list lifecycle policies"))
    }

    fn put_policy(&self, scope: &str, policy: &str, now_ms: i64) -> Result<()> {
        self.with_conn(|c| {
            c.execute(
                "INSERT INTO lifecycle_policies (scope, policy, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (scope) DO UPDATE SET policy = excluded.policy,
                   updated_ms = excluded.updated_ms",
                params![scope, policy, now_ms],
            )
        })
        .map(|_| ())
        .map_err(wrap("set lifecycle policy"))
    }

    fn remove_policy(&self, scope: &str) -> Result<bool> {
        self.with_conn(|c| {
            c.execute(
                "DELETE FROM lifecycle_policies WHERE scope = ?1",
                params![scope],
            )
        })
        .map(|n| n > 0)
        .map_err(wrap("remove lifecycle policy"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Index;

    #[test]
    fn an_index_from_before_lifecycle_opens_and_gains_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        {
            // The images table as the first release created it, with a row.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE repositories (id INTEGER PRIMARY KEY, upstream TEXT NOT NULL,
                   name TEXT NOT NULL, UNIQUE (upstream, name));
                 CREATE TABLE manifests (digest TEXT PRIMARY KEY, media_type TEXT NOT NULL,
                   size INTEGER NOT NULL, cached_at INTEGER NOT NULL);
                 CREATE TABLE images (repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
                   digest TEXT NOT NULL REFERENCES manifests(digest) ON DELETE CASCADE,
                   first_cached INTEGER NOT NULL, last_pulled INTEGER,
                   pull_count INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (repo_id, digest));
                 INSERT INTO repositories VALUES (1, 'docker.io', 'library/nginx');
                 INSERT INTO manifests VALUES ('sha256:aa', 'x', 1, 5);
                 INSERT INTO images VALUES (1, 'sha256:aa', 5, NULL, 0);",
            )
            .unwrap();
        }
        let ix = SqliteIndex::open(&path).unwrap();
        struct Rows(Vec<(String, Option<i64>)>);
        impl SnapshotSink for Rows {
            fn repository(&mut self, _: i64, _: &str, _: &str) {}
            fn manifest(&mut self, _: &str, _: &str, _: u64, _: i64) {}
            fn reference(&mut self, _: &str, _: &str, _: &str, _: Option<u64>, _: Option<&str>) {}
            fn blob(&mut self, _: &str, _: u64, _: i64) {}
            fn image(&mut self, r: &ImageRow<'_>) {
                self.0
                    .push((r.storage_class.to_string(), r.transitioned_at_ms));
            }
            fn tag(&mut self, _: i64, _: &str, _: &str) {}
        }
        let mut rows = Rows(Vec::new());
        ix.lifecycle().snapshot(&mut rows).unwrap();
        assert_eq!(rows.0, vec![("standard".to_string(), None)]);
        // Opening again is a no-op.
        drop(ix);
        SqliteIndex::open(&path).unwrap();
    }
}
