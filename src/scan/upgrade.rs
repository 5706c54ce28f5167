//! Upgrade rescans: after a breakwater release bumps [`ANALYZER_VERSION`], stored inventories
//! made by the older analyzer are redone in the background — at start-up and then every
//! `rescan_interval` — oldest scan first, at most `scan.upgrade_batch` images per round so a
//! big cache does not saturate the disk. Only images whose manifest and layers are all still in
//! the blob store are redone (no upstream traffic); the others (archived, bytes collected) wait
//! until their bytes are cached again. A rescan is an ordinary forced scan: each distinct layer
//! is read once (per-layer cache and single-flight) and new or resolved findings are recorded
//! as the usual `scan_finding_new` / `scan_finding_resolved` / `critical_finding` events.

use crate::oci::{Digest, RepoName};
use crate::registry::{blocking, ImageSource, Target};
use crate::scan::layer::ANALYZER_VERSION;
use crate::scan::record::{Outdated, ScanStatus};
use crate::scan::scanner::{Scanner, Trigger};
use serde::Serialize;
use std::sync::Arc;

/// Outdated rows read per query.
const PAGE: usize = 256;

/// What a round of upgrade rescans did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UpgradeReport {
    /// Images rescanned with the current analyzer.
    pub rescanned: usize,
    /// Outdated images left for later: bytes not in the store, or upstream not configured.
    pub waiting: usize,
    /// Rescans that failed (or could not read every layer).
    pub failed: usize,
    /// True when no stored inventory is outdated any more.
    pub done: bool,
}

impl Scanner {
    /// Rescans up to `limit` images whose inventory an older analyzer made, oldest first.
    /// One round runs at a time; a round asked for while one runs does nothing.
    pub async fn upgrade_rescans(self: &Arc<Self>, limit: usize) -> Result<UpgradeReport, String> {
        let mut report = UpgradeReport::default();
        let Ok(_one_at_a_time) = self.upgrading.try_lock() else {
            return Ok(report);
        };
        let mut after: Option<(i64, Digest)> = None;
        let mut seen = 0;
        'pages: loop {
            let (store, a) = (self.store.clone(), after.clone());
            let rows = blocking(move || store.outdated(a.as_ref().map(|(t, d)| (*t, d)), PAGE))
                .await
                .map_err(|e| e.message)?
                .map_err(|e| e.to_string())?;
            let Some(last) = rows.last() else { break };
            after = Some((last.scanned_at_ms, last.digest.clone()));
            for row in rows {
                seen += 1;
                if report.rescanned + report.failed >= limit {
                    break 'pages;
                }
                let Some((t, digest)) = target(self.source().as_ref(), &row) else {
                    report.waiting += 1;
                    continue;
                };
                if !bytes_stored(self.source(), &digest, &row.layers).await {
                    report.waiting += 1;
                    continue;
                }
                match self.image(&t, &digest, Trigger::Upgrade, true).await {
                    Ok(s) if s.status != ScanStatus::Failed => report.rescanned += 1,
                    Ok(s) => {
                        tracing::warn!(%digest, "upgrade rescan incomplete: {}", s.description);
                        report.failed += 1;
                    }
                    Err(e) => {
                        tracing::warn!(%digest, "upgrade rescan failed: {}", e.message);
                        report.failed += 1;
                    }
                }
            }
        }
        report.done = seen == 0;
        if report.rescanned + report.failed > 0 {
            tracing::info!(
                rescanned = report.rescanned,
                failed = report.failed,
                waiting = report.waiting,
                analyzer_version = ANALYZER_VERSION,
                "images scanned by an older analyzer rescanned"
            );
        }
        Ok(report)
    }
}

/// Where to scan a stored row from, unless its upstream is gone from the configuration (or a
/// stored name no longer parses).
fn target(source: &dyn ImageSource, row: &Outdated) -> Option<(Target, Digest)> {
    let repo = RepoName::parse(&row.repo.name).ok()?;
    Some((source.target(&row.repo.upstream, repo)?, row.digest.clone()))
}

/// True when the manifest and every layer are in the blob store: a rescan then reads only
/// local bytes, never the upstream.
async fn bytes_stored(source: &Arc<dyn ImageSource>, manifest: &Digest, layers: &[Digest]) -> bool {
    let source = source.clone();
    let (manifest, layers) = (manifest.clone(), layers.to_vec());
    blocking(move || {
        let present = |d: &Digest| source.is_stored(d);
        present(&manifest) && layers.iter().all(present)
    })
    .await
    .unwrap_or(false)
}
