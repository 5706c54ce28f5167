//! Outage readiness and prefetch (the policy side; `admin::ready` speaks HTTP).
//!
//! Readiness answers "if every upstream went down now, which recently pulled images would
//! still pull?": an image pulled within the window is ready when its manifest, and for each
//! platform pulled within the window (an index's child manifests that were themselves pulled)
//! that platform's manifest, config and layers, are all in the store. Tags are served stale in
//! an outage, so a tag whose manifest is cached counts — unless its rule's `max_stale` has run
//! out, which would refuse it. Prefetch (`prefetch.rs`) fills images through the registry's own
//! fill path; `service.rs` keeps the readiness metric current.

pub mod prefetch;
pub mod service;

use crate::cache::readiness::PulledImage;
use crate::config::TagRules;
use crate::oci::manifest::{self, RefKind};
use crate::oci::{Digest, RepoKey, RepoName};
use crate::registry::{CacheHandle, ImageSource};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// The window of the metric, and of a readiness request that names none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// How deep indexes of indexes are followed (real images use one level).
const MAX_DEPTH: usize = 4;

/// How a tag would be answered with its upstream down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TagOutage {
    /// Within its TTL (or immutable): served as cached.
    Fresh,
    /// Past its TTL: served stale (with a `Warning` header), as breakwater does when upstream fails.
    Stale,
    /// Past TTL + `max_stale`: refused, so a pull by this tag would fail.
    Refused,
}

/// One tag of a ready-checked image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagState {
    /// The tag.
    pub tag: String,
    /// When upstream last confirmed it (unix ms).
    pub confirmed_ms: i64,
    /// What an outage would do to a pull by this tag.
    pub outage: TagOutage,
}

/// Content an image needs that the store does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingBlob {
    /// Its digest.
    pub digest: Digest,
    /// `manifest`, `config` or `layer`.
    pub kind: String,
    /// The platform it belongs to, for an index's child.
    pub platform: Option<String>,
    /// Its size, when the manifest says.
    pub size: Option<u64>,
}

/// Readiness of one image pulled within the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageReadiness {
    /// `<upstream>/<name>`.
    pub repository: String,
    /// The manifest (index or image) digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// When last pulled (unix ms).
    pub last_pulled_ms: i64,
    /// Tags pointing at it, with what an outage would do to each.
    pub tags: Vec<TagState>,
    /// For an index: the platforms pulled within the window (and so checked).
    pub platforms: Vec<String>,
    /// Blobs (manifests included) the pulled platforms need.
    pub blobs: usize,
    /// Their bytes, as far as the manifests say.
    pub bytes: u64,
    /// What the store lacks.
    pub missing: Vec<MissingBlob>,
    /// Why it is not ready beyond missing blobs (a refused tag, an unconfigured upstream).
    pub problems: Vec<String>,
    /// Everything present and every tag servable.
    pub ready: bool,
}

/// The readiness of every image pulled within a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessReport {
    /// The window, in seconds.
    pub window_s: u64,
    /// Images pulled at or after this time (unix ms) were checked.
    pub since_ms: i64,
    /// When checked (unix ms).
    pub checked_ms: i64,
    /// Images ready for an outage.
    pub ready: usize,
    /// Images that would fail (something missing or refused).
    pub not_ready: usize,
    /// Missing blobs over all images (a blob shared by two images counts twice).
    pub missing_blobs: usize,
    /// Per image, repository then digest order.
    pub images: Vec<ImageReadiness>,
}

/// Computes readiness over one cache; blocking (index reads and a `stat` per needed blob).
#[derive(Clone)]
pub struct Readiness {
    cache: CacheHandle,
    source: Arc<dyn ImageSource>,
}

impl Readiness {
    /// Readiness over `cache`, with the upstreams' tag rules reached through `source`.
    pub fn new(cache: CacheHandle, source: Arc<dyn ImageSource>) -> Self {
        Readiness { cache, source }
    }

    /// Checks every image pulled within `window` of now, and sets the metric when `window` is
    /// [`DEFAULT_WINDOW`]. Pull statistics still in memory are written first, so a pull a
    /// moment ago counts.
    pub fn check(&self, window: Duration) -> Result<ReadinessReport, String> {
        self.cache.flush_pulls();
        let now = crate::now_ms();
        let since = now.saturating_sub(window.as_millis().min(i64::MAX as u128) as i64);
        let rows = self
            .cache
            .index
            .readiness()
            .pulled_since(since)
            .map_err(|e| e.to_string())?;
        let store = self.cache.store.clone();
        let stored = move |d: &Digest| matches!(store.stat(d), Ok(Some(_)));
        let images = evaluate(&rows, now, &stored, &|repo, tag| self.tag_rules(repo, tag));
        let ready = images.iter().filter(|i| i.ready).count();
        let report = ReadinessReport {
            window_s: window.as_secs(),
            since_ms: since,
            checked_ms: now,
            ready,
            not_ready: images.len() - ready,
            missing_blobs: images.iter().map(|i| i.missing.len()).sum(),
            images,
        };
        if window == DEFAULT_WINDOW {
            self.cache.metrics.readiness(
                report.ready,
                report.not_ready,
                report.missing_blobs,
                report.checked_ms,
            );
        }
        Ok(report)
    }

    /// The tag rules of `repo`'s upstream for `tag`; `None` when that upstream is no longer
    /// configured (nothing routes to it).
    fn tag_rules(&self, repo: &RepoKey, tag: &str) -> Option<TagRules> {
        let name = RepoName::parse(&repo.name).ok()?;
        let t = self.source.target(&repo.upstream, name)?;
        Some(t.upstream.settings.tag_rules(&repo.name, tag))
    }
}

/// What an outage does to a tag confirmed `age_ms` ago under `rules`.
pub fn tag_outage(rules: &TagRules, age_ms: i64) -> TagOutage {
    let ttl = rules.ttl.as_millis() as i64;
    if age_ms < ttl || rules.immutable {
        return TagOutage::Fresh;
    }
    match rules.max_stale {
        Some(max) if age_ms > (rules.ttl + max).as_millis() as i64 => TagOutage::Refused,
        _ => TagOutage::Stale,
    }
}

/// The readiness of each pulled image that is not itself a pulled platform of a pulled index
/// (those are reported inside their index).
pub fn evaluate(
    rows: &[PulledImage],
    now_ms: i64,
    stored: &dyn Fn(&Digest) -> bool,
    rules: &dyn Fn(&RepoKey, &str) -> Option<TagRules>,
) -> Vec<ImageReadiness> {
    let by_key: HashMap<(&RepoKey, &Digest), &PulledImage> =
        rows.iter().map(|r| ((&r.repo, &r.digest), r)).collect();
    let pulled_children = |r: &'_ PulledImage| -> Vec<(&'_ PulledImage, Option<String>)> {
        if !manifest::is_index(&r.media_type) {
            return Vec::new();
        }
        r.refs
            .iter()
            .filter(|f| f.kind == RefKind::Manifest)
            .filter_map(|f| {
                let child = by_key.get(&(&r.repo, &f.digest))?;
                Some((*child, f.platform.clone()))
            })
            .collect()
    };
    let folded: HashSet<(&RepoKey, &Digest)> = rows
        .iter()
        .flat_map(&pulled_children)
        .map(|(c, _)| (&c.repo, &c.digest))
        .collect();
    let mut out = Vec::new();
    for r in rows {
        if folded.contains(&(&r.repo, &r.digest)) {
            continue;
        }
        let mut needs = Needs::default();
        let mut platforms = Vec::new();
        collect(r, None, 0, &mut needs, &mut platforms, &pulled_children);
        let missing: Vec<MissingBlob> = needs
            .list
            .iter()
            .filter(|b| !stored(&b.digest))
            .cloned()
            .collect();
        let mut problems = Vec::new();
        let tags = r
            .tags
            .iter()
            .map(|(tag, confirmed_ms)| {
                let outage = match rules(&r.repo, tag) {
                    Some(rules) => tag_outage(&rules, now_ms - confirmed_ms),
                    None => TagOutage::Refused,
                };
                if outage == TagOutage::Refused {
                    problems.push(format!(
                        "tag {tag} would be refused: confirmed too long ago for its max_stale, \
                         or its upstream is not configured"
                    ));
                }
                TagState {
                    tag: tag.clone(),
                    confirmed_ms: *confirmed_ms,
                    outage,
                }
            })
            .collect();
        if manifest::is_index(&r.media_type) && platforms.is_empty() {
            problems.push(
                "no platform of this index was pulled within the window: only the index is checked"
                    .into(),
            );
        }
        // A note only: an index whose platforms nobody pulled does not fail a pull that happens.
        let failing = problems.iter().any(|p| p.starts_with("tag "));
        out.push(ImageReadiness {
            repository: format!("{}/{}", r.repo.upstream, r.repo.name),
            digest: r.digest.clone(),
            media_type: r.media_type.clone(),
            last_pulled_ms: r.last_pulled_ms,
            tags,
            platforms,
            blobs: needs.list.len(),
            bytes: needs.bytes,
            ready: missing.is_empty() && !failing,
            missing,
            problems,
        });
    }
    out
}

/// Blobs an image needs, each once.
#[derive(Default)]
struct Needs {
    seen: HashSet<Digest>,
    list: Vec<MissingBlob>,
    bytes: u64,
}

impl Needs {
    fn add(&mut self, digest: &Digest, kind: &str, platform: Option<&String>, size: Option<u64>) {
        if self.seen.insert(digest.clone()) {
            self.bytes += size.unwrap_or(0);
            self.list.push(MissingBlob {
                digest: digest.clone(),
                kind: kind.into(),
                platform: platform.cloned(),
                size,
            });
        }
    }
}

/// Adds what `r` needs: its own manifest, then its config and layers, or (for an index) what
/// each child pulled within the window needs.
fn collect<'a>(
    r: &'a PulledImage,
    platform: Option<&String>,
    depth: usize,
    needs: &mut Needs,
    platforms: &mut Vec<String>,
    children: &dyn Fn(&'a PulledImage) -> Vec<(&'a PulledImage, Option<String>)>,
) {
    needs.add(&r.digest, "manifest", platform, None);
    if manifest::is_index(&r.media_type) {
        if depth >= MAX_DEPTH {
            return;
        }
        for (child, p) in children(r) {
            let p = p.or_else(|| platform.cloned());
            if let Some(p) = &p {
                if !platforms.contains(p) {
                    platforms.push(p.clone());
                }
            }
            collect(child, p.as_ref(), depth + 1, needs, platforms, children);
        }
        return;
    }
    for f in r.refs.iter().filter(|f| f.kind != RefKind::Manifest) {
        needs.add(&f.digest, f.kind.as_str(), platform, f.size);
    }
}

#[cfg(test)]
mod tests;
