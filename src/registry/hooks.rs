//! How the scanner and the registry reach each other without either owning the other: the
//! scanner reads images through an [`ImageSource`] (implemented here over the registry), and
//! the registry calls back through [`ManifestHooks`] (implemented by the scan service). main
//! wires both, so the registry never names the scanner and the scanner never names `Registry`.

use super::blobs::BlobSource;
use super::manifests::CachedManifest;
use super::{Registry, Target};
use crate::oci::manifest::Accept;
use crate::oci::{Digest, Reference, RegistryError, RepoName};
use async_trait::async_trait;
use std::sync::Arc;

/// What a scanner reads of cached images: manifests and blob bytes, served from the cache or
/// fetched through its usual single-flight fills (which cache them as a client pull would).
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Where `<upstream>/<repo>` is pulled from; `None` for an upstream not configured.
    fn target(&self, upstream: &str, repo: RepoName) -> Option<Target>;
    /// The configured upstream names.
    fn upstream_names(&self) -> Vec<String>;
    /// The manifest `reference` names in `t`, cached or fetched now (any media type).
    async fn manifest(
        &self,
        t: &Target,
        reference: &Reference,
    ) -> Result<Arc<CachedManifest>, RegistryError>;
    /// The blob's bytes: stored, or the (joined or new) fill fetching them.
    async fn blob(&self, t: &Target, digest: &Digest) -> Result<BlobSource, RegistryError>;
    /// Whether the blob store holds `digest` now (blocking; no upstream traffic).
    fn is_stored(&self, digest: &Digest) -> bool;
    /// Counts a pull of manifest `digest` from `t`, as a client's GET would (prefetch).
    fn record_pull(&self, t: &Target, digest: &Digest);
}

/// What the gate decided about a manifest about to be served.
#[derive(Debug)]
pub enum Verdict {
    /// Serve it.
    Allow,
    /// Serve it with this `X-Breakwater-Scan` header value.
    Warn(String),
    /// Answer with this error (403 `DENIED`).
    Deny(RegistryError),
}

/// Callbacks the registry makes around manifests (the vulnerability scanner implements them).
#[async_trait]
pub trait ManifestHooks: Send + Sync {
    /// A manifest was cached for the first time (must not block: start work in the background).
    fn on_cached(&self, t: &Target, m: &Arc<CachedManifest>);
    /// The pull gate: judges a manifest about to be served from `t`.
    async fn gate(&self, t: &Target, m: &CachedManifest) -> Verdict;
}

impl Registry {
    /// This registry as the scanner's image source.
    pub fn image_source(self: &Arc<Self>) -> Arc<dyn ImageSource> {
        Arc::new(Source(self.clone()))
    }

    /// The pull gate's verdict on `m` (allowed when no gate is installed).
    pub async fn gate(&self, t: &Target, m: &CachedManifest) -> Verdict {
        match self.hooks.get() {
            Some(h) => h.gate(t, m).await,
            None => Verdict::Allow,
        }
    }

    /// Tells the hooks that `m` was just cached.
    pub(super) fn cached(&self, t: &Target, m: &Arc<CachedManifest>) {
        if let Some(h) = self.hooks.get() {
            h.on_cached(t, m);
        }
    }
}

// The registry's async operations take `&Arc<Self>` (they spawn work that outlives the call).
struct Source(Arc<Registry>);

#[async_trait]
impl ImageSource for Source {
    fn target(&self, upstream: &str, repo: RepoName) -> Option<Target> {
        self.0.target(upstream, repo)
    }

    fn upstream_names(&self) -> Vec<String> {
        self.0.upstreams.keys().cloned().collect()
    }

    async fn manifest(
        &self,
        t: &Target,
        reference: &Reference,
    ) -> Result<Arc<CachedManifest>, RegistryError> {
        Ok(self
            .0
            .manifest(t, reference, &Accept::parse([]))
            .await?
            .manifest)
    }

    async fn blob(&self, t: &Target, digest: &Digest) -> Result<BlobSource, RegistryError> {
        self.0.blob(t, digest).await
    }

    fn is_stored(&self, digest: &Digest) -> bool {
        matches!(self.0.store.stat(digest), Ok(Some(_)))
    }

    fn record_pull(&self, t: &Target, digest: &Digest) {
        self.0.record_pull(t.key(), digest.clone());
    }
}
