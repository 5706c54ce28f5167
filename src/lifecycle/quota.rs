//! The byte quota: above the high-water mark, whole images are evicted — least recently pulled
//! first (never pulled: least recently cached), never pinned ones — until what GC can then
//! delete brings the store down to the low-water mark. A blob shared with a retained image is
//! never counted as freed, so eviction goes on until enough bytes are really unreferenced.
//!
//! Images pulled or cached within the grace period (or whose manifest is busy) are never
//! evicted: they are what clients use now. When the rest cannot reach the low-water mark,
//! eviction stops once nothing more can be freed and the report says the mark is unreachable;
//! an eviction that frees nothing (its blobs are recent, or kept by a retained image) is dropped.

use super::catalog::Catalog;
use super::graph::Keep;
use super::settings::Quota;
use super::views::{EvictedView, QuotaReport};

/// Images to evict (with the bytes each frees) and the report.
pub struct EvictionPlan {
    /// Groups to evict, in order, with the stored bytes evicting each one frees.
    pub victims: Vec<(usize, u64)>,
    /// What the check found.
    pub report: QuotaReport,
}

/// When an image was last used: its last pull, else when it was first cached.
pub fn last_used_ms(c: &Catalog, g: usize) -> i64 {
    let grp = &c.groups[g];
    grp.last_pulled_ms
        .unwrap_or(c.rows[grp.parent].first_cached_ms)
}

/// Whether an image was pulled or (re)cached after `after_ms`.
fn used_after(c: &Catalog, g: usize, after_ms: i64) -> bool {
    let grp = &c.groups[g];
    grp.last_pulled_ms.is_some_and(|t| t > after_ms)
        || c.rows[grp.parent].first_cached_ms > after_ms
}

/// Plans eviction over a catalog whose graph holds the store listing (`usage` bytes in all).
/// A blob counts as freeable only when its record is older than `committed_before_ms` (GC
/// keeps younger ones) and `busy` (being filled, served or referenced lately) does not claim
/// it; an image is a candidate only when unused since `committed_before_ms` and not busy.
pub fn plan(
    c: &Catalog,
    quota: &Quota,
    usage: u64,
    committed_before_ms: i64,
    busy: impl Fn(&str) -> bool,
) -> EvictionPlan {
    let g_len = c.graph.len();
    let freeable: Vec<bool> = (0..g_len as u32)
        .map(|n| {
            c.graph.stored(n).is_some()
                && c.graph
                    .committed_ms(n)
                    .is_some_and(|t| t <= committed_before_ms)
                && !busy(c.graph.name(n))
        })
        .collect();
    // How many retained images keep each digest.
    let mut refs = vec![0u32; g_len];
    let mut seen = vec![0u32; g_len];
    for g in 0..c.groups.len() {
        let root = c.rows[c.groups[g].parent].node;
        c.graph
            .reach(root, c.keep(g), &mut seen, g as u32 + 1, |n| {
                refs[n as usize] += 1
            });
    }
    let garbage: u64 = (0..g_len)
        .filter(|&n| refs[n] == 0 && freeable[n])
        .map(|n| c.graph.stored(n as u32).unwrap_or(0))
        .sum();
    let (high, low) = (quota.high_water_bytes(), quota.low_water_bytes());
    let mut projected = usage.saturating_sub(garbage);
    let mut victims = Vec::new();
    let mut kept_recent = 0;
    if usage > high {
        let mut candidates: Vec<usize> = Vec::new();
        for g in (0..c.groups.len()).filter(|&g| !c.groups[g].pinned && c.keep(g) == Keep::Full) {
            if used_after(c, g, committed_before_ms) || busy(c.digest(g)) {
                kept_recent += 1;
            } else {
                candidates.push(g);
            }
        }
        candidates.sort_by_key(|&g| {
            (
                last_used_ms(c, g),
                c.rows[c.groups[g].parent].first_cached_ms,
                c.digest(g).to_string(),
            )
        });
        // Stamps after those the reference count used, one per walk.
        let mut stamps = c.groups.len() as u32 + 1..;
        for g in candidates {
            if projected <= low {
                break;
            }
            let mut freed = 0u64;
            let root = c.rows[c.groups[g].parent].node;
            let stamp = stamps.next().unwrap_or(u32::MAX);
            c.graph.reach(root, Keep::Full, &mut seen, stamp, |n| {
                let r = &mut refs[n as usize];
                *r = r.saturating_sub(1);
                if *r == 0 && freeable[n as usize] {
                    freed += c.graph.stored(n).unwrap_or(0);
                }
            });
            projected = projected.saturating_sub(freed);
            victims.push((g, freed));
        }
        // Newest first, drop evictions that free nothing even with all the others done: their
        // blobs are recent, busy, or kept by an image that stays.
        let mut useless = vec![false; victims.len()];
        for i in (0..victims.len()).rev() {
            let root = c.rows[c.groups[victims[i].0].parent].node;
            let mut frees = false;
            let stamp = stamps.next().unwrap_or(u32::MAX);
            c.graph.reach(root, Keep::Full, &mut seen, stamp, |n| {
                frees |= refs[n as usize] == 0
                    && freeable[n as usize]
                    && c.graph.stored(n).unwrap_or(0) > 0;
            });
            if !frees {
                let stamp = stamps.next().unwrap_or(u32::MAX);
                c.graph.reach(root, Keep::Full, &mut seen, stamp, |n| {
                    refs[n as usize] += 1
                });
                useless[i] = true;
            }
        }
        let mut flags = useless.into_iter();
        victims.retain(|_| !flags.next().unwrap_or(false));
    }
    let evicted = victims
        .iter()
        .filter_map(|&(g, freed_bytes)| {
            Some(EvictedView {
                repository: c.repos[c.groups[g].repo].full.clone(),
                digest: c.image_digest(g)?,
                tags: c.groups[g].tags.clone(),
                last_used_ms: last_used_ms(c, g),
                freed_bytes,
            })
        })
        .collect();
    let low_water_reachable = usage <= high || projected <= low;
    if !low_water_reachable {
        tracing::warn!(
            usage,
            projected,
            low,
            kept_recent,
            "storage quota: the low-water mark cannot be reached; pinned, recently used and shared content stays"
        );
    }
    EvictionPlan {
        report: QuotaReport {
            max_bytes: quota.max_bytes,
            high_water_bytes: high,
            low_water_bytes: low,
            usage_bytes: usage,
            evicted,
            projected_bytes: projected,
            low_water_reachable,
            kept_recent_images: kept_recent,
        },
        victims,
    }
}
