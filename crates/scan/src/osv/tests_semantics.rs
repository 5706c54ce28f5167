//! OSV range semantics, severity precedence and loader behaviour on small
//! records written inline.

use serde_json::{json, Value};

use super::{Database, Loader, OsvError, Package, Severity};

/// A database of the given records (JSON values).
fn db_of(records: &[Value]) -> Database {
    let mut loader = Loader::new();
    for (i, r) in records.iter().enumerate() {
        loader.add_json(&format!("inline-{i}"), r.to_string().as_bytes());
    }
    let (db, report) = loader.finish();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    db
}

/// A crates.io record for package `demo` with the given ranges.
fn rec(id: &str, ranges: Value) -> Value {
    json!({"id": id, "affected": [{"package": {"ecosystem": "crates.io", "name": "demo"}, "ranges": ranges}]})
}

fn hit(db: &Database, v: &str) -> Option<Option<String>> {
    let f = db.matches(&Package::new("crates.io", "demo", v));
    assert!(f.len() <= 1);
    f.into_iter().next().map(|f| f.fixed_version)
}

#[test]
fn limit_bounds_the_range() {
    let db = db_of(&[rec(
        "L-1",
        json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"limit": "2.0.0"}]}]),
    )]);
    assert_eq!(hit(&db, "1.9.9"), Some(None));
    assert_eq!(hit(&db, "2.0.0"), None);
    let db = db_of(&[rec(
        "L-2",
        json!([{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"limit": "*"}]}]),
    )]);
    assert_eq!(hit(&db, "9.0.0"), Some(None));
    assert_eq!(hit(&db, "0.9.0"), None);
}

#[test]
fn unsorted_events_and_multiple_ranges() {
    let db = db_of(&[rec(
        "M-1",
        json!([
            {"type": "SEMVER", "events": [{"fixed": "3.1.0"}, {"introduced": "3.0.0"}]},
            {"type": "SEMVER", "events": [{"last_affected": "1.5.0"}, {"introduced": "1.0.0"}]}
        ]),
    )]);
    assert_eq!(hit(&db, "0.9.0"), None);
    assert_eq!(hit(&db, "1.5.0"), Some(None));
    assert_eq!(hit(&db, "1.5.1"), None);
    assert_eq!(hit(&db, "3.0.5"), Some(Some("3.1.0".into())));
    assert_eq!(hit(&db, "3.1.0"), None);
}

#[test]
fn introduced_equal_to_fixed_affects_nothing() {
    let db = db_of(&[rec(
        "E-1",
        json!([{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"fixed": "1.0.0"}]}]),
    )]);
    assert_eq!(hit(&db, "1.0.0"), None);
}

#[test]
fn git_unknown_and_malformed_ranges() {
    let db = db_of(&[
        rec(
            "G-1",
            json!([{"type": "GIT", "repo": "r", "events": [{"introduced": "abc"}]}]),
        ),
        rec(
            "U-1",
            json!([{"type": "WEIRD", "events": [{"introduced": "0"}]}]),
        ),
        rec(
            "B-1",
            json!([{"type": "SEMVER", "events": [{"introduced": "0", "fixed": "1.0.0"}]}]),
        ),
        rec(
            "B-2",
            json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "not.a.version"}]}]),
        ),
    ]);
    assert_eq!(hit(&db, "0.1.0"), None);
    // GIT is skipped on purpose; the other three are counted as unusable.
    assert_eq!(db.stats().unusable_ranges, 3);
}

#[test]
fn maven_ecosystem_ranges_match() {
    let db = db_of(&[json!({"id": "MVN-1", "affected": [{
        "package": {"ecosystem": "Maven", "name": "org.example:lib"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0.0"}, {"fixed": "2.15.0"}]}],
        "versions": ["1.0"]}]})]);
    let m = |v: &str| {
        db.matches(&Package::new("Maven", "org.example:lib", v))
            .into_iter()
            .map(|f| f.fixed_version)
            .collect::<Vec<_>>()
    };
    let fixed = vec![Some("2.15.0".to_string())];
    assert_eq!(m("2.14.1"), fixed);
    assert_eq!(m("2.0.0"), fixed);
    assert_eq!(m("2.15.0-rc1"), fixed);
    assert!(m("2.15.0").is_empty());
    assert!(m("2.15.0.RELEASE").is_empty());
    assert!(m("1.9").is_empty());
    // The explicit list still matches outside the range.
    assert_eq!(m("1.0"), vec![None]);
    assert_eq!(db.stats().unusable_ranges, 0);
}

#[test]
fn severity_precedence() {
    let v3 = json!([{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}]);
    let pkg = json!({"ecosystem": "crates.io", "name": "demo"});
    let events = json!([{"type": "SEMVER", "events": [{"introduced": "0"}]}]);
    let db = db_of(&[
        json!({"id": "S-1", "severity": v3, "affected": [{"package": pkg, "ranges": events}]}),
        json!({"id": "S-2", "severity": v3, "database_specific": {"severity": "MODERATE"},
               "affected": [{"package": pkg, "ranges": events}]}),
        json!({"id": "S-3", "severity": v3, "database_specific": {"severity": "low"},
               "affected": [{"package": pkg, "ranges": events, "ecosystem_specific": {"severity": "high"}}]}),
        json!({"id": "S-4", "aliases": null, "affected": [{"package": pkg, "ranges": events}]}),
    ]);
    let f = db.matches(&Package::new("crates.io", "demo", "1.0.0"));
    let got: Vec<_> = f
        .iter()
        .map(|f| (f.id.as_str(), f.severity, f.cvss_score))
        .collect();
    assert_eq!(
        got,
        [
            ("S-1", Severity::Critical, Some(9.8)),
            ("S-2", Severity::Medium, Some(9.8)),
            ("S-3", Severity::High, Some(9.8)),
            ("S-4", Severity::Undefined, None),
        ]
    );
    assert_eq!(f[3].display_id, "S-4");
}

#[test]
fn loader_walks_directories_and_reports_bad_records() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    let good = rec(
        "D-1",
        json!([{"type": "SEMVER", "events": [{"introduced": "0"}]}]),
    );
    std::fs::write(nested.join("D-1.json"), good.to_string()).unwrap();
    std::fs::write(dir.path().join("bad.json"), "{not json").unwrap();
    std::fs::write(dir.path().join("noid.json"), r#"{"id": " "}"#).unwrap();
    std::fs::write(dir.path().join("README.md"), "ignored").unwrap();
    let (db, report) = Database::load(&[dir.path()]).unwrap();
    assert_eq!(
        (db.len(), report.documents, report.skipped.len()),
        (1, 3, 2)
    );
    assert!(report
        .skipped
        .iter()
        .any(|s| s.source.ends_with("bad.json")));
    let e = Database::load(&[dir.path().join("README.md")]).unwrap_err();
    assert!(matches!(e, OsvError::UnsupportedPath { .. }), "{e}");
    let zip = dir.path().join("broken.zip");
    std::fs::write(&zip, b"PK not really").unwrap();
    let e = Database::load(&[&zip]).unwrap_err();
    assert!(
        matches!(e, OsvError::Zip { .. }) && e.to_string().contains("broken.zip"),
        "{e}"
    );
    let e = Database::load(&[dir.path().join("missing")]).unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
}
