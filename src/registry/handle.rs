//! The narrow view of the live cache that the lifecycle service (policies, quota, GC) and the
//! pull-statistics flusher get instead of the registry: the store and index, the touched
//! tracker GC consults, and the in-memory state they must keep consistent (pull statistics,
//! cached manifests and tags, running fills).

use super::fill::Fills;
use super::manifests::ManifestCache;
use super::pulls::PullRecorder;
use super::touched::Touched;
use crate::cache::{BlobStore, Index, RepoKey};
use crate::metrics::Metrics;
use crate::oci::Digest;
use std::sync::Arc;

/// Shared parts of one cache, for the services that maintain it.
#[derive(Clone)]
pub struct CacheHandle {
    /// Verified bytes.
    pub store: Arc<dyn BlobStore>,
    /// What the bytes mean.
    pub index: Arc<dyn Index>,
    /// Metrics (the store size gauges among them).
    pub metrics: Arc<Metrics>,
    /// Digests served or referenced lately (GC keeps them).
    pub touched: Arc<Touched>,
    pulls: Arc<PullRecorder>,
    manifests: Arc<ManifestCache>,
    fills: Arc<Fills>,
    upstreams: Arc<[String]>,
    /// In a cluster: digests other replicas are filling or just served.
    leased: Option<Arc<crate::cluster::jobs::LeasedDigests>>,
}

impl CacheHandle {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        store: Arc<dyn BlobStore>,
        index: Arc<dyn Index>,
        metrics: Arc<Metrics>,
        touched: Arc<Touched>,
        pulls: Arc<PullRecorder>,
        manifests: Arc<ManifestCache>,
        fills: Arc<Fills>,
        upstreams: Vec<String>,
    ) -> Self {
        CacheHandle {
            store,
            index,
            metrics,
            touched,
            pulls,
            manifests,
            fills,
            upstreams: upstreams.into(),
            leased: None,
        }
    }

    /// Makes GC also keep digests with a live fill lease in the cluster.
    pub(super) fn with_leases(mut self, cluster: Option<&Arc<crate::cluster::Cluster>>) -> Self {
        self.leased =
            cluster.map(|c| Arc::new(crate::cluster::jobs::LeasedDigests::new(c.clone())));
        self
    }

    /// Whether other replicas share the index with stores of their own: then a blob missing
    /// from this store may still be theirs.
    pub fn store_is_private_in_cluster(&self) -> bool {
        self.leased.is_some() && !self.store.shared()
    }

    /// Writes pull statistics still gathered in memory (blocking).
    pub fn flush_pulls(&self) {
        self.pulls.flush(self.index.as_ref());
    }

    /// Whether a fill of `digest` is running now, here or (in a cluster, by its fill lease) on
    /// another replica. Blocking in a cluster: call it from the blocking pool, as GC does.
    pub fn is_filling(&self, digest: &Digest) -> bool {
        self.fills.contains(digest) || self.leased.as_ref().is_some_and(|l| l.contains(digest))
    }

    /// Forgets expired manifests and removed tags (repository, tag) held in memory.
    pub fn forget_cached(&self, digests: &[Digest], tags: &[(RepoKey, String)]) {
        let keys: Vec<(String, String, String)> = tags
            .iter()
            .map(|(r, t)| (r.upstream.clone(), r.name.clone(), t.clone()))
            .collect();
        self.manifests.forget(digests, &keys);
    }

    /// The configured upstream names (a repository is `<upstream>/<name>` to the admin API).
    pub fn upstreams(&self) -> &[String] {
        &self.upstreams
    }
}
