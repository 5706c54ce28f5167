//! The optional local disk tier of the S3 backend: blobs kept on the node (a filesystem store
//! under `<root>/hot`), served before the bucket, the least recently used evicted beyond a byte
//! limit. Filled from a fill's verified staging file at commit (a hard link, no copy) and, in
//! the background, from the bucket when a blob is read there (hashed again before it is kept).
//! It is a cache of the bucket: losing it costs reads, never blobs.

use crate::oci::{Digest, Hasher};
use crate::store::{BlobStore, FsStore, StoredBlob};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Mutex;

/// The local tier.
pub(super) struct HotTier {
    store: FsStore,
    limit: u64,
    lru: Mutex<Lru>,
}

#[derive(Default)]
struct Lru {
    tick: u64,
    bytes: u64,
    /// Size and last use of every blob held.
    entries: HashMap<Digest, (u64, u64)>,
    /// Blobs being copied in from the bucket now (each copied once).
    copying: HashSet<Digest>,
}

impl HotTier {
    /// Opens the tier at `dir`, keeping what it holds (as least recently used).
    pub(super) fn open(dir: &Path, limit: u64) -> io::Result<Self> {
        let store = FsStore::open(dir)?;
        let mut lru = Lru::default();
        for (d, size) in store.list()? {
            lru.bytes += size;
            lru.entries.insert(d, (size, 0));
        }
        let tier = HotTier {
            store,
            limit,
            lru: Mutex::new(lru),
        };
        tier.evict();
        Ok(tier)
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The blob, when held here (and marks it used).
    pub(super) fn open_blob(&self, digest: &Digest) -> Option<StoredBlob> {
        {
            let mut lru = self.lru();
            lru.tick += 1;
            let tick = lru.tick;
            lru.entries.get_mut(digest)?.1 = tick;
        }
        self.store.open(digest).ok().flatten()
    }

    /// Keeps a verified staging file under `digest` (hard-linked; copied across filesystems).
    pub(super) fn keep_staged(&self, staged: &Path, digest: &Digest, size: u64) {
        if size > self.limit || self.lru().entries.contains_key(digest) {
            return;
        }
        let dest = self.store.path(digest);
        let linked = dest
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| {
                fs::hard_link(staged, &dest).or_else(|_| fs::copy(staged, &dest).map(drop))
            });
        match linked {
            Ok(()) => self.added(digest, size),
            Err(e) => tracing::debug!(%digest, "not kept on the local tier: {e}"),
        }
    }

    /// Claims the copy of `digest` from the bucket; false when it is held or being copied.
    pub(super) fn start_copy(&self, digest: &Digest, size: u64) -> bool {
        let mut lru = self.lru();
        size <= self.limit
            && !lru.entries.contains_key(digest)
            && lru.copying.insert(digest.clone())
    }

    /// Keeps the bytes read from the bucket if they hash to `digest`; ends the claim (taken
    /// with `start_copy`) either way.
    pub(super) async fn copy<S, E>(&self, digest: &Digest, mut chunks: S)
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let kept = async {
            let mut h = Hasher::new(digest.algorithm());
            let w = self.store.begin()?;
            let mut pos = 0;
            while let Some(c) = chunks.next().await {
                let c = c.map_err(|e| io::Error::other(e.to_string()))?;
                h.update(&c);
                w.write_at(&c, pos)?;
                pos += c.len() as u64;
            }
            if &h.finish() != digest {
                return Err(io::Error::other(
                    "bytes in the bucket do not match their key",
                ));
            }
            w.commit(digest)?;
            Ok(pos)
        }
        .await;
        self.lru().copying.remove(digest);
        match kept {
            Ok(size) => self.added(digest, size),
            Err(e) => tracing::warn!(%digest, "not copied to the local tier: {e}"),
        }
    }

    /// Drops `digest` from the tier (deleted or quarantined in the bucket).
    pub(super) fn remove(&self, digest: &Digest) {
        let mut lru = self.lru();
        if let Some((size, _)) = lru.entries.remove(digest) {
            lru.bytes -= size;
        }
        let _ = self.store.delete(digest);
    }

    fn added(&self, digest: &Digest, size: u64) {
        {
            let mut lru = self.lru();
            lru.tick += 1;
            let tick = lru.tick;
            if lru.entries.insert(digest.clone(), (size, tick)).is_none() {
                lru.bytes += size;
            }
        }
        self.evict();
    }

    /// Deletes least recently used blobs until the tier fits its limit. Readers with the file
    /// open keep reading it.
    fn evict(&self) {
        let mut lru = self.lru();
        while lru.bytes > self.limit {
            let Some(oldest) = lru
                .entries
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            if let Some((size, _)) = lru.entries.remove(&oldest) {
                lru.bytes -= size;
            }
            let _ = self.store.delete(&oldest);
        }
    }

    /// Bytes held (for tests).
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.lru().bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn copy(tier: &HotTier, d: &Digest, chunks: &[&'static str]) {
        let s = futures_util::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, io::Error>(Bytes::from_static(c.as_bytes())))
                .collect::<Vec<_>>(),
        );
        tier.copy(d, s).await;
    }

    #[tokio::test]
    async fn keeps_verified_blobs_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let tier = HotTier::open(&dir.path().join("hot"), 10).unwrap();
        let (a, b, c) = (b"aaaa".as_slice(), b"bbbb".as_slice(), b"cccc".as_slice());
        let (da, db, dc) = (
            Digest::sha256_of(a),
            Digest::sha256_of(b),
            Digest::sha256_of(c),
        );
        let staged = dir.path().join("staged");
        fs::write(&staged, a).unwrap();
        tier.keep_staged(&staged, &da, 4);
        assert!(tier.start_copy(&db, 4));
        assert!(!tier.start_copy(&db, 4), "one copy at a time");
        copy(&tier, &db, &["bb", "bb"]).await;
        assert_eq!(tier.bytes(), 8);
        // `a` is used, so `b` is the one evicted when `c` arrives.
        assert!(tier.open_blob(&da).is_some());
        assert!(tier.start_copy(&dc, 4));
        copy(&tier, &dc, &["cccc"]).await;
        assert!(tier.open_blob(&db).is_none());
        assert!(tier.open_blob(&da).is_some() && tier.open_blob(&dc).is_some());
        assert_eq!(tier.bytes(), 8);

        // Bytes that do not match their key are not kept; blobs above the limit are not tried.
        let dd = Digest::sha256_of(b"dddd");
        assert!(tier.start_copy(&dd, 4));
        copy(&tier, &dd, &["xxxx"]).await;
        assert!(tier.open_blob(&dd).is_none());
        assert!(!tier.start_copy(&Digest::sha256_of(b"big"), 11));

        // What the tier holds survives a restart; a smaller limit evicts at open.
        drop(tier);
        let tier = HotTier::open(&dir.path().join("hot"), 4).unwrap();
        assert_eq!(tier.bytes(), 4);
        tier.remove(&da);
        tier.remove(&dc);
        assert_eq!(tier.bytes(), 0);
    }
}
