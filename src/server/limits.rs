//! Caps on what clients of the registry port may hold: open connections (checked as each one is
//! accepted, so the process keeps file descriptors for blob files and upstream sockets) and
//! requests running at once per client address (a flood from one host gets 429s, others go on).
//! The admin and peer listeners are not wrapped: operators and replicas are never turned away.

use crate::metrics::Metrics;
use pingora::apps::ServerApp;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounterVec, IntGauge, Opts};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// File descriptors kept back from client connections: stored blobs being read or written,
/// upstream and index sockets, the listeners, logs. At most half of the limit.
const FD_RESERVE: u64 = 1024;

/// Raises the soft open-file limit to the hard one (as servers commonly do) and returns the
/// limit now in force, or `None` if it cannot be read.
pub fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(
                from = soft,
                to = hard,
                "raised the open-file limit (RLIMIT_NOFILE)"
            );
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(limit = soft, error = %e, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// The connection cap in force: `configured`, lowered so that client connections leave
/// [`FD_RESERVE`] descriptors (at most half of `open_file_limit`) for everything else.
pub fn effective_max_connections(configured: usize, open_file_limit: Option<u64>) -> usize {
    let Some(limit) = open_file_limit else {
        return configured;
    };
    let reserve = FD_RESERVE.min(limit / 2);
    let room = usize::try_from(limit - reserve)
        .unwrap_or(usize::MAX)
        .max(1);
    configured.min(room)
}

/// Metrics of the client limits.
#[derive(Clone)]
pub struct LimitMetrics {
    /// Connections closed or requests answered 429 by a limit, by limit (`connections`,
    /// `requests_per_client`).
    refused: IntCounterVec,
    /// Registry connections open now.
    open: IntGauge,
}

impl LimitMetrics {
    /// Creates the metrics and registers them with `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let refused = IntCounterVec::new(
            Opts::new(
                "breakwater_client_limit_refusals_total",
                "Registry connections closed at accept or requests answered 429 by a client limit, by limit.",
            ),
            &["limit"],
        )
        .expect("valid metric");
        let open = IntGauge::new(
            "breakwater_client_connections",
            "Registry client connections open now.",
        )
        .expect("valid metric");
        // Registered once per process; a second registration (tests) keeps the first.
        let _ = metrics.register(Box::new(refused.clone()));
        let _ = metrics.register(Box::new(open.clone()));
        LimitMetrics { refused, open }
    }

    /// Counts one refusal by `limit`.
    pub fn refused(&self, limit: &str) {
        self.refused.with_label_values(&[limit]).inc();
    }
}

/// The registry listener's app behind a connection cap: a connection over the cap is closed
/// right after accept, before anything is read from it.
pub struct ConnectionCap<A> {
    inner: Arc<A>,
    max: usize,
    open: AtomicUsize,
    metrics: LimitMetrics,
}

impl<A> ConnectionCap<A> {
    /// Wraps `app`, allowing `max` connections at once.
    pub fn new(app: A, max: usize, metrics: LimitMetrics) -> Self {
        ConnectionCap {
            inner: Arc::new(app),
            max,
            open: AtomicUsize::new(0),
            metrics,
        }
    }
}

#[async_trait::async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionCap<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: pingora::protocols::Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.metrics.refused("connections");
            // Dropping the stream closes it: the client sees the connection reset or ended.
            return None;
        }
        self.metrics.open.inc();
        let out = self.inner.process_new(stream, shutdown).await;
        self.metrics.open.dec();
        self.open.fetch_sub(1, Ordering::AcqRel);
        out
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}

/// Requests running now per client address, capped.
pub struct ClientSlots {
    max: usize,
    running: Mutex<HashMap<IpAddr, usize>>,
}

/// One running request of one address; frees its slot when dropped.
pub struct ClientSlot {
    slots: Arc<ClientSlots>,
    ip: IpAddr,
}

impl ClientSlots {
    /// Allows `max` running requests per address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(ClientSlots {
            max,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// The per-address cap.
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for one more request from `ip`, or `None` when it already runs `max`.
    pub fn try_enter(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let n = running.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            slots: self.clone(),
            ip,
        })
    }

    /// Requests running now for `ip`.
    pub fn running(&self, ip: IpAddr) -> usize {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut running = self.slots.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = running.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                // Addresses come and go: keep only those with requests running.
                running.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_keeps_a_reserve_of_descriptors() {
        assert_eq!(effective_max_connections(10_000, None), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(1 << 20)), 10_000);
        assert_eq!(effective_max_connections(10_000, Some(4096)), 3072);
        // A tiny limit: half of it for clients.
        assert_eq!(effective_max_connections(10_000, Some(1024)), 512);
        assert_eq!(effective_max_connections(10_000, Some(1)), 1);
    }

    #[test]
    fn slots_per_address_are_capped_and_given_back() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let s1 = slots.try_enter(a).expect("first");
        let _s2 = slots.try_enter(a).expect("second");
        assert!(slots.try_enter(a).is_none(), "third from the same address");
        let _other = slots.try_enter(b).expect("another address is not affected");
        drop(s1);
        assert_eq!(slots.running(a), 1);
        let _s3 = slots.try_enter(a).expect("a slot came back");
        drop(_s2);
        drop(_s3);
        assert_eq!(slots.running(a), 0);
        assert!(
            !slots.running.lock().unwrap().contains_key(&a),
            "idle addresses are forgotten"
        );
    }
}
