use super::*;
use crate::osv::{Family, OsvEcosystem};
use std::io::Write;

const OSV_TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/vulndb/osv");

fn testdata(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(OSV_TESTDATA).join(name)).unwrap()
}

fn eco(s: &str) -> EcosystemName {
    EcosystemName::parse(s).unwrap()
}

/// Stages `bytes` for `target` and commits them.
fn stage(target: &Path, bytes: &[u8], e: &str, etag: Option<&str>) -> Result<Verified, String> {
    let mut s = Staging::new(target).unwrap();
    s.file().write_all(bytes).unwrap();
    s.commit(&eco(e), etag)
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn default_ecosystems_are_the_ones_the_matcher_knows() {
    let all = default_ecosystems();
    let names: Vec<&str> = all.iter().map(EcosystemName::as_str).collect();
    for want in [
        "Debian", "Ubuntu", "Alpine", "Red Hat", "SUSE", "PyPI", "npm", "Go",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    assert!(names.contains(&"crates.io") && names.contains(&"Maven"));
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for n in &all {
        assert_ne!(
            OsvEcosystem::parse(n.as_str()).family(),
            Family::Other,
            "{n} would match nothing"
        );
        assert_eq!(EcosystemName::parse(n.as_str()).as_ref(), Ok(n));
    }
}

#[test]
fn names_are_checked_once_and_urls_encode_them() {
    for bad in ["", "  ", "a/b", "..", "x\\y", "tab\there"] {
        assert!(EcosystemName::parse(bad).is_err(), "{bad:?} accepted");
    }
    let e = EcosystemName::parse("Debian:12").unwrap_err();
    assert!(e.contains("use \"Debian\""), "{e}");
    assert_eq!(eco(" Red Hat ").as_str(), "Red Hat");
    assert_eq!(
        archive_url("http://127.0.0.1:9/mirror/", &eco("Red Hat")),
        "http://127.0.0.1:9/mirror/Red%20Hat/all.zip"
    );
    assert_eq!(
        archive_url(OSV_BUCKET, &eco("crates.io")),
        "https://osv-vulnerabilities.storage.googleapis.com/crates.io/all.zip"
    );
    assert_eq!(
        archive_path(Path::new("/osv"), &eco("Rocky Linux")),
        Path::new("/osv/Rocky Linux/all.zip")
    );
}

#[test]
fn a_verified_download_replaces_the_archive_and_keeps_its_etag() {
    let dir = tempfile::tempdir().unwrap();
    let target = archive_path(dir.path(), &eco("Alpine"));
    assert_eq!(stored_etag(&target), None);
    let zip = testdata("Alpine-v3.11-all.zip");
    let v = stage(&target, &zip, "Alpine", Some("\"abc\"")).unwrap();
    assert_eq!((v.records, v.bad_records), (1105, 0));
    assert_eq!(v.bytes, zip.len() as u64);
    assert_eq!(std::fs::read(&target).unwrap(), zip);
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&target),
        0o644,
        "readable by a cache running as another user"
    );
    assert_eq!(stored_etag(&target).as_deref(), Some("\"abc\""));
    // Nothing but the archive and its (hidden, ignored) ETag is left.
    assert_eq!(
        listing(target.parent().unwrap()),
        [".all.zip.etag", "all.zip"]
    );

    // A new download without an ETag drops the old one: it described other bytes. The
    // operator's choice of mode is kept.
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let v = stage(&target, &zip, "Alpine", None).unwrap();
    assert_eq!(v.records, 1105);
    assert_eq!(mode(&target), 0o640);
    assert_eq!(stored_etag(&target), None);

    // The ETag is only offered while its archive is there.
    stage(&target, &zip, "Alpine", Some("\"abc\"")).unwrap();
    std::fs::remove_file(&target).unwrap();
    assert_eq!(stored_etag(&target), None);
}

#[test]
fn truncated_damaged_or_mislaid_downloads_leave_the_old_archive() {
    let dir = tempfile::tempdir().unwrap();
    let target = archive_path(dir.path(), &eco("Alpine"));
    let good = testdata("Alpine-v3.11-all.zip");
    stage(&target, &good, "Alpine", Some("\"v1\"")).unwrap();
    let folder = target.parent().unwrap().to_path_buf();
    let unchanged = || {
        assert_eq!(std::fs::read(&target).unwrap(), good, "old archive kept");
        assert_eq!(stored_etag(&target).as_deref(), Some("\"v1\""));
        assert_eq!(
            listing(&folder),
            [".all.zip.etag", "all.zip"],
            "no leftovers"
        );
    };

    let e = stage(&target, &good[..good.len() / 2], "Alpine", None).unwrap_err();
    assert!(e.starts_with("not a usable zip: "), "{e}");
    unchanged();

    let e = stage(&target, b"<html>rate limited</html>", "Alpine", None).unwrap_err();
    assert!(e.starts_with("not a usable zip: "), "{e}");
    unchanged();

    let e = stage(&target, &damaged_zip(), "Alpine", None).unwrap_err();
    assert!(
        e.starts_with("damaged archive: 1 entries unreadable, first A-2.json: "),
        "{e}"
    );
    unchanged();

    // A mirror serving another ecosystem's archive under this name.
    let e = stage(&target, &testdata("crates.io-all.zip"), "Alpine", None).unwrap_err();
    assert!(
        e.starts_with("none of its 1206 records is about Alpine (they are about crates.io"),
        "{e}"
    );
    unchanged();

    let e = stage(
        &target,
        &zip_of(&[("README", "no records")]),
        "Alpine",
        None,
    )
    .unwrap_err();
    assert_eq!(e, "no OSV records in it (0 JSON entries)");
    unchanged();
}

#[test]
fn single_bad_records_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let target = archive_path(dir.path(), &eco("Alpine"));
    let zip = zip_of(&[("A-1.json", &record("A-1")), ("A-2.json", "{\"id\": 7}")]);
    let v = stage(&target, &zip, "Alpine", None).unwrap();
    assert_eq!((v.records, v.bad_records), (1, 1));
    let first = v.first_bad.unwrap();
    assert!(first.starts_with("A-2.json: not an OSV record"), "{first}");
}

#[test]
fn stale_partials_go_young_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("PyPI");
    std::fs::create_dir_all(&folder).unwrap();
    let old = folder.join(".all.zip.abc123.partial");
    let young = folder.join(".all.zip.def456.partial");
    let other = folder.join("notes.partial");
    for p in [&old, &young, &other] {
        std::fs::write(p, b"x").unwrap();
    }
    let long_ago = SystemTime::now() - Duration::from_secs(7200);
    for p in [&old, &other] {
        File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(long_ago)
            .unwrap();
    }
    assert_eq!(
        remove_stale_partials(dir.path(), Duration::from_secs(3600)),
        1
    );
    assert!(!old.exists() && young.exists() && other.exists());
    assert_eq!(
        remove_stale_partials(&dir.path().join("missing"), Duration::ZERO),
        0
    );
}

fn record(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","affected":[{{"package":{{"ecosystem":"Alpine:v3.19","name":"p"}}}}]}}"#
    )
}

fn zip_of(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, body) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(body.as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A zip whose second (stored) entry has a flipped byte: its CRC no longer matches.
fn damaged_zip() -> Vec<u8> {
    let (a, b) = (record("A-1"), record("A-2"));
    let mut bytes = zip_of(&[("A-1.json", &a), ("A-2.json", &b)]);
    let second = bytes
        .windows(b.len())
        .position(|w| w == b.as_bytes())
        .unwrap();
    bytes[second + 8] ^= 0x20;
    bytes
}
