//! `breakwater scan update` against a loopback mirror with osv.dev's bucket layout (a small HTTP
//! server: the real bucket is never contacted), then `breakwater scan status` of a running
//! breakwater over the same `osv_paths` folder. The archives are the OSV sets in `testdata/`.
//! A second run serves a truncated zip, a connection cut mid-body, a wrong MD5 and a 404: each
//! named with its cause, the run exits non-zero, the previous archives stay, the good one lands.

use super::bw::{local_upstream, Breakwater};
use super::support::http::{Request, Response, TestServer};
use super::support::TempDir;
use base64::Engine;
use bytes::Bytes;
use md5::{Digest, Md5};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn testdata(name: &str) -> Bytes {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/vulndb/osv")
        .join(name);
    Bytes::from(std::fs::read(&p).expect("read testdata"))
}

/// Runs the binary without proxy settings (everything here is on loopback).
fn cli(args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_breakwater"));
    for v in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
        cmd.env_remove(v).env_remove(v.to_ascii_lowercase());
    }
    let out = cmd.args(args).output().expect("run breakwater");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn md5_b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(b))
}

/// Every file under `dir` whose name contains `needle`.
fn files_named(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().contains(needle) {
                out.push(e.path());
            }
        }
    }
    out
}

/// The mirror: good archives first; after `broken` is set, bad ones (see the module doc).
struct Mirror {
    alpine: Bytes,
    pypi: Bytes,
    crates: Bytes,
    go: Bytes,
    broken: AtomicBool,
    if_none_match: Mutex<Vec<String>>,
}

impl Mirror {
    async fn serve(self: Arc<Self>, req: Request, mut stream: TcpStream) -> Option<TcpStream> {
        let broken = self.broken.load(Ordering::SeqCst);
        if let Some(tag) = req.header("if-none-match") {
            self.if_none_match.lock().unwrap().push(tag.to_string());
        }
        let resp = match req.path() {
            "/osv/Alpine/all.zip" if !broken => {
                if req.header("if-none-match") == Some("\"alp-1\"") {
                    Response::new(304)
                } else {
                    Response::new(200)
                        .header("ETag", "\"alp-1\"")
                        .body(self.alpine.clone())
                }
            }
            // A different version, cut short but served as if whole.
            "/osv/Alpine/all.zip" => Response::new(200)
                .header("ETag", "\"alp-2\"")
                .body(self.alpine.slice(..self.alpine.len() / 2)),
            "/osv/PyPI/all.zip" if !broken => Response::new(200)
                .header("x-goog-hash", "crc32c=AAAAAA==")
                .header("x-goog-hash", &format!("md5={}", md5_b64(&self.pypi)))
                .body(self.pypi.clone()),
            // The connection drops halfway through the announced length.
            "/osv/PyPI/all.zip" => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    self.pypi.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&self.pypi[..self.pypi.len() / 2]).await;
                let _ = stream.flush().await;
                return None;
            }
            "/osv/crates.io/all.zip" => {
                let md5 = if broken {
                    md5_b64(b"other bytes")
                } else {
                    md5_b64(&self.crates)
                };
                Response::new(200)
                    .header("x-goog-hash", &format!("crc32c=AAAAAA==, md5={md5}"))
                    .body(self.crates.clone())
            }
            "/osv/Go/all.zip" if broken => Response::new(200).body(self.go.clone()),
            _ => Response::text(404, "no such object"),
        };
        resp.write_to(&mut stream, req.is_head()).await.ok()?;
        Some(stream)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_swaps_in_verified_archives_keeps_old_ones_on_failure_and_status_shows_it_all() {
    let mirror = Arc::new(Mirror {
        alpine: testdata("Alpine-v3.11-all.zip"),
        pypi: testdata("PyPI-all.zip"),
        crates: testdata("crates.io-all.zip"),
        go: testdata("Go-all.zip"),
        broken: AtomicBool::new(false),
        if_none_match: Mutex::new(Vec::new()),
    });
    let m = mirror.clone();
    let server = TestServer::start_raw(move |req, stream| m.clone().serve(req, stream)).await;
    let from = format!("{}/osv", server.url());

    let dir = TempDir::new("osv-update");
    let osv = dir.path().join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    // The upstream is never contacted: only the scan side of this breakwater is used.
    let body = local_upstream("http://127.0.0.1:9", "1m", "")
        + &format!("\n[scan]\nosv_paths = [\"{}\"]\n", osv.display());
    let bw = Breakwater::start(&body).await;
    let config = bw.config_path().display().to_string();

    // Without --dir the folder comes from the config's osv_paths.
    let update = |ecosystems: &str| {
        cli(&[
            "scan",
            "update",
            "--config",
            &config,
            "--from",
            &from,
            "--ecosystems",
            ecosystems,
        ])
    };
    let (ok, out, err) = update("Alpine,PyPI,crates.io");
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let archive = |eco: &str| osv.join(eco).join("all.zip");
    for (eco, n) in [("Alpine", 1105), ("PyPI", 2661), ("crates.io", 1206)] {
        let line = format!("{eco}: updated {}: {n} records", archive(eco).display());
        assert!(out.contains(&line), "{line:?} not in:\n{out}");
    }
    assert_eq!(std::fs::read(archive("Alpine")).unwrap(), mirror.alpine);
    assert_eq!(std::fs::read(archive("PyPI")).unwrap(), mirror.pypi);

    // The stored ETag makes the next download conditional.
    let (ok, out, err) = update("Alpine");
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Alpine: unchanged"), "{out}");
    assert_eq!(*mirror.if_none_match.lock().unwrap(), ["\"alp-1\""]);

    // Files the loader cannot use sit beside the downloads.
    std::fs::create_dir_all(osv.join("local")).unwrap();
    std::fs::write(osv.join("local/broken.zip"), b"not a zip").unwrap();
    std::fs::write(osv.join("local/bad.json"), b"{").unwrap();
    let status = reload_and_status(&config);
    for (eco, n) in [("Alpine", 1105), ("PyPI", 2661), ("crates.io", 1206)] {
        assert_eq!(records(&status, &archive(eco), eco), Some(n), "{status}");
    }
    assert!(status.contains("unusable files: 2\n"), "{status}");
    let broken = osv.join("local/broken.zip").display().to_string();
    let bad = osv.join("local/bad.json").display().to_string();
    assert!(
        status.contains(&format!("  {broken}: not a usable zip: ")),
        "{status}"
    );
    assert!(
        status.contains(&format!("  {bad}: not an OSV record: ")),
        "{status}"
    );
    assert_eq!(
        bw.metric("breakwater_scan_db_unusable_files", &[]).await,
        2.0
    );
    let ecosystem_metric = "breakwater_scan_db_ecosystem_records";
    for (eco, n) in [("Alpine", 1105.0), ("crates.io", 1206.0)] {
        let label = format!("ecosystem=\"{eco}\"");
        assert_eq!(bw.metric(ecosystem_metric, &[&label]).await, n);
    }

    // Second run: everything but Go goes wrong.
    mirror.broken.store(true, Ordering::SeqCst);
    let (ok, out, err) = update("Alpine,PyPI,crates.io,Go,Wolfi");
    assert!(!ok, "a failed ecosystem fails the run:\n{out}\n{err}");
    let expect = [
        "Alpine: not updated (the previous archive is kept): not a usable zip: ",
        "PyPI: not updated (the previous archive is kept): the download from ",
        "crates.io: not updated (the previous archive is kept): the download from ",
        "Wolfi: not updated (there is no previous archive): ",
        "4 of 5 ecosystems not updated: Alpine, PyPI, crates.io, Wolfi",
    ];
    for e in expect {
        assert!(err.contains(e), "{e:?} not in:\n{err}");
    }
    let pypi_line = err.lines().find(|l| l.contains("PyPI:")).unwrap();
    assert!(
        pypi_line.contains("broke off") || pypi_line.contains("ended after"),
        "{pypi_line}"
    );
    assert!(err.contains("hashes to MD5"), "{err}");
    assert!(err.contains("Wolfi/all.zip answered 404"), "{err}");
    assert!(
        out.contains("Go: updated"),
        "the good one still lands:\n{out}"
    );
    assert_eq!(std::fs::read(archive("Alpine")).unwrap(), mirror.alpine);
    assert_eq!(std::fs::read(archive("PyPI")).unwrap(), mirror.pypi);
    assert_eq!(std::fs::read(archive("crates.io")).unwrap(), mirror.crates);
    assert_eq!(files_named(&osv, ".partial"), Vec::<PathBuf>::new());

    let status = reload_and_status(&config);
    assert_eq!(
        records(&status, &archive("Go"), "Go"),
        Some(4291),
        "{status}"
    );
    assert_eq!(records(&status, &archive("Alpine"), "Alpine"), Some(1105));
    let v = bw.admin_get("/scan/status").await;
    let loaded = &v["loaded"];
    assert_eq!(loaded["recordsByEcosystem"]["Alpine"], 1105, "{loaded}");
    assert_eq!(loaded["recordsByEcosystem"]["Go"], 4291, "{loaded}");
    assert_eq!(loaded["unusableFileCount"], 2, "{loaded}");
    assert_eq!(loaded["records"], 1105 + 2661 + 1206 + 4291, "{loaded}");
}

/// The RECORDS cell of the status table's row for `source` and `ecosystem`.
fn records(status: &str, source: &Path, ecosystem: &str) -> Option<u64> {
    let source = source.display().to_string();
    status.lines().find_map(|l| {
        let cells: Vec<&str> = l.split_whitespace().collect();
        match cells[..] {
            [s, e, n] if s == source && e == ecosystem => n.parse().ok(),
            _ => None,
        }
    })
}

/// `scan reload`, then the text of `scan status`.
fn reload_and_status(config: &str) -> String {
    let (ok, out, err) = cli(&["scan", "reload", "--config", config]);
    assert!(ok, "reload: {out}\n{err}");
    let (ok, out, err) = cli(&["scan", "status", "--config", config]);
    assert!(ok, "status: {out}\n{err}");
    out
}

#[test]
fn update_needs_a_folder_to_write_to() {
    // The embedded default config has no osv_paths: the command stops before any download.
    let (ok, _, err) = cli(&["scan", "update", "--ecosystems", "Alpine"]);
    assert!(!ok);
    assert!(err.contains("no folder to write to"), "{err}");
    let (ok, _, err) = cli(&[
        "scan",
        "update",
        "--dir",
        "/nonexistent",
        "--ecosystems",
        "Debian:12",
    ]);
    assert!(!ok);
    assert!(err.contains("use \"Debian\""), "{err}");
}

#[test]
fn the_shipped_timer_and_its_unit_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        if std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_some() {
            panic!("required test tool missing: systemd-analyze");
        }
        eprintln!("SKIPPED: no systemd-analyze (apt-get install systemd)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let unit = std::fs::read_to_string(root.join("breakwater-osv-update.service")).unwrap();
    let timer = std::fs::read_to_string(root.join("breakwater-osv-update.timer")).unwrap();
    assert!(unit.contains(
        "\nExecStart=/usr/local/bin/breakwater scan update --config /etc/breakwater/breakwater.toml\n"
    ));
    // The cache's unit is named breakwater: the same dynamic user reads what this one writes.
    assert!(unit.contains("\nUser=breakwater\n") && unit.contains("\nStateDirectory=breakwater\n"));
    assert!(timer.contains("\nOnCalendar=daily\n"));
    // verify insists that ExecStart's binary exists: check copies naming the one just built.
    let dir = TempDir::new("osv-unit");
    let built = env!("CARGO_BIN_EXE_breakwater");
    let service = dir.path().join("breakwater-osv-update.service");
    std::fs::write(&service, unit.replace("/usr/local/bin/breakwater", built)).unwrap();
    let timer_copy = dir.path().join("breakwater-osv-update.timer");
    std::fs::write(&timer_copy, timer).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&timer_copy)
        .arg(&service)
        .output()
        .expect("run systemd-analyze verify");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    assert!(!text.contains("breakwater-osv-update"), "warnings:\n{text}");
}
