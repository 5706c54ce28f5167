//! The filesystem backend: blobs at `blobs/<algorithm>/<2 hex>/<hex>`, staged in `tmp/` and
//! committed by fsync and an atomic rename; bad blobs moved to `quarantine/`.

use super::{BlobReader, BlobStore, BlobWriter, StoredBlob, Usage, UsageCounter, UsageObserver};
use crate::oci::Digest;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// The filesystem store.
pub struct FsStore {
    root: PathBuf,
    counter: AtomicU64,
    usage: Arc<UsageCounter>,
}

impl FsStore {
    /// Opens (creating) a store at `root`, removes leftovers in `root/tmp` and counts what it
    /// holds.
    pub fn open(root: &Path) -> io::Result<Self> {
        fs::create_dir_all(root.join("blobs"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            for e in fs::read_dir(&tmp)? {
                let _ = fs::remove_file(e?.path());
            }
        }
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(root.join("quarantine"))?;
        let mut store = FsStore {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
            usage: Arc::default(),
        };
        let listed = store.list().unwrap_or_else(|e| {
            tracing::warn!("cannot list the blob store to count it: {e}");
            Vec::new()
        });
        store.usage = Arc::new(UsageCounter::new(Usage {
            bytes: listed.iter().map(|(_, s)| s).sum(),
            blobs: listed.len() as u64,
        }));
        Ok(store)
    }

    /// Sets the observer of usage changes (the metrics) and tells it the current usage.
    pub fn observe_usage(&self, f: UsageObserver) {
        self.usage.observe(f);
    }

    /// Where a digest lives. Digests are validated hex, so the path cannot escape the root.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root
            .join("blobs")
            .join(digest.algorithm().as_str())
            .join(&hex[..2])
            .join(hex)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Removes or moves the blob at `digest`'s path, uncounting it; `Ok(false)` when absent.
    fn remove(
        &self,
        digest: &Digest,
        how: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<bool> {
        let path = self.path(digest);
        self.usage.update(|| {
            let size = match fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((false, None)),
                Err(e) => return Err(e),
            };
            match how(&path) {
                Ok(()) => Ok((true, Some((-1, size)))),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((false, None)),
                Err(e) => Err(e),
            }
        })
    }
}

impl BlobStore for FsStore {
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>> {
        match fs::metadata(self.path(digest)) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn open(&self, digest: &Digest) -> io::Result<Option<StoredBlob>> {
        match File::open(self.path(digest)) {
            Ok(file) => {
                let size = file.metadata()?.len();
                Ok(Some(StoredBlob {
                    size,
                    reader: Arc::new(FsReader(Arc::new(file))),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn begin(&self) -> io::Result<Box<dyn BlobWriter>> {
        let (path, file) = super::new_staging_file(&self.root.join("tmp"), &self.counter)?;
        Ok(Box::new(FsWriter {
            path,
            file: Arc::new(file),
            blobs: self.root.join("blobs"),
            usage: self.usage.clone(),
            done: false,
        }))
    }

    fn delete(&self, digest: &Digest) -> io::Result<()> {
        self.remove(digest, |p| fs::remove_file(p)).map(|_| ())
    }

    fn list(&self) -> io::Result<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        let blobs = self.root.join("blobs");
        for algo in fs::read_dir(&blobs)? {
            let algo = algo?;
            for prefix in fs::read_dir(algo.path())? {
                for f in fs::read_dir(prefix?.path())? {
                    let f = f?;
                    let name = format!(
                        "{}:{}",
                        algo.file_name().to_string_lossy(),
                        f.file_name().to_string_lossy()
                    );
                    // Anything that is not a valid digest name is not ours to report.
                    if let Ok(d) = Digest::parse(&name) {
                        out.push((d, f.metadata()?.len()));
                    }
                }
            }
        }
        Ok(out)
    }

    fn quarantine(&self, digest: &Digest) -> io::Result<()> {
        let dest = self.root.join("quarantine").join(format!(
            "{}-{}",
            digest.algorithm().as_str(),
            digest.hex()
        ));
        if self.remove(digest, |p| fs::rename(p, &dest))? {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{digest} is not stored"),
            ))
        }
    }

    fn usage(&self) -> Usage {
        self.usage.get()
    }
}

/// Reads of a stored or staging file: large positional reads on the blocking pool.
struct FsReader(Arc<File>);

#[async_trait]
impl BlobReader for FsReader {
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        let file = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = BytesMut::zeroed(len);
            file.read_exact_at(&mut buf, pos)?;
            Ok(buf.freeze())
        })
        .await
        .map_err(io::Error::other)?
    }

    fn read_blocking(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }

    fn file(&self) -> Option<Arc<File>> {
        Some(self.0.clone())
    }
}

/// A staging file in `tmp/`, renamed into `blobs/` on commit, removed on abort or drop.
struct FsWriter {
    path: PathBuf,
    file: Arc<File>,
    blobs: PathBuf,
    usage: Arc<UsageCounter>,
    done: bool,
}

impl BlobWriter for FsWriter {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn reader(&self) -> io::Result<Arc<dyn BlobReader>> {
        // The same open file: reads see every write and survive the rename.
        Ok(Arc::new(FsReader(self.file.clone())))
    }

    fn commit(mut self: Box<Self>, digest: &Digest) -> io::Result<()> {
        self.file.sync_all()?;
        let size = self.file.metadata()?.len();
        let hex = digest.hex();
        let dir = self.blobs.join(digest.algorithm().as_str()).join(&hex[..2]);
        let dest = dir.join(hex);
        fs::create_dir_all(&dir)?;
        let usage = self.usage.clone();
        usage.update(|| {
            // Same digest, same bytes: an existing blob is not counted twice.
            let existed = dest.exists();
            fs::rename(&self.path, &dest)?;
            self.done = true;
            Ok(((), (!existed).then_some((1, size))))
        })?;
        // Make the rename itself durable.
        File::open(&dir)?.sync_all()?;
        Ok(())
    }

    fn abort(self: Box<Self>) {
        // Drop removes the file.
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{put_bytes, read_bytes};
    use std::sync::Mutex;

    #[test]
    fn commit_is_atomic_and_temp_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"hello");
        let t = store.begin().unwrap();
        t.write_at(b"hello", 0).unwrap();
        assert_eq!(store.stat(&d).unwrap(), None, "not visible before commit");
        t.commit(&d).unwrap();
        assert_eq!(store.stat(&d).unwrap(), Some(5));
        assert_eq!(read_bytes(&store, &d).unwrap().unwrap(), b"hello");
        assert_eq!(store.list().unwrap(), vec![(d.clone(), 5)]);

        // An abandoned fill leaves nothing behind, dropped or aborted.
        let t = store.begin().unwrap();
        t.write_at(b"partial", 0).unwrap();
        drop(t);
        let t = store.begin().unwrap();
        t.write_at(b"partial", 0).unwrap();
        t.abort();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);

        // Leftovers of a crashed process vanish at the next open.
        fs::write(dir.path().join("tmp/fill-old"), b"x").unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        store.delete(&d).unwrap();
        assert_eq!(store.stat(&d).unwrap(), None);
        store.delete(&d).unwrap();
    }

    #[test]
    fn usage_is_counted_at_open_and_kept_on_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let (a, b) = (Digest::sha256_of(b"aaa"), Digest::sha256_of(b"bbbbb"));
        put_bytes(&store, &a, b"aaa").unwrap();
        put_bytes(&store, &b, b"bbbbb").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        store.observe_usage(Box::new(move |u| s2.lock().unwrap().push(u)));
        assert_eq!(store.usage(), Usage { bytes: 8, blobs: 2 });

        // Committing a digest already stored counts nothing.
        let w = store.begin().unwrap();
        w.write_at(b"aaa", 0).unwrap();
        w.commit(&a).unwrap();
        assert_eq!(store.usage(), Usage { bytes: 8, blobs: 2 });

        store.delete(&a).unwrap();
        store.delete(&a).unwrap();
        assert_eq!(store.usage(), Usage { bytes: 5, blobs: 1 });
        store.quarantine(&b).unwrap();
        assert_eq!(store.usage(), Usage::default());
        assert_eq!(
            seen.lock().unwrap().last().copied(),
            Some(Usage::default()),
            "the observer heard every change"
        );

        put_bytes(&store, &a, b"aaa").unwrap();
        drop(store);
        let store = FsStore::open(dir.path()).unwrap();
        assert_eq!(store.usage(), Usage { bytes: 3, blobs: 1 });
    }

    #[tokio::test]
    async fn a_tailing_reader_reads_before_and_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"hello world");
        let w = store.begin().unwrap();
        let r = w.reader().unwrap();
        w.write_at(b"hello", 0).unwrap();
        assert_eq!(&r.read_at(0, 5).await.unwrap()[..], b"hello");
        w.write_at(b" world", 5).unwrap();
        w.commit(&d).unwrap();
        assert_eq!(&r.read_at(6, 5).await.unwrap()[..], b"world");
        let b = store.open(&d).unwrap().unwrap();
        assert_eq!(b.size, 11);
        assert_eq!(&b.reader.read_at(0, 11).await.unwrap()[..], b"hello world");
    }
}
