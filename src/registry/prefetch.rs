//! Prefetch: when an image manifest is served, start fills for its config and layers in the
//! background, so the client's blob requests join fills already running. For an index, only the
//! configured platforms are followed (the client's own choice arrives as a child-manifest GET,
//! which prefetches that image).

use super::manifests::CachedManifest;
use super::{Registry, Target};
use crate::oci::manifest::{self, RefKind};
use std::sync::Arc;

impl Registry {
    /// Starts background fills for what `m` points at, if the upstream enables prefetch.
    pub fn prefetch(self: &Arc<Self>, t: &Target, m: &Arc<CachedManifest>) {
        if !t.upstream.settings.prefetch {
            return;
        }
        let (this, t, m) = (self.clone(), t.clone(), m.clone());
        tokio::spawn(async move { this.prefetch_manifest(&t, &m, true).await });
    }

    async fn prefetch_manifest(
        self: &Arc<Self>,
        t: &Target,
        m: &CachedManifest,
        follow_index: bool,
    ) {
        let Ok(refs) = manifest::references(&m.media_type, &m.bytes) else {
            return;
        };
        if manifest::is_index(&m.media_type) {
            if !follow_index {
                return;
            }
            let wanted = &t.upstream.settings.prefetch_platforms;
            for r in refs.iter().filter(|r| r.kind == RefKind::Manifest) {
                if r.platform.as_ref().is_some_and(|p| wanted.contains(p)) {
                    if let Ok((child, _)) = self.manifest_by_digest(t, &r.digest).await {
                        Box::pin(self.prefetch_manifest(t, &child, false)).await;
                    }
                }
            }
            return;
        }
        for r in refs.iter().filter(|r| r.kind != RefKind::Manifest) {
            let (store, d) = (self.store.clone(), r.digest.clone());
            let stored = tokio::task::spawn_blocking(move || store.stat(&d))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten();
            if stored.is_some() {
                continue;
            }
            let ctx = self.fill_context();
            match self.blobs.join_or_start(
                &ctx,
                t.upstream.clone(),
                t.repo.clone(),
                &r.digest,
                t.client.clone(),
            ) {
                Ok((_, true)) => self.metrics.prefetches.inc(),
                Ok(_) => {}
                Err(e) => tracing::warn!(digest = %r.digest, "prefetch could not start: {e}"),
            }
        }
    }
}
