//! Tests of the scan tables.
use super::*;
use crate::index::{ManifestRecord, RepoKey};
use crate::oci::Digest;
use crate::{Index, SqliteIndex};

fn layer() -> Digest {
    Digest::sha256_of(b"layer")
}

fn scan(digest: &Digest, hash: Option<&str>) -> ImageScan {
    ImageScan {
        digest: digest.clone(),
        upstream: "local".into(),
        repository: "team/app".into(),
        status: ScanStatus::Complete,
        description: "d".into(),
        layers: vec![layer()],
        inventory: breakwater_scan::inventory::Inventory::default(),
        findings: vec![],
        scanned_at_ms: 1,
        matched_at_ms: 2,
        db_hash: hash.map(str::to_string),
        db_updated_at_ms: None,
    }
}

#[test]
fn rows_follow_the_index_and_rematch_paging_skips_current_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let index = SqliteIndex::open(&path).unwrap();
    // The index hands out its scan tables; the caller never names the file.
    let store = index.scans().unwrap();
    let repo = RepoKey {
        upstream: "local".into(),
        name: "team/app".into(),
    };
    let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
    for d in [&a, &b] {
        let m = ManifestRecord {
            digest: d.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
        };
        index.record_manifest(&repo, &m, &[], None, 0).unwrap();
    }
    // A scan of a manifest the index does not hold is refused.
    let orphan = Digest::sha256_of(b"orphan");
    assert!(store.put_image(&scan(&orphan, None)).is_err());

    store.put_image(&scan(&a, Some("old"))).unwrap();
    store.put_image(&scan(&b, Some("new"))).unwrap();
    // Replacing a scan keeps its row (no cascade from the inventory upsert).
    store.put_image(&scan(&a, Some("old"))).unwrap();
    let stale = store.unmatched("new", None, 10).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].digest, a);
    assert_eq!(stale[0].layers, vec![layer()]);
    store
        .update_matches(
            &[Rematched {
                digest: a.clone(),
                findings: vec![],
                status: ScanStatus::Complete,
                description: "d".into(),
            }],
            "new",
            None,
            3,
        )
        .unwrap();
    assert!(store.unmatched("new", None, 10).unwrap().is_empty());
    assert_eq!(store.image(&a).unwrap().unwrap().matched_at_ms, 3);

    // A damaged JSON column is a typed decode error naming the column.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute(
        "UPDATE scan_results SET findings = 'not json' WHERE digest = ?1",
        params![b.to_string()],
    )
    .unwrap();
    assert!(matches!(
        store.image(&b),
        Err(ScanStoreError::Decode {
            column: "findings",
            ..
        })
    ));
    store.put_image(&scan(&b, Some("new"))).unwrap();

    // The index dropping the manifest (scrub, lifecycle) drops its scan.
    index.forget_blobs(std::slice::from_ref(&a)).unwrap();
    assert!(store.image(&a).unwrap().is_none());
    assert!(store.image(&b).unwrap().is_some());
}

#[test]
fn an_in_memory_index_has_no_scan_tables_to_hand_out() {
    let index = SqliteIndex::in_memory().unwrap();
    assert!(matches!(index.scans(), Err(ScanStoreError::InMemoryIndex)));
}

#[test]
fn old_results_table_gains_analyzer_version_and_its_rows_are_outdated_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let index = SqliteIndex::open(&path).unwrap();
    let repo = RepoKey {
        upstream: "local".into(),
        name: "team/app".into(),
    };
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
        index.record_manifest(&repo, &m, &[], None, 0).unwrap();
    }
    // The tables as a release before the column made them, with one row.
    let old_schema = SCHEMA.replace(",\n    analyzer_version INTEGER NOT NULL DEFAULT 0\n", "\n");
    assert!(!old_schema.contains("DEFAULT 0\n);\n\";"), "column removed");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&old_schema).unwrap();
        conn.execute(
            "INSERT INTO scan_inventories (digest, layers, inventory) VALUES (?1, ?2, ?3)",
            params![
                b.to_string(),
                json(&[layer()]).unwrap(),
                json(&breakwater_scan::inventory::Inventory::default()).unwrap()
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO scan_results (digest, upstream, repository, status, description, findings,
               scanned_at, matched_at) VALUES (?1, 'local', 'team/app', 'COMPLETE', 'd', '[]', 5, 5)",
            params![b.to_string()],
        )
        .unwrap();
    }
    let store = ScanStore::open(&path).unwrap();
    // Opening again does not add it twice.
    drop(ScanStore::open(&path).unwrap());
    let version = |d: &Digest| -> i64 {
        store
            .db("test", |c| {
                c.query_row(
                    "SELECT analyzer_version FROM scan_results WHERE digest = ?1",
                    params![d.to_string()],
                    |r| r.get(0),
                )
            })
            .unwrap()
    };
    assert!(store.image(&b).unwrap().is_some(), "old row reads");
    assert_eq!(version(&b), 0, "missing reads as old");

    let mut current = scan(&a, Some("h"));
    current.scanned_at_ms = 1;
    store.put_image(&current).unwrap();
    let mut older = scan(&c, Some("h"));
    older.scanned_at_ms = 9;
    store.put_image(&older).unwrap();
    assert_eq!(version(&c), i64::from(ANALYZER_VERSION));
    // As an older release stored it.
    store
        .db("test", |conn| {
            conn.execute(
                "UPDATE scan_results SET analyzer_version = ?1 WHERE digest = ?2",
                params![ANALYZER_VERSION - 1, c.to_string()],
            )
        })
        .unwrap();

    let rows = store.outdated(None, 10).unwrap();
    let digests: Vec<&Digest> = rows.iter().map(|r| &r.digest).collect();
    assert_eq!(digests, [&b, &c], "oldest first");
    assert_eq!(rows[0].layers, vec![layer()]);
    assert_eq!(rows[0].repo, repo);
    let page = store.outdated(Some((5, &b)), 10).unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].digest, c);

    // Redone with the current analyzer: no longer outdated.
    let mut redone = scan(&b, Some("h"));
    redone.scanned_at_ms = 20;
    store.put_image(&redone).unwrap();
    let left = store.outdated(None, 10).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].digest, c);
}

#[test]
fn a_read_then_write_transaction_waits_for_the_index_connections_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let _ix = SqliteIndex::open(&path).unwrap();
    let store = ScanStore::open(&path).unwrap();
    let other = crate::busy_tests::hold_write_lock(&path, std::time::Duration::from_millis(300));
    // Read, then write, in one transaction, as the store's own methods do.
    let r = store.db("test", |c| {
        let tx = c.transaction()?;
        let n: i64 = tx.query_row("SELECT COUNT(*) FROM scan_layers", [], |r| r.get(0))?;
        tx.execute(
            "INSERT INTO scan_layers (digest, analyzer_version, analysis, analyzed_at)
             VALUES ('sha256:l', ?1, '{}', 1)",
            params![n],
        )?;
        tx.commit()
    });
    other.join().unwrap();
    r.unwrap();
}
