//! Vulnerability scanning against the real binary and a real `docker-registry`: images built
//! here with a Debian 12 dpkg database whose package versions the synthetic OSV edge-case
//! records (`testdata/vulndb/osv/Debian-synthetic-edgecases`) do or do not affect,
//! pulled through breakwater by skopeo and raw requests.
//!
//! Which records affect the test image (installed → record):
//! - zlib1g 1:1.2.13.dfsg-1 (source zlib): SYNTH-DEB-0005 CRITICAL yes; 0004 no (epoch).
//! - libsystemd0 252.39-1~deb12u2 (source systemd): 0002 MEDIUM yes; 0003 no (fixed = installed).
//! - dash 0.5.12-2: 0014 LOW yes (last_affected = installed).
//! - bash 5.2.15-2+b2 (source bash 5.2.15-2): 0016 MEDIUM yes (binNMU, source compared).
//! - usrmerge 37~deb12u1: 0020 no (fixed = installed). 0008 is withdrawn (and tar absent).

use super::bw::{local_upstream, Breakwater};
use super::support::image::{Format, Image, Index, Layer, Platform, LINUX_AMD64, LINUX_ARM64};
use super::support::registry::Registry;
use super::support::{http_client, wait_until, TempDir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";

const STATUS: &str = "\
Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1

Package: libsystemd0
Status: install ok installed
Architecture: amd64
Source: systemd
Version: 252.39-1~deb12u2

Package: dash
Status: install ok installed
Architecture: amd64
Version: 0.5.12-2

Package: bash
Status: install ok installed
Architecture: amd64
Source: bash (5.2.15-2)
Version: 5.2.15-2+b2

Package: usrmerge
Status: install ok installed
Architecture: all
Version: 37~deb12u1
";

/// The same packages with zlib fixed: nothing at or above HIGH.
fn clean_status() -> String {
    STATUS.replace("1:1.2.13.dfsg-1\n", "1:1.2.13.dfsg-1+deb12u1\n")
}

fn edgecases() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/vulndb/osv/Debian-synthetic-edgecases"
    ))
}

/// Copies SYNTH-DEB-<n>.json records into `dir`.
fn add_records(dir: &Path, numbers: &[u32]) {
    for n in numbers {
        let name = format!("SYNTH-DEB-{n:04}.json");
        std::fs::copy(edgecases().join(&name), dir.join(&name))
            .unwrap_or_else(|e| panic!("copy {name}: {e}"));
    }
}

/// A Debian 12 image: a base layer with os-release and the dpkg database, an app layer on top
/// (`seed` makes it, and so the image, unique).
fn debian_image(status: &str, seed: u8) -> Image {
    debian_image_on(LINUX_AMD64, status, seed)
}

fn debian_image_on(platform: Platform, status: &str, seed: u8) -> Image {
    let base = Layer::from_files(&[
        ("etc/os-release", OS_RELEASE.as_bytes()),
        ("var/lib/dpkg/status", status.as_bytes()),
    ]);
    let app = Layer::from_files(&[("srv/app/VERSION", &[b'1', seed])]);
    Image::build(Format::Oci, platform, vec![base, app])
}

fn scan_section(osv: &Path, extra: &str) -> String {
    format!("\n[scan]\nosv_paths = [\"{}\"]\n{extra}\n", osv.display())
}

fn admin_url(bw: &Breakwater) -> String {
    let text = std::fs::read_to_string(bw.config_path()).expect("read config");
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("admin_listen = "))
        .expect("admin_listen");
    format!("http://{}", addr.trim_matches('"'))
}

async fn get_json(url: &str) -> (u16, Value) {
    let r = http_client().get(url).send().await.expect("admin API");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Polls the stored findings of `image` until it has been scanned.
async fn wait_for_scan(admin: &str, image: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, v) = get_json(&format!("{admin}/api/v1/scans/{image}")).await;
        if status == 200 {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{image} was not scanned: {status} {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the events of `kind` until there are `n`.
async fn wait_for_events(admin: &str, kind: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = get_json(&format!("{admin}/api/v1/events?kind={kind}")).await;
        let events = v["events"].as_array().cloned().unwrap_or_default();
        if events.len() >= n {
            return events;
        }
        assert!(Instant::now() < deadline, "no {n} {kind} events: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(report: &Value) -> BTreeSet<String> {
    report["imageScanFindings"]["findings"]
        .as_array()
        .expect("findings array")
        .iter()
        .map(|f| attr(f, "advisory_id"))
        .collect()
}

fn attr(finding: &Value, key: &str) -> String {
    finding["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["key"] == key))
        .and_then(|e| e["value"].as_str())
        .unwrap_or("")
        .to_string()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The advisory ids named in an event's detail (one finding per line, id first).
fn detail_ids(event: &Value) -> BTreeSet<String> {
    event["detail"]
        .as_str()
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(args)
        .output()
        .expect("run breakwater");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn skopeo(src: &str, dest: &Path) -> std::process::Output {
    Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{src}"))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("run skopeo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pulled_through_the_cache_is_scanned_and_rescanned_without_reading_layers() {
    let reg = Registry::start_plain().await;
    let image = debian_image(STATUS, 1);
    reg.pusher().push_image("team/app", "v1", &image).await;
    let osv = TempDir::new("osv");
    add_records(osv.path(), &[3, 4, 5, 20]);
    let body = local_upstream(&reg.url(), "10m", "")
        + &scan_section(
            osv.path(),
            "on_cache = [\"local/team/*\"]\nrescan_interval = \"200ms\"",
        );
    let bw = Breakwater::start(&body).await;
    let admin = admin_url(&bw);

    // A real client pulls the image through the cache; the scan runs on cache, by itself.
    let dest = TempDir::new("pulled");
    let out = skopeo(&format!("{}/team/app:v1", bw.host()), dest.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = wait_for_scan(&admin, "local/team/app:v1").await;
    assert_eq!(report["imageScanStatus"]["status"], "COMPLETE", "{report}");
    assert_eq!(report["imageId"]["imageDigest"], image.manifest.digest);
    assert_eq!(ids(&report), set(&["SYNTH-DEB-0005"]), "{report}");
    let f = &report["imageScanFindings"]["findings"][0];
    assert_eq!(f["severity"], "CRITICAL");
    assert_eq!(f["uri"], "https://osv.dev/vulnerability/SYNTH-DEB-0005");
    assert_eq!(attr(f, "package_name"), "zlib1g");
    assert_eq!(attr(f, "package_version"), "1:1.2.13.dfsg-1");
    assert_eq!(attr(f, "fixed_version"), "1:1.2.13.dfsg-1+deb12u1");
    assert_eq!(attr(f, "ecosystem"), "Debian:12");
    assert_eq!(attr(f, "source_name"), "zlib");
    assert_eq!(attr(f, "file_path"), "/var/lib/dpkg/status");
    assert_eq!(
        report["imageScanFindings"]["findingSeverityCounts"]["CRITICAL"],
        1
    );
    assert_eq!(report["inventory"]["packages"], 5);
    assert!(report["imageScanFindings"]["vulnerabilitySourceUpdatedAt"].is_string());
    let reads = bw.metric("breakwater_scan_layer_reads_total", &[]).await;
    assert_eq!(reads, 2.0, "each layer read once");
    let critical = wait_for_events(&admin, "critical_finding", 1).await;
    assert!(critical[0]["reason"]
        .as_str()
        .unwrap()
        .contains("SYNTH-DEB-0005"));
    assert_eq!(critical[0]["repository"], "team/app");

    // CLI: table and JSON, and the SBOM with package URLs.
    let (ok, table, err) = cli(&["scan", "findings", "--admin", &admin, "local/team/app:v1"]);
    assert!(ok, "{err}");
    assert!(
        table.contains("CRITICAL") && table.contains("zlib1g"),
        "{table}"
    );
    let (ok, out, err) = cli(&[
        "scan",
        "findings",
        "--json",
        "--admin",
        &admin,
        "local/team/app:v1",
    ]);
    assert!(ok, "{err}");
    let json: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(ids(&json), set(&["SYNTH-DEB-0005"]));
    let (ok, out, err) = cli(&[
        "sbom",
        "--admin",
        &admin,
        &format!("local/team/app@{}", image.manifest.digest),
    ]);
    assert!(ok, "{err}");
    let bom: Value = serde_json::from_str(&out).expect("SBOM JSON");
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.5");
    let purls: Vec<&str> = bom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["purl"].as_str())
        .collect();
    assert!(
        purls.contains(
            &"pkg:deb/debian/zlib1g@1%3A1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
        ),
        "{purls:?}"
    );

    // On demand: scanned again (layers reused), by CLI and by the query form of the API.
    let (ok, out, err) = cli(&["scan", "run", "--admin", &admin, "local/team/app:v1"]);
    assert!(ok && out.contains("SYNTH-DEB-0005"), "{out}{err}");
    let url = format!(
        "{admin}/api/v1/scans?repository=local/team/app&digest={}",
        image.manifest.digest
    );
    let (status, v) = get_json(&url).await;
    assert_eq!((status, ids(&v)), (200, set(&["SYNTH-DEB-0005"])), "{v}");
    for (path, code, needle) in [
        ("scans/local/team/nope:v1", 404, "not cached"),
        ("scans/nonsense", 400, "not an image"),
        ("scans/elsewhere/team/app:v1", 404, "no upstream"),
        ("sbom/local/team/app:v9", 404, "not cached"),
    ] {
        let (status, v) = get_json(&format!("{admin}/api/v1/{path}")).await;
        let msg = v["error"].as_str().unwrap_or("");
        assert!(
            status == code && msg.contains(needle),
            "{path}: {status} {v}"
        );
    }
    assert_eq!(
        bw.metric("breakwater_scan_layer_reads_total", &[]).await,
        2.0
    );

    // More records: exactly the ones affecting the image are added, and no layer is read.
    add_records(osv.path(), &[2, 8, 14, 16]);
    let new = wait_for_events(&admin, "scan_finding_new", 1).await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        detail_ids(&new[0]),
        set(&["SYNTH-DEB-0002", "SYNTH-DEB-0014", "SYNTH-DEB-0016"])
    );
    let report = wait_for_scan(&admin, "local/team/app:v1").await;
    assert_eq!(
        ids(&report),
        set(&[
            "SYNTH-DEB-0002",
            "SYNTH-DEB-0005",
            "SYNTH-DEB-0014",
            "SYNTH-DEB-0016"
        ])
    );
    assert_eq!(
        bw.metric("breakwater_scan_layer_reads_total", &[]).await,
        2.0
    );
    assert!(
        bw.metric("breakwater_scan_rematched_images_total", &[])
            .await
            >= 1.0
    );
    assert_eq!(
        wait_for_events(&admin, "critical_finding", 1).await.len(),
        1,
        "no new critical"
    );

    // A record withdrawn from the data: its finding is resolved.
    std::fs::remove_file(osv.path().join("SYNTH-DEB-0005.json")).unwrap();
    let resolved = wait_for_events(&admin, "scan_finding_resolved", 1).await;
    assert_eq!(detail_ids(&resolved[0]), set(&["SYNTH-DEB-0005"]));
    let report = wait_for_scan(&admin, "local/team/app:v1").await;
    assert_eq!(
        ids(&report),
        set(&["SYNTH-DEB-0002", "SYNTH-DEB-0014", "SYNTH-DEB-0016"])
    );
    assert_eq!(
        bw.metric("breakwater_scan_layer_reads_total", &[]).await,
        2.0
    );
    assert_eq!(
        bw.metric("breakwater_scan_findings", &["CRITICAL"]).await,
        0.0
    );
    assert_eq!(
        bw.metric("breakwater_scan_findings", &["MEDIUM"]).await,
        2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_denies_on_first_pull_warns_and_judges_each_platform() {
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    let vulnerable = debian_image(STATUS, 2);
    p.push_image("team/vuln", "v1", &vulnerable).await;
    p.push_image("team/vuln-skopeo", "v1", &debian_image(STATUS, 3))
        .await;
    p.push_image("team/vuln-clean", "v1", &debian_image(&clean_status(), 4))
        .await;
    p.push_image("team/warn", "v1", &debian_image(STATUS, 5))
        .await;
    p.push_image("team/allowed", "v1", &debian_image(STATUS, 6))
        .await;
    let arm = debian_image_on(LINUX_ARM64, &clean_status(), 7);
    let multi = Index::build(Format::Oci, vec![debian_image(STATUS, 8), arm.clone()]);
    p.push_index("team/vuln-multi", "v1", &multi).await;

    let osv = TempDir::new("osv");
    add_records(osv.path(), &[2, 4, 5, 14, 16]);
    let gates = "\
[[scan.gates]]
repositories = \"local/team/allowed\"
mode = \"enforce\"
severity = \"HIGH\"
allow = [\"SYNTH-DEB-0005\"]
[[scan.gates]]
repositories = \"local/team/vuln*\"
mode = \"enforce\"
severity = \"HIGH\"
[[scan.gates]]
repositories = \"local/team/warn\"
mode = \"warn\"
";
    let body = local_upstream(&reg.url(), "10m", "") + &scan_section(osv.path(), gates);
    let bw = Breakwater::start(&body).await;
    let client = http_client();
    let get = |repo: &str, reference: &str| {
        client
            .get(format!("{}/v2/{repo}/manifests/{reference}", bw.url()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json")
            .send()
    };

    // Enforce, very first pull: the scan pulls the layers through the cache, then denies.
    let r = get("team/vuln", "v1").await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let body: Value = r.json().await.unwrap();
    let e = &body["errors"][0];
    assert_eq!(e["code"], "DENIED", "{body}");
    let msg = e["message"].as_str().unwrap();
    for needle in [
        "SYNTH-DEB-0005",
        "CRITICAL",
        "zlib1g",
        "1:1.2.13.dfsg-1",
        "local/team/vuln@",
    ] {
        assert!(msg.contains(needle), "{needle} missing from: {msg}");
    }
    assert!(
        !msg.contains("SYNTH-DEB-0002"),
        "MEDIUM is below the threshold: {msg}"
    );
    for layer in &vulnerable.layers {
        let cached = wait_until(Duration::from_secs(10), || bw.has_blob(&layer.digest)).await;
        assert!(cached, "the scan cached layer {}", layer.digest);
    }
    // Denied again from the stored scan, by digest too.
    let r = get("team/vuln", &vulnerable.manifest.digest).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);

    // A real client sees the denial.
    let dest = TempDir::new("denied");
    let out = skopeo(&format!("{}/team/vuln-skopeo:v1", bw.host()), dest.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("denied") || stderr.contains("DENIED"),
        "{stderr}"
    );
    assert!(stderr.contains("SYNTH-DEB-0005"), "{stderr}");

    // Same pattern, fixed packages: served.
    let r = get("team/vuln-clean", "v1").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.headers().get("x-breakwater-scan").is_none());

    // Allow-listed advisory: served.
    let r = get("team/allowed", "v1").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Warn: served, with the findings in a header, and counted.
    let r = get("team/warn", "v1").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let h = r.headers()["x-breakwater-scan"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        h.starts_with("1 findings >= HIGH: SYNTH-DEB-0005 (CRITICAL, zlib1g"),
        "{h}"
    );
    assert_eq!(
        bw.metric(
            "breakwater_scan_gate_total",
            &["mode=\"warn\"", "result=\"warned\""]
        )
        .await,
        1.0
    );
    assert!(
        bw.metric(
            "breakwater_scan_gate_total",
            &["mode=\"enforce\"", "result=\"denied\""]
        )
        .await
            >= 3.0
    );

    // Multi-arch: the index is let through; each platform image is judged on its own.
    let r = get("team/vuln-multi", "v1").await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "index passes");
    let amd = &multi.images[0].manifest.digest;
    assert_eq!(
        get("team/vuln-multi", amd).await.unwrap().status().as_u16(),
        403
    );
    assert_eq!(
        get("team/vuln-multi", &arm.manifest.digest)
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    // The index report: per platform and the union.
    let admin = admin_url(&bw);
    let (status, v) = get_json(&format!("{admin}/api/v1/scans/local/team/vuln-multi:v1")).await;
    assert_eq!(status, 200, "{v}");
    let platforms = v["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2);
    assert_eq!(platforms[0]["platform"], "linux/amd64");
    assert_eq!(platforms[0]["findingSeverityCounts"]["CRITICAL"], 1);
    assert!(platforms[1]["findingSeverityCounts"]
        .get("CRITICAL")
        .is_none());
    let union = ids(&v);
    assert!(
        union.contains("SYNTH-DEB-0005") && union.contains("SYNTH-DEB-0002"),
        "{union:?}"
    );
    let zlib = v["imageScanFindings"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| attr(f, "advisory_id") == "SYNTH-DEB-0002")
        .unwrap();
    assert_eq!(attr(zlib, "platforms"), "linux/amd64,linux/arm64/v8");
}

/// The analyzer version stored with each image's scan, read from the index database.
fn stored_analyzer_versions(db: &Path, digests: &[&str]) -> Vec<i64> {
    let conn = rusqlite::Connection::open(db).expect("open index");
    digests
        .iter()
        .map(|d| {
            conn.query_row(
                "SELECT analyzer_version FROM scan_results WHERE digest = ?1",
                [d],
                |r| r.get(0),
            )
            .expect("stored scan")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventories_from_an_older_analyzer_are_rescanned_once_when_their_bytes_are_stored() {
    let reg = Registry::start_plain().await;
    // Same base layer (same dpkg status), different app layers.
    let (kept, archived) = (debian_image(STATUS, 10), debian_image(STATUS, 11));
    reg.pusher().push_image("team/up", "v1", &kept).await;
    reg.pusher().push_image("team/up", "v2", &archived).await;
    let osv = TempDir::new("osv");
    add_records(osv.path(), &[5]);
    let body = local_upstream(&reg.url(), "10m", "")
        + &scan_section(osv.path(), "rescan_interval = \"200ms\"\nupgrade_batch = 4");
    let mut bw = Breakwater::start(&body).await;
    let admin = admin_url(&bw);
    let upgrade = ["trigger=\"upgrade\""];
    const READS: &str = "breakwater_scan_layer_reads_total";

    for tag in ["v1", "v2"] {
        let image = format!("local/team/up:{tag}");
        let (ok, out, err) = cli(&["scan", "run", "--admin", &admin, &image]);
        assert!(ok && out.contains("SYNTH-DEB-0005"), "{out}{err}");
    }
    assert_eq!(bw.metric(READS, &[]).await, 3.0, "base layer shared");
    for l in kept.layers.iter().chain(&archived.layers) {
        assert!(wait_until(Duration::from_secs(10), || bw.has_blob(&l.digest)).await);
    }
    let current = i64::from(breakwater::scan::layer::ANALYZER_VERSION);
    let db = bw.root().join("index.sqlite");
    let (k, a) = (
        kept.manifest.digest.as_str(),
        archived.manifest.digest.as_str(),
    );
    assert_eq!(stored_analyzer_versions(&db, &[k, a]), [current, current]);
    assert_eq!(bw.metric("breakwater_scans_total", &upgrade).await, 0.0);

    // As an older release left the store: its layer analyses and image scans carry the
    // previous analyzer version, and that analyzer found no packages. The second image's app
    // layer bytes are gone from the store (as after archiving and GC).
    bw.kill9();
    let gone = &archived.layers[1].digest;
    let hex = gone.trim_start_matches("sha256:");
    std::fs::remove_file(bw.root().join("blobs/sha256").join(&hex[..2]).join(hex)).unwrap();
    {
        let mut conn = rusqlite::Connection::open(&db).expect("open index");
        let tx = conn.transaction().unwrap();
        tx.execute(
            "UPDATE scan_layers SET analyzer_version = ?1",
            [current - 1],
        )
        .unwrap();
        tx.execute(
            "UPDATE scan_results SET analyzer_version = ?1, findings = '[]', critical = 0",
            [current - 1],
        )
        .unwrap();
        tx.execute(
            "UPDATE scan_inventories SET inventory = json_set(inventory, '$.packages', json('[]'))",
            [],
        )
        .unwrap();
        tx.commit().unwrap();
    }

    // The new release starts: right away it rescans the image whose bytes are stored, both
    // its layers read again with the current analyzer, and the finding the old inventory
    // missed reported as new.
    bw.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while bw.metric("breakwater_scans_total", &upgrade).await < 1.0 {
        assert!(Instant::now() < deadline, "no upgrade rescan");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new = wait_for_events(&admin, "scan_finding_new", 1).await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(new[0]["digest"], k);
    assert_eq!(detail_ids(&new[0]), set(&["SYNTH-DEB-0005"]));
    let report = wait_for_scan(&admin, &format!("local/team/up@{k}")).await;
    assert_eq!(ids(&report), set(&["SYNTH-DEB-0005"]), "{report}");
    assert_eq!(report["inventory"]["packages"], 5);
    assert_eq!(
        bw.metric(READS, &[]).await,
        2.0,
        "the rescanned image's layers"
    );
    assert_eq!(
        stored_analyzer_versions(&db, &[k, a]),
        [current, current - 1],
        "the image without its bytes waits"
    );

    // Later rounds have nothing to do.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(bw.metric("breakwater_scans_total", &upgrade).await, 1.0);
    assert_eq!(bw.metric(READS, &[]).await, 2.0);
    assert_eq!(
        stored_analyzer_versions(&db, &[k, a]),
        [current, current - 1]
    );
}
