//! Prometheus metrics: one registry per running cache, rendered at `/metrics` on the admin port.

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::sync::OnceLock;

/// Request kinds and results counted on every hit: their counters are resolved once, because a
/// labelled lookup hashes the labels under a lock on each call. Created on first use, so
/// `/metrics` shows the same series as before.
const HOT_KINDS: [&str; 2] = ["manifest", "blob"];
const HOT_RESULTS: [&str; 6] = [
    "hit",
    "miss",
    "revalidated",
    "stale",
    "revalidating",
    "error",
];

#[derive(Default)]
struct HotCounters {
    requests: [[OnceLock<IntCounter>; HOT_RESULTS.len()]; HOT_KINDS.len()],
    cache_bytes: OnceLock<IntCounter>,
}

/// Every metric breakwater exports.
pub struct Metrics {
    registry: Registry,
    /// Registry requests by kind (manifest, blob, tags, catalog) and result (hit, miss, stale,
    /// revalidated, error, …).
    pub requests: IntCounterVec,
    /// Body bytes sent to clients, by source (cache, upstream).
    pub bytes_served: IntCounterVec,
    /// Body bytes fetched from upstreams, by upstream.
    pub bytes_fetched: IntCounterVec,
    /// Stored blob bodies sent, by path: `sendfile` (zero-copy, plain HTTP/1.1) or `copy`
    /// (buffered reads: TLS, HTTP/2, object storage).
    pub blob_bodies: IntCounterVec,
    /// Upstream HTTP requests by upstream, operation and status (or error kind).
    pub upstream_requests: IntCounterVec,
    /// Docker Hub's `ratelimit-remaining`, by upstream, as last seen.
    pub ratelimit_remaining: IntGaugeVec,
    /// Tags served stale because upstream failed, by upstream.
    pub stale_served: IntCounterVec,
    /// 1 while an upstream is marked down by its circuit breaker.
    pub breaker_open: IntGaugeVec,
    /// Tags declared immutable that upstream moved (a supply-chain warning), by upstream.
    pub immutable_tag_moved: IntCounterVec,
    /// Store writes that failed (disk full, I/O error); the fill went on without caching.
    pub store_write_errors: IntCounter,
    /// Store reads that failed (object storage down), by operation (read, presign); the request
    /// went on from upstream or streamed instead.
    pub store_errors: IntCounterVec,
    /// Prefetch fills started because a manifest was served.
    pub prefetches: IntCounter,
    /// Blob fills that failed verification (digest or size mismatch).
    pub verification_failures: IntCounter,
    /// Bytes held in the blob store (as the store counts them; set by `report_store_usage`).
    pub store_bytes: IntGauge,
    /// Blobs held in the blob store (as the store counts them; set by `report_store_usage`).
    pub store_blobs: IntGauge,
    /// Fills currently running.
    pub fills_in_flight: IntGauge,
    /// Chunks handed to readers of running fills, by where they came from (`memory`: the
    /// window of recent chunks; `file`: the staging file, for readers that fell behind).
    pub fill_reads: IntCounterVec,
    /// Cluster fills by where their bytes came from (`upstream`, `peer`, `takeover`).
    pub cluster_fills: IntCounterVec,
    /// Peer fetches that failed, by reason (`digest_mismatch`, `unavailable`).
    pub cluster_peer_failures: IntCounterVec,
    /// The store's byte quota (`storage.max_bytes`); 0 without one.
    pub store_quota_bytes: IntGauge,
    /// GC runs completed (dry runs not counted).
    pub gc_runs: IntCounter,
    /// Bytes GC deleted from the store.
    pub gc_freed_bytes: IntCounter,
    /// Images removed or moved by lifecycle policies and the quota, by action (expire,
    /// transition, evict).
    pub lifecycle_images: IntCounterVec,
    /// Upstream checks that a repository holds a digest the cache has under another one, by
    /// outcome (confirmed, refused).
    pub link_checks: IntCounterVec,
    /// Client authentication attempts by method (basic, token, robot, certificate, anonymous)
    /// and outcome (ok, rejected, malformed, throttled).
    pub auth_results: IntCounterVec,
    /// Requests refused by the access rules, by action (pull, fill) and principal kind.
    pub access_denials: IntCounterVec,
    /// Images pulled within the last 30 days by outage readiness (ready: everything they need
    /// is stored; missing: a pull would fail with the upstream down).
    pub readiness_images: IntGaugeVec,
    /// Blobs those images need that the store lacks.
    pub readiness_missing_blobs: IntGauge,
    /// When readiness was last computed (unix seconds; 0 before the first run).
    pub readiness_checked: IntGauge,
    hot: HotCounters,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

impl Metrics {
    /// Creates and registers all metrics.
    pub fn new() -> Self {
        let r = Registry::new();
        let ratelimit_remaining = IntGaugeVec::new(
            Opts::new(
                "breakwater_upstream_ratelimit_remaining",
                "Remaining pulls reported by the upstream's ratelimit-remaining header",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        r.register(Box::new(ratelimit_remaining.clone()))
            .expect("unique metric");
        let verification_failures = IntCounter::new(
            "breakwater_verification_failures_total",
            "Fills whose bytes did not match their digest or size; nothing was stored",
        )
        .expect("valid metric");
        r.register(Box::new(verification_failures.clone()))
            .expect("unique metric");
        let breaker_open = IntGaugeVec::new(
            Opts::new(
                "breakwater_upstream_breaker_open",
                "1 while the upstream is marked down by its circuit breaker",
            ),
            &["upstream"],
        )
        .expect("valid metric");
        r.register(Box::new(breaker_open.clone()))
            .expect("unique metric");
        let store_write_errors = IntCounter::new(
            "breakwater_store_write_errors_total",
            "Store writes that failed; the fill kept streaming to clients without caching",
        )
        .expect("valid metric");
        r.register(Box::new(store_write_errors.clone()))
            .expect("unique metric");
        let prefetches = IntCounter::new(
            "breakwater_prefetch_fills_total",
            "Blob fills started ahead of the client because a manifest was served",
        )
        .expect("valid metric");
        r.register(Box::new(prefetches.clone()))
            .expect("unique metric");
        let lifecycle_images = counter_vec(
            &r,
            "breakwater_lifecycle_images_total",
            "Images expired or archived by lifecycle policies, or evicted by the quota",
            &["action"],
        );
        // Every action exists from the start, so dashboards and alerts see zeros, not gaps.
        for action in ["expire", "transition", "evict"] {
            lifecycle_images.with_label_values(&[action]);
        }
        let readiness_images = IntGaugeVec::new(
            Opts::new(
                "breakwater_readiness_images",
                "Images pulled within 30 days: ready for an upstream outage, or missing content",
            ),
            &["state"],
        )
        .expect("valid metric");
        r.register(Box::new(readiness_images.clone()))
            .expect("unique metric");
        Metrics {
            readiness_images,
            readiness_missing_blobs: gauge(
                &r,
                "breakwater_readiness_missing_blobs",
                "Blobs that images pulled within 30 days need and the store lacks",
            ),
            readiness_checked: gauge(
                &r,
                "breakwater_readiness_checked_timestamp_seconds",
                "When outage readiness was last computed (unix seconds)",
            ),
            breaker_open,
            store_write_errors,
            store_errors: counter_vec(
                &r,
                "breakwater_store_errors_total",
                "Store reads that failed (read, presign); the request was served from upstream or streamed instead",
                &["op"],
            ),
            prefetches,
            immutable_tag_moved: counter_vec(
                &r,
                "breakwater_immutable_tag_moved_total",
                "Tags declared immutable that the upstream moved; the cached digest is still served",
                &["upstream"],
            ),
            requests: counter_vec(
                &r,
                "breakwater_requests_total",
                "Registry requests by kind and result",
                &["kind", "result"],
            ),
            bytes_served: counter_vec(
                &r,
                "breakwater_bytes_served_total",
                "Body bytes sent to clients by source",
                &["source"],
            ),
            blob_bodies: counter_vec(
                &r,
                "breakwater_blob_bodies_total",
                "Stored blob bodies sent, by path (sendfile, copy)",
                &["path"],
            ),
            bytes_fetched: counter_vec(
                &r,
                "breakwater_upstream_bytes_total",
                "Body bytes fetched from upstreams",
                &["upstream"],
            ),
            upstream_requests: counter_vec(
                &r,
                "breakwater_upstream_requests_total",
                "Upstream requests by upstream, operation and status",
                &["upstream", "op", "status"],
            ),
            ratelimit_remaining,
            stale_served: counter_vec(
                &r,
                "breakwater_stale_served_total",
                "Tags served from cache because the upstream failed",
                &["upstream"],
            ),
            verification_failures,
            store_bytes: gauge(&r, "breakwater_store_bytes", "Bytes in the blob store"),
            store_blobs: gauge(&r, "breakwater_store_blobs", "Blobs in the blob store"),
            fills_in_flight: gauge(&r, "breakwater_fills_in_flight", "Upstream fills running"),
            fill_reads: counter_vec(
                &r,
                "breakwater_fill_reads_total",
                "Chunks handed to readers of running fills by source: memory (recent chunks), \
                 file (the staging file, for readers that fell behind)",
                &["from"],
            ),
            cluster_fills: counter_vec(
                &r,
                "breakwater_cluster_fills_total",
                "Blob fills in a cluster by source: upstream (lease held), peer (streamed from \
                 the lease holder), takeover (lease taken from a failed holder, resumed upstream)",
                &["source"],
            ),
            cluster_peer_failures: counter_vec(
                &r,
                "breakwater_cluster_peer_failures_total",
                "Blob fetches from a peer replica that failed, by reason: digest_mismatch (the \
                 peer's bytes were discarded and the blob refetched from upstream), unavailable",
                &["reason"],
            ),
            store_quota_bytes: gauge(
                &r,
                "breakwater_store_quota_bytes",
                "The store's byte quota (storage.max_bytes); 0 without one",
            ),
            gc_runs: counter(&r, "breakwater_gc_runs_total", "GC runs completed"),
            gc_freed_bytes: counter(
                &r,
                "breakwater_gc_freed_bytes_total",
                "Bytes GC deleted from the store",
            ),
            lifecycle_images,
            link_checks: counter_vec(
                &r,
                "breakwater_link_checks_total",
                "Upstream checks that a repository holds a digest cached for another, by outcome",
                &["outcome"],
            ),
            auth_results: counter_vec(
                &r,
                "breakwater_auth_results_total",
                "Client authentication attempts by method and outcome",
                &["method", "outcome"],
            ),
            access_denials: counter_vec(
                &r,
                "breakwater_access_denials_total",
                "Requests refused by the access rules, by action and principal kind",
                &["action", "principal"],
            ),
            registry: r,
            hot: HotCounters::default(),
        }
    }

    /// Text exposition format of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }

    /// Registers a metric defined elsewhere (e.g. the scanner's) for `/metrics`.
    pub fn register(&self, c: Box<dyn prometheus::core::Collector>) -> prometheus::Result<()> {
        self.registry.register(c)
    }

    /// Reports the store's usage: the one place the store gauges are set (the store calls it
    /// on every change).
    pub fn report_store_usage(&self, u: breakwater_store::store::Usage) {
        self.store_bytes.set(u.bytes as i64);
        self.store_blobs.set(u.blobs as i64);
    }

    /// Counts one finished GC run (not a dry run) and the images its quota check evicted.
    pub fn gc_finished(&self, freed_bytes: u64, evicted: usize) {
        self.gc_runs.inc();
        self.gc_freed_bytes.inc_by(freed_bytes);
        self.count_lifecycle("evict", evicted);
    }

    /// Counts images a lifecycle action (expire, transition, evict) applied to.
    pub fn count_lifecycle(&self, action: &str, n: usize) {
        self.lifecycle_images
            .with_label_values(&[action])
            .inc_by(n as u64);
    }

    /// Publishes one outage-readiness result.
    pub fn readiness(&self, ready: usize, missing: usize, missing_blobs: usize, at_ms: i64) {
        self.readiness_images
            .with_label_values(&["ready"])
            .set(ready as i64);
        self.readiness_images
            .with_label_values(&["missing"])
            .set(missing as i64);
        self.readiness_missing_blobs.set(missing_blobs as i64);
        self.readiness_checked.set(at_ms / 1000);
    }

    /// Counts one registry request.
    pub fn request(&self, kind: &str, result: &str) {
        let k = HOT_KINDS.iter().position(|k| *k == kind);
        let r = HOT_RESULTS.iter().position(|r| *r == result);
        match (k, r) {
            (Some(k), Some(r)) => self.hot.requests[k][r]
                .get_or_init(|| self.requests.with_label_values(&[kind, result]))
                .inc(),
            _ => self.requests.with_label_values(&[kind, result]).inc(),
        }
    }

    /// Counts body bytes sent from the cache (`bytes_served{source="cache"}`).
    pub fn served_from_cache(&self, bytes: u64) {
        self.hot
            .cache_bytes
            .get_or_init(|| self.bytes_served.with_label_values(&["cache"]))
            .inc_by(bytes);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_counters_are_the_labelled_series() {
        let m = Metrics::new();
        m.request("manifest", "hit");
        m.request("manifest", "hit");
        m.request("tags", "hit"); // not a hot kind: the labelled lookup
        m.served_from_cache(10);
        m.served_from_cache(5);
        assert_eq!(m.requests.with_label_values(&["manifest", "hit"]).get(), 2);
        assert_eq!(m.requests.with_label_values(&["tags", "hit"]).get(), 1);
        assert_eq!(m.bytes_served.with_label_values(&["cache"]).get(), 15);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains(r#"breakwater_requests_total{kind="manifest",result="hit"} 2"#));
        // Series appear when first counted, as before.
        assert!(!text.contains(r#"result="stale""#));
    }
}
