//! Lifecycle evaluation throughput: 100,000 synthetic cached images, spread
//! over 1,000 repositories and, as a worst case, in a single repository,
//! under a typical 3-rule policy. Target: well under one second.

use breakwater::lifecycle::evaluate::{evaluate, CachedImage};
use breakwater::lifecycle::policy::{LifecyclePolicy, StorageClass};
use breakwater::lifecycle::preview::preview;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

const IMAGES: usize = 100_000;
const REPOSITORIES: usize = 1_000;
const NOW: i64 = 1_750_000_000;
const DAY: i64 = 86_400;

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
                digest: format!("sha256:{:016x}{:016x}", rng.next(), rng.next()),
                tags: tags_for(rng, n),
                first_cached,
                last_pulled: pulled
                    .then(|| first_cached + rng.below((NOW - first_cached) as u64 + 1) as i64),
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
                .map(|images| evaluate(&policy, black_box(images), NOW).len())
                .sum::<usize>()
        })
    });
    group.bench_function("evaluate_100k_images_one_repo", |b| {
        b.iter(|| evaluate(&policy, black_box(&single), NOW).len())
    });
    group.bench_function("preview_100k_images_1000_repos", |b| {
        b.iter(|| {
            repos
                .iter()
                .map(|images| preview(&policy, black_box(images), NOW).total_bytes())
                .sum::<u64>()
        })
    });
    group.finish();

    c.bench_function("parse_3_rule_policy", |b| {
        b.iter(|| LifecyclePolicy::from_json(black_box(POLICY)).map(|p| p.rules.len()))
    });
}

criterion_group!(benches, bench_evaluate);
criterion_main!(benches);
