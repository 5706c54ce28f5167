//! Continuous scanning: when the vulnerability data changes, every stored inventory is matched
//! again (no layer is read) and what changed is recorded as events: `scan_finding_new` and
//! `scan_finding_resolved` per image, and `critical_finding` for each new CRITICAL finding.

use crate::cache::Event;
use crate::scan::findings::{diff, match_inventory, VulnFinding};
use crate::scan::osv::Severity;
use crate::scan::scanner::Scanner;
use crate::scan::store::{ImageScan, Rematched, ScanStatus};
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
        let mut after = String::new();
        loop {
            let rows = self.store.unmatched(&snap.hash, &after, PAGE)?;
            let Some(last) = rows.last() else { break };
            after = last.digest.clone();
            let before: Vec<Vec<VulnFinding>> = rows.iter().map(|r| r.findings.clone()).collect();
            let was_matched: Vec<bool> = rows.iter().map(|r| r.db_hash.is_some()).collect();
            let updated = self.rematch_rows(rows, snap)?;
            for ((old, matched), new) in before.iter().zip(was_matched).zip(&updated) {
                if matched {
                    let (a, r) = diff(old, &new.findings);
                    report.new_findings += a.len();
                    report.resolved_findings += r.len();
                }
            }
            report.images += updated.len();
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

    /// Matches stored scans against `snap`, stores the new findings and records the events.
    pub(crate) fn rematch_rows(
        &self,
        rows: Vec<ImageScan>,
        snap: &DbSnapshot,
    ) -> Result<Vec<ImageScan>, String> {
        let mut updates = Vec::with_capacity(rows.len());
        let mut events = Vec::new();
        let mut out = Vec::with_capacity(rows.len());
        for old in rows {
            let mut new = old.clone();
            new.findings = match_inventory(&snap.db, &old.inventory);
            if new.status == ScanStatus::FindingsUnavailable {
                new.status = ScanStatus::Complete;
                new.description = format!(
                    "The scan was completed successfully: {} packages in {} layers.",
                    new.inventory.packages.len(),
                    new.layers.len()
                );
            }
            new.db_hash = Some(snap.hash.clone());
            new.db_updated_at_ms = Some(snap.updated_at_ms());
            new.matched_at_ms = crate::now_ms();
            events.extend(self.change_events(Some(&old), &new));
            updates.push(Rematched {
                digest: new.digest.clone(),
                findings: new.findings.clone(),
                status: new.status,
                description: new.description.clone(),
            });
            out.push(new);
        }
        self.store.update_matches(
            &updates,
            &snap.hash,
            Some(snap.updated_at_ms()),
            crate::now_ms(),
        )?;
        self.metrics.rematched.inc_by(out.len() as u64);
        if !events.is_empty() {
            self.index
                .record_events(&events)
                .map_err(|e| e.to_string())?;
        }
        Ok(out)
    }

    /// Events for `new` compared with the previous scan of the same image. Only a previous
    /// *match* gives new/resolved events (the first match of an inventory is not news); new
    /// CRITICAL findings are always reported.
    pub(crate) fn change_events(&self, prev: Option<&ImageScan>, new: &ImageScan) -> Vec<Event> {
        let base = |kind: &str, reason: String| {
            let mut e = Event::new(kind, reason);
            e.upstream = Some(new.upstream.clone());
            e.repository = Some(new.repository.clone());
            e.digest = Some(new.digest.clone());
            e
        };
        let data = new
            .db_hash
            .as_deref()
            .map_or("none", |h| &h[..h.len().min(12)]);
        let mut events = Vec::new();
        let added: Vec<&VulnFinding> = match prev.filter(|p| p.db_hash.is_some()) {
            Some(p) => {
                let (added, resolved) = diff(&p.findings, &new.findings);
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
                        "scan_finding_new",
                        format!("{} new findings (vulnerability data {data})", added.len()),
                    );
                    e.detail = Some(list(&added));
                    events.push(e);
                }
                if !resolved.is_empty() {
                    let mut e = base(
                        "scan_finding_resolved",
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
                "critical_finding",
                format!("new CRITICAL finding in a cached image: {}", f.short()),
            );
            e.detail = Some(format!("{} {}", f.id, f.uri));
            events.push(e);
        }
        events
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
