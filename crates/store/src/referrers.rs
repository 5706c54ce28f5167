//! Cached referrers answers: per (repository, subject digest) the referrers list last fetched
//! from upstream (through its referrers API or the `<alg>-<hex>` tag) and when, so it can be
//! served for a TTL and stale when upstream fails. A few KiB each, so they live in the index
//! database rather than the blob store; they go with their repository (foreign key cascade).

use super::index::{IndexError, RepoKey, SqliteIndex};
use crate::oci::Digest;
use rusqlite::{params, OptionalExtension};

type Result<T> = std::result::Result<T, IndexError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS referrers (
    repo_id INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    subject TEXT NOT NULL,
    body BLOB NOT NULL,
    fetched_at INTEGER NOT NULL,
    PRIMARY KEY (repo_id, subject)
);
";

/// Creates the referrers table if missing (stores made by earlier versions open unchanged).
pub fn migrate(c: &rusqlite::Connection) -> rusqlite::Result<()> {
    c.execute_batch(SCHEMA)
}

/// A cached referrers answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferrersRecord {
    /// The referrers list as an OCI image index (unfiltered).
    pub body: Vec<u8>,
    /// When upstream last gave it (unix ms).
    pub fetched_at_ms: i64,
}

/// Where referrers answers are kept.
pub trait ReferrersIndex: Send + Sync {
    /// The cached answer for `subject` in `repo`, if any.
    fn referrers_of(&self, repo: &RepoKey, subject: &Digest) -> Result<Option<ReferrersRecord>>;
    /// Stores (replacing) the answer for `subject` in `repo`.
    fn record_referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
        record: &ReferrersRecord,
    ) -> Result<()>;
}

fn wrap(op: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError {
    move |source| IndexError::new(op, source)
}

impl ReferrersIndex for SqliteIndex {
    fn referrers_of(&self, repo: &RepoKey, subject: &Digest) -> Result<Option<ReferrersRecord>> {
        self.with_conn(|c| {
            c.query_row(
                "SELECT f.body, f.fetched_at FROM referrers f
                 JOIN repositories r ON r.id = f.repo_id
                 WHERE r.upstream = ?1 AND r.name = ?2 AND f.subject = ?3",
                params![repo.upstream, repo.name, subject.to_string()],
                |r| {
                    Ok(ReferrersRecord {
                        body: r.get(0)?,
                        fetched_at_ms: r.get(1)?,
                    })
                },
            )
            .optional()
        })
        .map_err(wrap("read referrers"))
    }

    fn record_referrers(
        &self,
        repo: &RepoKey,
        subject: &Digest,
        record: &ReferrersRecord,
    ) -> Result<()> {
        self.with_conn(|c| {
            let tx = c.transaction()?;
            let id = super::index::repo_id(&tx, repo)?;
            tx.execute(
                "INSERT INTO referrers (repo_id, subject, body, fetched_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (repo_id, subject) DO UPDATE SET body = ?3, fetched_at = ?4",
                params![id, subject.to_string(), record.body, record.fetched_at_ms],
            )?;
            tx.commit()
        })
        .map_err(wrap("record referrers"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Index;

    #[test]
    fn answers_are_kept_per_repository_and_subject_and_replaced() {
        crate::test_backends::each_backend(answers_are_kept);
    }

    fn answers_are_kept(backend: &str, ix: &dyn Index) {
        eprintln!("backend: {backend}");
        let r = ix.referrers();
        let (a, b) = (RepoKey::new("up", "team/a"), RepoKey::new("up", "team/b"));
        let s = Digest::sha256_of(b"subject");
        assert_eq!(r.referrers_of(&a, &s).unwrap(), None);
        let first = ReferrersRecord {
            body: b"{\"manifests\":[]}".to_vec(),
            fetched_at_ms: 10,
        };
        r.record_referrers(&a, &s, &first).unwrap();
        assert_eq!(r.referrers_of(&a, &s).unwrap(), Some(first));
        // Another repository, or another subject, has its own answer.
        assert_eq!(r.referrers_of(&b, &s).unwrap(), None);
        assert_eq!(
            r.referrers_of(&a, &Digest::sha256_of(b"other")).unwrap(),
            None
        );
        let second = ReferrersRecord {
            body: b"{\"manifests\":[1]}".to_vec(),
            fetched_at_ms: 20,
        };
        r.record_referrers(&a, &s, &second).unwrap();
        assert_eq!(r.referrers_of(&a, &s).unwrap(), Some(second));
        // Recording referrers does not make a repository show in the catalog.
        assert!(ix.repositories().unwrap().is_empty());
    }
}
