//! Scanner benchmarks (measured, never asserted on time):
//!
//! - `inventory/debian-bookworm-minbase`: one streaming pass over a gzip layer of a
//!   debootstrapped Debian 12 root (`load-tests/make-debian-rootfs.sh`) plus the merge into an
//!   inventory. Goal: ≤ 2 s.
//! - `rematch/1000-images`: after a vulnerability data change, match 1,000 stored inventories
//!   of that image again (read from the scan tables, matched, findings diffed, written back,
//!   events recorded). Goal: ≤ 1 s.
//! - Peak memory: `BENCH_SCAN_LAYER=<layer.tar.gz> cargo bench --bench scan` analyses that one
//!   file and prints the process's peak RSS (`VmHWM`) before and after; no criterion run.
//!   `load-tests/scan-bench.sh` builds a 1 GiB layer and runs both.
//!
//! The layer is built under `$BREAKWATER_BENCH_DIR` (default `/var/tmp/breakwater/bench`) with
//! the system `tar` and kept for later runs. Without the rootfs the benchmarks say so and skip.

use breakwater::cache::index::{ManifestRecord, RepoKey};
use breakwater::cache::{Index, SqliteIndex};
use breakwater::config::Settings;
use breakwater::metrics::Metrics;
use breakwater::oci::Digest;
use breakwater::registry::Registry;
use breakwater::scan::findings::{match_inventory, Memo};
use breakwater::scan::inventory::{merge, Inventory};
use breakwater::scan::layer::analyze_layer;
use breakwater::scan::osv::Database;
use breakwater::scan::record::{ImageScan, ScanStatus};
use breakwater::scan::settings::ScanSettings;
use breakwater::scan::vulndb::DbSnapshot;
use breakwater::scan::Scanner;
use criterion::{Criterion, Throughput};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IMAGES: usize = 1_000;

fn bench_dir() -> PathBuf {
    std::env::var_os("BREAKWATER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/breakwater/bench"))
}

fn shared() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vulndb/osv"))
}

/// The Debian rootfs as a gzip layer, built once; `None` when there is no rootfs.
fn debian_layer() -> Option<PathBuf> {
    let rootfs = std::env::var_os("BREAKWATER_DEBIAN_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/breakwater/debian-bookworm-minbase"));
    if !rootfs.join("var/lib/dpkg/status").exists() {
        eprintln!(
            "SKIPPED: no Debian rootfs at {} (run load-tests/make-debian-rootfs.sh)",
            rootfs.display()
        );
        return None;
    }
    let out = bench_dir().join("debian-bookworm-minbase.tar.gz");
    if !out.exists() {
        std::fs::create_dir_all(bench_dir()).expect("create bench dir");
        let partial = out.with_extension("partial");
        let ok = Command::new("tar")
            .args(["--numeric-owner", "-czf"])
            .arg(&partial)
            .arg("-C")
            .arg(&rootfs)
            .arg(".")
            .status()
            .expect("run tar");
        assert!(ok.success(), "tar failed");
        std::fs::rename(&partial, &out).expect("rename layer");
    }
    Some(out)
}

fn inventory_of(layer: &Path) -> Inventory {
    let a = analyze_layer(BufReader::with_capacity(
        256 << 10,
        File::open(layer).expect("open layer"),
    ))
    .expect("analyse layer");
    merge([&a])
}

fn load(paths: &[PathBuf]) -> Arc<DbSnapshot> {
    let (db, report) = Database::load(paths).expect("load OSV data");
    Arc::new(DbSnapshot::new(db, report.documents, Vec::new()))
}

fn bench_inventory(c: &mut Criterion, layer: &Path) {
    let size = std::fs::metadata(layer).expect("layer").len();
    let mut g = c.benchmark_group("inventory");
    g.sample_size(10).measurement_time(Duration::from_secs(40));
    g.throughput(Throughput::Bytes(size));
    g.bench_function("debian-bookworm-minbase", |b| {
        b.iter(|| {
            let inv = inventory_of(layer);
            assert!(inv.packages.len() > 50);
            inv
        })
    });
    g.finish();
}

/// 1,000 stored scans of the Debian inventory, matched against `old`; each iteration resets
/// them and rematches against `new`.
fn bench_rematch(c: &mut Criterion, inv: &Inventory) {
    let old = load(&[shared().join("Debian-synthetic-edgecases/SYNTH-DEB-0005.json")]);
    let new = load(&[
        shared().join("Debian-synthetic-edgecases"),
        shared().join("PyPI-all.zip"),
        shared().join("Go-all.zip"),
        shared().join("crates.io-all.zip"),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("index.sqlite");
    let index: Arc<dyn Index> = Arc::new(SqliteIndex::open(&path).expect("index"));
    let scans = index.scans().expect("scan tables");
    let metrics = Arc::new(Metrics::new());
    // The rematch reads no image; the registry is only the scanner's (unused) image source.
    let settings = Settings::parse(&format!(
        "[storage]\nroot = {:?}\n",
        dir.path().display().to_string()
    ))
    .expect("bench config parses");
    let registry = Arc::new(Registry::open(&settings, metrics.clone()).expect("open cache"));
    let scanner = Scanner::new(
        &ScanSettings::default(),
        scans,
        index.clone(),
        registry.image_source(),
        &metrics,
    );
    let repo = RepoKey {
        upstream: "docker.io".into(),
        name: "library/debian".into(),
    };
    let old_findings = match_inventory(&old.db, inv);
    for i in 0..IMAGES {
        let digest = Digest::sha256_of(format!("image {i}").as_bytes());
        let m = ManifestRecord {
            digest: digest.clone(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 1,
        };
        index
            .record_manifest(&repo, &m, &[], None, 0)
            .expect("record manifest");
        scanner
            .store()
            .put_image(&ImageScan {
                digest,
                upstream: repo.upstream.clone(),
                repository: repo.name.clone(),
                status: ScanStatus::Complete,
                description: String::new(),
                layers: vec![],
                inventory: inv.clone(),
                findings: old_findings.clone(),
                scanned_at_ms: 0,
                matched_at_ms: 0,
                db_hash: Some(old.hash.clone()),
                db_updated_at_ms: None,
            })
            .expect("store scan");
    }
    let reset = rusqlite::Connection::open(&path).expect("open index");
    let old_json = serde_json::to_string(&old_findings).expect("encode");
    let mut g = c.benchmark_group("rematch");
    g.sample_size(10).measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(IMAGES as u64));
    g.bench_function("1000-images", |b| {
        b.iter_batched(
            || {
                reset
                    .execute(
                        "UPDATE scan_results SET db_hash = ?1, findings = ?2",
                        rusqlite::params![old.hash, old_json],
                    )
                    .expect("reset rows");
            },
            |_| {
                let r = scanner.rematch_all_blocking(&new).expect("rematch");
                assert_eq!(r.images, IMAGES);
                assert!(
                    r.new_findings >= IMAGES,
                    "the change adds findings to every image"
                );
                r
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
    eprintln!(
        "rematch: {} records in the new data; {} findings per image before, {} after",
        new.db.len(),
        old_findings.len(),
        match_inventory(&new.db, inv).len()
    );
    breakdown(&scanner, &reset, &old, &old_json, &new);
}

/// Where a rematch's time goes: reading and decoding the stored rows, and matching them with
/// and without the per-run package memo (the bench's images are identical, the memo's best case).
fn breakdown(
    scanner: &Scanner,
    reset: &rusqlite::Connection,
    old: &DbSnapshot,
    old_json: &str,
    new: &DbSnapshot,
) {
    reset
        .execute(
            "UPDATE scan_results SET db_hash = ?1, findings = ?2",
            rusqlite::params![old.hash, old_json],
        )
        .expect("reset rows");
    let t = Instant::now();
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page = scanner
            .store()
            .unmatched(&new.hash, after.as_ref(), 256)
            .expect("read rows");
        let Some(last) = page.last() else { break };
        after = Some(last.digest.clone());
        rows.extend(page);
    }
    let read = t.elapsed();
    let t = Instant::now();
    let plain: usize = rows
        .iter()
        .map(|r| match_inventory(&new.db, &r.inventory).len())
        .sum();
    let matched = t.elapsed();
    let t = Instant::now();
    let mut memo = Memo::new(&new.db);
    let memoised: usize = rows
        .iter()
        .map(|r| memo.inventory(&r.inventory).len())
        .sum();
    let matched_memo = t.elapsed();
    assert_eq!(plain, memoised);
    eprintln!(
        "rematch breakdown for {} rows: read+decode {:.0} ms, match {:.0} ms without memo, {:.0} ms with",
        rows.len(),
        read.as_secs_f64() * 1e3,
        matched.as_secs_f64() * 1e3,
        matched_memo.as_secs_f64() * 1e3
    );
}

/// Peak resident memory of this process (kB), from `/proc/self/status`.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn memory(layer: &Path) {
    let before = peak_rss_kb();
    let started = std::time::Instant::now();
    let a = analyze_layer(BufReader::with_capacity(
        256 << 10,
        File::open(layer).expect("open layer"),
    ))
    .expect("analyse layer");
    let elapsed = started.elapsed();
    let inv = merge([&a]);
    println!(
        "layer {}: {} MiB compressed, {} MiB tar, {} entries, {} packages, {:.2} s; peak RSS {} MiB before, {} MiB after",
        layer.display(),
        a.blob_bytes >> 20,
        a.tar_bytes >> 20,
        a.entries,
        inv.packages.len(),
        elapsed.as_secs_f64(),
        before / 1024,
        peak_rss_kb() / 1024
    );
}

fn main() {
    if let Some(layer) = std::env::var_os("BENCH_SCAN_LAYER") {
        memory(Path::new(&layer));
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    if let Some(layer) = debian_layer() {
        bench_inventory(&mut c, &layer);
        let inv = inventory_of(&layer);
        eprintln!(
            "debian layer: {} MiB, {} packages, os {:?}",
            std::fs::metadata(&layer)
                .map(|m| m.len() >> 20)
                .unwrap_or(0),
            inv.packages.len(),
            inv.os.as_ref().and_then(|o| o.pretty_name.clone())
        );
        bench_rematch(&mut c, &inv);
    }
    c.final_summary();
}
