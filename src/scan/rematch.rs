//! Continuous scanning: when the vulnerability data changes, every stored inventory is matched
//! again (no layer is read) and what changed is recorded as events: `scan_finding_new` and
//! `scan_finding_resolved` per image, and `critical_finding` for each new CRITICAL finding.

use crate::cache::{Event, EventKind};
use crate::scan::findings::{diff, Memo, VulnFinding};
use crate::scan::osv::Severity;
use crate::scan::record::{ImageScan, Rematched, ScanStatus};
use crate::scan::scanner::Scanner;
use crate::scan::vulndb::DbSnapshot;
use serde::Serialize;
use std::sync::Arc;

/// Rows matched per transaction: bounds memory and lock time however many images are cached.
const PAGE: usize = 256;

/// What a rematch did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RematchReport {
    /// Stored images matched again.
    pub images: usize,
    /// Findings that appeared.
    pub new_findings: usize,
    /// Findings that went away.
    pub resolved_findings: usize,
}

impl Scanner {
    /// Matches every stored inventory not yet matched against the data in use. One runs at a
    /// time; a rematch queued behind another finds little left to do.
    pub async fn rematch_all(self: &Arc<Self>) -> Result<RematchReport, String> {
        let _one_at_a_time = self.rematching.lock().await;
        let Some(snap) = self.db.current() else {
            return Ok(RematchReport::default());
        };
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.rematch_all_blocking(&snap))
            .await
            .map_err(|e| format!("rematch task failed: {e}"))?
    }

    /// [`Scanner::rematch_all`] on the calling thread (blocking).
    pub fn rematch_all_blocking(&self, snap: &Arc<DbSnapshot>) -> Result<RematchReport, String> {
        let mut report = RematchReport::default();
        let mut after = None;
        // Cached images share base layers, so the same package versions recur: match each once.
        let mut memo = Memo::new(&snap.db);
        loop {
            let rows = self
                .store
                .unmatched(&snap.hash, after.as_ref(), PAGE)
                .map_err(|e| e.to_string())?;
            let Some(last) = rows.last() else { break };
            after = Some(last.digest.clone());
            let (updated, changes) = self.rematch_with(rows, snap, &mut memo)?;
            report.images += updated.len();
            report.new_findings += changes.0;
            report.resolved_findings += changes.1;
        }
        self.refresh_gauge();
        if let Err(e) = self.store.prune_layers() {
            tracing::warn!("pruning unused layer analyses failed: {e}");
        }
        if report.images > 0 {
            tracing::info!(
                images = report.images,
                new = report.new_findings,
                resolved = report.resolved_findings,
                "stored inventories rematched against new vulnerability data"
            );
        }
        Ok(report)
    }

    /// Matches one page of stored scans against `snap`, stores the new findings and records
    /// the events; also returns how many findings were new and resolved.
    fn rematch_with(
        &self,
        rows: Vec<ImageScan>,
        snap: &DbSnapshot,
        memo: &mut Memo<'_>,
    ) -> Result<(Vec<ImageScan>, (usize, usize)), String> {
        let mut updates = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        let (mut added, mut resolved) = (0, 0);
        let now = crate::now_ms();
        for mut row in rows {
            let findings = memo.inventory(&row.inventory);
            let before = std::mem::replace(&mut row.findings, findings);
            let was_matched = row.db_hash.is_some();
            if row.status == ScanStatus::FindingsUnavailable {
                row.status = ScanStatus::Complete;
                row.description = format!(
                    "The scan was completed successfully: {} packages in {} layers.",
                    row.inventory.packages.len(),
                    row.layers.len()
                );
            }
            row.db_hash = Some(snap.hash.clone());
            row.db_updated_at_ms = Some(snap.updated_at_ms());
            row.matched_at_ms = now;
            let (e, a, r) = self.change_events(was_matched.then_some(before.as_slice()), &row);
            events.extend(e);
            added += a;
            resolved += r;
            updates.push(Rematched {
                digest: row.digest.clone(),
                findings: row.findings.clone(),
                status: row.status,
                description: row.description.clone(),
            });
            out.push(row);
        }
        self.store
            .update_matches(&updates, &snap.hash, Some(snap.updated_at_ms()), now)
            .map_err(|e| e.to_string())?;
        self.metrics.rematched.inc_by(out.len() as u64);
        if !events.is_empty() {
            self.index
                .record_events(&events)
                .map_err(|e| e.to_string())?;
        }
        Ok((out, (added, resolved)))
    }

    /// Events for `new` compared with the previous match of the same image. Only a previous
    /// *match* gives new/resolved events (the first match of an inventory is not news); new
    /// CRITICAL findings are always reported.
    /// `prev`: the findings of the previous match, if there was one. Returns the events and
    /// how many findings were new and resolved.
    pub(crate) fn change_events(
        &self,
        prev: Option<&[VulnFinding]>,
        new: &ImageScan,
    ) -> (Vec<Event>, usize, usize) {
        let base = |kind: EventKind, reason: String| {
            let mut e = Event::new(kind, reason);
            e.upstream = Some(new.upstream.clone());
            e.repository = Some(new.repository.clone());
            e.digest = Some(new.digest.to_string());
            e
        };
        let data = new
            .db_hash
            .as_deref()
            .map_or("none", |h| &h[..h.len().min(12)]);
        let mut events = Vec::new();
        let mut resolved_count = 0;
        let added: Vec<&VulnFinding> = match prev {
            Some(p) => {
                let (added, resolved) = diff(p, &new.findings);
                resolved_count = resolved.len();
                self.metrics
                    .finding_changes
                    .with_label_values(&["new"])
                    .inc_by(added.len() as u64);
                self.metrics
                    .finding_changes
                    .with_label_values(&["resolved"])
                    .inc_by(resolved.len() as u64);
                if !added.is_empty() {
                    let mut e = base(
                        EventKind::ScanFindingNew,
                        format!("{} new findings (vulnerability data {data})", added.len()),
                    );
                    e.detail = Some(list(&added));
                    events.push(e);
                }
                if !resolved.is_empty() {
                    let mut e = base(
                        EventKind::ScanFindingResolved,
                        format!(
                            "{} findings resolved (vulnerability data {data})",
                            resolved.len()
                        ),
                    );
                    e.detail = Some(list(&resolved));
                    events.push(e);
                }
                added
            }
            None => new.findings.iter().collect(),
        };
        for f in added.iter().filter(|f| f.severity == Severity::Critical) {
            let mut e = base(
                EventKind::CriticalFinding,
                format!("new CRITICAL finding in a cached image: {}", f.short()),
            );
            e.detail = Some(format!("{} {}", f.id, f.uri));
            events.push(e);
            self.metrics.new_critical.inc();
        }
        let added_count = if prev.is_some() { added.len() } else { 0 };
        (events, added_count, resolved_count)
    }
}

/// `ID package version path` per finding, one per line.
fn list(findings: &[&VulnFinding]) -> String {
    findings
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {} {}",
                f.id, f.severity, f.package_name, f.package_version, f.file_path
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
