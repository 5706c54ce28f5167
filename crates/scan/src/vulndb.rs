//! The loaded vulnerability data and how it is kept current: loaded in the background at
//! start-up (the listeners never wait for it), then re-checked every `rescan_interval`. A check
//! first compares the sources' file list, sizes and mtimes (cheap); only when those changed is
//! the data reloaded, and only when the reloaded content hash differs does it count as a change,
//! which is what triggers a rematch of every stored inventory (an identical reload still
//! replaces the snapshot, so its report of unusable files and counts is current).

use crate::clock::parse_rfc3339;
use crate::osv::{Database, LoadReport, Skipped};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;
use tokio::sync::watch;

/// One loaded version of the vulnerability data.
#[derive(Debug)]
pub struct DbSnapshot {
    /// The advisories.
    pub db: Database,
    /// `Database::content_hash`: what stored findings record they were matched against.
    pub hash: String,
    /// When it was loaded (unix ms).
    pub loaded_at_ms: i64,
    /// Newest `modified` date among the records (unix ms), if any record has one.
    pub newest_record_ms: Option<i64>,
    /// JSON documents read.
    pub documents: usize,
    /// Documents skipped as unreadable, with the first few reasons.
    pub skipped: usize,
    /// The first few skip reasons (`source: reason`).
    pub skipped_examples: Vec<String>,
    /// Whole files that could not be used, with their reasons (the first [`MAX_LISTED_FILES`]).
    pub unusable_files: Vec<Skipped>,
    /// How many files could not be used (all of them, listed or not).
    pub unusable_file_count: usize,
    /// Records read per source and ecosystem ([`LoadReport::by_source`]).
    pub by_source: BTreeMap<String, BTreeMap<String, usize>>,
}

/// How many unusable files a snapshot names (the rest are counted).
pub const MAX_LISTED_FILES: usize = 100;

impl DbSnapshot {
    /// Builds a snapshot around a loaded database.
    pub fn new(db: Database, documents: usize, skipped: Vec<String>) -> Self {
        let newest_record_ms = db
            .records()
            .filter_map(|r| r.modified.as_deref().and_then(parse_rfc3339))
            // Go's records carry `0001-01-01` placeholders: no date before the epoch is real.
            .filter(|t| *t > 0)
            .max();
        DbSnapshot {
            hash: db.content_hash().to_string(),
            db,
            loaded_at_ms: breakwater_oci::time::now_ms(),
            newest_record_ms,
            documents,
            skipped: skipped.len(),
            skipped_examples: skipped.into_iter().take(5).collect(),
            unusable_files: Vec::new(),
            unusable_file_count: 0,
            by_source: BTreeMap::new(),
        }
    }

    /// Builds a snapshot from a load and its report (skips, unusable files, counts).
    pub fn from_load(db: Database, report: LoadReport) -> Self {
        let skipped = report
            .skipped
            .iter()
            .map(|s| format!("{}: {}", s.source, s.reason))
            .collect();
        let mut snap = DbSnapshot::new(db, report.documents, skipped);
        snap.unusable_file_count = report.unusable_files().count();
        snap.unusable_files = report
            .unusable_files()
            .take(MAX_LISTED_FILES)
            .cloned()
            .collect();
        snap.by_source = report.by_source;
        snap
    }

    /// Records per ecosystem over all sources.
    pub fn records_by_ecosystem(&self) -> BTreeMap<&str, usize> {
        let mut out = BTreeMap::new();
        for counts in self.by_source.values() {
            for (eco, n) in counts {
                *out.entry(eco.as_str()).or_default() += n;
            }
        }
        out
    }

    /// ECR's `vulnerabilitySourceUpdatedAt`: the newest record's date, or the load time when
    /// records carry none (or a date after the load, which a clock cannot trust).
    pub fn updated_at_ms(&self) -> i64 {
        self.newest_record_ms
            .filter(|t| *t <= self.loaded_at_ms)
            .unwrap_or(self.loaded_at_ms)
    }
}

/// Where loading stands, as API callers and the gate see it.
#[derive(Debug, Clone, Default)]
pub struct DbStatus {
    /// The data in use, once one load succeeded.
    pub snapshot: Option<Arc<DbSnapshot>>,
    /// The last load's error, if it failed (an older snapshot stays in use).
    pub error: Option<String>,
    /// True once the first load attempt finished (or no sources are configured).
    pub settled: bool,
}

/// How many skipped files or records one load names in the log.
const MAX_SKIP_WARNINGS: usize = 20;

/// Path, size and mtime of every source file: changes here prompt a reload.
type Fingerprint = Vec<(PathBuf, u64, u128)>;

/// The vulnerability data in use and its sources.
pub struct VulnDb {
    paths: Vec<PathBuf>,
    status: watch::Sender<DbStatus>,
    fingerprint: Mutex<Option<Fingerprint>>,
}

impl VulnDb {
    /// Data from `paths`, not loaded yet (with no paths it is settled at once, and empty).
    pub fn new(paths: Vec<PathBuf>) -> Self {
        let settled = paths.is_empty();
        VulnDb {
            paths,
            status: watch::Sender::new(DbStatus {
                settled,
                ..DbStatus::default()
            }),
            fingerprint: Mutex::new(None),
        }
    }

    /// True when sources are configured.
    pub fn configured(&self) -> bool {
        !self.paths.is_empty()
    }

    /// The configured sources.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The data in use now, if any.
    pub fn current(&self) -> Option<Arc<DbSnapshot>> {
        self.status.borrow().snapshot.clone()
    }

    /// Loading status now.
    pub fn status(&self) -> DbStatus {
        self.status.borrow().clone()
    }

    /// Waits for the first load attempt to finish, then returns the status.
    pub async fn settled(&self) -> DbStatus {
        let mut rx = self.status.subscribe();
        let settled = rx.wait_for(|s| s.settled).await.map(|s| s.clone());
        settled.unwrap_or_else(|_| self.status())
    }

    /// Reloads if the sources changed (or nothing is loaded). Blocking. Returns the new
    /// snapshot when the content changed, `None` when it did not.
    pub fn refresh(&self) -> Result<Option<Arc<DbSnapshot>>, String> {
        if self.paths.is_empty() {
            return Ok(None);
        }
        let result = self.reload_if_changed();
        if let Err(e) = &result {
            tracing::warn!("vulnerability data not (re)loaded: {e}");
            self.status.send_modify(|s| {
                s.error = Some(e.clone());
                s.settled = true;
            });
        }
        result
    }

    fn reload_if_changed(&self) -> Result<Option<Arc<DbSnapshot>>, String> {
        let fp = fingerprint(&self.paths)?;
        let current = self.current();
        {
            let old = self.fingerprint.lock().unwrap_or_else(|p| p.into_inner());
            if current.is_some() && old.as_ref() == Some(&fp) {
                return Ok(None);
            }
        }
        let started = std::time::Instant::now();
        let (db, report) = Database::load(&self.paths).map_err(|e| e.to_string())?;
        // Nothing is skipped silently: each unusable file or record is named, with its reason
        // (capped, so a broken archive of thousands of entries does not flood the log).
        for s in report.skipped.iter().take(MAX_SKIP_WARNINGS) {
            tracing::warn!("vulnerability data skipped: {}: {}", s.source, s.reason);
        }
        if report.skipped.len() > MAX_SKIP_WARNINGS {
            tracing::warn!(
                "vulnerability data: {} more skipped (not listed)",
                report.skipped.len() - MAX_SKIP_WARNINGS
            );
        }
        let snap = Arc::new(DbSnapshot::from_load(db, report));
        *self.fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = Some(fp);
        let unchanged = current.as_ref().is_some_and(|c| c.hash == snap.hash);
        tracing::info!(
            records = snap.db.len(),
            skipped = snap.skipped,
            hash = %snap.hash,
            unchanged,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "vulnerability data loaded"
        );
        // Identical records (touched files, or an unusable file added or removed) need no
        // rematch, but the new snapshot goes in so the status reports the files as they are.
        self.status.send_modify(|s| {
            s.snapshot = Some(snap.clone());
            s.error = None;
            s.settled = true;
        });
        Ok((!unchanged).then_some(snap))
    }

    /// Puts a snapshot in use directly (tests and benchmarks).
    pub fn install(&self, snap: Arc<DbSnapshot>) {
        self.status.send_modify(|s| {
            s.snapshot = Some(snap);
            s.error = None;
            s.settled = true;
        });
    }
}

/// True for the files the loader reads (`.json`, `.zip`): others, such as a download in
/// progress next to them, are no change.
fn is_data_file(p: &Path) -> bool {
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    ext.eq_ignore_ascii_case("json") || ext.eq_ignore_ascii_case("zip")
}

/// The size and mtime of each source file; directories are walked at any depth, like the loader
/// (sorted, so stable), so a changed nested `all.zip` is a change.
fn fingerprint(paths: &[PathBuf]) -> Result<Fingerprint, String> {
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out)?;
    }
    out.sort();
    Ok(out)
}

fn walk(p: &Path, out: &mut Fingerprint) -> Result<(), String> {
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    if meta.is_dir() {
        let entries =
            std::fs::read_dir(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        for e in entries {
            let e = e.map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            // Like the loader, do not follow symlinked directories below a source (a link
            // loop would recurse forever); a configured path itself may be a link.
            let is_linked_dir = e.file_type().is_ok_and(|t| t.is_symlink()) && e.path().is_dir();
            if !is_linked_dir {
                walk(&e.path(), out)?;
            }
        }
    } else if is_data_file(p) {
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        out.push((p.to_path_buf(), meta.len(), mtime));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"id":"X-1","modified":"2024-05-01T00:00:00Z","affected":[]}"#;

    #[test]
    fn reloads_only_on_change_and_keeps_the_old_data_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let osv = dir.path().join("osv");
        std::fs::create_dir(&osv).unwrap();
        std::fs::write(osv.join("a.json"), RECORD).unwrap();
        let db = VulnDb::new(vec![osv.clone()]);
        assert!(!db.status().settled);
        let first = db.refresh().unwrap().expect("first load");
        assert_eq!(first.db.len(), 1);
        assert_eq!(
            first.updated_at_ms(),
            parse_rfc3339("2024-05-01T00:00:00Z").unwrap()
        );
        assert!(db.refresh().unwrap().is_none(), "nothing changed");

        // Same bytes rewritten: files differ by mtime, content hash does not.
        std::fs::write(osv.join("a.json"), RECORD).unwrap();
        filetime_bump(&osv.join("a.json"));
        assert!(db.refresh().unwrap().is_none(), "same content");

        std::fs::write(osv.join("b.json"), RECORD.replace("X-1", "X-2")).unwrap();
        let second = db.refresh().unwrap().expect("new record");
        assert_eq!(second.db.len(), 2);
        assert_ne!(second.hash, first.hash);

        std::fs::remove_dir_all(&osv).unwrap();
        assert!(db.refresh().is_err());
        let s = db.status();
        assert!(s.error.is_some() && s.snapshot.unwrap().hash == second.hash);
    }

    #[test]
    fn placeholder_dates_and_link_loops_are_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let osv = dir.path().join("osv");
        std::fs::create_dir(&osv).unwrap();
        // Go's records say 0001-01-01: the data's date is then its load time, not year 1.
        let go = r#"{"id":"GO-1","modified":"0001-01-01T00:00:00Z","affected":[]}"#;
        std::fs::write(osv.join("go.json"), go).unwrap();
        std::os::unix::fs::symlink(&osv, osv.join("loop")).unwrap();
        let db = VulnDb::new(vec![osv.clone()]);
        let snap = db.refresh().unwrap().expect("loads despite the link loop");
        assert_eq!(snap.db.len(), 1);
        assert_eq!(snap.updated_at_ms(), snap.loaded_at_ms);
        assert!(db.refresh().unwrap().is_none(), "fingerprint is stable");
    }

    const OSV_TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vulndb/osv");

    fn ecosystems(snap: &DbSnapshot) -> std::collections::BTreeSet<String> {
        snap.db
            .records()
            .flat_map(|r| r.affected.iter())
            .filter_map(|a| a.package.as_ref().map(|p| p.ecosystem.clone()))
            .collect()
    }

    #[test]
    fn osv_dev_layout_loads_zips_at_any_depth_and_reports_unusable_files() {
        let dir = tempfile::tempdir().unwrap();
        let osv = dir.path().join("osv");
        let testdata = Path::new(OSV_TESTDATA);
        for eco in ["PyPI", "Go"] {
            std::fs::create_dir_all(osv.join(eco)).unwrap();
            std::fs::copy(
                testdata.join(format!("{eco}-all.zip")),
                osv.join(eco).join("all.zip"),
            )
            .unwrap();
        }
        std::fs::create_dir_all(osv.join("local/deep")).unwrap();
        std::fs::write(osv.join("local/deep/x.json"), RECORD).unwrap();
        std::fs::create_dir_all(osv.join("broken")).unwrap();
        std::fs::write(osv.join("broken/all.zip"), b"this is not a zip archive").unwrap();

        let db = VulnDb::new(vec![osv.clone()]);
        let first = db.refresh().unwrap().expect("first load");
        let ecos = ecosystems(&first);
        assert!(ecos.contains("PyPI") && ecos.contains("Go"), "{ecos:?}");
        assert!(first.db.get("X-1").is_some(), "nested loose json loads");
        // PyPI 2661 + Go 4291 (see tests_real) + the loose record.
        assert_eq!(first.db.len(), 2661 + 4291 + 1);
        assert_eq!(first.skipped, 1, "{:?}", first.skipped_examples);
        let bad = osv.join("broken/all.zip").display().to_string();
        let example = &first.skipped_examples[0];
        assert!(
            example.starts_with(&format!("{bad}: not a usable zip: ")),
            "{example}"
        );
        assert_eq!(first.unusable_file_count, 1);
        assert_eq!(first.unusable_files[0].source, bad);
        let by_eco = first.records_by_ecosystem();
        assert_eq!((by_eco["PyPI"], by_eco["Go"]), (2661, 4291), "{by_eco:?}");
        let pypi = osv.join("PyPI/all.zip").display().to_string();
        assert_eq!(first.by_source[&pypi].get("PyPI"), Some(&2661));
        assert!(db.refresh().unwrap().is_none(), "nothing changed");

        // A download in progress beside the data is no change.
        std::fs::write(osv.join("PyPI/.all.zip.partial"), b"PK").unwrap();
        assert!(db.refresh().unwrap().is_none(), "not a data file");
        assert!(
            Arc::ptr_eq(&db.current().unwrap(), &first),
            "not even reloaded"
        );

        // A new unusable file changes no record, but the status names it.
        std::fs::write(osv.join("local/deep/bad.json"), b"{").unwrap();
        assert!(db.refresh().unwrap().is_none(), "same records: no rematch");
        let now = db.current().unwrap();
        assert_eq!(
            (now.hash.as_str(), now.unusable_file_count),
            (first.hash.as_str(), 2)
        );

        // A nested zip replaced by other data is a change.
        std::fs::copy(
            testdata.join("crates.io-all.zip"),
            osv.join("Go").join("all.zip"),
        )
        .unwrap();
        filetime_bump(&osv.join("Go").join("all.zip"));
        let second = db.refresh().unwrap().expect("nested zip change detected");
        let ecos = ecosystems(&second);
        assert!(
            ecos.contains("crates.io") && !ecos.contains("Go"),
            "{ecos:?}"
        );
        assert_ne!(second.hash, first.hash);
    }

    fn filetime_bump(p: &Path) {
        let f = std::fs::File::options().write(true).open(p).unwrap();
        let t = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        f.set_modified(t).unwrap();
    }
}
