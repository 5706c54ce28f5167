//! Reading OSV records from a directory tree of `*.json` and `*.zip` files (at any
//! depth, e.g. osv.dev's `PyPI/all.zip`, `Go/all.zip` under one parent), a single
//! JSON file, or an osv.dev-style `all.zip` (one record per entry).
//!
//! A record that fails to parse, or a file inside a directory that cannot be
//! used (unreadable, corrupt zip), is reported and skipped rather than failing
//! the whole load: one bad advisory must not disable scanning.

use std::collections::BTreeMap;
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
    /// What was skipped: a whole file, a damaged zip entry, or a record.
    pub kind: SkipKind,
}

/// What a [`Skipped`] item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipKind {
    /// A whole file that could not be used (unreadable, not a zip, a `.json` file that is no
    /// OSV record).
    File,
    /// An entry of a zip that could not be read (the archive is damaged there).
    Damaged,
    /// A document that was read but is no usable OSV record (or is too large).
    Record,
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
    /// Records read per source (a zip, or the folder of loose `.json` files) and ecosystem
    /// (the name before any `:`, so `Debian:12` counts as `Debian`; a record naming several
    /// ecosystems counts in each, one naming none under `""`).
    pub by_source: BTreeMap<String, BTreeMap<String, usize>>,
}

impl LoadReport {
    /// The skipped entries that were whole unusable files.
    pub fn unusable_files(&self) -> impl Iterator<Item = &Skipped> {
        self.skipped.iter().filter(|s| s.kind == SkipKind::File)
    }
}

/// Collects records from several sources, then builds a [`Database`].
#[derive(Debug, Default)]
pub struct Loader {
    records: Vec<(Record, [u8; 32])>,
    report: LoadReport,
    /// Parse and count only (checking a download): records are dropped once counted.
    counting: bool,
}

impl Loader {
    /// An empty loader.
    pub fn new() -> Self {
        Self::default()
    }

    /// A loader that parses and counts records without keeping them, so checking a large
    /// archive costs no more memory than its largest record.
    pub fn counting() -> Self {
        Loader {
            counting: true,
            ..Self::default()
        }
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
            let name = path.display().to_string();
            self.add_document(&name, &name, &bytes, SkipKind::File);
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
            let folder = d.display().to_string();
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
                    let name = path.display().to_string();
                    match fs::read(&path) {
                        Ok(bytes) => self.add_document(&folder, &name, &bytes, SkipKind::File),
                        Err(e) => self.skip(name, format!("unreadable: {e}"), SkipKind::File),
                    }
                } else if ext.eq_ignore_ascii_case("zip") {
                    if let Err(e) = self.add_zip(&path) {
                        let reason = match e {
                            OsvError::Io { source, .. } => format!("unreadable: {source}"),
                            OsvError::Zip { source, .. } => format!("not a usable zip: {source}"),
                            other => other.to_string(),
                        };
                        self.skip(path.display().to_string(), reason, SkipKind::File);
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
        let group = path.display().to_string();
        for i in 0..archive.len() {
            let mut entry = match archive.by_index(i) {
                Ok(entry) => entry,
                Err(e) => {
                    self.skip(format!("{group}!#{i}"), e.to_string(), SkipKind::Damaged);
                    continue;
                }
            };
            // Only used for reports and the extension check, so lossy is fine.
            let name = String::from_utf8_lossy(entry.name_raw()).into_owned();
            let source = format!("{group}!{name}");
            if entry.is_dir() || !name.to_ascii_lowercase().ends_with(".json") {
                continue;
            }
            if entry.size() > MAX_RECORD_BYTES {
                self.skip(
                    source,
                    format!("entry is {} bytes, limit {MAX_RECORD_BYTES}", entry.size()),
                    SkipKind::Record,
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
                        SkipKind::Record,
                    );
                }
                Ok(_) => self.add_document(&group, &source, &bytes, SkipKind::Record),
                Err(e) => self.skip(source, format!("damaged entry: {e}"), SkipKind::Damaged),
            }
        }
        Ok(())
    }

    /// Adds one JSON document holding one OSV record; `source` names it in reports.
    pub fn add_json(&mut self, source: &str, bytes: &[u8]) {
        self.add_document(source, source, bytes, SkipKind::File);
    }

    /// One document from `group` (a zip, or a folder of loose files); `unusable`: what it is
    /// reported as when it is no record (a whole file, or one record of a zip).
    fn add_document(&mut self, group: &str, source: &str, bytes: &[u8], unusable: SkipKind) {
        self.report.documents += 1;
        let record = match serde_json::from_slice::<Record>(bytes) {
            Ok(record) if record.id.trim().is_empty() => {
                let why = "record has an empty id".to_string();
                return self.skip(source.to_string(), why, unusable);
            }
            Ok(record) => record,
            Err(e) => {
                let why = format!("not an OSV record: {e}");
                return self.skip(source.to_string(), why, unusable);
            }
        };
        self.report.records += 1;
        let counts = self.report.by_source.entry(group.to_string()).or_default();
        let mut ecosystems: Vec<&str> = record
            .affected
            .iter()
            .filter_map(|a| a.package.as_ref())
            .map(|p| p.ecosystem.split(':').next().unwrap_or("").trim())
            .collect();
        ecosystems.sort_unstable();
        ecosystems.dedup();
        if ecosystems.is_empty() {
            ecosystems.push("");
        }
        for e in ecosystems {
            *counts.entry(e.to_string()).or_default() += 1;
        }
        if !self.counting {
            self.records.push((record, Sha256::digest(bytes).into()));
        }
    }

    /// What has been read so far.
    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    fn skip(&mut self, source: String, reason: String, kind: SkipKind) {
        self.report.skipped.push(Skipped {
            source,
            reason,
            kind,
        });
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
        assert_eq!(report.unusable_files().count(), 2, "both are whole files");
    }

    #[test]
    fn records_are_counted_per_source_and_ecosystem_and_counting_keeps_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("osv");
        fs::create_dir_all(root.join("loose")).unwrap();
        let rec = |id: &str, ecos: &[&str]| {
            let affected: Vec<String> = ecos
                .iter()
                .map(|e| format!(r#"{{"package":{{"ecosystem":"{e}","name":"p"}}}}"#))
                .collect();
            format!(r#"{{"id":"{id}","affected":[{}]}}"#, affected.join(","))
        };
        fs::write(
            root.join("loose/a.json"),
            rec("A-1", &["Debian:11", "Debian:12"]),
        )
        .unwrap();
        fs::write(
            root.join("loose/b.json"),
            rec("B-1", &["PyPI", "Debian:12"]),
        )
        .unwrap();
        fs::write(root.join("loose/c.json"), rec("C-1", &[])).unwrap();
        let zip_path = root.join("Alpine/all.zip");
        fs::create_dir_all(zip_path.parent().unwrap()).unwrap();
        let mut w = zip::ZipWriter::new(File::create(&zip_path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        for (name, body) in [
            ("X-1.json", rec("X-1", &["Alpine:v3.19"])),
            ("X-2.json", rec("X-2", &["Alpine:v3.20"])),
            ("bad.json", "{".to_string()),
        ] {
            w.start_file(name, opts).unwrap();
            std::io::Write::write_all(&mut w, body.as_bytes()).unwrap();
        }
        w.finish().unwrap();

        let mut loader = Loader::counting();
        loader.add_path(&root).unwrap();
        let (db, report) = loader.finish();
        assert_eq!(db.len(), 0, "counting keeps no record");
        assert_eq!(report.records, 5);
        let folder = root.join("loose").display().to_string();
        let zip_name = zip_path.display().to_string();
        let counts = |src: &str| -> Vec<(String, usize)> {
            report.by_source[src]
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        // Debian:11 and Debian:12 of one record count once, as Debian.
        assert_eq!(
            counts(&folder),
            [("".into(), 1), ("Debian".into(), 2), ("PyPI".into(), 1)]
        );
        assert_eq!(counts(&zip_name), [("Alpine".into(), 2)]);
        // A bad entry of a readable zip is a skipped record, not an unusable file.
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].kind, SkipKind::Record);
        assert_eq!(report.unusable_files().count(), 0);
    }
}
