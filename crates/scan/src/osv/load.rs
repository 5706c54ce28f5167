//! Reading OSV records from a directory tree of `*.json` and `*.zip` files (at any
//! depth, e.g. osv.dev's `PyPI/all.zip`, `Go/all.zip` under one parent), a single
//! JSON file, or an osv.dev-style `all.zip` (one record per entry).
//!
//! A record that fails to parse, or a file inside a directory that cannot be
//! used (unreadable, corrupt zip), is reported and skipped rather than failing
//! the whole load: one bad advisory must not disable scanning.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::db::Database;
use super::model::Record;
use super::OsvError;

/// Largest record accepted from a zip entry (real records are well under 1 MiB);
/// guards against decompression bombs.
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;

/// A record or file that was skipped while loading, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// File path (a record file, or a whole unusable zip) or `zip-path!entry-name`.
    pub source: String,
    /// What was wrong with it.
    pub reason: String,
}

/// What a load read and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// JSON documents read.
    pub documents: usize,
    /// Records parsed.
    pub records: usize,
    /// Documents and files skipped, with reasons.
    pub skipped: Vec<Skipped>,
}

/// Collects records from several sources, then builds a [`Database`].
#[derive(Debug, Default)]
pub struct Loader {
    records: Vec<(Record, [u8; 32])>,
    report: LoadReport,
}

impl Loader {
    /// An empty loader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory tree, a `.zip` file or a single `.json` file.
    pub fn add_path(&mut self, path: &Path) -> Result<(), OsvError> {
        let meta = fs::metadata(path).map_err(|e| OsvError::io(path, e))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if meta.is_dir() {
            self.add_dir(path)
        } else if ext.eq_ignore_ascii_case("zip") {
            self.add_zip(path)
        } else if ext.eq_ignore_ascii_case("json") {
            let bytes = fs::read(path).map_err(|e| OsvError::io(path, e))?;
            self.add_json(&path.display().to_string(), &bytes);
            Ok(())
        } else {
            Err(OsvError::UnsupportedPath {
                path: path.to_path_buf(),
            })
        }
    }

    /// Adds every `*.json` and `*.zip` file under `dir`, at any depth (symlinked directories
    /// are not followed), so osv.dev's layout (`PyPI/all.zip`, `Go/all.zip`, ...) under one
    /// parent loads. A file that cannot be used (unreadable, not a zip) is reported in
    /// [`LoadReport::skipped`] with its path and reason; the rest still loads.
    pub fn add_dir(&mut self, dir: &Path) -> Result<(), OsvError> {
        let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let mut entries: Vec<_> = fs::read_dir(&d)
                .map_err(|e| OsvError::io(&d, e))?
                .collect::<Result<_, _>>()
                .map_err(|e| OsvError::io(&d, e))?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let kind = entry.file_type().map_err(|e| OsvError::io(&path, e))?;
                if kind.is_dir() {
                    stack.push(path);
                    continue;
                }
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if ext.eq_ignore_ascii_case("json") {
                    match fs::read(&path) {
                        Ok(bytes) => self.add_json(&path.display().to_string(), &bytes),
                        Err(e) => self.skip(path.display().to_string(), e.to_string()),
                    }
                } else if ext.eq_ignore_ascii_case("zip") {
                    if let Err(e) = self.add_zip(&path) {
                        let reason = match e {
                            OsvError::Io { source, .. } => format!("unreadable: {source}"),
                            OsvError::Zip { source, .. } => format!("not a usable zip: {source}"),
                            other => other.to_string(),
                        };
                        self.skip(path.display().to_string(), reason);
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds every `*.json` entry of a zip archive (stored or deflated).
    pub fn add_zip(&mut self, path: &Path) -> Result<(), OsvError> {
        let file = File::open(path).map_err(|e| OsvError::io(path, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| OsvError::zip(path, e))?;
        for i in 0..archive.len() {
            let mut entry = match archive.by_index(i) {
                Ok(entry) => entry,
                Err(e) => {
                    self.skip(format!("{}!#{i}", path.display()), e.to_string());
                    continue;
                }
            };
            // Only used for reports and the extension check, so lossy is fine.
            let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            let source = format!("{}!{name}", path.display());
            if entry.is_dir() || !name.to_ascii_lowercase().ends_with(".json") {
                continue;
            }
            if entry.size() > MAX_RECORD_BYTES {
                self.skip(
                    source,
                    format!("entry is {} bytes, limit {MAX_RECORD_BYTES}", entry.size()),
                );
                continue;
            }
            // The declared size can lie; cap what is actually inflated too.
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            match (&mut entry)
                .take(MAX_RECORD_BYTES + 1)
                .read_to_end(&mut bytes)
            {
                Ok(n) if n as u64 > MAX_RECORD_BYTES => {
                    self.skip(
                        source,
                        format!("entry inflates past {MAX_RECORD_BYTES} bytes"),
                    );
                }
                Ok(_) => self.add_json(&source, &bytes),
                Err(e) => self.skip(source, e.to_string()),
            }
        }
        Ok(())
    }

    /// Adds one JSON document holding one OSV record; `source` names it in reports.
    pub fn add_json(&mut self, source: &str, bytes: &[u8]) {
        self.report.documents += 1;
        match serde_json::from_slice::<Record>(bytes) {
            Ok(record) if record.id.trim().is_empty() => {
                self.skip(source.to_string(), "record has an empty id".to_string());
            }
            Ok(record) => {
                self.report.records += 1;
                self.records.push((record, Sha256::digest(bytes).into()));
            }
            Err(e) => self.skip(source.to_string(), format!("not an OSV record: {e}")),
        }
    }

    /// What has been read so far.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    fn skip(&mut self, source: String, reason: String) {
        self.report.skipped.push(Skipped { source, reason });
    }

    /// Builds the database and returns it with the load report.
    pub fn finish(self) -> (Database, LoadReport) {
        (Database::from_records(self.records), self.report)
    }
}

impl Database {
    /// Loads records from each path (directory, `.zip` or `.json`) into one database.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<(Database, LoadReport), OsvError> {
        let mut loader = Loader::new();
        for p in paths {
            loader.add_path(p.as_ref())?;
        }
        Ok(loader.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_files_load_unusable_ones_are_reported_and_linked_dirs_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("osv");
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/ok.json"), r#"{"id":"A-1","affected":[]}"#).unwrap();
        fs::write(root.join("a/bad.json"), "{ not json").unwrap();
        fs::write(root.join("a/b/bad.zip"), "not a zip").unwrap();
        fs::write(root.join("a/notes.txt"), "ignored").unwrap();
        // Data reachable only through a symlinked directory is not loaded.
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("o.json"), r#"{"id":"O-1","affected":[]}"#).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        let (db, report) = Database::load(&[&root]).unwrap();
        assert_eq!(db.len(), 1);
        assert!(db.get("A-1").is_some() && db.get("O-1").is_none());
        let mut skipped: Vec<_> = report
            .skipped
            .iter()
            .map(|s| (s.source.clone(), s.reason.clone()))
            .collect();
        skipped.sort();
        assert_eq!(skipped.len(), 2, "{skipped:?}");
        assert_eq!(skipped[0].0, root.join("a/b/bad.zip").display().to_string());
        assert!(
            skipped[0].1.starts_with("not a usable zip: "),
            "{skipped:?}"
        );
        assert_eq!(skipped[1].0, root.join("a/bad.json").display().to_string());
        assert!(
            skipped[1].1.starts_with("not an OSV record: "),
            "{skipped:?}"
        );
    }
}
