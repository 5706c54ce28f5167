//! Blobs: served from the store when present, otherwise from the one fill for that digest
//! (read through [`super::fill::FillReader`]).

use super::fill::Fill;
use super::links::Content;
use super::{blocking, fill_denied, internal, Registry, Target};
use crate::cache::store::StoredBlob;
use crate::oci::{Digest, ErrorCode, RegistryError};
use std::sync::Arc;

/// Where a blob's bytes come from.
pub enum BlobSource {
    /// Verified bytes in the store.
    Stored(StoredBlob),
    /// A fill running now (started by this request or joined).
    Filling(Arc<Fill>),
}

impl Registry {
    /// The blob's bytes, from the store or a (joined or new) fill.
    pub async fn blob(
        self: &Arc<Self>,
        t: &Target,
        digest: &Digest,
    ) -> Result<BlobSource, RegistryError> {
        self.ensure_accepted(t).await?;
        // Before opening: a GC delete either comes first (and this fills) or waits its turn.
        self.touched.touch([digest]);
        let linked = self.is_linked(t, digest).await?;
        if let Some(b) = self.stored_blob(digest).await? {
            if !linked {
                self.confirm_upstream(t, digest, Content::Blob).await?;
            }
            return Ok(BlobSource::Stored(b));
        }
        if !t.may_fill {
            return Err(fill_denied(t, format_args!("blob {digest}")));
        }
        let ctx = self.fill_context();
        let (fill, started) = self
            .blobs
            .join_or_start(
                &ctx,
                t.upstream.clone(),
                t.repo.clone(),
                digest,
                t.client.clone(),
            )
            .map_err(internal)?;
        // A fill for this upstream and repository (started here or joined) links it on
        // success and fails every reader otherwise; joining one started for another repository
        // needs upstream's word that this one holds it too.
        if !linked && !started && !fill.fetches_for(&t.upstream.name, &t.repo) {
            self.confirm_upstream(t, digest, Content::Blob).await?;
        }
        tracing::debug!(%digest, started, "blob miss");
        Ok(BlobSource::Filling(fill))
    }

    /// The blob's size for HEAD: from the store, else asked of upstream (no fill started).
    pub async fn blob_size(&self, t: &Target, digest: &Digest) -> Result<u64, RegistryError> {
        self.ensure_accepted(t).await?;
        self.touched.touch([digest]);
        let (store, d) = (self.store.clone(), digest.clone());
        let stored = blocking(move || store.stat(&d)).await?.map_err(internal)?;
        if let Some(size) = stored {
            if self.is_linked(t, digest).await? {
                return Ok(size);
            }
        }
        if stored.is_none() && !t.may_fill {
            return Err(fill_denied(t, format_args!("blob {digest}")));
        }
        match self.confirm_upstream(t, digest, Content::Blob).await? {
            Some(size) => Ok(stored.unwrap_or(size)),
            None => stored.ok_or_else(|| {
                RegistryError::new(
                    ErrorCode::BlobUnknown,
                    format!(
                        "upstream {} gave no size for blob {digest}",
                        t.upstream.name
                    ),
                )
            }),
        }
    }

    /// The stored blob, if the store can be read. A store that cannot be read now (object
    /// storage down) counts as a miss: the client gets verified bytes from upstream instead.
    async fn stored_blob(&self, digest: &Digest) -> Result<Option<StoredBlob>, RegistryError> {
        let (store, d) = (self.store.clone(), digest.clone());
        match blocking(move || store.open(&d)).await? {
            Ok(b) => Ok(b),
            Err(e) => {
                self.metrics.store_errors.with_label_values(&["read"]).inc();
                tracing::warn!(%digest, "blob store read failed, serving from upstream: {e}");
                Ok(None)
            }
        }
    }

    /// Where a client may fetch a stored blob directly (a presigned object-storage URL), when
    /// the store redirects; on failure, `None`: the blob streams through breakwater instead.
    pub async fn blob_redirect(&self, digest: &Digest) -> Option<String> {
        if !self.redirects {
            return None;
        }
        let (store, d) = (self.store.clone(), digest.clone());
        match blocking(move || store.presign(&d)).await {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => {
                self.metrics
                    .store_errors
                    .with_label_values(&["presign"])
                    .inc();
                tracing::warn!(%digest, "cannot presign a blob URL, streaming instead: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// Number of fills running now.
    pub fn fills_running(&self) -> usize {
        self.blobs.len()
    }
}

impl Registry {
    /// For the peer endpoint: this replica's running fill of `digest`, else its stored copy;
    /// `None` when it has neither (no upstream request, no new fill).
    pub async fn local_blob(&self, digest: &Digest) -> Result<Option<BlobSource>, RegistryError> {
        if let Some(f) = self.blobs.get(digest) {
            return Ok(Some(BlobSource::Filling(f)));
        }
        self.touched.touch([digest]);
        Ok(self.stored_blob(digest).await?.map(BlobSource::Stored))
    }
}
