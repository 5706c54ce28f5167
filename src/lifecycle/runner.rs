//! Periodic lifecycle work beside the listeners: policies applied every `apply_interval`, the
//! quota enforced and GC run every `gc.interval`. The first runs come one interval after start.

use super::gc::GcRequest;
use super::service::Lifecycle;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The background service running policies, quota and GC on schedule.
pub struct LifecycleRunner {
    /// The lifecycle to run.
    pub lifecycle: Arc<Lifecycle>,
}

fn next(period: Duration) -> Option<Instant> {
    (!period.is_zero()).then(|| Instant::now() + period)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[async_trait]
impl BackgroundService for LifecycleRunner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let s = &self.lifecycle.settings;
        let (apply_every, gc_every) = (s.apply_interval, s.gc_interval);
        let mut next_apply = next(apply_every);
        let mut next_gc = next(gc_every);
        loop {
            let apply = tokio::select! {
                _ = sleep_until(next_apply) => true,
                _ = sleep_until(next_gc) => false,
                _ = shutdown.changed() => return,
            };
            let lc = self.lifecycle.clone();
            // Runs take the lifecycle's lock on a blocking thread, so they never overlap.
            let outcome = tokio::task::spawn_blocking(move || {
                if apply {
                    lc.apply(None).map(|r| {
                        format!(
                            "lifecycle applied: {} images expired, {} archived",
                            r.expiring_images, r.transitioning_images
                        )
                    })
                } else {
                    lc.gc(&GcRequest::default())
                        .map(|r| format!("scheduled GC freed {} bytes", r.freed_bytes))
                }
            })
            .await;
            match outcome {
                Ok(Ok(msg)) => tracing::info!("{msg}"),
                Ok(Err(e)) => tracing::error!("scheduled lifecycle run failed: {e}"),
                Err(e) => tracing::error!("scheduled lifecycle task failed: {e}"),
            }
            if apply {
                next_apply = next(apply_every);
            } else {
                next_gc = next(gc_every);
            }
        }
    }
}
