//! Registry operations over the cache: what a manifest, blob, tag-list or catalog request means,
//! decided from the index, the store and (on a miss or an expired tag) the upstream. No HTTP here:
//! the server module turns requests into these calls and their answers into responses.

mod acceptance;
pub mod blobs;
pub mod fill;
pub mod flight;
pub mod handle;
pub mod hooks;
mod links;
pub mod manifests;
pub mod prefetch;
pub mod pulls;
pub mod referrers;
pub mod tags;
pub mod touched;

use crate::cache::store::S3Store;
use crate::cache::{BlobStore, FsStore, Index, PgIndex, RepoKey, SqliteIndex};
use crate::config::storage::StorageBackend;
use crate::config::IndexBackend;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::oci::{ErrorCode, RegistryError, RepoName};
use crate::upstream::{Upstream, UpstreamError};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

pub use handle::CacheHandle;
pub use hooks::{ImageSource, ManifestHooks, Verdict};

/// Where a request goes: an upstream and the repository name on it.
#[derive(Clone)]
pub struct Target {
    /// The upstream registry.
    pub upstream: Arc<Upstream>,
    /// The repository as the upstream names it (`library/` applied for Docker Hub).
    pub repo: RepoName,
    /// Whether this request may cause upstream fetches (the access rules' `fill` action); when
    /// not, only what is cached is served.
    pub may_fill: bool,
    /// The client's own credentials, used on a `credentials = "client"` upstream.
    pub client: Option<Arc<crate::config::Credentials>>,
    /// Read by breakwater itself (scanner, lifecycle), not for a client: no client's upstream
    /// acceptance is needed.
    pub internal: bool,
}

impl Target {
    /// The credentials to hand the upstream client for this request.
    pub fn client_credentials(&self) -> Option<&crate::config::Credentials> {
        self.client.as_deref()
    }
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

/// The cache: store, index, upstream clients and the in-flight work. Its parts stay private:
/// the server calls its operations, the lifecycle gets a [`CacheHandle`], the scanner an
/// [`ImageSource`], and the scanner plugs back in through [`ManifestHooks`].
pub struct Registry {
    upstreams: BTreeMap<String, Arc<Upstream>>,
    store: Arc<dyn BlobStore>,
    /// Whether stored blobs are answered with a redirect to the store (presigned URLs).
    redirects: bool,
    /// `storage.max_blob_bytes`: no fill accepts more.
    max_blob_bytes: Option<u64>,
    index: Arc<dyn Index>,
    metrics: Arc<Metrics>,
    manifests: Arc<manifests::ManifestCache>,
    blobs: Arc<fill::Fills>,
    pulls: Arc<pulls::PullRecorder>,
    touched: Arc<touched::Touched>,
    links: links::LinkCache,
    referrers_state: referrers::ReferrersState,
    acceptance: acceptance::Acceptance,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    // Set once by main after the scanner is built (it needs this registry as its image source).
    hooks: OnceLock<Arc<dyn ManifestHooks>>,
}

impl Registry {
    /// Opens the store and index under the configured root and builds the upstream clients.
    pub fn open(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let root = &settings.storage.root;
        let m = metrics.clone();
        let observer: crate::cache::store::UsageObserver =
            Box::new(move |u| m.report_store_usage(u));
        let store: Arc<dyn BlobStore> = match &settings.storage.backend {
            StorageBackend::Filesystem => {
                let s = FsStore::open(root)
                    .map_err(|e| format!("cannot open blob store at {}: {e}", root.display()))?;
                s.observe_usage(observer);
                Arc::new(s)
            }
            StorageBackend::S3(cfg) => {
                // Fills stage under the root, beside the index; only verified blobs go up.
                let s = S3Store::open(cfg, root)
                    .map_err(|e| format!("cannot open bucket {}: {e}", cfg.bucket))?;
                s.observe_usage(observer);
                Arc::new(s)
            }
        };
        let mut cluster_index: Option<Arc<dyn breakwater_store::ClusterIndex>> = None;
        let index: Arc<dyn Index> = match &settings.storage.index {
            IndexBackend::Sqlite => Arc::new(
                SqliteIndex::open(&root.join("index.sqlite"))
                    .map_err(|e| format!("cannot open index at {}: {e}", root.display()))?,
            ),
            IndexBackend::Postgres(pg) => {
                let pg = Arc::new(PgIndex::open(pg).map_err(|e| {
                    let url = breakwater_store::pg::redact(&pg.url);
                    format!("cannot open the PostgreSQL index at {url}: {e}")
                })?);
                cluster_index = Some(pg.clone());
                pg
            }
        };
        let cluster = match (&settings.cluster, cluster_index) {
            (Some(c), Some(ix)) => Some(Arc::new(crate::cluster::Cluster::new(
                c.clone(),
                ix,
                metrics.clone(),
            )?)),
            (Some(_), None) => return Err("[cluster] needs the PostgreSQL index".into()),
            (None, _) => None,
        };
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
            store,
            redirects: matches!(&settings.storage.backend, StorageBackend::S3(c) if c.redirect_ttl.is_some()),
            max_blob_bytes: settings.storage.max_blob_bytes,
            index,
            metrics,
            manifests: Arc::new(manifests::ManifestCache::new()),
            blobs: Arc::default(),
            pulls: Arc::default(),
            touched: Arc::default(),
            links: links::LinkCache::default(),
            referrers_state: referrers::ReferrersState::default(),
            acceptance: acceptance::Acceptance::new(
                settings
                    .access
                    .as_ref()
                    .map_or(std::time::Duration::from_secs(300), |a| {
                        a.client_credentials_ttl
                    }),
            ),
            hooks: OnceLock::new(),
            cluster,
        })
    }

    /// Installs the manifest hooks (scan on cache, pull gate); only the first call counts. The
    /// hooks may hold this registry (the scanner reads through it): both live as long as the
    /// process, so the reference cycle is never meant to be dropped.
    pub fn set_hooks(&self, hooks: Arc<dyn ManifestHooks>) {
        if self.hooks.set(hooks).is_err() {
            tracing::warn!("manifest hooks were already installed; the second set is ignored");
        }
    }

    /// What the lifecycle service (policies, quota, GC) and the pull-statistics flusher may
    /// reach of the live cache.
    pub fn cache_handle(&self) -> CacheHandle {
        CacheHandle::new(
            self.store.clone(),
            self.index.clone(),
            self.metrics.clone(),
            self.touched.clone(),
            self.pulls.clone(),
            self.manifests.clone(),
            self.blobs.clone(),
            self.upstreams.keys().cloned().collect(),
        )
        .with_leases(self.cluster.as_ref())
    }

    /// The configured upstreams by name.
    pub fn upstreams(&self) -> &BTreeMap<String, Arc<Upstream>> {
        &self.upstreams
    }

    /// Where `<upstream>/<repo>` is pulled from, for breakwater's own reads (scanner, lifecycle);
    /// `None` for an upstream not configured.
    pub fn target(&self, upstream: &str, repo: RepoName) -> Option<Target> {
        let upstream = self.upstreams.get(upstream)?.clone();
        Some(Target {
            upstream,
            repo,
            may_fill: true,
            client: None,
            internal: true,
        })
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Notes one pull of `digest` from `repo` (written to the index in batches).
    pub fn record_pull(&self, repo: RepoKey, digest: crate::oci::Digest) {
        self.pulls.record(repo, digest);
    }

    /// Notes one pull of `digest` from the target's repository (no allocation when it was
    /// pulled there before, since the last batch).
    pub fn record_pull_of(&self, t: &Target, digest: &crate::oci::Digest) {
        self.pulls
            .record_ref(&t.upstream.name, t.repo.as_str(), digest);
    }

    /// Records an audit event (an access denial) without holding up the request.
    pub fn audit(&self, event: crate::cache::Event) {
        let index = self.index.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = index.record_events(std::slice::from_ref(&event)) {
                tracing::warn!("cannot record audit event: {e}");
            }
        });
    }

    /// Whether a fill of `digest` is running now.
    pub fn is_filling(&self, digest: &crate::oci::Digest) -> bool {
        self.blobs.contains(digest)
    }

    fn fill_context(&self) -> fill::FillContext {
        fill::FillContext {
            store: self.store.clone(),
            index: self.index.clone(),
            metrics: self.metrics.clone(),
            cluster: self.cluster.clone(),
            max_blob_bytes: self.max_blob_bytes,
        }
    }

    /// The cluster view, when `[cluster]` is on.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.as_ref()
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

/// The answer when content is not cached and the request may not fetch it from upstream.
pub fn fill_denied(t: &Target, what: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(
        ErrorCode::Denied,
        format!(
            "{what} of {}/{} is not cached, and this client may not fill it from upstream (action fill denied)",
            t.upstream.name, t.repo
        ),
    )
}
