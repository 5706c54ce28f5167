//! GC mark over 1,000,000 blob references: 100,000 cached image manifests of one config and nine
//! layers each (two layers from a small set of shared bases, seven from a large pool, so layers
//! are shared the way real images share them), a tenth of them expired (garbage to find).
//!
//! * `mark_1m_refs_in_memory`: the mark itself over the loaded reference graph.
//! * `snapshot_group_mark_1m_refs_sqlite`: what a GC run does before it sweeps: read the index
//!   snapshot from SQLite (WAL, own read connection), group images, size them, and mark.

use breakwater::cache::images::LifecycleIndex;
use breakwater::cache::SqliteIndex;
use breakwater::lifecycle::catalog::Catalog;
use breakwater::lifecycle::graph::{ref_kind, Graph, Keep};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rusqlite::params;
use std::hint::black_box;
use std::time::Duration;

const IMAGES: u64 = 100_000;
const LAYERS_PER_IMAGE: u64 = 9;
const REFS: u64 = IMAGES * (LAYERS_PER_IMAGE + 1);
const BASES: u64 = 1_000;
const POOL: u64 = 400_000;
const REPOS: u64 = 1_000;

/// SplitMix64, so every run builds the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn digest(kind: u8, n: u64) -> String {
    format!("sha256:{kind:02x}{n:062x}")
}

/// An image manifest, what it references (digest, kind), and whether it is still retained.
type Synthetic = (String, Vec<(String, &'static str)>, bool);

/// Every image.
fn images() -> Vec<Synthetic> {
    let mut rng = Rng(0x6C);
    (0..IMAGES)
        .map(|i| {
            let mut refs = vec![(digest(1, i), "config")];
            let mut layers: Vec<u64> = Vec::new();
            while (layers.len() as u64) < LAYERS_PER_IMAGE {
                let n = if layers.len() < 2 {
                    rng.next() % BASES
                } else {
                    BASES + rng.next() % POOL
                };
                // An image lists a layer once.
                if !layers.contains(&n) {
                    layers.push(n);
                }
            }
            refs.extend(layers.into_iter().map(|n| (digest(2, n), "layer")));
            (digest(0, i), refs, i % 10 != 0)
        })
        .collect()
}

fn bench_mark(c: &mut Criterion) {
    let data = images();
    let mut g = Graph::new();
    let mut roots = Vec::new();
    for (m, refs, retained) in &data {
        let id = g.intern(m);
        for (child, kind) in refs {
            let cid = g.intern(child);
            g.add_edge(id, cid, ref_kind(kind));
        }
        if *retained {
            roots.push((id, Keep::Full));
        }
    }
    g.finish();
    let mut group = c.benchmark_group("gc");
    group.throughput(Throughput::Elements(REFS));
    group.sample_size(20);
    group.bench_function("mark_1m_refs_in_memory", |b| {
        b.iter(|| g.mark(black_box(roots.iter().copied())).count())
    });

    // The same content in a real index file.
    let dir = tempfile::tempdir().expect("temp dir");
    let ix = SqliteIndex::open(&dir.path().join("index.sqlite")).expect("open index");
    ix.with_conn(|c| {
        let tx = c.transaction()?;
        {
            for r in 0..REPOS {
                tx.execute(
                    "INSERT INTO repositories (id, upstream, name) VALUES (?1, 'docker.io', ?2)",
                    params![r as i64, format!("team/app{r}")],
                )?;
            }
            let mut man = tx.prepare(
                "INSERT INTO manifests (digest, media_type, size, cached_at) VALUES (?1, 'application/vnd.oci.image.manifest.v1+json', 1000, 0)",
            )?;
            let mut rf = tx.prepare(
                "INSERT OR IGNORE INTO manifest_refs (manifest, child, kind, size) VALUES (?1, ?2, ?3, 1000)",
            )?;
            let mut img = tx.prepare(
                "INSERT INTO images (repo_id, digest, first_cached) VALUES (?1, ?2, ?3)",
            )?;
            let mut blob = tx.prepare(
                "INSERT OR IGNORE INTO blobs (digest, size, cached_at) VALUES (?1, 1000, 0)",
            )?;
            for (i, (m, refs, retained)) in data.iter().enumerate() {
                man.execute(params![m])?;
                blob.execute(params![m])?;
                for (child, kind) in refs {
                    rf.execute(params![m, child, kind])?;
                    blob.execute(params![child])?;
                }
                if *retained {
                    img.execute(params![(i as u64 % REPOS) as i64, m, i as i64])?;
                }
            }
        }
        tx.commit()
    })
    .expect("populate index");
    let refs: i64 = ix
        .with_conn(|c| c.query_row("SELECT COUNT(*) FROM manifest_refs", [], |r| r.get(0)))
        .unwrap();
    assert_eq!(
        refs as u64, REFS,
        "duplicate layer draws must not shrink the data"
    );
    // Where one run's time goes, for the report.
    let t = std::time::Instant::now();
    let mut cat = Catalog::default();
    ix.snapshot(&mut cat).expect("snapshot");
    let read = t.elapsed();
    cat.finish(&[]);
    let grouped = t.elapsed();
    let live = cat.mark(|g| Some(cat.keep(g))).count();
    eprintln!(
        "one run: snapshot {read:?}, grouping and sizing {:?}, mark {:?}; {} digests, {live} live",
        grouped - read,
        t.elapsed() - grouped,
        cat.graph.len()
    );
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("snapshot_group_mark_1m_refs_sqlite", |b| {
        b.iter(|| {
            let mut cat = Catalog::default();
            ix.snapshot(&mut cat).expect("snapshot");
            cat.finish(&[]);
            cat.mark(|g| Some(cat.keep(g))).count()
        })
    });
    group.finish();
}

criterion_group!(benches, bench_mark);
criterion_main!(benches);
