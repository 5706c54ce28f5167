//! Matching an image's inventory against the advisory database: one finding per (advisory,
//! package found at a path), with what ECR reports about it, and the difference between two
//! matches (what a change of vulnerability data added and resolved).

use crate::catalog::{OsRelease, Package as Installed};
use crate::inventory::Inventory;
use crate::osv::{self, Database, Package, Severity};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One advisory affecting one installed package of an image.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct VulnFinding {
    /// OSV record id.
    pub id: String,
    /// The name to show: the first CVE alias, else the id.
    pub name: String,
    /// Aliases of the record (CVE, GHSA, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Rating.
    pub severity: Severity,
    /// CVSS base score the rating came from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cvss_score: Option<f64>,
    /// Link to the advisory.
    pub uri: String,
    /// Summary of the advisory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Installed package name.
    pub package_name: String,
    /// Installed version.
    pub package_version: String,
    /// First fixed version above the installed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_version: Option<String>,
    /// OSV ecosystem it was matched in (`Debian:12`, `PyPI`, …).
    pub ecosystem: String,
    /// Cataloger that found the package (`dpkg`, `python`, …).
    pub package_type: String,
    /// File the package was recorded in.
    pub file_path: String,
    /// Source package, for distros that advise per source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    /// Source package version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<String>,
}

/// Identity of a finding across rescans: the same advisory on the same package at the same path.
pub type FindingKey = (String, String, String, String);

impl VulnFinding {
    /// The identity used to tell new findings from resolved ones.
    pub fn key(&self) -> FindingKey {
        (
            self.id.clone(),
            self.package_name.clone(),
            self.package_version.clone(),
            self.file_path.clone(),
        )
    }

    /// True when the id, display name or an alias is in `allow`.
    pub fn allowed_by(&self, allow: &[String]) -> bool {
        allow.iter().any(|a| {
            a.eq_ignore_ascii_case(&self.id)
                || a.eq_ignore_ascii_case(&self.name)
                || self.aliases.iter().any(|x| a.eq_ignore_ascii_case(x))
        })
    }

    /// `ID (SEVERITY, package version[, fixed in F])`, for messages and headers.
    pub fn short(&self) -> String {
        let fixed = self
            .fixed_version
            .as_deref()
            .map(|f| format!(", fixed in {f}"))
            .unwrap_or_default();
        format!(
            "{} ({}, {} {}{fixed})",
            self.name, self.severity, self.package_name, self.package_version
        )
    }
}

/// The OSV ecosystem to look a package up in. OS packages need the distro release, which
/// only the image's os-release knows: `Debian` + `VERSION_ID=12` → `Debian:12` (OSV keeps
/// releases apart; `OsvEcosystem` normalises `12.5`, `v3.19`, … on both sides).
pub fn lookup_ecosystem(p: &Installed, os: Option<&OsRelease>) -> String {
    if !p.kind.is_os() {
        return p.ecosystem.clone();
    }
    // `OsvEcosystem` reduces the release to the key the distro's advisories use (Red Hat,
    // Rocky and Alma the major, SUSE the service pack) on both sides.
    match os.and_then(|o| o.version_id.as_deref()).map(str::trim) {
        Some(v) if !v.is_empty() => format!("{}:{v}", p.ecosystem),
        _ => p.ecosystem.clone(),
    }
}

/// Every finding for the inventory, worst first (then by name, package and path).
pub fn match_inventory(db: &Database, inv: &Inventory) -> Vec<VulnFinding> {
    Memo::new(db).inventory(inv)
}

/// What a package is looked up by: ecosystem, name, version, source name and version.
type Query = (String, String, String, Option<String>, Option<String>);

/// Matches inventories against one database, remembering the advisories of each distinct
/// package: cached images share base layers, so a rematch of many images meets the same
/// package versions over and over.
pub struct Memo<'a> {
    db: &'a Database,
    seen: HashMap<Query, Vec<osv::Finding>>,
}

impl<'a> Memo<'a> {
    /// An empty memo over `db`.
    pub fn new(db: &'a Database) -> Self {
        Memo {
            db,
            seen: HashMap::new(),
        }
    }

    /// Every finding for the inventory, worst first (then by name, package and path).
    pub fn inventory(&mut self, inv: &Inventory) -> Vec<VulnFinding> {
        let mut out = Vec::new();
        let mut keys = HashSet::new();
        for p in &inv.packages {
            let eco = lookup_ecosystem(p, inv.os.as_ref());
            let q: Query = (
                eco,
                p.name.clone(),
                p.version.clone(),
                p.source_name.clone(),
                p.source_version.clone(),
            );
            let db = self.db;
            let found = self.seen.entry(q).or_insert_with_key(|q| {
                let mut query = Package::new(&q.0, &q.1, &q.2);
                if let Some(src) = &q.3 {
                    query = query.with_source(src, q.4.as_deref());
                }
                db.matches(&query)
            });
            for f in found.iter() {
                let finding = VulnFinding {
                    id: f.id.clone(),
                    name: f.display_id.clone(),
                    aliases: f.aliases.clone(),
                    severity: f.severity,
                    cvss_score: f.cvss_score,
                    uri: f.url.clone(),
                    description: f.summary.clone(),
                    package_name: p.name.clone(),
                    package_version: p.version.clone(),
                    fixed_version: f.fixed_version.clone(),
                    ecosystem: f.package.ecosystem.clone(),
                    package_type: p.kind.name().to_string(),
                    file_path: p.path.clone(),
                    source_name: p.source_name.clone(),
                    source_version: p.source_version.clone(),
                };
                // A package listed twice in one database must not double its findings.
                if keys.insert(finding.key()) {
                    out.push(finding);
                }
            }
        }
        sort(&mut out);
        out
    }
}

/// Worst first, then by name, package and path: the order reports and gates use.
pub fn sort(findings: &mut [VulnFinding]) {
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.name.cmp(&b.name))
            .then_with(|| a.package_name.cmp(&b.package_name))
            .then_with(|| a.file_path.cmp(&b.file_path))
    });
}

/// Findings per severity, every level present (zero included) so dashboards see all series.
pub fn severity_counts(findings: &[VulnFinding]) -> BTreeMap<Severity, u64> {
    let mut m: BTreeMap<Severity, u64> = ALL_SEVERITIES.iter().map(|s| (*s, 0)).collect();
    for f in findings {
        *m.entry(f.severity).or_default() += 1;
    }
    m
}

/// Every severity, worst first.
pub const ALL_SEVERITIES: [Severity; 5] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
    Severity::Undefined,
];

/// What a rematch changed: findings only in `new` (added) and only in `old` (resolved).
pub fn diff<'a>(
    old: &'a [VulnFinding],
    new: &'a [VulnFinding],
) -> (Vec<&'a VulnFinding>, Vec<&'a VulnFinding>) {
    let old_keys: HashSet<FindingKey> = old.iter().map(VulnFinding::key).collect();
    let new_keys: HashSet<FindingKey> = new.iter().map(VulnFinding::key).collect();
    let added = new
        .iter()
        .filter(|f| !old_keys.contains(&f.key()))
        .collect();
    let resolved = old
        .iter()
        .filter(|f| !new_keys.contains(&f.key()))
        .collect();
    (added, resolved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::PackageKind;
    use crate::osv::Loader;

    fn dpkg(name: &str, version: &str, source: Option<&str>) -> Installed {
        Installed {
            kind: PackageKind::Dpkg,
            ecosystem: "Debian".into(),
            name: name.into(),
            version: version.into(),
            arch: Some("amd64".into()),
            source_name: source.map(str::to_string),
            source_version: None,
            path: "/var/lib/dpkg/status".into(),
            purl: format!("pkg:deb/debian/{name}@{version}"),
        }
    }

    fn record(id: &str, pkg: &str, fixed: &str, severity: &str) -> String {
        format!(
            r#"{{"id":"{id}","aliases":["CVE-{id}"],"summary":"s","database_specific":{{"severity":"{severity}"}},
               "affected":[{{"package":{{"ecosystem":"Debian:12","name":"{pkg}"}},
               "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
        )
    }

    fn db(records: &[String]) -> Database {
        let mut l = Loader::new();
        for (i, r) in records.iter().enumerate() {
            l.add_json(&format!("r{i}.json"), r.as_bytes());
        }
        l.finish().0
    }

    fn rpm_record(id: &str, ecosystem: &str, pkg: &str, fixed: &str) -> String {
        format!(
            r#"{{"id":"{id}","summary":"s","database_specific":{{"severity":"HIGH"}},
               "affected":[{{"package":{{"ecosystem":"{ecosystem}","name":"{pkg}"}},
               "ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}},{{"fixed":"{fixed}"}}]}}]}}]}}"#
        )
    }

    #[test]
    fn red_hat_and_suse_packages_meet_their_advisories() {
        let db = db(&[
            rpm_record(
                "RHSA-1",
                "Red Hat:enterprise_linux:9::appstream",
                "openssl",
                "1:3.0.7-27.el9",
            ),
            rpm_record(
                "RHSA-2",
                "Red Hat:enterprise_linux:8::appstream",
                "openssl",
                "1:9.0-1.el8",
            ),
            rpm_record(
                "SUSE-1",
                "SUSE:Linux Enterprise Server 15 SP5",
                "libz1",
                "1.2.13-150500.4.3.1",
            ),
            rpm_record(
                "SUSE-2",
                "SUSE:Linux Enterprise Server 15 SP4",
                "libz1",
                "9.0",
            ),
        ]);
        let image = |id: &str, ecosystem: &str, version_id: &str, pkg: &str, version: &str| {
            let mut p = dpkg(pkg, version, None);
            p.kind = PackageKind::Rpm;
            p.ecosystem = ecosystem.into();
            Inventory {
                os: Some(OsRelease {
                    id: id.into(),
                    version_id: Some(version_id.into()),
                    ..OsRelease::default()
                }),
                packages: vec![p],
                ..Inventory::default()
            }
        };
        let ids = |inv: &Inventory| -> Vec<String> {
            match_inventory(&db, inv)
                .into_iter()
                .map(|f| f.id)
                .collect()
        };
        let rhel = image("rhel", "Red Hat", "9.3", "openssl", "1:3.0.7-25.el9");
        assert_eq!(ids(&rhel), vec!["RHSA-1"]);
        let sles = image("sles", "SUSE", "15.5", "libz1", "1.2.13-150500.4.2.1");
        assert_eq!(ids(&sles), vec!["SUSE-1"]);
    }

    #[test]
    fn os_packages_match_in_the_release_by_source() {
        let inv = Inventory {
            os: Some(OsRelease {
                id: "debian".into(),
                version_id: Some("12".into()),
                ..OsRelease::default()
            }),
            packages: vec![
                dpkg("zlib1g", "1:1.2.13.dfsg-1", Some("zlib")),
                dpkg("libc6", "2.36-9", Some("glibc")),
                dpkg("bash", "5.2.15-2+b2", None),
            ],
            ..Inventory::default()
        };
        let db = db(&[
            record("A", "zlib", "1:1.2.13.dfsg-1+deb12u1", "CRITICAL"),
            record("B", "glibc", "2.36-8", "HIGH"),
            record("C", "bash", "5.2.15-3", "LOW"),
        ]);
        let f = match_inventory(&db, &inv);
        let names: Vec<(&str, &str, &str)> = f
            .iter()
            .map(|f| (f.id.as_str(), f.package_name.as_str(), f.ecosystem.as_str()))
            .collect();
        assert_eq!(
            names,
            vec![("A", "zlib1g", "Debian:12"), ("C", "bash", "Debian:12")]
        );
        assert_eq!(f[0].name, "CVE-A");
        assert_eq!(
            f[0].fixed_version.as_deref(),
            Some("1:1.2.13.dfsg-1+deb12u1")
        );
        assert_eq!(f[0].package_type, "dpkg");
        let counts = severity_counts(&f);
        assert_eq!(counts[&Severity::Critical], 1);
        assert_eq!(counts[&Severity::High], 0);

        let rocky = OsRelease {
            id: "rocky".into(),
            version_id: Some("9.3".into()),
            ..OsRelease::default()
        };
        let mut rpm = dpkg("openssl", "1:3.0.7-25.el9", None);
        rpm.kind = PackageKind::Rpm;
        rpm.ecosystem = "Rocky Linux".into();
        assert_eq!(lookup_ecosystem(&rpm, Some(&rocky)), "Rocky Linux:9.3");
        let py = Installed {
            kind: PackageKind::Python,
            ecosystem: "PyPI".into(),
            ..dpkg("requests", "2.0", None)
        };
        assert_eq!(lookup_ecosystem(&py, Some(&rocky)), "PyPI");

        // Without a release nothing can be matched: Debian 11 and 12 advisories differ.
        let mut bare = inv.clone();
        bare.os = None;
        assert!(match_inventory(&db, &bare).is_empty());
    }

    #[test]
    fn diff_and_allow_list() {
        let inv = Inventory {
            os: Some(OsRelease {
                id: "debian".into(),
                version_id: Some("12.4".into()),
                ..OsRelease::default()
            }),
            packages: vec![dpkg("zlib1g", "1:1.2.13.dfsg-1", Some("zlib"))],
            ..Inventory::default()
        };
        let one = match_inventory(&db(&[record("A", "zlib", "1:2", "HIGH")]), &inv);
        let two = match_inventory(
            &db(&[
                record("A", "zlib", "1:2", "HIGH"),
                record("B", "zlib", "1:2", "LOW"),
            ]),
            &inv,
        );
        let (added, resolved) = diff(&one, &two);
        assert_eq!(
            added.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            ["B"]
        );
        assert!(resolved.is_empty());
        let (added, resolved) = diff(&two, &one);
        assert!(added.is_empty());
        assert_eq!(resolved[0].id, "B");
        assert!(one[0].allowed_by(&["cve-a".into()]));
        assert!(!one[0].allowed_by(&["CVE-B".into()]));
        assert!(one[0]
            .short()
            .starts_with("CVE-A (HIGH, zlib1g 1:1.2.13.dfsg-1"));
    }
}
