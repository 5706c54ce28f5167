//! Graceful shutdown. On SIGTERM Pingora stops accepting and keeps the runtimes alive for the
//! grace period (`server.shutdown_grace`), then drops whatever still runs. This service ends
//! the process as soon as nothing is in flight (no request being answered, no fill running),
//! so a quiet cache stops at once and a busy one lets its responses and fills finish.
//! Whatever the grace period cuts leaves only staging files, never a visible blob; they are
//! removed at the next start.

use crate::registry::Registry;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Requests being answered now.
#[derive(Default, Clone)]
pub struct InFlight(Arc<AtomicUsize>);

/// Counts one request until dropped.
pub struct InFlightGuard(Arc<AtomicUsize>);

impl InFlight {
    /// Counts a request for as long as the guard lives.
    pub fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.0.clone())
    }

    fn now(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Ends the process once shutdown has begun and the last request and fill are done.
pub struct Drain {
    /// The registry listener's requests in flight.
    pub in_flight: InFlight,
    /// The cache (its running fills).
    pub registry: Arc<Registry>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        tracing::info!(
            requests = self.in_flight.now(),
            fills = self.registry.fills_running(),
            "shutting down: no new connections; letting running requests and fills finish"
        );
        loop {
            if self.in_flight.now() == 0 && self.registry.fills_running() == 0 {
                // The pull-statistics flush and the access log writer get a moment to finish.
                tokio::time::sleep(Duration::from_millis(300)).await;
                tracing::info!("shutdown complete: nothing in flight");
                std::process::exit(0);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
