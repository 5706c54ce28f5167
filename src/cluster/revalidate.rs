//! One upstream revalidation of an expired tag for the whole cluster. When a tag's TTL runs out
//! on several replicas at once, each finds the shared record expired; a short lease per
//! (upstream, repository, tag) in the database picks the one that asks upstream, and the others
//! poll the shared record briefly for its answer. The lease only saves upstream requests: a
//! replica that cannot ask for it, or whose wait runs out, revalidates by itself.

use super::Cluster;
use crate::cache::{Index, RepoKey, TagRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a revalidation lease lasts unless released: a HEAD's worth, with margin.
const LEASE_TTL: Duration = Duration::from_secs(5);
/// How long a replica waits for another one's revalidation before doing its own.
const WAIT: Duration = Duration::from_secs(2);
/// How often a waiting replica reads the shared record.
const POLL: Duration = Duration::from_millis(100);

/// Whose turn it is to revalidate a tag.
pub enum TagTurn {
    /// This replica's: revalidate, then drop the lease (`None` when the database could not be
    /// asked: revalidate anyway).
    Mine(Option<TagLease>),
    /// Another replica is revalidating: wait for its answer with [`Cluster::await_tag`].
    Another,
}

/// A held revalidation lease, released when dropped (after the record was written).
pub struct TagLease {
    cluster: Arc<Cluster>,
    repo: RepoKey,
    tag: String,
}

impl Cluster {
    /// Takes the revalidation lease of `tag` in `repo`, or learns another replica holds it.
    pub async fn tag_turn(self: &Arc<Self>, repo: &RepoKey, tag: &str) -> TagTurn {
        let (ix, r, t, node) = (
            self.index.clone(),
            repo.clone(),
            tag.to_string(),
            self.node().to_string(),
        );
        let taken =
            tokio::task::spawn_blocking(move || ix.take_tag_lease(&r, &t, &node, LEASE_TTL)).await;
        match taken {
            Ok(Ok(true)) => TagTurn::Mine(Some(TagLease {
                cluster: self.clone(),
                repo: repo.clone(),
                tag: tag.to_string(),
            })),
            Ok(Ok(false)) => TagTurn::Another,
            Ok(Err(e)) => {
                tracing::warn!(repository = %repo.name, tag, "cannot take the tag lease, revalidating anyway: {e}");
                TagTurn::Mine(None)
            }
            Err(_) => TagTurn::Mine(None),
        }
    }

    /// Polls the shared record of `tag` until a replica confirmed it after `after_ms`, for up to
    /// [`WAIT`]; `None` when none did in time (or the record went away).
    pub async fn await_tag(
        &self,
        index: Arc<dyn Index>,
        repo: &RepoKey,
        tag: &str,
        after_ms: i64,
    ) -> Option<TagRecord> {
        let deadline = Instant::now() + WAIT;
        loop {
            tokio::time::sleep(POLL).await;
            let (ix, r, t) = (index.clone(), repo.clone(), tag.to_string());
            if let Ok(Ok(Some(rec))) = tokio::task::spawn_blocking(move || ix.tag(&r, &t)).await {
                if rec.confirmed_at_ms > after_ms {
                    return Some(rec);
                }
            }
            if Instant::now() >= deadline {
                tracing::info!(repository = %repo.name, tag, "no revalidation from the lease holder in time; revalidating here");
                return None;
            }
        }
    }
}

impl Drop for TagLease {
    fn drop(&mut self) {
        let (ix, repo, tag, node) = (
            self.cluster.index.clone(),
            self.repo.clone(),
            std::mem::take(&mut self.tag),
            self.cluster.node().to_string(),
        );
        // Dropped on the request path: release off the async threads; if that is not possible
        // the lease simply expires.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn_blocking(move || {
                if let Err(e) = ix.release_tag_lease(&repo, &tag, &node) {
                    tracing::debug!("cannot release the tag lease (it will expire): {e}");
                }
            });
        }
    }
}
