//! Registry operations over the cache: what a manifest, blob, tag-list or catalog request means,
//! decided from the index, the store and (on a miss or an expired tag) the upstream. No HTTP here:
//! the server module turns requests into these calls and their answers into responses.

pub mod blobs;
pub mod fill;
pub mod flight;
pub mod manifests;
pub mod prefetch;
pub mod pulls;
pub mod tags;
pub mod touched;

use crate::cache::{BlobStore, FsStore, Index, RepoKey, SqliteIndex};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::oci::{ErrorCode, RegistryError, RepoName};
use crate::upstream::{Upstream, UpstreamError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a request goes: an upstream and the repository name on it.
#[derive(Clone)]
pub struct Target {
    /// The upstream registry.
    pub upstream: Arc<Upstream>,
    /// The repository as the upstream names it (`library/` applied for Docker Hub).
    pub repo: RepoName,
}

impl Target {
    /// The index key of this repository.
    pub fn key(&self) -> RepoKey {
        RepoKey {
            upstream: self.upstream.name.clone(),
            name: self.repo.to_string(),
        }
    }
}

/// How a manifest or tag answer was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from cache without asking upstream.
    Hit,
    /// Fetched from upstream now.
    Miss,
    /// Upstream confirmed the cached answer.
    Revalidated,
    /// Upstream failed or was too slow; the cached answer was served anyway.
    Stale,
    /// Served from cache at once; revalidation runs in the background (stale-while-revalidate).
    Revalidating,
}

impl CacheStatus {
    /// Label for headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Revalidated => "revalidated",
            CacheStatus::Stale => "stale",
            CacheStatus::Revalidating => "revalidating",
        }
    }
}

/// The cache: store, index, upstream clients and the in-flight work.
pub struct Registry {
    /// Upstreams by configured name.
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// Verified bytes.
    pub store: Arc<dyn BlobStore>,
    /// What the bytes mean.
    pub index: Arc<dyn Index>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    manifests: manifests::ManifestCache,
    blobs: fill::Fills,
    /// Pull statistics waiting to be written.
    pub pulls: pulls::PullRecorder,
    /// Digests served or referenced lately (GC keeps them).
    pub touched: touched::Touched,
    /// Vulnerability scanner (scan on cache, pull gate, stored findings).
    pub scanner: Arc<crate::scan::Scanner>,
}

impl Registry {
    /// Opens the store and index under the configured root and builds the upstream clients.
    pub fn open(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let root = &settings.storage.root;
        let store = FsStore::open(root)
            .map_err(|e| format!("cannot open blob store at {}: {e}", root.display()))?;
        let index = SqliteIndex::open(&root.join("index.sqlite"))
            .map_err(|e| format!("cannot open index at {}: {e}", root.display()))?;
        let index: Arc<dyn Index> = Arc::new(index);
        let scanner = crate::scan::Scanner::open(
            &settings.scan,
            &root.join("index.sqlite"),
            index.clone(),
            &metrics,
        )
        .map_err(|e| format!("cannot open scan tables at {}: {e}", root.display()))?;
        let m = metrics.clone();
        store.observe_usage(Box::new(move |u| m.report_store_usage(u)));
        let upstreams = settings
            .upstreams
            .iter()
            .map(|(name, u)| {
                (
                    name.clone(),
                    Arc::new(Upstream::new(name, u.clone(), metrics.clone())),
                )
            })
            .collect();
        Ok(Registry {
            upstreams,
            store: Arc::new(store),
            index,
            scanner: Arc::new(scanner),
            metrics,
            manifests: manifests::ManifestCache::new(),
            blobs: fill::Fills::default(),
            pulls: pulls::PullRecorder::default(),
            touched: touched::Touched::default(),
        })
    }

    /// Whether a fill of `digest` is running now.
    pub fn is_filling(&self, digest: &crate::oci::Digest) -> bool {
        self.blobs.contains(digest)
    }

    /// Forgets expired manifests and removed tags (repository, tag) held in memory.
    pub fn forget_cached(&self, digests: &[crate::oci::Digest], tags: &[(RepoKey, String)]) {
        let keys: Vec<(String, String, String)> = tags
            .iter()
            .map(|(r, t)| (r.upstream.clone(), r.name.clone(), t.clone()))
            .collect();
        self.manifests.forget(digests, &keys);
    }

    fn fill_context(&self) -> fill::FillContext {
        fill::FillContext {
            store: self.store.clone(),
            index: self.index.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// Runs blocking index or store work off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        RegistryError::new(ErrorCode::Unavailable, format!("internal task failed: {e}"))
    })
}

/// An internal (storage) failure as clients see it.
pub fn internal(what: impl std::fmt::Display) -> RegistryError {
    tracing::error!("internal error: {what}");
    RegistryError::new(
        ErrorCode::Unavailable,
        format!("cache storage error: {what}"),
    )
}

/// Maps an upstream failure to what the client is told, naming the upstream.
pub fn upstream_error(e: &UpstreamError, not_found: ErrorCode) -> RegistryError {
    let code = match e {
        UpstreamError::Status { status: 404, .. } => not_found,
        // Docker Hub answers a missing repository with 401 insufficient_scope: to a client of
        // the cache that is "not found (or not yours)".
        UpstreamError::Status {
            status: 401 | 403, ..
        } => ErrorCode::NameUnknown,
        UpstreamError::Status { status: 429, .. } => ErrorCode::TooManyRequests,
        UpstreamError::Status { status: 400, .. } => not_found,
        UpstreamError::Invalid { .. } => ErrorCode::ManifestInvalid,
        _ => ErrorCode::Unavailable,
    };
    RegistryError::new(code, e.to_string())
}
