//! Periodic work that runs beside the listeners.

use crate::registry::Registry;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// Writes gathered pull statistics to the index every few seconds and at shutdown.
pub struct PullStatsFlusher {
    /// The cache.
    pub registry: Arc<Registry>,
}

#[async_trait]
impl BackgroundService for PullStatsFlusher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            let stop = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.changed() => true,
            };
            let r = self.registry.clone();
            let _ = tokio::task::spawn_blocking(move || r.pulls.flush(r.index.as_ref())).await;
            if stop {
                return;
            }
        }
    }
}
