//! What outage readiness reads of the index: the images pulled since a time, each with its
//! manifest's media type, the references it records (child manifests, config, layers) and the
//! tags that point at it. Three indexed queries on one read transaction; whether the bytes are
//! in the store is the caller's question.

use super::index::{IndexError, SqliteIndex};
use crate::oci::manifest::{RefKind, Reference};
use crate::oci::{Digest, RepoKey};
use rusqlite::{params, Connection};
use std::collections::HashMap;

type Result<T> = std::result::Result<T, IndexError>;

/// An image (one manifest in one repository) pulled within the window asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// Repository it was pulled from.
    pub repo: RepoKey,
    /// Manifest digest.
    pub digest: Digest,
    /// The manifest's media type (an index, or an image manifest).
    pub media_type: String,
    /// When last pulled (unix ms).
    pub last_pulled_ms: i64,
    /// Child manifests (of an index), config and layers, as recorded when it was cached.
    pub refs: Vec<Reference>,
    /// Tags of this repository pointing at it, with when upstream last confirmed each (ms).
    pub tags: Vec<(String, i64)>,
}

/// Index reads for outage readiness.
pub trait ReadinessIndex {
    /// Every image pulled at or after `since_ms`, ordered by repository and digest. Rows whose
    /// stored digests do not parse are skipped (logged): the index never writes such rows.
    fn pulled_since(&self, since_ms: i64) -> Result<Vec<PulledImage>>;
}

impl ReadinessIndex for SqliteIndex {
    fn pulled_since(&self, since_ms: i64) -> Result<Vec<PulledImage>> {
        self.with_conn(|c| read(c, since_ms))
            .map_err(|e| IndexError::new("readiness read", e))
    }
}

fn kind(s: &str) -> Option<RefKind> {
    match s {
        "manifest" => Some(RefKind::Manifest),
        "config" => Some(RefKind::Config),
        "layer" => Some(RefKind::Layer),
        _ => None,
    }
}

fn digest(s: &str) -> Option<Digest> {
    let d = Digest::parse(s).ok();
    if d.is_none() {
        tracing::warn!(
            digest = s,
            "index holds an unparseable digest; readiness skips it"
        );
    }
    d
}

fn read(c: &mut Connection, since_ms: i64) -> rusqlite::Result<Vec<PulledImage>> {
    let tx = c.transaction()?;
    let mut images = Vec::new();
    // (repo_id, digest) → position in `images`.
    let mut at: HashMap<(i64, String), usize> = HashMap::new();
    {
        let mut st = tx.prepare(
            "SELECT i.repo_id, r.upstream, r.name, i.digest, m.media_type, i.last_pulled
             FROM images i JOIN repositories r ON r.id = i.repo_id
             JOIN manifests m ON m.digest = i.digest
             WHERE i.last_pulled >= ?1 ORDER BY r.upstream, r.name, i.digest",
        )?;
        let mut rows = st.query(params![since_ms])?;
        while let Some(r) = rows.next()? {
            let d: String = r.get(3)?;
            let Some(parsed) = digest(&d) else { continue };
            at.insert((r.get(0)?, d), images.len());
            images.push(PulledImage {
                repo: RepoKey {
                    upstream: r.get(1)?,
                    name: r.get(2)?,
                },
                digest: parsed,
                media_type: r.get(4)?,
                last_pulled_ms: r.get(5)?,
                refs: Vec::new(),
                tags: Vec::new(),
            });
        }
    }
    {
        let mut st = tx.prepare(
            "SELECT i.repo_id, i.digest, f.child, f.kind, f.size, f.platform
             FROM images i JOIN manifest_refs f ON f.manifest = i.digest
             WHERE i.last_pulled >= ?1",
        )?;
        let mut rows = st.query(params![since_ms])?;
        while let Some(r) = rows.next()? {
            let Some(&i) = at.get(&(r.get(0)?, r.get(1)?)) else {
                continue;
            };
            let child: String = r.get(2)?;
            let (Some(d), Some(k)) = (digest(&child), kind(&r.get::<_, String>(3)?)) else {
                continue;
            };
            images[i].refs.push(Reference {
                digest: d,
                kind: k,
                size: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
                platform: r.get(5)?,
            });
        }
    }
    {
        let mut st = tx.prepare(
            "SELECT i.repo_id, i.digest, t.tag, t.confirmed_at
             FROM images i JOIN tags t ON t.repo_id = i.repo_id AND t.digest = i.digest
             WHERE i.last_pulled >= ?1 ORDER BY t.tag",
        )?;
        let mut rows = st.query(params![since_ms])?;
        while let Some(r) = rows.next()? {
            if let Some(&i) = at.get(&(r.get(0)?, r.get(1)?)) {
                images[i].tags.push((r.get(2)?, r.get(3)?));
            }
        }
    }
    tx.commit()?;
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{Index, ManifestRecord, Pull};

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    fn r(digest: Digest, kind: RefKind, platform: Option<&str>) -> Reference {
        Reference {
            digest,
            kind,
            size: Some(7),
            platform: platform.map(str::to_string),
        }
    }

    #[test]
    fn pulled_images_come_with_refs_and_tags_and_the_window_is_honoured() {
        crate::test_backends::each_backend(pulled_images);
    }

    fn pulled_images(backend: &str, ix: &dyn Index) {
        eprintln!("backend: {backend}");
        let repo = RepoKey {
            upstream: "local".into(),
            name: "app".into(),
        };
        let m = |digest: Digest, mt: &str| ManifestRecord {
            digest,
            media_type: mt.into(),
            size: 10,
        };
        let idx = "application/vnd.oci.image.index.v1+json";
        let img = "application/vnd.oci.image.manifest.v1+json";
        ix.record_manifest(
            &repo,
            &m(d('a'), idx),
            &[
                r(d('b'), RefKind::Manifest, Some("linux/amd64")),
                r(d('c'), RefKind::Manifest, Some("linux/arm64")),
            ],
            Some("1"),
            100,
        )
        .unwrap();
        ix.record_manifest(
            &repo,
            &m(d('b'), img),
            &[
                r(d('e'), RefKind::Config, None),
                r(d('f'), RefKind::Layer, None),
            ],
            None,
            100,
        )
        .unwrap();
        // Cached but pulled before the window: not reported.
        ix.record_manifest(&repo, &m(d('c'), img), &[], None, 100)
            .unwrap();
        let pull = |digest: Digest, at_ms: i64| Pull {
            repo: repo.clone(),
            digest,
            count: 1,
            at_ms,
        };
        ix.record_pulls(&[pull(d('a'), 2_000), pull(d('b'), 2_000), pull(d('c'), 500)])
            .unwrap();

        let got = ix.readiness().pulled_since(1_000).unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].digest, d('a'));
        assert_eq!(got[0].media_type, idx);
        assert_eq!(got[0].tags, vec![("1".to_string(), 100)]);
        assert_eq!(got[0].refs.len(), 2);
        assert_eq!(got[1].digest, d('b'));
        assert_eq!(got[1].last_pulled_ms, 2_000);
        assert!(got[1].tags.is_empty());
        let kinds: Vec<_> = got[1].refs.iter().map(|r| r.kind).collect();
        assert!(kinds.contains(&RefKind::Config) && kinds.contains(&RefKind::Layer));
        assert_eq!(ix.readiness().pulled_since(3_000).unwrap().len(), 0);
        assert_eq!(ix.readiness().pulled_since(0).unwrap().len(), 3);
    }
}
