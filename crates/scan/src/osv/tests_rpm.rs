//! RPM distributions matched as the OSV schema's ecosystem table defines each one's
//! `affected[].package.name` (<https://ossf.github.io/osv-schema/#defined-ecosystems>).
//! Records are written here from that definition; installed packages go through the rpm
//! cataloger (SOURCERPM parsed as in an image) and os-release, as a scan does.

use serde_json::{json, Value};

use super::{Database, Loader};
use crate::catalog::os_release::OsRelease;
use crate::catalog::rpm::{headers_to_packages, RpmHeader};
use crate::findings::match_inventory;
use crate::inventory::Inventory;

/// A database of the given records.
fn db_of(records: &[Value]) -> Database {
    let mut loader = Loader::new();
    for (i, r) in records.iter().enumerate() {
        loader.add_json(&format!("rpm-{i}.json"), r.to_string().as_bytes());
    }
    let (db, report) = loader.finish();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    db
}

/// One `affected[]` entry: vulnerable from the start up to `fixed`.
fn affected(ecosystem: &str, name: &str, fixed: &str) -> Value {
    json!({
        "package": {"ecosystem": ecosystem, "name": name},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
    })
}

/// A SUSE-style entry: the source RPM, with `ecosystem_specific.binaries` as SUSE writes it
/// (one object, binary name → version).
fn suse_affected(ecosystem: &str, source: &str, fixed: &str, binaries: &[&str]) -> Value {
    let mut a = affected(ecosystem, source, fixed);
    let bins: serde_json::Map<String, Value> = binaries
        .iter()
        .map(|b| (b.to_string(), Value::String(fixed.to_string())))
        .collect();
    a["ecosystem_specific"] = json!({"binaries": [bins]});
    a
}

/// A record with the given entries.
fn record(id: &str, entries: Vec<Value>) -> Value {
    json!({"id": id, "summary": id, "affected": entries})
}

/// An rpm header as the database holds it: `[epoch:]version-release`, and its SOURCERPM.
fn header(name: &str, evr: &str, srpm: Option<&str>) -> RpmHeader {
    let (epoch, vr) = match evr.split_once(':') {
        Some((e, vr)) => (Some(e.parse().unwrap()), vr),
        None => (None, evr),
    };
    let (version, release) = vr.rsplit_once('-').unwrap();
    RpmHeader {
        name: name.into(),
        epoch,
        version: version.into(),
        release: release.into(),
        arch: Some("x86_64".into()),
        source_rpm: srpm.map(str::to_string),
    }
}

/// os-release of an image.
fn os(id: &str, version_id: &str) -> OsRelease {
    OsRelease {
        id: id.into(),
        version_id: Some(version_id.into()),
        ..OsRelease::default()
    }
}

/// Scans the packages of `headers` on `os`: (record id, package, fixed version) per finding.
fn scan(db: &Database, os: &OsRelease, headers: Vec<RpmHeader>) -> Vec<(String, String, String)> {
    let mut packages = headers_to_packages("/var/lib/rpm/rpmdb.sqlite", headers);
    for p in &mut packages {
        p.apply_os(Some(os));
    }
    let inv = Inventory {
        os: Some(os.clone()),
        packages,
        ..Inventory::default()
    };
    let mut out: Vec<_> = match_inventory(db, &inv)
        .into_iter()
        .map(|f| (f.id, f.package_name, f.fixed_version.unwrap_or_default()))
        .collect();
    out.sort();
    out
}

fn found(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

const SLES: &str = "SUSE:Linux Enterprise Server 15 SP5";

// SUSE: "The `name` field is the name of the source RPM … There is a `ecosystem_specific`
// specific array `binaries` of the associated RPM binary packages in this specific SUSE
// product. The ECOSYSTEM version ordering is the RPM versioncompare ordering".

#[test]
fn suse_binary_is_matched_through_its_source() {
    let fix = "1.2.13-150500.4.3.1";
    let db = db_of(&[record(
        "SUSE-SU-T-1",
        vec![suse_affected(SLES, "zlib", fix, &["libz1", "zlib-devel"])],
    )]);
    let sles = os("sles", "15.5");
    let src = Some("zlib-1.2.13-150500.4.2.1.src.rpm");
    // libz1 is no source name: only its SOURCERPM leads to the record.
    assert_eq!(
        scan(
            &db,
            &sles,
            vec![header("libz1", "1.2.13-150500.4.2.1", src)]
        ),
        found(&[("SUSE-SU-T-1", "libz1", fix)])
    );
    let fixed_src = Some("zlib-1.2.13-150500.4.3.1.src.rpm");
    assert!(scan(&db, &sles, vec![header("libz1", fix, fixed_src)]).is_empty());
    // Another service pack's image does not meet SP5's record.
    assert!(scan(
        &db,
        &os("sles", "15.4"),
        vec![header("libz1", "1.2.13-150500.4.2.1", src)]
    )
    .is_empty());
}

#[test]
fn suse_source_name_does_not_match_an_unrelated_binary_of_that_name() {
    // A record for the source `ncurses` (no binaries list, so only the name decides) and an
    // installed binary that happens to be called `ncurses` but is built from another source.
    let db = db_of(&[record(
        "SUSE-SU-T-2",
        vec![affected(SLES, "ncurses", "6.1-150000.5.20.1")],
    )]);
    let sles = os("sles", "15.5");
    let other = header(
        "ncurses",
        "5.9-1.1",
        Some("ncurses5-compat-5.9-1.1.src.rpm"),
    );
    assert!(scan(&db, &sles, vec![other]).is_empty());
    // The binaries of the source `ncurses` are matched, whatever their own names.
    let lib = header(
        "libncurses6",
        "6.1-150000.5.15.1",
        Some("ncurses-6.1-150000.5.15.1.src.rpm"),
    );
    assert_eq!(
        scan(&db, &sles, vec![lib]),
        found(&[("SUSE-SU-T-2", "libncurses6", "6.1-150000.5.20.1")])
    );
}

#[test]
fn suse_binaries_list_narrows_the_source() {
    let fix = "1.2.13-150500.4.3.1";
    let db = db_of(&[
        // This product's entry covers two of zlib's binaries, not libminizip1.
        record(
            "SUSE-SU-T-3",
            vec![suse_affected(SLES, "zlib", fix, &["libz1", "zlib-devel"])],
        ),
        // A second record about minizip lists it.
        record(
            "SUSE-SU-T-4",
            vec![suse_affected(SLES, "zlib", fix, &["libminizip1"])],
        ),
    ]);
    let src = Some("zlib-1.2.13-150500.4.2.1.src.rpm");
    let v = "1.2.13-150500.4.2.1";
    assert_eq!(
        scan(
            &db,
            &os("sles", "15.5"),
            vec![
                header("libz1", v, src),
                header("zlib-devel", v, src),
                header("libminizip1", v, src),
            ]
        ),
        found(&[
            ("SUSE-SU-T-3", "libz1", fix),
            ("SUSE-SU-T-3", "zlib-devel", fix),
            ("SUSE-SU-T-4", "libminizip1", fix),
        ])
    );
    // An empty list covers no binary at all.
    let db = db_of(&[record(
        "SUSE-SU-T-5",
        vec![suse_affected(SLES, "zlib", fix, &[])],
    )]);
    assert!(scan(&db, &os("sles", "15.5"), vec![header("libz1", v, src)]).is_empty());
}

#[test]
fn suse_compares_the_source_version_not_the_binary_one() {
    // Real SLE 15 data (the sle15-bci sample below): libreadline7 7.0-19.6.1 is built from
    // bash-4.4-19.6.1.src.rpm. The record's fix is a version of the source, bash.
    let db = db_of(&[record(
        "SUSE-SU-T-6",
        vec![suse_affected(
            "SUSE:Linux Enterprise Server 15 SP3",
            "bash",
            "4.4-19.9.1",
            &["bash", "libreadline7", "readline-devel"],
        )],
    )]);
    let sles = os("sles", "15.3");
    let src = Some("bash-4.4-19.6.1.src.rpm");
    assert_eq!(
        scan(&db, &sles, vec![header("libreadline7", "7.0-19.6.1", src)]),
        found(&[("SUSE-SU-T-6", "libreadline7", "4.4-19.9.1")])
    );
    // Fixed: the source is at the fix, though the binary's own version never was below it.
    let fixed = Some("bash-4.4-19.9.1.src.rpm");
    assert!(scan(
        &db,
        &sles,
        vec![header("libreadline7", "7.0-19.9.1", fixed)]
    )
    .is_empty());
}

#[test]
fn opensuse_follows_the_same_rule() {
    // openSUSE: "The `name` field is the name of the source RPM … an `ecosystem_specific`
    // specific array `binaries` of the associated RPM binary packages".
    let fix = "3.1.4-150600.5.15.1";
    let db = db_of(&[record(
        "openSUSE-SU-T-1",
        vec![suse_affected(
            "openSUSE:Leap 15.6",
            "openssl-3",
            fix,
            &["libopenssl3", "openssl-3"],
        )],
    )]);
    let src = Some("openssl-3-3.1.4-150600.5.7.1.src.rpm");
    assert_eq!(
        scan(
            &db,
            &os("opensuse-leap", "15.6"),
            vec![
                header("libopenssl3", "3.1.4-150600.5.7.1", src),
                header("libopenssl-3-devel", "3.1.4-150600.5.7.1", src),
            ]
        ),
        found(&[("openSUSE-SU-T-1", "libopenssl3", fix)])
    );
}

#[test]
fn suse_sample_rpmdb_meets_source_records() {
    // The SLE 15 NDB sample's real SOURCERPMs: libz1 from zlib, libstdc++6 and libgcc_s1 from
    // gcc11, libreadline7 from bash.
    let data = std::fs::read(
        crate::version::vectors::vulndb_dir().join("rpmdb-samples/sle15-bci/Packages.db"),
    )
    .unwrap();
    let path = "/usr/lib/sysimage/rpm/Packages.db";
    let headers = crate::catalog::rpmdb::ndb_headers(path, &data).unwrap();
    let eco = "SUSE:Linux Enterprise Server 15 SP3";
    let db = db_of(&[
        record(
            "SUSE-SU-T-7",
            vec![suse_affected(eco, "zlib", "1.2.11-3.24.1", &["libz1"])],
        ),
        record(
            "SUSE-SU-T-8",
            vec![suse_affected(
                eco,
                "gcc11",
                "11.3.0+git1637-150000.1.11.2",
                &["libgcc_s1", "libstdc++6"],
            )],
        ),
        // Already fixed in the sample (bash-4.4-19.6.1).
        record(
            "SUSE-SU-T-9",
            vec![suse_affected(
                eco,
                "bash",
                "4.4-19.6.1",
                &["bash", "libreadline7"],
            )],
        ),
    ]);
    let rows = scan(&db, &os("sles", "15.3"), headers);
    let rows: Vec<(&str, &str)> = rows
        .iter()
        .map(|(id, p, _)| (id.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("SUSE-SU-T-7", "libz1"),
            ("SUSE-SU-T-8", "libgcc_s1"),
            ("SUSE-SU-T-8", "libstdc++6"),
        ]
    );
}

// Red Hat: "the `name` field is the name of a binary or source RPM"; Red Hat's converter
// writes each binary and the source, with full EVRs such as `0:2.13.3-3.el8_6.1`.

#[test]
fn red_hat_matches_binary_or_source_names() {
    let eco = "Red Hat:enterprise_linux:9::baseos";
    let fix = "1:3.0.7-27.el9";
    let db = db_of(&[
        record(
            "RHSA-T-1",
            vec![
                affected(eco, "openssl", fix),
                affected(eco, "openssl-libs", fix),
            ],
        ),
        // Only the binary named.
        record("RHSA-T-2", vec![affected(eco, "openssl-libs", fix)]),
        // Only the source named.
        record("RHSA-T-3", vec![affected(eco, "openssl", fix)]),
    ]);
    let rhel = os("rhel", "9.3");
    let src = Some("openssl-3.0.7-25.el9.src.rpm");
    assert_eq!(
        scan(
            &db,
            &rhel,
            vec![header("openssl-libs", "1:3.0.7-25.el9", src)]
        ),
        found(&[
            ("RHSA-T-1", "openssl-libs", fix),
            ("RHSA-T-2", "openssl-libs", fix),
            ("RHSA-T-3", "openssl-libs", fix),
        ])
    );
    // The binary and its source at the fix: nothing, through either name.
    let fixed = Some("openssl-3.0.7-27.el9.src.rpm");
    assert!(scan(&db, &rhel, vec![header("openssl-libs", fix, fixed)]).is_empty());
    // One record matched through both names is one finding.
    let f = db.matches(
        &super::Package::new("Red Hat:9", "openssl-libs", "1:3.0.7-25.el9")
            .with_source("openssl", Some("3.0.7-25.el9")),
    );
    assert_eq!(f.len(), 3);
    assert_eq!(f[0].matched_name, "openssl-libs");
    assert_eq!(f[2].matched_name, "openssl");
    assert_eq!(f[2].matched_version, "1:3.0.7-25.el9");
}

#[test]
fn red_hat_explicit_zero_epoch_and_release_suffixes() {
    let eco = "Red Hat:rhel_aus:8.6::appstream";
    let fix = "0:2.13.3-3.el8_6.1";
    let db = db_of(&[record("RHSA-T-4", vec![affected(eco, "git-lfs", fix)])]);
    let rhel = os("rhel", "8.6");
    let src = |vr: &str| format!("git-lfs-{vr}.src.rpm");
    let at = |vr: &str| scan(&db, &rhel, vec![header("git-lfs", vr, Some(&src(vr)))]);
    // No epoch installed is epoch 0; `el8_6` < `el8_6.1` by rpm's segment comparison.
    assert_eq!(at("2.13.3-3.el8_6"), found(&[("RHSA-T-4", "git-lfs", fix)]));
    assert_eq!(at("2.13.3-2.el8"), found(&[("RHSA-T-4", "git-lfs", fix)]));
    assert!(at("2.13.3-3.el8_6.1").is_empty());
    assert!(at("2.13.3-4.el8").is_empty());
}

// AlmaLinux and Rocky Linux: "the `name` is the name of the source package".

#[test]
fn almalinux_matches_by_source_with_the_binary_epoch() {
    let fix = "1:3.0.7-27.el9";
    let db = db_of(&[record(
        "ALSA-T-1",
        vec![affected("AlmaLinux:9", "openssl", fix)],
    )]);
    let alma = os("almalinux", "9.4");
    let at = |evr: &str| {
        let vr = evr.split_once(':').map_or(evr, |(_, vr)| vr);
        let src = format!("openssl-{vr}.src.rpm");
        scan(&db, &alma, vec![header("openssl-libs", evr, Some(&src))])
    };
    assert_eq!(
        at("1:3.0.7-25.el9"),
        found(&[("ALSA-T-1", "openssl-libs", fix)])
    );
    assert!(at("1:3.0.7-27.el9").is_empty());
    // The SOURCERPM says `3.0.7-28.el9`, without the epoch; compared bare it would sort below
    // `1:3.0.7-27.el9` and report a fixed package.
    assert!(at("1:3.0.7-28.el9").is_empty());
    // Sources are what records name: a record naming the binary alone is not about it.
    let db = db_of(&[record(
        "ALSA-T-2",
        vec![affected("AlmaLinux:9", "openssl-libs", fix)],
    )]);
    let src = Some("openssl-3.0.7-25.el9.src.rpm");
    assert!(scan(
        &db,
        &alma,
        vec![header("openssl-libs", "1:3.0.7-25.el9", src)]
    )
    .is_empty());
}

#[test]
fn rocky_linux_matches_by_source_release_by_release() {
    let fix = "1:1.1.1k-9.el8_7";
    let db = db_of(&[record(
        "RLSA-T-1",
        vec![affected("Rocky Linux:8", "openssl", fix)],
    )]);
    let rocky = os("rocky", "8.9");
    let at = |vr: &str| {
        let src = format!("openssl-{vr}.src.rpm");
        scan(
            &db,
            &rocky,
            vec![header("openssl-libs", &format!("1:{vr}"), Some(&src))],
        )
    };
    assert_eq!(
        at("1.1.1k-7.el8_6"),
        found(&[("RLSA-T-1", "openssl-libs", fix)])
    );
    assert!(at("1.1.1k-9.el8_7").is_empty());
    assert!(at("1.1.1k-10.el8").is_empty());
    // Rocky 9 images do not meet Rocky 8's records.
    let src = Some("openssl-1.1.1k-7.el8_6.src.rpm");
    let nine = header("openssl-libs", "1:1.1.1k-7.el8_6", src);
    assert!(scan(&db, &os("rocky", "9.3"), vec![nine]).is_empty());
}

// Azure Linux: "the `name` is the name of the source package … `<RELEASE>` is a numeric
// version"; CBL-Mariner 2 is published as `Azure Linux:2`, epochs written only when not 0.

#[test]
fn azure_linux_and_mariner_match_by_source() {
    let db = db_of(&[
        record(
            "AZL-T-1",
            vec![affected("Azure Linux:3", "openssl", "3.3.2-1.azl3")],
        ),
        record(
            "AZL-T-2",
            vec![affected("Azure Linux:2", "lvm2", "2.03.05-10.cm2")],
        ),
        record(
            "AZL-T-3",
            vec![affected(
                "Azure Linux:2",
                "ca-certificates",
                "1:2.0.0-1.cm2",
            )],
        ),
    ]);
    let src = Some("openssl-3.3.0-1.azl3.src.rpm");
    assert_eq!(
        scan(
            &db,
            &os("azurelinux", "3.0"),
            vec![header("openssl-libs", "3.3.0-1.azl3", src)]
        ),
        found(&[("AZL-T-1", "openssl-libs", "3.3.2-1.azl3")])
    );
    // The CBL-Mariner 2.0 sample: device-mapper-libs is built from lvm2, and the
    // ca-certificates binaries (epoch 1) are at the record's fix once the epoch is carried.
    let data = std::fs::read(
        crate::version::vectors::vulndb_dir().join("rpmdb-samples/cbl-mariner-2.0/rpmdb.sqlite"),
    )
    .unwrap();
    let headers = crate::catalog::rpm::sqlite_headers("/var/lib/rpm/rpmdb.sqlite", &data).unwrap();
    let rows = scan(&db, &os("mariner", "2.0"), headers);
    assert_eq!(
        rows,
        found(&[("AZL-T-2", "device-mapper-libs", "2.03.05-10.cm2")])
    );
}

// Photon OS: "the `name` is the name of the RPM package": the package as installed.

#[test]
fn photon_matches_the_installed_package_name() {
    let db = db_of(&[record(
        "PHSA-T-1",
        vec![affected("Photon OS:4.0", "openssl", "3.0.9-2.ph4")],
    )]);
    let photon = os("photon", "4.0");
    let src = Some("openssl-3.0.8-1.ph4.src.rpm");
    assert_eq!(
        scan(
            &db,
            &photon,
            vec![
                header("openssl", "3.0.8-1.ph4", src),
                header("openssl-devel", "3.0.8-1.ph4", src),
            ]
        ),
        found(&[("PHSA-T-1", "openssl", "3.0.9-2.ph4")])
    );
    assert!(scan(
        &db,
        &os("photon", "5.0"),
        vec![header("openssl", "3.0.8-1.ph4", src)]
    )
    .is_empty());
}

#[test]
fn a_missing_sourcerpm_falls_back_to_the_binary() {
    // Without SOURCERPM the binary's name and version stand in for the source's.
    let db = db_of(&[record(
        "SUSE-SU-T-10",
        vec![suse_affected(
            SLES,
            "zlib",
            "1.2.13-150500.4.3.1",
            &["zlib"],
        )],
    )]);
    assert_eq!(
        scan(
            &db,
            &os("sles", "15.5"),
            vec![header("zlib", "1.2.13-150500.4.2.1", None)]
        ),
        found(&[("SUSE-SU-T-10", "zlib", "1.2.13-150500.4.3.1")])
    );
}
