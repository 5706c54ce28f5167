//! `breakwater scrub`: re-hashes every stored blob, moves aside anything whose bytes do not match
//! its name, and repairs the index so it never points at a missing or bad blob.

use super::index::SqliteIndex;
use super::store::{read_bytes, BlobStore, FsStore};
use super::Index;
use crate::oci::manifest::{digest_payload, DOCKER_V1, DOCKER_V1_SIGNED};
use crate::oci::{Digest, Hasher};
use serde::Serialize;
use std::io::Read;
use std::path::Path;

/// What a scrub found and did.
#[derive(Debug, Default, Serialize)]
pub struct ScrubReport {
    /// Blobs re-hashed.
    pub checked: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Blobs whose bytes did not match their digest (moved to `quarantine/`).
    pub bad: Vec<String>,
    /// Index records dropped because their blob was missing or bad.
    pub index_records_dropped: usize,
    /// Stored blobs the index did not know, now recorded.
    pub index_records_added: usize,
    /// Leftover staging files removed.
    pub temp_files_removed: usize,
}

/// Scrubs the store under `root` (its index at `root/index.sqlite`).
pub fn scrub(root: &Path) -> Result<ScrubReport, String> {
    let temp_files_removed = std::fs::read_dir(root.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    let store =
        FsStore::open(root).map_err(|e| format!("cannot open store {}: {e}", root.display()))?;
    let index = SqliteIndex::open(&root.join("index.sqlite")).map_err(|e| e.to_string())?;
    let mut report = scrub_store(&store, &index)?;
    report.temp_files_removed = temp_files_removed;
    Ok(report)
}

/// Scrubs `store` against `index`: any backends, through their interfaces.
pub fn scrub_store(store: &dyn BlobStore, index: &dyn Index) -> Result<ScrubReport, String> {
    let mut report = ScrubReport::default();
    let stored = store
        .list()
        .map_err(|e| format!("cannot list store: {e}"))?;
    let mut bad = Vec::new();
    for (digest, size) in &stored {
        report.checked += 1;
        report.bytes += size;
        let media_type = index.manifest(digest).ok().flatten().map(|m| m.media_type);
        let ok = match verify(store, digest, media_type.as_deref()) {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(%digest, "cannot read stored blob: {e}");
                false
            }
        };
        if !ok {
            store
                .quarantine(digest)
                .map_err(|e| format!("cannot quarantine {digest}: {e}"))?;
            report.bad.push(digest.to_string());
            bad.push(digest.clone());
        }
    }
    let on_disk: std::collections::HashSet<&Digest> = stored.iter().map(|(d, _)| d).collect();
    let known = index.blob_records().map_err(|e| e.to_string())?;
    let known_set: std::collections::HashSet<&Digest> = known.iter().map(|(d, _)| d).collect();
    let mut drop: Vec<Digest> = known
        .iter()
        .filter(|(d, _)| !on_disk.contains(d))
        .map(|(d, _)| d.clone())
        .collect();
    drop.extend(bad.iter().cloned());
    report.index_records_dropped = index.forget_blobs(&drop).map_err(|e| e.to_string())?;
    let now = crate::now_ms();
    for (d, size) in &stored {
        if !known_set.contains(d) && !bad.contains(d) {
            index
                .record_blob(d, *size, now)
                .map_err(|e| e.to_string())?;
            report.index_records_added += 1;
        }
    }
    Ok(report)
}

/// Whether the stored bytes hash to `digest` (for schema1 manifests: their unsigned payload).
fn verify(
    store: &dyn BlobStore,
    digest: &Digest,
    media_type: Option<&str>,
) -> std::io::Result<bool> {
    let gone = || std::io::Error::new(std::io::ErrorKind::NotFound, "the blob vanished");
    if let Some(mt) = media_type.filter(|mt| *mt == DOCKER_V1_SIGNED || *mt == DOCKER_V1) {
        let bytes = read_bytes(store, digest)?.ok_or_else(gone)?;
        return Ok(Digest::of(digest.algorithm(), &digest_payload(mt, &bytes)) == *digest);
    }
    let mut f = store.open(digest)?.ok_or_else(gone)?.into_read();
    let mut h = Hasher::new(digest.algorithm());
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish() == *digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::put_bytes;

    #[test]
    fn quarantines_bad_blobs_and_repairs_the_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let index = SqliteIndex::open(&dir.path().join("index.sqlite")).unwrap();
        let good = Digest::sha256_of(b"good");
        put_bytes(&store, &good, b"good").unwrap();
        let bad = Digest::sha256_of(b"expected");
        put_bytes(&store, &bad, b"expected").unwrap();
        std::fs::write(store.path(&bad), b"rotten").unwrap();
        let gone = Digest::sha256_of(b"gone");
        index.record_blob(&gone, 4, 1).unwrap();
        index.record_blob(&bad, 8, 1).unwrap();
        std::fs::write(dir.path().join("tmp/fill-crashed"), b"x").unwrap();
        drop((store, index));

        let r = scrub(dir.path()).unwrap();
        assert_eq!(r.checked, 2);
        assert_eq!(r.bad, vec![bad.to_string()]);
        assert_eq!(r.temp_files_removed, 1);
        assert_eq!(
            r.index_records_added, 1,
            "the good blob was unknown to the index"
        );
        assert!(
            r.index_records_dropped >= 2,
            "missing and bad records dropped: {r:?}"
        );
        assert!(dir
            .path()
            .join(format!("quarantine/sha256-{}", bad.hex()))
            .exists());
        let again = scrub(dir.path()).unwrap();
        assert!(again.bad.is_empty());
        assert_eq!(
            (again.index_records_added, again.index_records_dropped),
            (0, 0)
        );
    }
}
