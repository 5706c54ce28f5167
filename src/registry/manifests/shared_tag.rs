//! An expired tag in a cluster: one replica revalidates it upstream (it holds the tag's
//! revalidation lease), the others use the record it writes to the shared index. Single-node
//! breakwater never gets here with a cluster, so it revalidates as before.

use super::{Registry, Resolved, TagKey};
use crate::cache::TagRecord;
use crate::cluster::revalidate::{TagLease, TagTurn};
use crate::oci::{Reference, RegistryError, Tag};
use crate::registry::{blocking, CacheStatus, Target};
use std::sync::Arc;

/// What the cluster decided about revalidating a tag.
pub(super) enum SharedTag {
    /// Another replica revalidated it: its answer.
    Answered(Resolved),
    /// Ask upstream here, holding the lease until done (`None`: no lease to hold).
    AskUpstream(Option<TagLease>),
}

impl Registry {
    /// Takes the tag's revalidation lease, or waits briefly for the replica holding it.
    pub(super) async fn shared_revalidation(
        self: &Arc<Self>,
        t: &Target,
        tag: &Tag,
        rec: &TagRecord,
        key: &TagKey,
    ) -> Result<SharedTag, RegistryError> {
        let Some(c) = &self.cluster else {
            return Ok(SharedTag::AskUpstream(None));
        };
        let repo = t.key();
        let fresh = match c.tag_turn(&repo, tag.as_str()).await {
            TagTurn::Mine(lease) => {
                // The previous holder may have finished between this replica's read of the
                // shared record and its taking the lease: its answer is as good.
                let (index, k, tg) = (self.index.clone(), repo.clone(), tag.to_string());
                match blocking(move || index.tag(&k, &tg)).await? {
                    Ok(Some(r)) if r.confirmed_at_ms > rec.confirmed_at_ms => r,
                    _ => return Ok(SharedTag::AskUpstream(lease)),
                }
            }
            TagTurn::Another => {
                let wait =
                    c.await_tag(self.index.clone(), &repo, tag.as_str(), rec.confirmed_at_ms);
                match wait.await {
                    Some(r) => r,
                    None => return Ok(SharedTag::AskUpstream(None)),
                }
            }
        };
        self.manifests.tags.insert(key.clone(), fresh.clone());
        let m = match self.local_manifest(&fresh.digest).await? {
            Some(m) => m,
            // The tag moved and this replica lacks the new manifest: fetch it by digest.
            None => {
                let by = Reference::Digest(fresh.digest.clone());
                self.fetch_manifest(t, &by, None).await?
            }
        };
        Ok(SharedTag::Answered((m, CacheStatus::Revalidated)))
    }
}
