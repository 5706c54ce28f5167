//! Online garbage collection: mark every digest a retained image keeps (index → child
//! manifests → config and layers; archived images keep their manifests only), then sweep the
//! store of everything else.
//!
//! Safe against the request path running alongside. A blob is kept, whatever the mark says:
//! * while a fill of it runs (its bytes are not even in the store yet);
//! * when committed within the grace period (a client may fetch blobs right before the
//!   manifest that references them is recorded);
//! * when touched at or after `start − grace` (see `registry::touched`): served, or named by a
//!   manifest served or recorded — an archived image pulled during the sweep keeps its layers;
//! * when a manifest or image listing it was recorded since GC began (minus a minute of slack):
//!   one index transaction re-checks that and forgets the blob's records.
//!
//! The last look happens under the touch tracker's lock, held only for that check and the
//! unlink of the one blob: a touch before it always keeps the blob. A touch that arrives
//! between the index transaction and that look keeps the bytes and records the blob anew (a
//! manifest's record is not restored: it is fetched again when asked for). A request arriving
//! after the unlink finds the blob missing and fills it from upstream again, a refetch and
//! never a broken pull; a client that already opened the file keeps reading it (Linux keeps
//! unlinked open files).

use super::quota;
use super::service::{Lifecycle, OpError};
use super::views::GcReport;
use crate::cache::images::{Claim, ClaimLimits};
use crate::cache::{Event, EventKind};
use crate::oci::Digest;
use breakwater_oci::time::Timestamp;
use serde::Deserialize;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Manifests recorded this long before GC began still count as recorded during it: the request
/// path takes its timestamp a moment before it writes.
const RECORD_SLACK: Duration = Duration::from_secs(60);
/// Events are written in batches of this many.
const EVENT_BATCH: usize = 1000;

/// Options of a GC run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Report what would be evicted and deleted without changing anything.
    #[serde(default)]
    pub dry_run: bool,
}

impl Lifecycle {
    /// Enforces the quota, then marks and sweeps the store.
    pub fn gc(&self, req: &GcRequest) -> Result<GcReport, OpError> {
        let _w = self.writer();
        let t0 = Instant::now();
        let started_ms = self.now().as_ms();
        let dry_run = req.dry_run;
        let reg = &self.cache;
        self.flush_pulls();
        let listing = reg
            .store
            .list()
            .map_err(|e| OpError::Internal(format!("cannot list the blob store: {e}")))?;
        let listing: Vec<(String, u64)> = listing
            .into_iter()
            .map(|(d, s)| (d.to_string(), s))
            .collect();
        // The store's own count, taken with the listing the sweep works from.
        let before = reg.store.usage();
        let usage = before.bytes;
        let mut report = GcReport {
            dry_run,
            started_ms,
            store_blobs_before: before.blobs as usize,
            store_bytes_before: usage,
            ..GcReport::default()
        };
        let grace = self.settings.gc_grace;
        let committed_after_ms = started_ms - grace.as_millis() as i64;
        // Touches from the cutoff on are remembered until this run ends, however long it takes.
        let _hold = reg.touched.hold(committed_after_ms);

        let mut c = self.catalog()?;
        // A dry run restores in memory only, so it reports what a real run would keep.
        report.restored_images = self.restore_pulled(&mut c, !dry_run)?;
        c.graph.set_store_listing(&listing);
        let mut evicted = HashSet::new();
        if let Some(q) = &self.quota {
            let recent = reg.touched.since(committed_after_ms);
            let plan = quota::plan(&c, q, usage, committed_after_ms, |d| {
                Digest::parse(d).is_ok_and(|d| reg.is_filling(&d) || recent.contains(&d))
            });
            evicted = plan.victims.iter().map(|(g, _)| *g).collect();
            if !dry_run && !plan.victims.is_empty() {
                let high = q.high_water_bytes();
                let victims: Vec<usize> = plan.victims.iter().map(|(g, _)| *g).collect();
                self.remove_groups(&c, &victims, |g| {
                    let when = Timestamp::from_ms(quota::last_used_ms(&c, g));
                    super::apply::group_event(
                        &c,
                        g,
                        EventKind::Evict,
                        format!(
                            "storage quota: store holds {usage} bytes, above the high-water mark of {high}; least recently used first (last used {when})"
                        ),
                    )
                })?;
            }
            report.quota = Some(plan.report);
        }
        if !evicted.is_empty() && !dry_run {
            c = self.catalog()?;
            c.graph.set_store_listing(&listing);
            evicted.clear();
        }
        let marks = c.mark(|g| (!evicted.contains(&g)).then(|| c.keep(g)));
        report.live_blobs = marks.count();
        report.mark_ms = t0.elapsed().as_millis() as u64;

        let limits = ClaimLimits {
            now_ms: self.now().as_ms(),
            committed_after_ms,
            recorded_since_ms: started_ms - grace.max(RECORD_SLACK).as_millis() as i64,
        };
        let mut events = Vec::new();
        for (digest, size) in &listing {
            let node = c.graph.id(digest);
            if node.is_some_and(|n| marks.is_marked(n)) {
                continue;
            }
            report.unreferenced_blobs += 1;
            let Ok(d) = Digest::parse(digest) else {
                continue;
            };
            if reg.is_filling(&d) {
                report.kept_in_flight += 1;
                continue;
            }
            // Cheap first look, so a busy blob costs no index work.
            if reg.touched.lock().since(&d, committed_after_ms) {
                report.kept_served += 1;
                continue;
            }
            let claim = if dry_run {
                match node.and_then(|n| c.graph.committed_ms(n)) {
                    None => Claim::Adopted,
                    Some(t) if t > committed_after_ms => Claim::Recent,
                    Some(_) => Claim::Forgotten { manifest: false },
                }
            } else {
                self.index().claim_for_deletion(digest, *size, &limits)?
            };
            match claim {
                Claim::Adopted => report.adopted += 1,
                Claim::Recent => report.kept_recent += 1,
                Claim::Referenced => report.kept_referenced += 1,
                Claim::Forgotten { manifest } => {
                    if !dry_run {
                        // The last look and the unlink, exclusive with touches.
                        let deleted = {
                            let touched = reg.touched.lock();
                            (!touched.since(&d, committed_after_ms) && !reg.is_filling(&d))
                                .then(|| reg.store.delete(&d))
                        };
                        match deleted {
                            None => {
                                report.kept_served += 1;
                                self.rerecord(&d, *size);
                                continue;
                            }
                            Some(Err(e)) => {
                                tracing::error!(%digest, "GC could not delete the blob: {e}");
                                continue;
                            }
                            Some(Ok(())) => {}
                        }
                        let mut e =
                            Event::new(EventKind::GcDelete, "unreferenced by any retained image");
                        e.digest = Some(digest.clone());
                        e.bytes = *size;
                        if manifest {
                            e.detail = Some("manifest record removed too".into());
                        }
                        events.push(e);
                        if events.len() >= EVENT_BATCH {
                            self.record(&std::mem::take(&mut events));
                        }
                    }
                    report.deleted_blobs += 1;
                    report.freed_bytes += size;
                }
            }
        }
        self.record(&events);
        if !dry_run {
            report.forgotten_records = self.forget_missing(&c, started_ms)?;
            let after = reg.store.usage();
            report.store_blobs_after = after.blobs as usize;
            report.store_bytes_after = after.bytes;
        } else {
            report.store_blobs_after = report
                .store_blobs_before
                .saturating_sub(report.deleted_blobs);
            report.store_bytes_after = report.store_bytes_before.saturating_sub(report.freed_bytes);
        }
        report.duration_ms = t0.elapsed().as_millis() as u64;
        if !dry_run {
            self.note_gc(&report);
            let evicted = report.quota.as_ref().map_or(0, |q| q.evicted.len());
            reg.metrics.gc_finished(report.freed_bytes, evicted);
        }
        tracing::info!(
            deleted = report.deleted_blobs,
            freed_bytes = report.freed_bytes,
            kept_recent = report.kept_recent,
            kept_in_flight = report.kept_in_flight,
            kept_referenced = report.kept_referenced,
            kept_served = report.kept_served,
            mark_ms = report.mark_ms,
            duration_ms = report.duration_ms,
            dry_run,
            "GC finished"
        );
        Ok(report)
    }

    /// Records again a blob whose records the sweep forgot just before a client touched it.
    fn rerecord(&self, d: &Digest, size: u64) {
        if let Err(e) = self.cache.index.record_blob(d, size, self.now().as_ms()) {
            tracing::warn!(digest = %d, "GC could not record a kept blob again: {e}");
        }
    }

    /// Drops blob records whose bytes were not in the store listing (removed by hand, or lost).
    fn forget_missing(
        &self,
        c: &super::catalog::Catalog,
        started_ms: i64,
    ) -> Result<usize, OpError> {
        if self.cache.store_is_private_in_cluster() {
            // Replicas with stores of their own share one index: a blob missing here may be
            // another replica's (and a manifest record it serves from). Only a shared store
            // can tell that a blob is gone for everyone.
            return Ok(0);
        }
        let before = started_ms - RECORD_SLACK.as_millis() as i64;
        let missing: Vec<String> = (0..c.graph.len() as u32)
            .filter(|&n| c.graph.stored(n).is_none())
            .filter(|&n| c.graph.committed_ms(n).is_some_and(|t| t < before))
            .map(|n| c.graph.name(n).to_string())
            .filter(|d| !Digest::parse(d).is_ok_and(|d| self.cache.is_filling(&d)))
            .collect();
        Ok(self.index().forget_missing_blobs(&missing, before)?)
    }
}
