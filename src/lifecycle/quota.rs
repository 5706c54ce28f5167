//! The byte quota: above the high-water mark, whole images are evicted — least recently pulled
//! first (never pulled: least recently cached), never pinned ones — until what GC can then
//! delete brings the store down to the low-water mark. A blob shared with a retained image is
//! never counted as freed, so eviction goes on until enough bytes are really unreferenced.

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

/// Plans eviction over a catalog whose graph holds the store listing (`usage` bytes in all).
/// A blob counts as freeable only when its record is older than `committed_before_ms` (GC
/// keeps younger ones) and `in_flight` does not claim it.
pub fn plan(
    c: &Catalog,
    quota: &Quota,
    usage: u64,
    committed_before_ms: i64,
    in_flight: impl Fn(&str) -> bool,
) -> EvictionPlan {
    let g_len = c.graph.len();
    let freeable: Vec<bool> = (0..g_len as u32)
        .map(|n| {
            c.graph.stored(n).is_some()
                && c.graph
                    .committed_ms(n)
                    .is_some_and(|t| t <= committed_before_ms)
                && !in_flight(c.graph.name(n))
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
    if usage > high {
        let mut candidates: Vec<usize> = (0..c.groups.len())
            .filter(|&g| !c.groups[g].pinned && c.keep(g) == Keep::Full)
            .collect();
        candidates.sort_by_key(|&g| {
            (
                last_used_ms(c, g),
                c.rows[c.groups[g].parent].first_cached_ms,
                c.digest(g).to_string(),
            )
        });
        // Stamps after those the reference count used, one per walk.
        let first_stamp = c.groups.len() as u32 + 1;
        for (stamp, g) in (first_stamp..).zip(candidates) {
            if projected <= low {
                break;
            }
            let mut freed = 0u64;
            let root = c.rows[c.groups[g].parent].node;
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
    }
    let evicted = victims
        .iter()
        .map(|&(g, freed_bytes)| EvictedView {
            repository: c.repos[c.groups[g].repo].full.clone(),
            digest: c.digest(g).to_string(),
            tags: c.groups[g].tags.clone(),
            last_used_ms: last_used_ms(c, g),
            freed_bytes,
        })
        .collect();
    EvictionPlan {
        report: QuotaReport {
            max_bytes: quota.max_bytes,
            high_water_bytes: high,
            low_water_bytes: low,
            usage_bytes: usage,
            evicted,
            projected_bytes: projected,
            low_water_reachable: usage <= high || projected <= low,
        },
        victims,
    }
}
