//! PostgreSQL-specific checks: migrations (once, concurrently, newer refused), the pool, the
//! scan tables (on PostgreSQL and, for parity, on a SQLite file), and password redaction.

use super::testing::PgCluster;
use super::{redact, schema, PgIndex, PgSettings};
use crate::index::{Index, ManifestRecord, RepoKey};
use crate::oci::manifest::{RefKind, Reference};
use crate::oci::Digest;
use crate::SqliteIndex;
use breakwater_scan::layer::{LayerAnalysis, ANALYZER_VERSION};
use breakwater_scan::osv::Severity;
use breakwater_scan::record::{ImageScan, Rematched, ScanStatus};
use std::time::Duration;

#[test]
fn passwords_are_redacted_in_every_form() {
    assert_eq!(
        redact("postgres://bw:s3cr:et@db.local:5432/bw?sslmode=disable"),
        "postgres://bw:***@db.local:5432/bw?sslmode=disable"
    );
    assert_eq!(
        redact("postgresql://bw@db/bw?password=hunter2&application_name=x"),
        "postgresql://bw@db/bw?password=***&application_name=x"
    );
    assert_eq!(
        redact("host=127.0.0.1 user=bw password=hunter2 dbname=bw"),
        "host=127.0.0.1 user=bw password=*** dbname=bw"
    );
    assert_eq!(redact("postgres://db/bw"), "postgres://db/bw");
    let s = PgSettings {
        url: "postgres://bw:hunter2@db/bw".into(),
        pool_size: 1,
        acquire_timeout: Duration::from_secs(1),
        ca_file: None,
    };
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn migrations_apply_once_even_when_replicas_start_together() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let settings = pg.settings();
    // Four replicas open the same empty database at once: the advisory lock lets one migrate.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| PgIndex::open(&settings).expect("open"));
        }
    });
    let versions: Vec<i64> = (1..=schema::MIGRATIONS.len() as i64).collect();
    let applied = PgCluster::count(&settings.url, "schema_migrations");
    assert_eq!(applied, versions.len() as i64);
    // Opening again applies nothing and keeps the data.
    let ix = PgIndex::open(&settings).unwrap();
    let repo = RepoKey::new("up", "a");
    let m = ManifestRecord {
        digest: Digest::sha256_of(b"m"),
        media_type: "x".into(),
        size: 1,
    };
    ix.record_manifest(&repo, &m, &[], Some("t"), 1).unwrap();
    drop(ix);
    let ix = PgIndex::open(&settings).unwrap();
    assert_eq!(ix.tags(&repo).unwrap(), vec!["t".to_string()]);
    assert_eq!(
        PgCluster::count(&settings.url, "schema_migrations"),
        applied
    );
}

#[test]
fn a_schema_from_a_newer_breakwater_is_refused() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let settings = pg.settings();
    drop(PgIndex::open(&settings).unwrap());
    let ix = PgIndex::open(&settings).unwrap();
    ix.db("test", |c| {
        c.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES (9999, 0)",
            &[],
        )?;
        Ok(())
    })
    .unwrap();
    let e = PgIndex::open(&settings).err().expect("refused").to_string();
    assert!(e.contains("9999") && e.contains("newer"), "{e}");
}

#[test]
fn a_bad_url_or_an_unreachable_server_is_a_clear_error_without_the_password() {
    let bad = PgSettings {
        url: "postgres://bw:hunter2@127.0.0.1:notaport/bw".into(),
        pool_size: 1,
        acquire_timeout: Duration::from_secs(1),
        ca_file: None,
    };
    let e = PgIndex::open(&bad).err().expect("invalid").to_string();
    assert!(
        e.contains("invalid connection string") && !e.contains("hunter2"),
        "{e}"
    );
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = PgSettings {
        url: format!("postgres://bw:hunter2@127.0.0.1:{port}/bw"),
        ..bad
    };
    let e = PgIndex::open(&down).err().expect("unreachable").to_string();
    assert!(
        e.contains("migrate schema") && !e.contains("hunter2"),
        "{e}"
    );
}

#[test]
fn a_busy_pool_waits_then_times_out() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let settings = PgSettings {
        pool_size: 1,
        acquire_timeout: Duration::from_millis(300),
        ca_file: None,
        ..pg.settings()
    };
    let ix = PgIndex::open(&settings).unwrap();
    let held = ix.pool.get().unwrap();
    let e = ix.repositories().unwrap_err().to_string();
    assert!(e.contains("no free database connection"), "{e}");
    drop(held);
    assert!(ix.repositories().unwrap().is_empty());
}

fn analysis() -> LayerAnalysis {
    serde_json::from_value(serde_json::json!({
        "analyzer_version": ANALYZER_VERSION, "compression": "gzip", "blob_bytes": 1,
        "tar_bytes": 2, "entries": 0, "files": [], "whiteouts": [], "opaque_dirs": [],
        "symlinks": [], "shadows": [], "notes": []
    }))
    .expect("a layer analysis")
}

fn scan(digest: &Digest, layer: &Digest, hash: &str, at: i64) -> ImageScan {
    ImageScan {
        digest: digest.clone(),
        upstream: "up".into(),
        repository: "team/app".into(),
        status: ScanStatus::Complete,
        description: "d".into(),
        layers: vec![layer.clone()],
        inventory: Default::default(),
        findings: vec![],
        scanned_at_ms: at,
        matched_at_ms: at,
        db_hash: Some(hash.into()),
        db_updated_at_ms: None,
    }
}

/// The scan-table behaviour the scanner relies on, on any backend.
fn scan_tables(backend: &str, index: &dyn Index) {
    eprintln!("backend: {backend}");
    let store = index.scans().unwrap();
    let repo = RepoKey::new("up", "team/app");
    let layer = Digest::sha256_of(b"layer");
    let (a, b, c) = (
        Digest::sha256_of(b"a"),
        Digest::sha256_of(b"b"),
        Digest::sha256_of(b"c"),
    );
    for d in [&a, &b, &c] {
        let m = ManifestRecord {
            digest: d.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
        };
        let refs = [Reference {
            digest: layer.clone(),
            kind: RefKind::Layer,
            size: Some(1),
            platform: None,
        }];
        index.record_manifest(&repo, &m, &refs, None, 0).unwrap();
    }
    // Layers: stored per analyzer version, replaced, pruned when no manifest lists them.
    assert_eq!(store.layer(&layer).unwrap(), None);
    store.put_layer(&layer, &analysis(), 1).unwrap();
    store.put_layer(&layer, &analysis(), 2).unwrap();
    assert_eq!(store.layer(&layer).unwrap(), Some(analysis()));
    let stray = Digest::sha256_of(b"stray");
    store.put_layer(&stray, &analysis(), 1).unwrap();
    assert_eq!(store.prune_layers().unwrap(), 1);
    assert!(store.layer(&layer).unwrap().is_some());

    // A scan of a manifest the index does not hold is refused.
    assert!(store
        .put_image(&scan(&Digest::sha256_of(b"orphan"), &layer, "h", 1))
        .is_err());
    store.put_image(&scan(&a, &layer, "old", 1)).unwrap();
    store.put_image(&scan(&b, &layer, "new", 2)).unwrap();
    store.put_image(&scan(&c, &layer, "old", 3)).unwrap();
    store.put_image(&scan(&a, &layer, "old", 1)).unwrap();
    // Paging in digest order, skipping current rows.
    let mut stale: Vec<Digest> = Vec::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = store.unmatched("new", after.as_ref(), 1).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        stale.extend(page.into_iter().map(|s| s.digest));
    }
    let mut want = vec![a.clone(), c.clone()];
    want.sort_by_key(|d| d.to_string());
    assert_eq!(stale, want);
    let critical: breakwater_scan::findings::VulnFinding = serde_json::from_value(serde_json::json!({
        "id": "CVE-1", "name": "CVE-1", "aliases": [], "severity": "CRITICAL", "cvss_score": null,
        "uri": "u", "description": null, "package_name": "p", "package_version": "1",
        "fixed_version": null, "ecosystem": "Debian", "package_type": "deb", "file_path": "f"
    }))
    .expect("a finding");
    store
        .update_matches(
            &[Rematched {
                digest: a.clone(),
                findings: vec![critical.clone()],
                status: ScanStatus::Complete,
                description: "d".into(),
            }],
            "new",
            Some(7),
            9,
        )
        .unwrap();
    let got = store.image(&a).unwrap().unwrap();
    assert_eq!((got.matched_at_ms, got.db_updated_at_ms), (9, Some(7)));
    assert_eq!(got.findings, vec![critical]);
    assert_eq!(got.layers, vec![layer.clone()]);
    let totals = store.totals().unwrap();
    assert!(totals.contains(&(Severity::Critical, 1)), "{totals:?}");
    assert!(totals.contains(&(Severity::High, 0)));
    // Scans made by the current analyzer are not outdated.
    assert!(store.outdated(None, 10).unwrap().is_empty());
    // The index dropping the manifest drops its scan.
    index.forget_blobs(std::slice::from_ref(&a)).unwrap();
    assert!(store.image(&a).unwrap().is_none());
    assert!(store.image(&b).unwrap().is_some());
}

#[test]
fn scan_tables_behave_alike_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    scan_tables(
        "sqlite",
        &SqliteIndex::open(&dir.path().join("index.sqlite")).unwrap(),
    );
    if let Some(pg) = PgCluster::shared() {
        scan_tables("postgres", &PgIndex::open(&pg.settings()).unwrap());
    }
}
