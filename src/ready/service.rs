//! Keeps the readiness metric current: computed shortly after start and then every few
//! minutes over the default window (an index read plus a `stat` per needed blob).

use super::{Readiness, DEFAULT_WINDOW};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::time::Duration;

/// How often the metric is recomputed.
pub const INTERVAL: Duration = Duration::from_secs(300);
/// The first run waits this long, so start-up is not slowed by a large store.
const FIRST_RUN: Duration = Duration::from_secs(10);

/// The background job behind `breakwater_readiness_*`.
pub struct ReadinessService {
    /// What it checks.
    pub readiness: Readiness,
}

#[async_trait]
impl BackgroundService for ReadinessService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let start = tokio::time::Instant::now() + FIRST_RUN;
        let mut tick = tokio::time::interval_at(start, INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let r = self.readiness.clone();
            match tokio::task::spawn_blocking(move || r.check(DEFAULT_WINDOW)).await {
                Ok(Ok(report)) if report.not_ready > 0 => tracing::warn!(
                    not_ready = report.not_ready,
                    missing_blobs = report.missing_blobs,
                    "outage readiness: some images pulled within 30 days would fail with their \
                     upstream down (breakwater readiness lists them)"
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("outage readiness check failed: {e}"),
                Err(e) => tracing::warn!("outage readiness check panicked: {e}"),
            }
        }
    }
}
