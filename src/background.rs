//! Periodic work that runs beside the listeners.

use crate::registry::CacheHandle;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::time::Duration;

/// Writes gathered pull statistics to the index every few seconds and at shutdown.
pub struct PullStatsFlusher {
    /// The cache whose pull statistics it writes.
    pub cache: CacheHandle,
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
            let c = self.cache.clone();
            let _ = tokio::task::spawn_blocking(move || c.flush_pulls()).await;
            if stop {
                return;
            }
        }
    }
}
