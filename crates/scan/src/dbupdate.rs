//! What `breakwater scan update` decides, without any HTTP: which ecosystems it fetches, where
//! each archive lives (`<dir>/<Ecosystem>/all.zip`, the layout the loader reads), its URL under
//! a mirror with osv.dev's bucket layout, and how a download replaces the old file: it is
//! written to a hidden temporary file beside the target, checked as OSV data with the loader's
//! own parsing, and only then renamed over the target. A failed, damaged or interrupted
//! download therefore never leaves a half file and never removes the old data; the temporary
//! file is neither `.zip` nor `.json`, so a running breakwater neither loads nor notices it.

use crate::catalog::catalogers::CATALOGERS;
use crate::osv::naming::RPM_DISTROS;
use crate::osv::{Loader, OsvError, SkipKind};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

/// osv.dev's public bucket: `<base>/<Ecosystem>/all.zip` holds every record of an ecosystem.
pub const OSV_BUCKET: &str = "https://osv-vulnerabilities.storage.googleapis.com";

/// The archive's file name, on the server and on disk.
pub const ARCHIVE: &str = "all.zip";

/// Distro ecosystems the matcher knows besides the RPM table's (`osv::ecosystem`'s families).
const DISTROS: [&str; 5] = ["Debian", "Ubuntu", "Alpine", "Wolfi", "Chainguard"];

/// An OSV ecosystem as osv.dev names its folders (`Debian`, `Red Hat`, `crates.io`): checked
/// once, so it is always safe as one path segment and one URL segment.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EcosystemName(String);

impl EcosystemName {
    /// Checks a name: not empty, no path separator, not `.`/`..`, no release suffix.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an ecosystem name is empty".into());
        }
        if let Some((base, _)) = s.split_once(':') {
            return Err(format!(
                "{s:?}: osv.dev publishes whole ecosystems, not releases; use {base:?}"
            ));
        }
        let bad = |c: char| c == '/' || c == '\\' || c.is_control();
        if s.contains(bad) || s == "." || s == ".." {
            return Err(format!("{s:?} is not an ecosystem name"));
        }
        Ok(EcosystemName(s.to_string()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for EcosystemName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        EcosystemName::parse(s)
    }
}

impl fmt::Display for EcosystemName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every ecosystem the scanner can match: the distros, the RPM distributions of the naming
/// table and the language catalogers' OSV names (`Other` ecosystems match too little to fetch).
pub fn default_ecosystems() -> Vec<EcosystemName> {
    let rpm = RPM_DISTROS.iter().map(|d| d.name);
    let languages = CATALOGERS.iter().filter_map(|c| c.osv_name());
    DISTROS
        .into_iter()
        .chain(rpm)
        .chain(languages)
        .map(|n| EcosystemName(n.to_string()))
        .collect()
}

/// The archive's URL under `base` (a mirror with the bucket's layout); the name is
/// percent-encoded as one segment (`Red Hat` → `Red%20Hat`).
pub fn archive_url(base: &str, eco: &EcosystemName) -> String {
    let segment = percent_encoding::utf8_percent_encode(eco.as_str(), SEGMENT);
    format!("{}/{segment}/{ARCHIVE}", base.trim_end_matches('/'))
}

/// Characters escaped in a path segment: all but RFC 3986's unreserved ones.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Where the archive of `eco` lives under `dir`.
pub fn archive_path(dir: &Path, eco: &EcosystemName) -> PathBuf {
    dir.join(eco.as_str()).join(ARCHIVE)
}

/// The sidecar holding the ETag the archive was served with (hidden, and neither `.zip` nor
/// `.json`, so the loader ignores it).
fn etag_path(target: &Path) -> PathBuf {
    target.with_file_name(format!(".{ARCHIVE}.etag"))
}

/// The ETag to send as `If-None-Match`: only while the archive it belongs to is still there.
pub fn stored_etag(target: &Path) -> Option<String> {
    if !target.is_file() {
        return None;
    }
    let text = std::fs::read_to_string(etag_path(target)).ok()?;
    let tag = text.trim();
    (!tag.is_empty() && !tag.contains(['\r', '\n'])).then(|| tag.to_string())
}

/// What a checked archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// OSV records that parsed.
    pub records: usize,
    /// Records that did not parse (the loader skips them too), with the first one's reason.
    pub bad_records: usize,
    /// `entry: reason` of the first bad record.
    pub first_bad: Option<String>,
    /// Size of the archive.
    pub bytes: u64,
}

/// Checks that `path` is a readable zip of OSV records about `eco`. Damage anywhere (an entry
/// that does not inflate or fails its CRC) rejects it; single records that are no valid OSV
/// are counted, as the loader would skip just them.
pub fn verify(path: &Path, eco: &EcosystemName) -> Result<Verified, String> {
    let bytes = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the download: {e}"))?
        .len();
    let mut loader = Loader::counting();
    loader.add_zip(path).map_err(|e| match e {
        OsvError::Zip { source, .. } => format!("not a usable zip: {source}"),
        other => other.to_string(),
    })?;
    let report = loader.report();
    let damaged: Vec<_> = report
        .skipped
        .iter()
        .filter(|s| s.kind == SkipKind::Damaged)
        .collect();
    if let Some(first) = damaged.first() {
        return Err(format!(
            "damaged archive: {} entries unreadable, first {}: {}",
            damaged.len(),
            entry_name(&first.source),
            first.reason
        ));
    }
    if report.records == 0 {
        return Err(format!(
            "no OSV records in it ({} JSON entries)",
            report.documents
        ));
    }
    let found: std::collections::BTreeSet<&str> = report
        .by_source
        .values()
        .flat_map(|m| m.keys().map(String::as_str))
        .collect();
    if !found.contains(eco.as_str()) {
        let found: Vec<&str> = found.into_iter().take(5).collect();
        return Err(format!(
            "none of its {} records is about {eco} (they are about {})",
            report.records,
            found.join(", ")
        ));
    }
    let bad: Vec<_> = report
        .skipped
        .iter()
        .filter(|s| s.kind != SkipKind::Damaged)
        .collect();
    Ok(Verified {
        records: report.records,
        bad_records: bad.len(),
        first_bad: bad
            .first()
            .map(|s| format!("{}: {}", entry_name(&s.source), s.reason)),
        bytes,
    })
}

/// `zip-path!entry` → `entry` (the download's temporary path means nothing to a reader).
fn entry_name(source: &str) -> &str {
    source.rsplit_once('!').map_or(source, |(_, e)| e)
}

/// A download being written beside its target.
pub struct Staging {
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl Staging {
    /// A hidden temporary file in the target's folder (created if missing), so the final
    /// rename stays on one file system. Removed when dropped without [`Staging::commit`].
    pub fn new(target: &Path) -> Result<Staging, String> {
        let dir = target
            .parent()
            .ok_or_else(|| format!("{} has no folder", target.display()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{ARCHIVE}."))
            .suffix(PARTIAL)
            .tempfile_in(dir)
            .map_err(|e| format!("cannot create a temporary file in {}: {e}", dir.display()))?;
        Ok(Staging {
            target: target.to_path_buf(),
            tmp,
        })
    }

    /// The file to write the download to.
    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Verifies the download and renames it over the target (atomically: a reader sees the
    /// old archive or the new one), then records its ETag. On error the old file stays and the
    /// temporary one is removed.
    pub fn commit(self, eco: &EcosystemName, etag: Option<&str>) -> Result<Verified, String> {
        let tmp_err = |e: std::io::Error| format!("cannot write the download: {e}");
        self.tmp.as_file().sync_all().map_err(tmp_err)?;
        let verified = verify(self.tmp.path(), eco)?;
        // The temporary file is private (0600); the archive must stay readable by the cache,
        // which may run as another user: keep the old file's mode, else world-readable.
        let mode = std::fs::metadata(&self.target)
            .map(|m| m.permissions())
            .unwrap_or_else(|_| std::os::unix::fs::PermissionsExt::from_mode(0o644));
        std::fs::set_permissions(self.tmp.path(), mode).map_err(tmp_err)?;
        let sidecar = etag_path(&self.target);
        // An old ETag must not outlive the file it describes (a crash between the two steps
        // then costs one full download, never a wrong 304).
        match std::fs::remove_file(&sidecar) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot remove {}: {e}", sidecar.display()))
            }
            _ => {}
        }
        self.tmp
            .persist(&self.target)
            .map_err(|e| format!("cannot replace {}: {}", self.target.display(), e.error))?;
        if let Some(dir) = self.target.parent() {
            // Make the rename itself durable.
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        if let Some(tag) = etag.filter(|t| !t.contains(['\r', '\n'])) {
            if let Err(e) = std::fs::write(&sidecar, format!("{tag}\n")) {
                tracing::warn!("cannot store the ETag in {}: {e}", sidecar.display());
            }
        }
        Ok(verified)
    }
}

/// Suffix of temporary download files.
const PARTIAL: &str = ".partial";

/// Removes temporary files that runs killed mid-download left under `dir/<ecosystem>/`, if older
/// than `age` (a younger one may belong to a run still going). Returns how many went.
pub fn remove_stale_partials(dir: &Path, age: Duration) -> usize {
    let Ok(folders) = std::fs::read_dir(dir) else {
        return 0;
    };
    let prefix = format!(".{ARCHIVE}.");
    let now = SystemTime::now();
    let mut removed = 0;
    for folder in folders.flatten() {
        let Ok(files) = std::fs::read_dir(folder.path()) else {
            continue;
        };
        for f in files.flatten() {
            let name = f.file_name().to_string_lossy().into_owned();
            let old = f
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > age);
            if name.starts_with(&prefix)
                && name.ends_with(PARTIAL)
                && old
                && std::fs::remove_file(f.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

#[cfg(test)]
#[path = "dbupdate_tests.rs"]
mod tests;
