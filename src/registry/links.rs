//! Repository scoping: a blob or a manifest by digest is served for `<upstream>/<name>` only when
//! the index links the digest to that repository (fetched for it, or referenced by a manifest
//! cached for it). Otherwise upstream must first confirm, with that repository's credentials,
//! that it holds the digest there; knowing a digest is never enough to read private content.

use super::{blocking, internal, upstream_error, Registry, Target};
use crate::oci::{Digest, ErrorCode, Reference, RegistryError};

/// What kind of content a digest names, for the upstream check and the error code.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Content {
    /// A blob (layer or config).
    Blob,
    /// A manifest or index.
    Manifest,
}

/// Positive link decisions kept in memory; negatives are always asked again.
pub(super) struct LinkCache(moka::sync::Cache<(crate::cache::RepoKey, Digest), ()>);

impl Default for LinkCache {
    fn default() -> Self {
        LinkCache(moka::sync::Cache::new(200_000))
    }
}

impl Registry {
    /// Whether the index links `digest` to the target's repository.
    pub(super) async fn is_linked(
        &self,
        t: &Target,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        let key = (t.key(), digest.clone());
        if self.links.0.contains_key(&key) {
            return Ok(true);
        }
        let index = self.index.clone();
        let (k, d) = (key.0.clone(), key.1.clone());
        let linked = blocking(move || index.linked(&k, &d))
            .await?
            .map_err(internal)?;
        if linked {
            self.links.0.insert(key, ());
        }
        Ok(linked)
    }

    /// Records that upstream holds `digest` in the target's repository.
    pub(super) async fn record_link(
        &self,
        t: &Target,
        digest: &Digest,
    ) -> Result<(), RegistryError> {
        let index = self.index.clone();
        let (k, d) = (t.key(), digest.clone());
        blocking(move || index.link(&k, &d, crate::now_ms()))
            .await?
            .map_err(internal)?;
        self.links.0.insert((t.key(), digest.clone()), ());
        Ok(())
    }

    /// Asks upstream whether the target's repository holds `digest` (a HEAD with that
    /// repository's credentials) and links it when it does. Returns the size upstream gave.
    pub(super) async fn confirm_upstream(
        &self,
        t: &Target,
        digest: &Digest,
        content: Content,
    ) -> Result<Option<u64>, RegistryError> {
        let unknown = match content {
            Content::Blob => ErrorCode::BlobUnknown,
            Content::Manifest => ErrorCode::ManifestUnknown,
        };
        let size = match content {
            Content::Blob => {
                t.upstream
                    .blob_size(&t.repo, digest, t.client_credentials())
                    .await
            }
            Content::Manifest => t
                .upstream
                .manifest(
                    &t.repo,
                    &Reference::Digest(digest.clone()),
                    true,
                    t.client_credentials(),
                )
                .await
                .map(|m| m.size),
        };
        match size {
            Ok(size) => {
                self.metrics
                    .link_checks
                    .with_label_values(&["confirmed"])
                    .inc();
                self.record_link(t, digest).await?;
                Ok(size)
            }
            Err(e) => {
                self.metrics
                    .link_checks
                    .with_label_values(&["refused"])
                    .inc();
                let mut err = upstream_error(&e, unknown);
                if matches!(
                    err.code,
                    ErrorCode::BlobUnknown | ErrorCode::ManifestUnknown | ErrorCode::NameUnknown
                ) {
                    err = RegistryError::new(
                        unknown,
                        format!(
                            "{digest} is not known in repository {} of upstream {} ({e})",
                            t.repo, t.upstream.name
                        ),
                    );
                }
                Err(err)
            }
        }
    }

    /// Ok when `digest` may be served for the target: linked, or confirmed upstream now.
    pub(super) async fn ensure_linked(
        &self,
        t: &Target,
        digest: &Digest,
        content: Content,
    ) -> Result<(), RegistryError> {
        if self.is_linked(t, digest).await? {
            return Ok(());
        }
        self.confirm_upstream(t, digest, content).await.map(|_| ())
    }
}
