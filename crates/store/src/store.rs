//! The blob store: content-addressed files under `blobs/<algorithm>/<2 hex>/<hex>`.
//!
//! Bytes become visible only by an atomic rename after fsync, from a temp file in the store's own
//! `tmp/` directory (same filesystem, so the rename is atomic). `tmp/` is emptied at start-up:
//! whatever is there belonged to a process that died mid-fill.

use crate::oci::Digest;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Storage for verified blobs and manifests. A shared backend (S3-compatible) implements the same
/// operations; fills always stage in a local temp file first.
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a stored blob, if present.
    fn stat(&self, digest: &Digest) -> io::Result<Option<u64>>;
    /// Opens a stored blob for positional reads.
    fn open(&self, digest: &Digest) -> io::Result<Option<StoredBlob>>;
    /// A new staging file for a fill.
    fn create_temp(&self) -> io::Result<TempBlob>;
    /// Makes verified staged bytes visible under `digest` (fsync, then atomic rename).
    fn commit(&self, temp: TempBlob, digest: &Digest) -> io::Result<()>;
    /// Removes a blob (GC, scrub quarantine); absent is not an error.
    fn delete(&self, digest: &Digest) -> io::Result<()>;
    /// Every stored blob with its size.
    fn list(&self) -> io::Result<Vec<(Digest, u64)>>;
    /// Moves a blob whose bytes do not match its name out of the way.
    fn quarantine(&self, digest: &Digest) -> io::Result<()>;
}

/// An open stored blob.
pub struct StoredBlob {
    /// The open file.
    pub file: File,
    /// Its size in bytes.
    pub size: u64,
}

/// A staging file being filled. Removed on drop unless committed.
pub struct TempBlob {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl TempBlob {
    /// The staging file (positional writes and reads are both fine while filling).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Writes `buf` at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// A second handle on the same open file, for readers tailing the fill; it stays valid
    /// after the commit renames the file.
    pub fn reader(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The filesystem store.
pub struct FsStore {
    root: PathBuf,
    counter: AtomicU64,
}

impl FsStore {
    /// Opens (creating) a store at `root` and removes leftovers in `root/tmp`.
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
        Ok(FsStore {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
        })
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
                Ok(Some(StoredBlob { file, size }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn create_temp(&self) -> io::Result<TempBlob> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.root.join("tmp").join(format!(
            "fill-{}-{n}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(TempBlob {
            path,
            file,
            committed: false,
        })
    }

    fn commit(&self, mut temp: TempBlob, digest: &Digest) -> io::Result<()> {
        temp.file.sync_all()?;
        let dest = self.path(digest);
        let dir = dest.parent().expect("blob path has a parent");
        fs::create_dir_all(dir)?;
        fs::rename(&temp.path, &dest)?;
        temp.committed = true;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn delete(&self, digest: &Digest) -> io::Result<()> {
        match fs::remove_file(self.path(digest)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
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
        fs::rename(self.path(digest), dest)
    }
}

/// Writes small verified content (manifests) in one go: staged, fsynced, renamed.
pub fn put_bytes(store: &dyn BlobStore, digest: &Digest, bytes: &[u8]) -> io::Result<()> {
    if store.stat(digest)?.is_some() {
        return Ok(());
    }
    let temp = store.create_temp()?;
    (&temp.file).write_all(bytes)?;
    store.commit(temp, digest)
}

/// Reads small content (manifests) whole.
pub fn read_bytes(store: &dyn BlobStore, digest: &Digest) -> io::Result<Option<Vec<u8>>> {
    let Some(b) = store.open(digest)? else {
        return Ok(None);
    };
    let mut buf = vec![0u8; b.size as usize];
    b.file.read_exact_at(&mut buf, 0)?;
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_is_atomic_and_temp_is_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let d = Digest::sha256_of(b"hello");
        let t = store.create_temp().unwrap();
        t.write_at(b"hello", 0).unwrap();
        assert_eq!(store.stat(&d).unwrap(), None, "not visible before commit");
        store.commit(t, &d).unwrap();
        assert_eq!(store.stat(&d).unwrap(), Some(5));
        assert_eq!(read_bytes(&store, &d).unwrap().unwrap(), b"hello");
        assert_eq!(store.list().unwrap(), vec![(d.clone(), 5)]);

        // An abandoned fill leaves nothing behind.
        let t = store.create_temp().unwrap();
        t.write_at(b"partial", 0).unwrap();
        drop(t);
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);

        // Leftovers of a crashed process vanish at the next open.
        fs::write(dir.path().join("tmp/fill-old"), b"x").unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        store.delete(&d).unwrap();
        assert_eq!(store.stat(&d).unwrap(), None);
        store.delete(&d).unwrap();
    }
}
