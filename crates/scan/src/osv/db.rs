//! The in-memory advisory database: records indexed by (ecosystem with
//! release, normalised package name), answering "which advisories affect this
//! installed package?".

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ecosystem::{Family, OsvEcosystem};
use super::matcher::{CompileIssues, CompiledAffected, Installed};
use super::model::Record;
use super::naming::{listed_binaries, rpm_source_evr, Naming};
use super::severity::{rate, Rated, Severity};

/// An installed package to look up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    /// OSV ecosystem with release, e.g. `Debian:12`, `Alpine:v3.19`, `PyPI`.
    pub ecosystem: String,
    /// Binary (installed) package name.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Source package name (Debian, Ubuntu, Alpine, SUSE, Alma, … advise per source package).
    pub source_name: Option<String>,
    /// Source package version, when it differs from the binary one (binNMUs, epochs); for rpm
    /// the SOURCERPM's `version-release`, which never carries the epoch.
    pub source_version: Option<String>,
}

impl Package {
    /// A package without source information.
    pub fn new(ecosystem: &str, name: &str, version: &str) -> Self {
        Package {
            ecosystem: ecosystem.to_string(),
            name: name.to_string(),
            version: version.to_string(),
            source_name: None,
            source_version: None,
        }
    }

    /// Sets the source package name and, if it differs, its version.
    pub fn with_source(mut self, name: &str, version: Option<&str>) -> Self {
        self.source_name = Some(name.to_string());
        self.source_version = version.map(str::to_string);
        self
    }
}

/// One advisory that affects one installed package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The OSV record id.
    pub id: String,
    /// The name to show: the first CVE alias, else the id.
    pub display_id: String,
    /// All aliases of the record.
    pub aliases: Vec<String>,
    /// Rating (highest over the matching affected entries).
    pub severity: Severity,
    /// CVSS base score the rating came from, if it came from CVSS.
    pub cvss_score: Option<f64>,
    /// The first fixed version above the installed one, if any.
    pub fixed_version: Option<String>,
    /// Summary, or the first line of the details.
    pub summary: Option<String>,
    /// Link to the advisory.
    pub url: String,
    /// RustSec's `informational` kind (`unmaintained`, `unsound`, `notice`) if set.
    pub informational: Option<String>,
    /// The package as it was looked up.
    pub package: Package,
    /// The name that matched (the source name for distros that advise per source).
    pub matched_name: String,
    /// The version that was compared (the source version for those distros).
    pub matched_version: String,
}

/// A compiled `affected[]` entry and where it came from.
#[derive(Debug, Clone)]
struct Entry {
    record: usize,
    compiled: CompiledAffected,
    rated: Rated,
    informational: Option<String>,
    /// The binaries a source-named entry covers (SUSE's `ecosystem_specific.binaries`), sorted.
    binaries: Option<Vec<String>>,
}

/// Load-time statistics of a [`Database`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DbStats {
    /// Records held (withdrawn ones included).
    pub records: usize,
    /// Withdrawn records (kept, never matched).
    pub withdrawn: usize,
    /// Indexed affected entries.
    pub entries: usize,
    /// Ranges that cannot be evaluated (unparsable event, unknown type, no ordering).
    pub unusable_ranges: usize,
    /// Records dropped because another record had the same id.
    pub duplicates: usize,
}

/// Advisory records indexed for matching.
#[derive(Debug, Clone, Default)]
pub struct Database {
    records: Vec<Record>,
    by_id: HashMap<String, usize>,
    entries: Vec<Entry>,
    index: HashMap<(String, String), Vec<usize>>,
    hash: String,
    stats: DbStats,
}

impl Database {
    /// Builds a database from records and the SHA-256 of each record's source bytes.
    ///
    /// The content hash covers ids and digests in id order, so it changes
    /// whenever any record's bytes change, whatever order they were read in.
    pub fn from_records(records: Vec<(Record, [u8; 32])>) -> Self {
        let mut db = Database::default();
        // One record per id: the latest `modified` wins, later input on ties.
        let mut latest: HashMap<String, (Record, [u8; 32])> = HashMap::new();
        for (record, digest) in records {
            if let Some((old, _)) = latest.get(&record.id) {
                db.stats.duplicates += 1;
                if old.modified > record.modified {
                    continue;
                }
            }
            latest.insert(record.id.clone(), (record, digest));
        }
        let mut sorted: Vec<_> = latest.into_values().collect();
        sorted.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        let mut hasher = Sha256::new();
        let mut issues = CompileIssues::default();
        for (record, digest) in sorted {
            hasher.update(record.id.as_bytes());
            hasher.update([0u8]);
            hasher.update(digest);
            let idx = db.records.len();
            db.by_id.insert(record.id.clone(), idx);
            if record.withdrawn.is_some() {
                db.stats.withdrawn += 1;
            } else {
                db.index_record(idx, &record, &mut issues);
            }
            db.records.push(record);
        }
        db.hash = hex::encode(hasher.finalize());
        db.stats.records = db.records.len();
        db.stats.entries = db.entries.len();
        db.stats.unusable_ranges = issues.unusable_ranges;
        db
    }

    fn index_record(&mut self, idx: usize, record: &Record, issues: &mut CompileIssues) {
        for affected in &record.affected {
            let Some(pkg) = &affected.package else {
                continue;
            };
            let eco = OsvEcosystem::parse(&pkg.ecosystem);
            let key = (eco.to_string(), eco.normalise_name(&pkg.name));
            let informational = affected
                .database_specific
                .as_ref()
                .and_then(|d| d.get("informational"))
                .and_then(Value::as_str)
                .map(str::to_string);
            // Only ecosystems whose schema entry defines `binaries` are narrowed by it.
            let binaries = match eco.naming() {
                Naming::SourceWithBinaries => listed_binaries(affected.ecosystem_specific.as_ref()),
                _ => None,
            };
            self.index.entry(key).or_default().push(self.entries.len());
            self.entries.push(Entry {
                record: idx,
                compiled: CompiledAffected::compile(&eco, affected, issues),
                rated: rate(record, affected),
                informational,
                binaries,
            });
        }
    }

    /// Number of records (withdrawn ones included).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is loaded.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Hex SHA-256 over all record ids and contents: a rescan trigger that works
    /// even where `modified` dates are placeholders (Go).
    pub fn content_hash(&self) -> &str {
        &self.hash
    }

    /// Load-time statistics.
    pub fn stats(&self) -> DbStats {
        self.stats
    }

    /// The record with this id, if loaded.
    pub fn get(&self, id: &str) -> Option<&Record> {
        self.by_id.get(id).map(|&i| &self.records[i])
    }

    /// All records, in id order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.iter()
    }

    /// The advisories affecting `pkg`, one finding per record, in id order.
    ///
    /// The ecosystem's [`Naming`] says which name and version are looked up: the source
    /// package's (Debian, Ubuntu, Alpine, SUSE, AlmaLinux, Rocky, Azure Linux; the binary's
    /// when the source is unknown), the binary's (language ecosystems, Photon OS) or either
    /// (Red Hat). If the installed version does not parse, only exact `versions` entries match.
    pub fn matches(&self, pkg: &Package) -> Vec<Finding> {
        let eco = OsvEcosystem::parse(&pkg.ecosystem);
        let mut findings: Vec<Finding> = Vec::new();
        for (name, version) in lookups(&eco, pkg) {
            self.match_name(&eco, pkg, &name, &version, &mut findings);
        }
        findings.sort_by(|a, b| a.id.cmp(&b.id));
        findings
    }

    /// Adds the findings of the entries indexed under `name`, comparing `version`.
    fn match_name(
        &self,
        eco: &OsvEcosystem,
        pkg: &Package,
        name: &str,
        version: &str,
        findings: &mut Vec<Finding>,
    ) {
        let key = (eco.to_string(), eco.normalise_name(name));
        let Some(entry_ids) = self.index.get(&key) else {
            return;
        };
        let mut installed = Installed::new(version);
        for &e in entry_ids {
            let entry = &self.entries[e];
            // A source's entry speaks only for the binaries it lists, when it lists them.
            if let Some(bins) = &entry.binaries {
                if bins.binary_search(&pkg.name).is_err() {
                    continue;
                }
            }
            let Some(hit) = entry.compiled.matches(&mut installed) else {
                continue;
            };
            let record = &self.records[entry.record];
            if let Some(f) = findings.iter_mut().find(|f| f.id == record.id) {
                // Several affected entries of one record: keep one finding.
                if entry.rated.severity > f.severity {
                    f.severity = entry.rated.severity;
                    f.cvss_score = entry.rated.score;
                }
                f.fixed_version = f.fixed_version.take().or(hit.fixed);
                continue;
            }
            findings.push(Finding {
                id: record.id.clone(),
                display_id: record.display_id().to_string(),
                aliases: record.aliases.clone(),
                severity: entry.rated.severity,
                cvss_score: entry.rated.score,
                fixed_version: hit.fixed,
                summary: summary(record),
                url: record.url(),
                informational: entry.informational.clone(),
                package: pkg.clone(),
                matched_name: name.to_string(),
                matched_version: version.to_string(),
            });
        }
    }
}

/// The (name, version) pairs to look `pkg` up by, as its ecosystem's records name packages.
fn lookups(eco: &OsvEcosystem, pkg: &Package) -> Vec<(String, String)> {
    let binary = (pkg.name.clone(), pkg.version.clone());
    let source = || {
        let name = pkg.source_name.as_deref().unwrap_or(&pkg.name);
        let version = match &pkg.source_version {
            // rpm's SOURCERPM omits the epoch its binaries carry.
            Some(v) if eco.family() == Family::Rpm => rpm_source_evr(&pkg.version, v),
            Some(v) => v.clone(),
            None => pkg.version.clone(),
        };
        (name.to_string(), version)
    };
    match eco.naming() {
        Naming::Binary => vec![binary],
        Naming::Source | Naming::SourceWithBinaries => vec![source()],
        Naming::BinaryOrSource => {
            let source = source();
            if source == binary {
                vec![binary]
            } else {
                vec![binary, source]
            }
        }
    }
}

/// The record's summary, else the first non-empty line of its details.
fn summary(record: &Record) -> Option<String> {
    record
        .summary
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            record
                .details
                .as_deref()
                .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
        })
        .map(|s| s.trim().to_string())
}
