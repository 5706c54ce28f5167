//! Lifecycle evaluation throughput: 100,000 synthetic cached images, spread
//! over 1,000 repositories and, as a worst case, in a single repository,
//! under a typical 3-rule policy. Target: well under one second.
//!
//! * `evaluate_*`, `preview_100k_images_1000_repos`: the policy engine alone over image lists
//!   built in memory.
//! * `preview_100k_images_from_the_index` (issue 4, goal ≤ 1 s): what an operator's
//!   `breakwater lifecycle preview` costs the server, end to end below the HTTP layer. A SQLite
//!   index in a temp dir holds 100,000 cached images in 1,000 repositories (releases
//!   `vX.Y.Z` with moving `vX.Y` and `latest` aliases, `dev-`, `feature-` and `sha-` builds,
//!   untagged leftovers; cached and pulled over 120 days; 3–5 layers each, base and dependency
//!   layers shared), the 3-rule policy stored as the default (`Lifecycle::put_policy`). Each
//!   iteration parses the request body the CLI sends, runs `Lifecycle::preview` (flush pulls,
//!   snapshot the index, group and size images, restore pulled archives, resolve policies,
//!   evaluate every repository, compute reclaimable bytes) and serialises the report to JSON.
//!   The index is filled in one SQLite transaction (through the `Index` API, a transaction or
//!   more per blob and manifest, filling took 7× as long in a debug build); a small index
//!   filled both ways must give the same images, repositories and preview, so the rows are
//!   what the cache itself writes. Set up lazily: other benchmarks don't pay for it when
//!   filtered out.
//!
//! `cargo bench --bench lifecycle -- preview_100k_images_from_the_index` runs just that one.

use breakwater::cache::index::Pull;
use breakwater::cache::{Index, ManifestRecord, RepoKey, SqliteIndex};
use breakwater::config::Settings;
use breakwater::lifecycle::apply::PreviewRequest;
use breakwater::lifecycle::evaluate::{evaluate, CachedImage};
use breakwater::lifecycle::policy::{LifecyclePolicy, StorageClass};
use breakwater::lifecycle::preview::preview;
use breakwater::lifecycle::views::LifecycleReport;
use breakwater::lifecycle::Lifecycle;
use breakwater::metrics::Metrics;
use breakwater::oci::manifest::{RefKind, Reference as ManifestRef, OCI_MANIFEST};
use breakwater::oci::time::Timestamp;
use breakwater::oci::Digest;
use breakwater::registry::Registry;
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use rusqlite::params;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IMAGES: usize = 100_000;
const REPOSITORIES: usize = 1_000;
/// The evaluation time (unix seconds, as the synthetic data is drawn).
const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;
/// [`NOW`] as the engine takes it.
const AT: Timestamp = Timestamp::from_secs(NOW);

const POLICY: &str = r#"{"rules":[
  {"rulePriority":1,"description":"Expire untagged after 7 days",
   "selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},
   "action":{"type":"expire"}},
  {"rulePriority":2,"description":"Keep the last 30 release images",
   "selection":{"tagStatus":"tagged","tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":30},
   "action":{"type":"expire"}},
  {"rulePriority":3,"description":"Expire dev builds after 14 days",
   "selection":{"tagStatus":"tagged","tagPrefixList":["dev-"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14},
   "action":{"type":"expire"}}]}"#;

/// Small deterministic generator (SplitMix64) so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Tag mix: ~35% releases (some also `latest`/minor aliases), ~20% dev
/// builds, ~10% feature and sha tags, ~35% untagged leftovers.
fn tags_for(rng: &mut Rng, n: usize) -> Vec<String> {
    match rng.below(100) {
        0..=24 => vec![format!("v{}.{}.{}", n / 100, n % 100 / 10, n % 10)],
        25..=29 => vec![
            format!("v{}.{}", n / 100, n % 100 / 10),
            format!("v{}.{}.{}", n / 100, n % 100 / 10, n % 10),
        ],
        30..=34 => vec![
            "latest".into(),
            format!("v{}.{}.{}", n / 100, n % 100 / 10, n % 10),
        ],
        35..=54 => vec![format!("dev-{:08x}", rng.next() as u32)],
        55..=59 => vec![format!("feature-login-{n}")],
        60..=64 => vec![format!("sha-{:012x}", rng.next() >> 16)],
        _ => Vec::new(),
    }
}

fn repository(rng: &mut Rng, count: usize) -> Vec<CachedImage> {
    (0..count)
        .map(|n| {
            let first_cached = NOW - rng.below(365 * DAY as u64) as i64;
            let pulled = rng.below(3) > 0;
            CachedImage {
                // Two draws zero-padded to a full digest, so the data stays what earlier runs
                // measured.
                digest: Digest::parse(&format!(
                    "sha256:{:016x}{:016x}{:032x}",
                    rng.next(),
                    rng.next(),
                    0
                ))
                .expect("hex digest"),
                tags: tags_for(rng, n),
                // Whole seconds, as earlier runs measured.
                first_cached: Timestamp::from_secs(first_cached),
                last_pulled: pulled
                    .then(|| first_cached + rng.below((NOW - first_cached) as u64 + 1) as i64)
                    .map(Timestamp::from_secs),
                transitioned_at: None,
                storage_class: StorageClass::Standard,
                size_bytes: 5_000_000 + rng.below(500_000_000),
                pinned: rng.below(100) == 0,
            }
        })
        .collect()
}

fn bench_evaluate(c: &mut Criterion) {
    let policy = LifecyclePolicy::from_json(POLICY).expect("bench policy is valid");
    let mut rng = Rng(0x5EED);
    let repos: Vec<Vec<CachedImage>> = (0..REPOSITORIES)
        .map(|_| repository(&mut rng, IMAGES / REPOSITORIES))
        .collect();
    let single = repository(&mut rng, IMAGES);

    let mut group = c.benchmark_group("lifecycle");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function("evaluate_100k_images_1000_repos", |b| {
        b.iter(|| {
            repos
                .iter()
                .map(|images| evaluate(&policy, black_box(images), AT).len())
                .sum::<usize>()
        })
    });
    group.bench_function("evaluate_100k_images_one_repo", |b| {
        b.iter(|| evaluate(&policy, black_box(&single), AT).len())
    });
    group.bench_function("preview_100k_images_1000_repos", |b| {
        b.iter(|| {
            repos
                .iter()
                .map(|images| preview(&policy, black_box(images), AT).total_bytes())
                .sum::<u64>()
        })
    });
    group.finish();

    c.bench_function("parse_3_rule_policy", |b| {
        b.iter(|| LifecyclePolicy::from_json(black_box(POLICY)).map(|p| p.rules.len()))
    });
}

// ---- The same policy over a real index -------------------------------------------------

const NOW_MS: i64 = NOW * 1000;
const DAY_MS: i64 = DAY * 1000;
/// Images are first cached over the last 120 days.
const SPAN_MS: i64 = 120 * DAY_MS;
/// Base layers (OS images) every repository draws from.
const BASES: u64 = 40;
/// Dependency layers of each repository; consecutive builds share one.
const DEPS_PER_REPO: u64 = 4;
/// The request body `breakwater lifecycle preview --at <NOW>` sends.
const REQUEST: &str = r#"{"repository":null,"policy":null,"at_ms":1750000000000}"#;

/// A `sha256:` digest unique to (`kind`, `n`).
fn digest(kind: u8, n: u64) -> String {
    format!("sha256:{kind:02x}{n:062x}")
}

/// A size in `lo..lo + span` fixed by (`kind`, `n`), so a shared layer has one size.
fn size_of(kind: u8, n: u64, lo: u64, span: u64) -> u64 {
    lo + Rng(((kind as u64) << 56) ^ n).next() % span
}

struct Blob {
    digest: String,
    size: u64,
}

/// One cached image manifest in one repository, as the index records it.
struct IndexedImage {
    manifest: Blob,
    config: Blob,
    layers: Vec<Blob>,
    /// Its tags after later images took over moving ones (`latest`, `vX.Y`).
    tags: Vec<String>,
    first_cached_ms: i64,
    last_pulled_ms: Option<i64>,
    pull_count: u64,
}

struct IndexedRepo {
    key: RepoKey,
    images: Vec<IndexedImage>,
}

/// Repository `r`: `count` images cached over the last 120 days, oldest first.
fn indexed_repository(rng: &mut Rng, r: u64, count: usize) -> IndexedRepo {
    let upstream = ["docker.io", "docker.io", "ghcr.io", "quay.io"][r as usize % 4];
    let mut times: Vec<i64> = (0..count)
        .map(|_| NOW_MS - rng.below(SPAN_MS as u64) as i64)
        .collect();
    times.sort_unstable();
    let base = rng.below(BASES);
    let (mut release, mut candidates) = (0u64, Vec::with_capacity(count));
    let mut images: Vec<IndexedImage> = times
        .into_iter()
        .enumerate()
        .map(|(k, first_cached_ms)| {
            let n = r * count as u64 + k as u64;
            let tags: Vec<String> = match rng.below(100) {
                0..=34 => {
                    release += 1;
                    let (major, minor, patch) = (1 + release / 20, release / 5 % 4, release % 5);
                    vec![
                        format!("v{major}.{minor}.{patch}"),
                        format!("v{major}.{minor}"),
                        "latest".into(),
                    ]
                }
                35..=54 => vec![format!("dev-{:08x}", rng.next() as u32)],
                55..=59 => {
                    let topic = ["login", "search", "billing", "cache"][rng.below(4) as usize];
                    vec![format!("feature-{topic}-{k}")]
                }
                60..=64 => vec![format!("sha-{:012x}", rng.next() >> 16)],
                _ => Vec::new(),
            };
            candidates.push(tags);
            // Base layer: mostly the repository's own; a dependency layer that changes every
            // quarter of the repository's history; one to three layers of its own.
            let b = if rng.below(5) == 0 {
                rng.below(BASES)
            } else {
                base
            };
            let dep = r * DEPS_PER_REPO + k as u64 * DEPS_PER_REPO / count as u64;
            let mut layers = vec![
                Blob {
                    digest: digest(2, b),
                    size: size_of(2, b, 30_000_000, 50_000_000),
                },
                Blob {
                    digest: digest(3, dep),
                    size: size_of(3, dep, 5_000_000, 100_000_000),
                },
            ];
            for j in 0..1 + rng.below(3) {
                let u = n * 4 + j;
                layers.push(Blob {
                    digest: digest(4, u),
                    size: size_of(4, u, 500_000, 20_000_000),
                });
            }
            let pulled = rng.below(10) < 7;
            IndexedImage {
                manifest: Blob {
                    digest: digest(0, n),
                    size: 400 + 160 * layers.len() as u64,
                },
                config: Blob {
                    digest: digest(1, n),
                    size: size_of(1, n, 1_000, 10_000),
                },
                layers,
                tags: Vec::new(),
                first_cached_ms,
                last_pulled_ms: pulled.then(|| {
                    first_cached_ms + rng.below((NOW_MS - first_cached_ms) as u64 + 1) as i64
                }),
                pull_count: if pulled { 1 + rng.below(200) } else { 0 },
            }
        })
        .collect();
    // A tag names one image: the last one cached under it.
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (k, tags) in candidates.iter().enumerate() {
        for t in tags {
            owner.insert(t, k);
        }
    }
    for (k, tags) in candidates.iter().enumerate() {
        images[k].tags = tags
            .iter()
            .filter(|t| owner[t.as_str()] == k)
            .cloned()
            .collect();
    }
    IndexedRepo {
        key: RepoKey {
            upstream: upstream.into(),
            name: format!("team{}/service{r}", r % 50),
        },
        images,
    }
}

/// (repository, image) pairs in the order the cache would have met them.
fn cache_order(repos: &[IndexedRepo]) -> Vec<(usize, usize)> {
    let mut order: Vec<(usize, usize)> = repos
        .iter()
        .enumerate()
        .flat_map(|(r, repo)| (0..repo.images.len()).map(move |k| (r, k)))
        .collect();
    order.sort_by_key(|&(r, k)| (repos[r].images[k].first_cached_ms, r, k));
    order
}

fn references(img: &IndexedImage) -> Vec<(&Blob, RefKind)> {
    std::iter::once((&img.config, RefKind::Config))
        .chain(img.layers.iter().map(|l| (l, RefKind::Layer)))
        .collect()
}

/// Records the images through the `Index` API, as the request path does (slow: a transaction
/// or more per blob and manifest).
fn fill_through_api(index: &dyn Index, repos: &[IndexedRepo]) {
    let d = |s: &str| Digest::parse(s).expect("synthetic digest");
    let mut pulls = Vec::new();
    for (r, k) in cache_order(repos) {
        let (repo, img) = (&repos[r].key, &repos[r].images[k]);
        let at = img.first_cached_ms;
        index
            .record_blob(&d(&img.manifest.digest), img.manifest.size, at)
            .expect("record manifest blob");
        let rec = ManifestRecord {
            digest: d(&img.manifest.digest),
            media_type: OCI_MANIFEST.into(),
            size: img.manifest.size,
        };
        let refs: Vec<ManifestRef> = references(img)
            .into_iter()
            .map(|(b, kind)| ManifestRef {
                digest: d(&b.digest),
                kind,
                size: Some(b.size),
                platform: None,
            })
            .collect();
        index
            .record_manifest(repo, &rec, &refs, img.tags.first().map(String::as_str), at)
            .expect("record manifest");
        for t in img.tags.iter().skip(1) {
            index
                .record_manifest(repo, &rec, &refs, Some(t), at)
                .expect("tag manifest");
        }
        for (b, _) in references(img) {
            index
                .record_blob(&d(&b.digest), b.size, at)
                .expect("record blob");
        }
        if let Some(at_ms) = img.last_pulled_ms {
            pulls.push(Pull {
                repo: repo.clone(),
                digest: d(&img.manifest.digest),
                count: img.pull_count,
                at_ms,
            });
        }
    }
    index.record_pulls(&pulls).expect("record pulls");
}

/// Writes the rows `fill_through_api` would, in one transaction, into the index at `path`.
fn fill_in_one_transaction(path: &Path, repos: &[IndexedRepo]) {
    let ix = SqliteIndex::open(path).expect("open index");
    ix.with_conn(|c| {
        let tx = c.transaction()?;
        {
            let mut blob = tx.prepare(
                "INSERT OR IGNORE INTO blobs (digest, size, cached_at) VALUES (?1, ?2, ?3)",
            )?;
            let mut man = tx.prepare(
                "INSERT OR IGNORE INTO manifests (digest, media_type, size, cached_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut rf = tx.prepare(
                "INSERT OR IGNORE INTO manifest_refs (manifest, child, kind, size, platform)
                 VALUES (?1, ?2, ?3, ?4, NULL)",
            )?;
            let mut repo =
                tx.prepare("INSERT INTO repositories (upstream, name) VALUES (?1, ?2)")?;
            let mut img = tx.prepare(
                "INSERT INTO images (repo_id, digest, first_cached, last_pulled, pull_count)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut tag = tx.prepare(
                "INSERT INTO tags (repo_id, tag, digest, confirmed_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            // Ids in order of first use, as the API assigns them.
            let mut ids: HashMap<usize, i64> = HashMap::new();
            for (r, k) in cache_order(repos) {
                let i = &repos[r].images[k];
                let at = i.first_cached_ms;
                let m = &i.manifest.digest;
                blob.execute(params![m, i.manifest.size as i64, at])?;
                man.execute(params![m, OCI_MANIFEST, i.manifest.size as i64, at])?;
                for (b, kind) in references(i) {
                    rf.execute(params![m, b.digest, kind.as_str(), b.size as i64])?;
                }
                let id = match ids.get(&r) {
                    Some(&id) => id,
                    None => {
                        let key = &repos[r].key;
                        repo.execute(params![key.upstream, key.name])?;
                        *ids.entry(r).or_insert(tx.last_insert_rowid())
                    }
                };
                let pulled = i.last_pulled_ms.map(|_| i.pull_count).unwrap_or(0);
                img.execute(params![id, m, at, i.last_pulled_ms, pulled as i64])?;
                for t in &i.tags {
                    tag.execute(params![id, t, m, at])?;
                }
                for (b, _) in references(i) {
                    blob.execute(params![b.digest, b.size as i64, at])?;
                }
            }
        }
        tx.commit()
    })
    .expect("fill index");
}

/// The lifecycle of a cache rooted at `root` (public upstream presets, default settings).
fn lifecycle_at(root: &Path) -> Lifecycle {
    let settings = Settings::parse(&format!(
        "[storage]\nroot = {:?}\n",
        root.display().to_string()
    ))
    .expect("bench config parses");
    let reg = Registry::open(&settings, Arc::new(Metrics::new())).expect("open cache");
    let lc = Lifecycle::new(
        reg.cache_handle(),
        settings.lifecycle.clone(),
        settings.storage.quota.clone(),
    );
    lc.put_policy("default", POLICY).expect("store the policy");
    lc
}

/// What one iteration does: the admin API's `POST /lifecycle/preview` minus HTTP.
fn preview_request(lc: &Lifecycle, body: &str) -> (LifecycleReport, usize) {
    let req: PreviewRequest = serde_json::from_str(body).expect("preview request parses");
    let report = lc.preview(&req).expect("preview");
    let json = serde_json::to_vec(&report).expect("report serialises");
    (report, json.len())
}

/// A cache whose index holds 100,000 images, checked once to give a non-trivial preview.
struct IndexedCache {
    lc: Lifecycle,
    _dir: tempfile::TempDir,
}

fn indexed_cache() -> IndexedCache {
    let t = Instant::now();
    let mut rng = Rng(0x1DE5);
    let repos: Vec<IndexedRepo> = (0..REPOSITORIES as u64)
        .map(|r| indexed_repository(&mut rng, r, IMAGES / REPOSITORIES))
        .collect();

    // The one-transaction fill writes what the API writes: compare on a few repositories.
    let few = &repos[..5];
    let (api_dir, sql_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let api = lifecycle_at(api_dir.path());
    fill_through_api(api.cache.index.as_ref(), few);
    fill_in_one_transaction(&sql_dir.path().join("index.sqlite"), few);
    let sql = lifecycle_at(sql_dir.path());
    assert_eq!(api.images(None).unwrap(), sql.images(None).unwrap());
    assert_eq!(api.repositories().unwrap(), sql.repositories().unwrap());
    let (a, s) = (
        preview_request(&api, REQUEST).0,
        preview_request(&sql, REQUEST).0,
    );
    assert!(
        a.expiring_images > 0,
        "the comparison must compare decisions"
    );
    assert_eq!(
        a, s,
        "rows written in one transaction differ from the API's"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    fill_in_one_transaction(&dir.path().join("index.sqlite"), &repos);
    let lc = lifecycle_at(dir.path());
    let set_up = t.elapsed();

    // Once, untimed: the preview decides something under every rule, and not everything.
    let t = Instant::now();
    let catalog = lc.catalog().expect("catalog");
    let snapshot = t.elapsed();
    assert_eq!(catalog.groups.len(), IMAGES, "every image is in the index");
    drop(catalog);
    let t = Instant::now();
    let (report, bytes) = preview_request(&lc, REQUEST);
    let run = t.elapsed();
    assert_eq!(report.repositories.len(), REPOSITORIES);
    let mut by_rule = [0usize; 3];
    for r in report.repositories.iter().flat_map(|p| &p.results) {
        by_rule[r.rule_priority as usize - 1] += 1;
    }
    assert!(
        by_rule.iter().all(|&n| n > 0),
        "every rule must expire some images: {by_rule:?}"
    );
    assert_eq!(report.expiring_images, by_rule.iter().sum::<usize>());
    assert!(report.expiring_images < IMAGES, "some images are kept");
    assert!(report.reclaimable_bytes > 0);
    eprintln!(
        "images generated, checked and indexed in {set_up:?}; one preview {run:?} (snapshot \
         and grouping alone {snapshot:?}): expires {by_rule:?} by rule, {} MB reclaimable, \
         {bytes} bytes of JSON",
        report.reclaimable_bytes / 1_000_000
    );
    IndexedCache { lc, _dir: dir }
}

fn bench_preview_from_index(c: &mut Criterion) {
    let cache = OnceCell::new();
    let mut group = c.benchmark_group("lifecycle");
    // About a second an iteration: flat sampling runs the 10 samples as 10 iterations.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(IMAGES as u64));
    group.bench_function("preview_100k_images_from_the_index", |b| {
        let lc = &cache.get_or_init(indexed_cache).lc;
        b.iter(|| preview_request(lc, black_box(REQUEST)).1)
    });
    group.finish();
}

criterion_group!(benches, bench_evaluate, bench_preview_from_index);
criterion_main!(benches);
