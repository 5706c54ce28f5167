//! Real osv.dev exports (PyPI, Go, crates.io): load counts and time, and a few
//! records checked by hand against their ranges.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

use super::{Database, Finding, Package, Severity};

fn zip(name: &str) -> PathBuf {
    crate::version::vectors::vulndb_dir().join("osv").join(name)
}

/// All three zips in one database, loaded once for every test here.
fn db() -> &'static Database {
    static DB: OnceLock<Database> = OnceLock::new();
    DB.get_or_init(|| {
        let mut total = 0;
        let start = Instant::now();
        let mut loader = super::Loader::new();
        for (name, want) in [
            ("PyPI-all.zip", 2661),
            ("Go-all.zip", 4291),
            ("crates.io-all.zip", 1206),
        ] {
            let t = Instant::now();
            let before = loader.report().records;
            loader.add_zip(&zip(name)).expect("zip loads");
            let n = loader.report().records - before;
            eprintln!("{name}: {n} records in {:?}", t.elapsed());
            assert_eq!(n, want, "{name}");
            total += n;
        }
        let (db, report) = loader.finish();
        assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
        assert_eq!(db.len(), total);
        eprintln!(
            "all three: {total} records, stats {:?}, {:?} total, hash {}",
            db.stats(),
            start.elapsed(),
            db.content_hash()
        );
        db
    })
}

fn find<'a>(f: &'a [Finding], id: &str) -> Option<&'a Finding> {
    f.iter().find(|x| x.id == id)
}

fn ids(f: &[Finding]) -> Vec<(&str, Option<&str>)> {
    f.iter()
        .map(|x| (x.id.as_str(), x.fixed_version.as_deref()))
        .collect()
}

#[test]
fn loads_all_three_zips() {
    let db = db();
    let s = db.stats();
    assert_eq!(s.withdrawn, 10 + 17 + 13);
    // Only PyPI's GIT ranges are skipped silently; no range should be unusable.
    assert_eq!(s.unusable_ranges, 0, "{s:?}");
}

#[test]
fn pypi_urllib3_unsorted_events() {
    // PYSEC-2023-192: introduced 2.0.0, fixed 2.0.6, introduced 0, fixed 1.26.17 (unsorted).
    // PYSEC-2023-212: introduced 2.0.0, fixed 2.0.7, introduced 0, fixed 1.26.18.
    let m = |v: &str| db().matches(&Package::new("PyPI", "urllib3", v));
    assert_eq!(
        ids(&m("1.26.16")),
        [
            ("PYSEC-2023-192", Some("1.26.17")),
            ("PYSEC-2023-212", Some("1.26.18"))
        ]
    );
    assert_eq!(
        ids(&m("2.0.5")),
        [
            ("PYSEC-2023-192", Some("2.0.6")),
            ("PYSEC-2023-212", Some("2.0.7"))
        ]
    );
    assert_eq!(ids(&m("2.0.6")), [("PYSEC-2023-212", Some("2.0.7"))]);
    assert!(m("2.0.7").is_empty() && m("1.26.18").is_empty());
    let f = m("1.26.16");
    // CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N = 8.1; AV:A/AC:H/PR:H/UI:N/S:U/C:H/I:N/A:N = 4.2.
    assert_eq!(
        (f[0].severity, f[0].cvss_score),
        (Severity::High, Some(8.1))
    );
    assert_eq!(
        (f[1].severity, f[1].cvss_score),
        (Severity::Medium, Some(4.2))
    );
    assert_eq!(f[0].display_id, "CVE-2023-43804");
    assert_eq!(f[0].url, "https://osv.dev/vulnerability/PYSEC-2023-192");
}

#[test]
fn pypi_names_are_pep503_normalised() {
    // PyYAML 5.3: PYSEC-2020-96 (5.1 ≤ v < 5.3.1) and PYSEC-2021-142 (< 5.4);
    // not PYSEC-2020-176 (5.1 ≤ v < 5.2b1) nor PYSEC-2018-49 (< 5.1).
    let f = db().matches(&Package::new("PyPI", "PyYAML", "5.3"));
    assert_eq!(
        ids(&f),
        [
            ("PYSEC-2020-96", Some("5.3.1")),
            ("PYSEC-2021-142", Some("5.4"))
        ]
    );
    assert_eq!(f[0].severity, Severity::Undefined);
    assert!(f[0].summary.as_deref().is_some_and(|s| !s.is_empty()));
    let f = db().matches(&Package::new("PyPI", "requests", "2.30.0"));
    assert_eq!(ids(&f), [("PYSEC-2023-74", Some("2.31.0"))]);
}

#[test]
fn pypi_withdrawn_never_matches() {
    // PYSEC-2019-144 (arrayfire < 3.6.0) is withdrawn.
    let f = db().matches(&Package::new("PyPI", "arrayfire", "3.5.0"));
    assert!(find(&f, "PYSEC-2019-144").is_none(), "{:?}", ids(&f));
}

#[test]
fn go_stdlib_and_module() {
    // GO-2023-1571: stdlib [0, 1.19.6) ∪ [1.20.0-0, 1.20.1); golang.org/x/net [0, 0.7.0).
    let std = |v: &str| db().matches(&Package::new("Go", "stdlib", v));
    let f = std("1.20.0");
    let hit = find(&f, "GO-2023-1571").expect("1.20.0 affected");
    assert_eq!(hit.fixed_version.as_deref(), Some("1.20.1"));
    assert_eq!(hit.display_id, "CVE-2022-41723");
    assert_eq!(hit.url, "https://pkg.go.dev/vuln/GO-2023-1571");
    assert_eq!(hit.severity, Severity::Undefined);
    assert_eq!(
        find(&std("1.19.5"), "GO-2023-1571").and_then(|h| h.fixed_version.as_deref()),
        Some("1.19.6")
    );
    assert_eq!(
        find(&std("go1.20rc1"), "GO-2023-1571").and_then(|h| h.fixed_version.as_deref()),
        Some("1.20.1")
    );
    assert!(find(&std("1.19.6"), "GO-2023-1571").is_none());
    assert!(find(&std("v1.20.1"), "GO-2023-1571").is_none());
    let net = |v: &str| db().matches(&Package::new("Go", "golang.org/x/net", v));
    assert!(find(&net("v0.6.0"), "GO-2023-1571").is_some());
    assert!(find(&net("0.0.0-20220906165146-f3363e06e74c"), "GO-2023-1571").is_some());
    assert!(find(&net("v0.7.0"), "GO-2023-1571").is_none());
}

#[test]
fn go_withdrawn_never_matches() {
    // GO-2022-0617 (k8s.io/kubernetes, introduced 0) is withdrawn.
    let f = db().matches(&Package::new("Go", "k8s.io/kubernetes", "v1.20.0"));
    assert!(find(&f, "GO-2022-0617").is_none());
}

#[test]
fn crates_multiple_intervals() {
    // RUSTSEC-2023-0001 tokio: [1.7.0,1.18.4) ∪ [1.19.0,1.20.3) ∪ [1.21.0,1.23.1).
    let t = |v: &str| db().matches(&Package::new("crates.io", "tokio", v));
    let fix = |v: &str| find(&t(v), "RUSTSEC-2023-0001").map(|h| h.fixed_version.clone());
    assert_eq!(fix("1.6.0"), None);
    assert_eq!(fix("1.18.3"), Some(Some("1.18.4".into())));
    assert_eq!(fix("1.18.4"), None);
    assert_eq!(fix("1.19.0"), Some(Some("1.20.3".into())));
    assert_eq!(fix("1.22.0"), Some(Some("1.23.1".into())));
    assert_eq!(fix("1.23.1"), None);
    // RUSTSEC-2021-0124 tokio: [0.1.14,1.8.4) ∪ [1.9.0,1.13.1).
    let f = t("1.8.3");
    assert_eq!(
        find(&f, "RUSTSEC-2021-0124").and_then(|h| h.fixed_version.as_deref()),
        Some("1.8.4")
    );
    assert_eq!(
        find(&f, "RUSTSEC-2021-0124").map(|h| h.display_id.as_str()),
        Some("CVE-2021-45710")
    );
}

#[test]
fn crates_severity_and_informational() {
    // RUSTSEC-2022-0013 regex < 1.5.5, CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H = 7.5.
    let f = db().matches(&Package::new("crates.io", "regex", "1.5.4"));
    let h = find(&f, "RUSTSEC-2022-0013").expect("regex 1.5.4 affected");
    assert_eq!(
        (h.severity, h.cvss_score, h.fixed_version.as_deref()),
        (Severity::High, Some(7.5), Some("1.5.5"))
    );
    // RUSTSEC-2025-0168 zip [1.3.0, 2.3.0) has only a CVSS v4 vector.
    let f = db().matches(&Package::new("crates.io", "zip", "2.2.0"));
    let h = find(&f, "RUSTSEC-2025-0168").expect("zip 2.2.0 affected");
    let score = h.cvss_score.expect("v4 score");
    assert_eq!(h.severity, Severity::from_score(score));
    // RUSTSEC-2016-0004 libusb: unmaintained, fixed 0.3.1-0.
    let f = db().matches(&Package::new("crates.io", "libusb", "0.3.0"));
    let h = find(&f, "RUSTSEC-2016-0004").expect("libusb 0.3.0 flagged");
    assert_eq!(h.informational.as_deref(), Some("unmaintained"));
    assert_eq!(h.fixed_version.as_deref(), Some("0.3.1-0"));
    // RUSTSEC-2019-0031 (spin) is withdrawn.
    let f = db().matches(&Package::new("crates.io", "spin", "0.0.0-alpha"));
    assert!(find(&f, "RUSTSEC-2019-0031").is_none());
}
