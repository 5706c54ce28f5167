//! The scanner's background work: load the vulnerability data after start-up (the listeners do
//! not wait for it), then check the sources every `rescan_interval` and rematch every stored
//! inventory when the data changed. Each round (the first right at start-up) also rescans a
//! bounded batch of images whose inventory an older analyzer made (`upgrade.rs`).

use crate::scan::rematch::RematchReport;
use crate::scan::scanner::Scanner;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Runs the data watch.
pub struct ScanService {
    /// The scanner this drives.
    pub scanner: Arc<Scanner>,
    /// In a cluster, upgrade rescans (written to the shared index) run on one replica at a
    /// time; every replica still reloads the data it matches with.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// What a reload did.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// True when different data was swapped in.
    pub changed: bool,
    /// The rematch that followed (empty when nothing changed).
    pub rematch: RematchReport,
}

impl Scanner {
    /// Checks the sources now; reloads and rematches when they changed.
    pub async fn reload(self: &Arc<Self>) -> Result<ReloadReport, String> {
        let this = self.clone();
        let changed = tokio::task::spawn_blocking(move || this.db.refresh())
            .await
            .map_err(|e| format!("reload task failed: {e}"))??;
        self.refresh_db_gauges();
        // Rows left unmatched by an earlier failed rematch are picked up here too.
        let rematch = self.rematch_all().await?;
        Ok(ReloadReport {
            changed: changed.is_some(),
            rematch,
        })
    }
}

#[async_trait]
impl BackgroundService for ScanService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let scanner = &self.scanner;
        // The index may be PostgreSQL's blocking client, which must not run on this task.
        let s = scanner.clone();
        let _ = tokio::task::spawn_blocking(move || s.refresh_gauge()).await;
        let configured = scanner.db().configured();
        // Nothing is ever written by an older analyzer again: once none is left, stop looking.
        let mut upgrading = scanner.settings().upgrade_batch > 0;
        if !configured && !upgrading {
            return;
        }
        let mut tick = tokio::time::interval(scanner.settings().rescan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            // Data first, so that upgrade rescans match against it.
            if configured {
                if let Err(e) = scanner.reload().await {
                    tracing::warn!("vulnerability data check failed: {e}");
                }
            }
            if upgrading {
                let batch = scanner.settings().upgrade_batch;
                let rescans = scanner.upgrade_rescans(batch);
                let outcome = match &self.cluster {
                    Some(c) => {
                        c.exclusive_within("scan-upgrade", Duration::ZERO, rescans)
                            .await
                    }
                    None => Ok(rescans.await),
                };
                match outcome {
                    Ok(Ok(r)) => upgrading = !r.done,
                    Ok(Err(e)) => tracing::warn!("upgrade rescans failed: {e}"),
                    Err(why) => tracing::debug!("upgrade rescans left to another replica: {why}"),
                }
                if !configured && !upgrading {
                    return;
                }
            }
        }
    }
}
