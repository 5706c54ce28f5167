//! Layer analysis: one streaming pass over a layer blob (gzip, zstd or plain tar) that
//! catalogs the interesting files as they go by and records the whiteouts, opaque
//! directories, symlinks and shadowing paths that merging layers needs. Nothing is
//! unpacked to disk and only one interesting file at a time is held in memory.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use memchr::memmem;
use serde::{Deserialize, Serialize};

use crate::catalog::{self, golang, Cataloged, FileKind, Limit, OsRelease, Package};

/// Bumped whenever analysis output can change, so cached `LayerAnalysis` values are redone.
pub const ANALYZER_VERSION: u32 = 1;
/// Largest package database read (dpkg status, rpmdb, apk installed).
pub const MAX_DATABASE_BYTES: u64 = 64 << 20;
/// Largest manifest read (os-release, METADATA, package.json, Cargo.lock, status.d).
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;
/// Largest jar/war/ear read into memory.
pub const MAX_ARCHIVE_BYTES: u64 = 64 << 20;
/// Largest ELF file read whole; bigger ones are only stream-searched for Go build info.
pub const MAX_BINARY_BYTES: u64 = 64 << 20;
/// How much of a stream-searched binary is kept after the Go build info magic.
const GO_BLOB_BYTES: usize = 1 << 20;
/// Most memory reserved before a file's bytes arrive: a tar header's size is the layer's claim,
/// not bytes in hand, so a buffer grows past this only as the content really comes in.
const PREALLOC_BYTES: u64 = 1 << 20;
/// Executables smaller than this cannot hold Go or cargo-auditable data worth finding.
const MIN_BINARY_BYTES: u64 = 64;

/// How the layer blob was compressed, detected from its magic bytes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Compression {
    /// gzip (`1f 8b`), possibly multi-member.
    Gzip,
    /// zstd (`28 b5 2f fd`).
    Zstd,
    /// Plain tar.
    None,
}

/// What cataloging one file produced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// An os-release file.
    Os(OsRelease),
    /// Packages (possibly none).
    Packages(Vec<Package>),
    /// Not read, e.g. over the size cap; still shadows lower layers' file at this path.
    Skipped(String),
    /// Read but not understood; the message names the file and the problem.
    Failed(String),
}

/// One interesting file of a layer and what its cataloger made of it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FileRecord {
    /// Absolute path in the image, e.g. `/var/lib/dpkg/status`.
    pub path: String,
    /// Which cataloger the file is for.
    pub kind: FileKind,
    /// Size from the tar header.
    pub size: u64,
    /// The result.
    pub outcome: Outcome,
}

/// A symbolic link in the layer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Symlink {
    /// Absolute path of the link.
    pub path: String,
    /// Link target exactly as stored (relative or absolute).
    pub target: String,
}

/// Everything the scanner needs from one layer; serialisable so it can be cached per blob digest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LayerAnalysis {
    /// [`ANALYZER_VERSION`] at the time of analysis.
    pub analyzer_version: u32,
    /// Compression of the blob.
    pub compression: Compression,
    /// Bytes read from the blob (compressed).
    pub blob_bytes: u64,
    /// Bytes of tar stream read (uncompressed).
    pub tar_bytes: u64,
    /// Tar entries seen (after long-name/PAX headers are folded in).
    pub entries: u64,
    /// Cataloged files, sorted by path.
    pub files: Vec<FileRecord>,
    /// Paths deleted from lower layers (`.wh.<name>`), sorted.
    pub whiteouts: Vec<String>,
    /// Directories whose lower-layer contents are hidden (`.wh..wh..opq`), sorted.
    pub opaque_dirs: Vec<String>,
    /// Symlinks, sorted by path.
    pub symlinks: Vec<Symlink>,
    /// Other non-directory paths that would hide a lower layer's finding at the same path
    /// (executables without findings, hard links), sorted.
    pub shadows: Vec<String>,
    /// Things worth knowing that are not errors (unsafe paths skipped, trailing junk).
    pub notes: Vec<String>,
}

impl LayerAnalysis {
    /// True if this analysis was made by the current analyzer and can be reused.
    pub fn is_current(&self) -> bool {
        self.analyzer_version == ANALYZER_VERSION
    }
}

/// Why a layer could not be analysed.
#[derive(thiserror::Error, Debug)]
pub enum LayerError {
    /// The blob could not be read at all.
    #[error("reading layer blob: {0}")]
    Read(#[source] io::Error),
    /// The blob uses a compression this analyzer does not read.
    #[error("unsupported layer compression: {0}")]
    UnsupportedCompression(&'static str),
    /// The tar stream (or its decompression) failed at an entry.
    #[error("layer tar entry {index} ({path}): {source}")]
    Tar {
        /// Zero-based entry index.
        index: u64,
        /// Entry path, or `<header>` if its header could not be read.
        path: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A `Read` that counts bytes into a shared cell, read back after the tar reader owns it.
struct Counting<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Analyses a layer blob in one pass; see the module docs.
pub fn analyze_layer<R: Read>(blob: R) -> Result<LayerAnalysis, LayerError> {
    let blob_count = Rc::new(Cell::new(0));
    let tar_count = Rc::new(Cell::new(0));
    let mut buffered = BufReader::with_capacity(
        64 << 10,
        Counting {
            inner: blob,
            count: blob_count.clone(),
        },
    );
    let head = buffered.fill_buf().map_err(LayerError::Read)?;
    let compression = match head {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        [b'B', b'Z', b'h', ..] => return Err(LayerError::UnsupportedCompression("bzip2")),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
            return Err(LayerError::UnsupportedCompression("xz"))
        }
        _ => Compression::None,
    };
    let stream: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(LayerError::Read)?)
        }
        Compression::None => Box::new(buffered),
    };
    let mut archive = tar::Archive::new(Counting {
        inner: stream,
        count: tar_count.clone(),
    });
    let mut st = State::default();
    let mut index = 0u64;
    let entries = archive.entries().map_err(|source| LayerError::Tar {
        index,
        path: "<header>".into(),
        source,
    })?;
    for entry in entries {
        let mut entry = entry.map_err(|source| LayerError::Tar {
            index,
            path: "<header>".into(),
            source,
        })?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        st.entry(&mut entry, &raw_path)
            .map_err(|source| LayerError::Tar {
                index,
                path: raw_path,
                source,
            })?;
        index += 1;
    }
    // Read to the end of the compressed stream so byte counts are whole and the gzip
    // trailer is checked; junk after the tar end is tolerated, as container runtimes do.
    if let Err(e) = io::copy(&mut archive.into_inner(), &mut io::sink()) {
        st.notes.push(format!("after end of tar: {e}"));
    }
    Ok(LayerAnalysis {
        analyzer_version: ANALYZER_VERSION,
        compression,
        blob_bytes: blob_count.get(),
        tar_bytes: tar_count.get(),
        entries: index,
        files: st.files.into_values().collect(),
        whiteouts: st.whiteouts.into_iter().collect(),
        opaque_dirs: st.opaque.into_iter().collect(),
        symlinks: st
            .symlinks
            .into_iter()
            .map(|(path, target)| Symlink { path, target })
            .collect(),
        shadows: st.shadows.into_iter().collect(),
        notes: st.notes,
    })
}

/// Per-layer accumulation; maps keyed by path so a later tar entry replaces an earlier one.
#[derive(Default)]
struct State {
    files: BTreeMap<String, FileRecord>,
    whiteouts: BTreeSet<String>,
    opaque: BTreeSet<String>,
    symlinks: BTreeMap<String, String>,
    shadows: BTreeSet<String>,
    notes: Vec<String>,
}

impl State {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>, raw_path: &str) -> io::Result<()> {
        let Some(path) = normalize(raw_path) else {
            self.notes
                .push(format!("skipped entry with unsafe path {raw_path:?}"));
            return Ok(());
        };
        let (dir, base) = path.rsplit_once('/').unwrap_or(("", &path));
        if let Some(name) = base.strip_prefix(".wh.") {
            if name == ".wh..opq" {
                self.opaque.insert(if dir.is_empty() {
                    "/".to_string()
                } else {
                    dir.to_string()
                });
            } else if matches!(name, "" | "." | "..") {
                // `.wh.`, `.wh..` and `.wh...` name no entry (the directory itself or its
                // parent): not a deletion, and never a path like `/etc/.` in the whiteouts.
                self.notes
                    .push(format!("ignored whiteout {raw_path:?}: it names no entry"));
            } else if !name.starts_with(".wh.") {
                // `.wh..wh.*` other than `.opq` is AUFS bookkeeping, not a deletion.
                self.whiteouts.insert(format!("{dir}/{name}"));
            }
            return Ok(());
        }
        let header = entry.header();
        let ty = header.entry_type();
        // entry.size() honours PAX size records, the raw header field does not.
        let size = entry.size();
        let mode = header.mode().unwrap_or(0);
        self.forget(&path);
        if ty.is_dir() {
            return Ok(());
        }
        if ty.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            self.symlinks.insert(path, target);
            return Ok(());
        }
        if ty.is_hard_link() {
            self.hard_link(entry, path);
            return Ok(());
        }
        if !(ty.is_file() || ty == tar::EntryType::Continuous) {
            return Ok(());
        }
        match catalog::classify(&path) {
            Some(kind) => self.cataloged_file(entry, path, kind, size),
            None if mode & 0o111 != 0 && size >= MIN_BINARY_BYTES => {
                self.executable(entry, path, size)
            }
            None if mode & 0o111 != 0 => {
                // Too small to be a Go or Rust binary, but it still replaces one below.
                self.shadow(path);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Drops whatever an earlier entry of this layer recorded at `path`.
    fn forget(&mut self, path: &str) {
        self.files.remove(path);
        self.symlinks.remove(path);
        self.shadows.remove(path);
    }

    fn cataloged_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: String,
        kind: FileKind,
        size: u64,
    ) -> io::Result<()> {
        let cap = match kind.limit() {
            Limit::Database => MAX_DATABASE_BYTES,
            Limit::Archive => MAX_ARCHIVE_BYTES,
            Limit::Binary => MAX_BINARY_BYTES,
            Limit::Manifest => MAX_MANIFEST_BYTES,
        };
        let outcome = if size > cap {
            Outcome::Skipped(format!(
                "{size} bytes is over the {cap}-byte limit for {kind:?} files"
            ))
        } else {
            let data = read_all(entry, size)?;
            run_catalog(kind, &path, &data)
        };
        self.record(path, kind, size, outcome);
        Ok(())
    }

    fn executable<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        path: String,
        size: u64,
    ) -> io::Result<()> {
        let mut magic = [0u8; 4];
        let got = read_up_to(entry, &mut magic)?;
        let outcome = if got < 4 || &magic != catalog::elf::MAGIC {
            None
        } else if size <= MAX_BINARY_BYTES {
            let mut data = Vec::with_capacity(size.min(PREALLOC_BYTES) as usize);
            data.extend_from_slice(&magic);
            entry.take(size).read_to_end(&mut data)?;
            Some(run_catalog(FileKind::Binary, &path, &data))
        } else {
            stream_go_buildinfo(entry, &path, &magic)?
        };
        match outcome {
            Some(Outcome::Packages(p)) if p.is_empty() => self.shadow(path),
            Some(outcome) => self.record(path, FileKind::Binary, size, outcome),
            // Not a Go or Rust binary, but it still replaces one at this path below.
            None => self.shadow(path),
        }
        Ok(())
    }

    fn record(&mut self, path: String, kind: FileKind, size: u64, outcome: Outcome) {
        let rec = FileRecord {
            path: path.clone(),
            kind,
            size,
            outcome,
        };
        self.files.insert(path, rec);
    }

    fn shadow(&mut self, path: String) {
        self.shadows.insert(path);
    }

    /// A hard link shares its target's content, which this layer already cataloged (or not).
    fn hard_link<R: Read>(&mut self, entry: &tar::Entry<R>, path: String) {
        let target = entry
            .link_name_bytes()
            .and_then(|t| normalize(&String::from_utf8_lossy(&t)))
            .unwrap_or_default();
        match self.files.get(&target).cloned() {
            Some(mut rec) => {
                if let Outcome::Packages(pkgs) = &mut rec.outcome {
                    for p in pkgs.iter_mut() {
                        p.path = p.path.replacen(&target, &path, 1);
                    }
                }
                rec.path = path.clone();
                self.files.insert(path, rec);
            }
            None => match catalog::classify(&path) {
                Some(kind) => {
                    let outcome = Outcome::Skipped(format!(
                        "hard link to {target}, whose content was not cataloged"
                    ));
                    self.record(path, kind, 0, outcome);
                }
                None => self.shadow(path),
            },
        }
    }
}

fn run_catalog(kind: FileKind, path: &str, data: &[u8]) -> Outcome {
    match catalog::catalog(kind, path, data) {
        Ok(Cataloged::Os(os)) => Outcome::Os(os),
        Ok(Cataloged::Packages(p)) => Outcome::Packages(p),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// Reads a whole entry whose header says `size` (already checked against a cap).
fn read_all<R: Read>(entry: &mut R, size: u64) -> io::Result<Vec<u8>> {
    let mut data = Vec::with_capacity(size.min(PREALLOC_BYTES) as usize);
    entry.take(size).read_to_end(&mut data)?;
    Ok(data)
}

fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Searches a binary too large to hold for Go build info, keeping about 2 MiB at a time.
/// Only the Go 1.18+ inline format can be decoded this way; older ones need the whole file.
fn stream_go_buildinfo<R: Read>(
    r: &mut R,
    path: &str,
    first: &[u8],
) -> io::Result<Option<Outcome>> {
    let magic = golang::BUILDINFO_MAGIC;
    let mut buf = first.to_vec();
    let mut chunk = vec![0u8; 1 << 20];
    let mut from = 0usize;
    let mut eof = false;
    let mut last_err = None;
    loop {
        if let Some(i) = memmem::find(&buf[from..], magic).map(|i| i + from) {
            while !eof && buf.len() < i + GO_BLOB_BYTES {
                let n = r.read(&mut chunk)?;
                eof = n == 0;
                buf.extend_from_slice(&chunk[..n]);
            }
            let end = buf.len().min(i + GO_BLOB_BYTES);
            match golang::parse_buildinfo(path, &buf[i..end], None) {
                Ok(p) => return Ok(Some(Outcome::Packages(p))),
                Err(e) => last_err = Some(e.to_string()),
            }
            from = i + 1;
            continue;
        }
        if eof {
            return Ok(last_err.map(Outcome::Failed));
        }
        // Keep a magic-sized tail so a match split across reads is still found.
        let keep = buf.len().saturating_sub(magic.len() - 1);
        buf.drain(..keep);
        from = 0;
        let n = r.read(&mut chunk)?;
        eof = n == 0;
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Turns a tar path into an absolute image path (`./usr//bin/` → `/usr/bin`); `None` for `..`.
pub fn normalize(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len() + 1);
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return None,
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Some(out)
}
