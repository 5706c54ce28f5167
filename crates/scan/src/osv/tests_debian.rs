//! The hand-written `Debian-synthetic-edgecases` records, each checked with a
//! few installed versions whose expected answer was worked out by hand.

use std::path::PathBuf;

use super::{Database, Package, Severity};

fn vulndb() -> PathBuf {
    crate::version::vectors::vulndb_dir()
}

fn db() -> Database {
    let dir = vulndb().join("osv/Debian-synthetic-edgecases");
    let (db, report) = Database::load(&[dir]).expect("load synthetic records");
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    assert_eq!(db.len(), 20);
    db
}

/// A Debian 12 binary package built from `src` at `src_ver`.
fn deb(name: &str, ver: &str, src: &str, src_ver: &str) -> Package {
    Package::new("Debian:12", name, ver).with_source(src, Some(src_ver))
}

/// Asserts the (id, fixed version) pairs found for `pkg`, listing both sides on failure.
fn expect(db: &Database, pkg: &Package, want: &[(&str, Option<&str>)]) {
    let got: Vec<(String, Option<String>)> = db
        .matches(pkg)
        .into_iter()
        .map(|f| (f.id, f.fixed_version))
        .collect();
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(id, fix)| (id.to_string(), fix.map(str::to_string)))
        .collect();
    assert_eq!(
        got, want,
        "{} {} (source {:?} {:?})",
        pkg.name, pkg.version, pkg.source_name, pkg.source_version
    );
}

#[test]
fn epoch_on_binary_only_compares_the_source_version() {
    let db = db();
    // SYNTH-DEB-0001: bsdutils carries epoch 1, source util-linux none.
    let fix = Some("2.38.1-5+deb12u4");
    for bin in [
        "bsdutils",
        "util-linux",
        "libblkid1",
        "libmount1",
        "libuuid1",
        "mount",
    ] {
        let ver = if bin == "bsdutils" {
            "1:2.38.1-5+deb12u3"
        } else {
            "2.38.1-5+deb12u3"
        };
        expect(
            &db,
            &deb(bin, ver, "util-linux", "2.38.1-5+deb12u3"),
            &[("SYNTH-DEB-0001", fix)],
        );
    }
    expect(
        &db,
        &deb(
            "bsdutils",
            "1:2.38.1-5+deb12u4",
            "util-linux",
            "2.38.1-5+deb12u4",
        ),
        &[],
    );
}

#[test]
fn tilde_versions() {
    let db = db();
    // 0002 fixed 252.39-1 (> ~deb12u2), 0003 fixed exactly the installed version.
    let sd = |v: &str| deb("libsystemd0", v, "systemd", v);
    expect(
        &db,
        &sd("252.39-1~deb12u2"),
        &[("SYNTH-DEB-0002", Some("252.39-1"))],
    );
    expect(
        &db,
        &sd("252.38-1~deb12u1"),
        &[
            ("SYNTH-DEB-0002", Some("252.39-1")),
            ("SYNTH-DEB-0003", Some("252.39-1~deb12u2")),
        ],
    );
    expect(&db, &sd("252.39-1"), &[]);
    // 0019: a ~deb12u1 backport sorts before the version it backports.
    let du = |v: &str| deb("debianutils", v, "debianutils", v);
    expect(
        &db,
        &du("5.7-0.5~deb12u1"),
        &[("SYNTH-DEB-0019", Some("5.7-0.5"))],
    );
    expect(&db, &du("5.7-0.5"), &[]);
    // 0020: fixed == installed.
    expect(
        &db,
        &deb("usrmerge", "37~deb12u1", "usrmerge", "37~deb12u1"),
        &[],
    );
    expect(
        &db,
        &deb("usrmerge", "35", "usrmerge", "35"),
        &[("SYNTH-DEB-0020", Some("37~deb12u1"))],
    );
}

#[test]
fn epochs_in_fixed_versions() {
    let db = db();
    let z = |v: &str| deb("zlib1g", v, "zlib", v);
    // 0004 fixed 1.3.dfsg-1 has epoch 0 < installed epoch 1; 0005 keeps the epoch.
    expect(
        &db,
        &z("1:1.2.13.dfsg-1"),
        &[("SYNTH-DEB-0005", Some("1:1.2.13.dfsg-1+deb12u1"))],
    );
    expect(&db, &z("1:1.2.13.dfsg-1+deb12u1"), &[]);
    let f = db.matches(&z("1:1.2.13.dfsg-1"));
    assert_eq!(f[0].severity, Severity::Critical);
    assert_eq!(f[0].url, "https://osv.dev/vulnerability/SYNTH-DEB-0005");
    // 0018: introduced and fixed both carry epoch 1.
    let sh = |bin: &str, v: &str| deb(bin, v, "shadow", v);
    let fix = Some("1:4.13+dfsg1-1+deb12u3");
    expect(
        &db,
        &sh("login", "1:4.13+dfsg1-1"),
        &[("SYNTH-DEB-0018", fix)],
    );
    expect(
        &db,
        &sh("passwd", "1:4.13+dfsg1-1+deb12u2"),
        &[("SYNTH-DEB-0018", fix)],
    );
    expect(&db, &sh("passwd", "1:4.13+dfsg1-1+deb12u3"), &[]);
    expect(&db, &sh("passwd", "4.13+dfsg1-1"), &[]);
}

#[test]
fn release_distro_and_withdrawn_gate_matches() {
    let db = db();
    // 0006 is for Debian:11 only.
    expect(
        &db,
        &deb("perl", "5.36.0-7+deb12u1", "perl", "5.36.0-7+deb12u1"),
        &[],
    );
    let on11 = Package::new("Debian:11", "perl", "5.36.0-7+deb12u1");
    expect(&db, &on11, &[("SYNTH-DEB-0006", Some("5.36.0-7+deb12u99"))]);
    // 0007 is Ubuntu's; on Debian apt only hits the unfixed 0009.
    expect(
        &db,
        &deb("apt", "2.6.1", "apt", "2.6.1"),
        &[("SYNTH-DEB-0009", None)],
    );
    let ubuntu = Package::new("Ubuntu:22.04", "apt", "2.4.11");
    expect(&db, &ubuntu, &[("SYNTH-DEB-0007", Some("9.9"))]);
    // 0008 is withdrawn.
    expect(
        &db,
        &deb(
            "tar",
            "1.34+dfsg-1.2+deb12u1",
            "tar",
            "1.34+dfsg-1.2+deb12u1",
        ),
        &[],
    );
    assert!(db.get("SYNTH-DEB-0008").is_some());
    assert_eq!(db.stats().withdrawn, 1);
}

#[test]
fn unfixed_and_last_affected() {
    let db = db();
    // 0009: only `introduced: 0` — every version, no fix.
    let f = db.matches(&deb("libapt-pkg6.0", "2.6.1", "apt", "2.6.1"));
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].id.as_str(), f[0].fixed_version.as_deref()),
        ("SYNTH-DEB-0009", None)
    );
    assert_eq!(f[0].severity, Severity::Low);
    assert_eq!(f[0].matched_name, "apt");
    // 0014: last_affected == installed is affected, anything later is not.
    expect(
        &db,
        &deb("dash", "0.5.12-2", "dash", "0.5.12-2"),
        &[("SYNTH-DEB-0014", None)],
    );
    expect(&db, &deb("dash", "0.5.12-3", "dash", "0.5.12-3"), &[]);
    // 0015: 3.23+nmu1 > last_affected 3.23.
    expect(
        &db,
        &deb("hostname", "3.23+nmu1", "hostname", "3.23+nmu1"),
        &[],
    );
    expect(
        &db,
        &deb("hostname", "3.23", "hostname", "3.23"),
        &[("SYNTH-DEB-0015", None)],
    );
}

#[test]
fn introduced_after_installed() {
    let db = db();
    let g = |v: &str| deb("libgnutls30", v, "gnutls28", v);
    expect(&db, &g("3.7.9-2+deb12u7"), &[]);
    expect(&db, &g("3.7.10-1"), &[("SYNTH-DEB-0010", Some("3.7.10-5"))]);
    expect(&db, &g("3.7.10-5"), &[]);
}

#[test]
fn explicit_versions_list() {
    let db = db();
    let s = |v: &str| deb("sed", v, "sed", v);
    expect(&db, &s("4.9-1+deb12u1"), &[("SYNTH-DEB-0011", None)]);
    expect(&db, &s("4.8-1"), &[("SYNTH-DEB-0011", None)]);
    expect(&db, &s("4.9-1"), &[]);
}

#[test]
fn several_affected_entries_in_one_record() {
    let db = db();
    let fix = Some("2.36-9+deb12u15");
    for bin in ["libc6", "libc-bin"] {
        expect(
            &db,
            &deb(bin, "2.36-9+deb12u13", "glibc", "2.36-9+deb12u13"),
            &[("SYNTH-DEB-0012", fix)],
        );
    }
    expect(
        &db,
        &deb(
            "libgcc-s1",
            "12.2.0-14+deb12u1",
            "gcc-12",
            "12.2.0-14+deb12u1",
        ),
        &[],
    );
    expect(
        &db,
        &deb("libgcc-s1", "12.2.0-14", "gcc-12", "12.2.0-14"),
        &[("SYNTH-DEB-0012", Some("12.2.0-14+deb12u1"))],
    );
}

#[test]
fn source_name_policy_and_binnmus() {
    let db = db();
    // 0013 names the binary liblzma5; Debian records name sources, so no match.
    expect(&db, &deb("liblzma5", "5.4.1-1", "xz-utils", "5.4.1-1"), &[]);
    // Without source information the binary name is the lookup name.
    expect(
        &db,
        &Package::new("Debian:12", "liblzma5", "5.4.1-1"),
        &[("SYNTH-DEB-0013", Some("9.9"))],
    );
    // 0016: binNMU binary 5.2.15-2+b13 from source 5.2.15-2.
    expect(
        &db,
        &deb("bash", "5.2.15-2+b13", "bash", "5.2.15-2"),
        &[("SYNTH-DEB-0016", Some("5.2.15-2+b14"))],
    );
    // 0017: source 1:2.66-4+deb12u3 == fixed (the binNMU binary is newer still).
    expect(
        &db,
        &deb(
            "libcap2",
            "1:2.66-4+deb12u3+b1",
            "libcap2",
            "1:2.66-4+deb12u3",
        ),
        &[],
    );
    expect(
        &db,
        &deb("libcap2", "1:2.66-4+deb12u1", "libcap2", "1:2.66-4+deb12u1"),
        &[("SYNTH-DEB-0017", Some("1:2.66-4+deb12u3"))],
    );
}

#[test]
fn unparsable_installed_version_matches_nothing_by_range() {
    let db = db();
    expect(
        &db,
        &deb("apt", "not-a-version", "apt", "not-a-version"),
        &[],
    );
}

#[test]
fn content_hash_is_stable_and_content_sensitive() {
    let a = db();
    let b = db();
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);
    let dir = vulndb().join("osv/Debian-synthetic-edgecases");
    let mut loader = super::Loader::new();
    loader.add_dir(&dir).unwrap();
    let one = std::fs::read(dir.join("SYNTH-DEB-0001.json")).unwrap();
    let edited = String::from_utf8(one)
        .unwrap()
        .replace("2.38.1-5+deb12u4", "2.38.1-5+deb12u5");
    loader.add_json("edited", edited.as_bytes());
    let (c, _) = loader.finish();
    assert_eq!(c.stats().duplicates, 1);
    assert_ne!(a.content_hash(), c.content_hash());
}
