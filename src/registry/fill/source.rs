//! Where a fill's bytes come from: upstream, or, in a cluster, the replica holding the digest's
//! fill lease (its peer endpoint relays that replica's running fill). When the holder fails
//! mid-stream or dies, this replica takes the lease and resumes from upstream with `Range`
//! from the bytes it already has: the fill's hasher and staging simply continue. When a peer's
//! bytes fail verification (its stored copy rotted), they are discarded and this replica takes
//! the lease from that peer and fetches the blob from upstream.

use crate::cluster::{Claim, Cluster, LeaseGuard};
use crate::config::Credentials;
use crate::oci::{Digest, RepoName};
use crate::upstream::{Upstream, UpstreamError};
use breakwater_store::cluster::LeaseHolder;
use std::sync::Arc;
use std::time::Instant;

/// The byte source of one fill, and the lease it holds if any.
pub(super) struct Source {
    cluster: Option<Arc<Cluster>>,
    /// `Some`: streaming from that peer; `None`: from upstream.
    peer: Option<LeaseHolder>,
    guard: Option<LeaseGuard>,
    /// The node id of the last peer that sent bytes; taken when its bytes are refused.
    sent_by: Option<String>,
}

impl Source {
    /// Decides the source: upstream on a single node or when the lease is ours (or the
    /// database cannot be asked: correctness comes from the digest, the lease only saves
    /// upstream fetches), else the holder's peer endpoint.
    pub(super) async fn choose(cluster: Option<Arc<Cluster>>, digest: &Digest) -> Source {
        let mut s = Source {
            cluster,
            peer: None,
            guard: None,
            sent_by: None,
        };
        let Some(c) = s.cluster.clone() else {
            return s;
        };
        match c.claim(digest).await {
            Ok(Claim::Owner) => {
                c.count_fill("upstream");
                s.guard = Some(c.hold(digest));
            }
            Ok(Claim::Peer(holder)) => {
                tracing::debug!(%digest, owner = %holder.owner, "filling from the lease holder");
                c.count_fill("peer");
                s.peer = Some(holder);
            }
            Err(e) => {
                tracing::warn!(%digest, "cannot take the fill lease, fetching upstream: {e}");
                c.count_fill("upstream");
            }
        }
        s
    }

    /// Whether bytes come from a peer now.
    pub(super) fn is_peer(&self) -> bool {
        self.peer.is_some()
    }

    /// A response with the blob from byte `from` (a peer failing is recovered from here).
    pub(super) async fn fetch(
        &mut self,
        upstream: &Upstream,
        (repo, client): (&RepoName, Option<&Credentials>),
        digest: &Digest,
        from: u64,
    ) -> Result<reqwest::Response, UpstreamError> {
        let (Some(c), Some(holder)) = (self.cluster.clone(), self.peer.as_ref()) else {
            return upstream.blob(repo, digest, from, client).await;
        };
        match c.peer_blob(holder, digest, from).await {
            Ok(r) => {
                self.sent_by = Some(holder.owner.clone());
                Ok(r)
            }
            Err(e) => {
                c.count_peer_failure("unavailable");
                tracing::info!(%digest, from, "peer failed ({e}); trying the lease");
                self.recover(&c, e, upstream, (repo, client), digest, from)
                    .await
            }
        }
    }

    /// The holder failed: take the lease once it expires (then fetch upstream), or follow a
    /// new holder, for up to three lease TTLs.
    async fn recover(
        &mut self,
        c: &Arc<Cluster>,
        mut last: UpstreamError,
        upstream: &Upstream,
        (repo, client): (&RepoName, Option<&Credentials>),
        digest: &Digest,
        from: u64,
    ) -> Result<reqwest::Response, UpstreamError> {
        let ttl = c.settings.lease_ttl;
        let deadline = Instant::now() + ttl * 3;
        loop {
            match c.claim(digest).await {
                Ok(Claim::Owner) => {
                    tracing::info!(%digest, from, "took over the fill lease; resuming from upstream");
                    c.count_fill("takeover");
                    self.peer = None;
                    self.guard = Some(c.hold(digest));
                    return upstream.blob(repo, digest, from, client).await;
                }
                Ok(Claim::Peer(holder)) => {
                    match c.peer_blob(&holder, digest, from).await {
                        Ok(r) => {
                            self.sent_by = Some(holder.owner.clone());
                            self.peer = Some(holder);
                            return Ok(r);
                        }
                        Err(e) => last = e,
                    }
                    self.peer = Some(holder);
                }
                Err(e) => tracing::warn!(%digest, "cannot ask for the fill lease: {e}"),
            }
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(ttl / 4).await;
        }
    }

    /// The fill's bytes hashed to `got`, not `digest`. When a peer sent (some of) them: counts
    /// and logs it, takes the lease from that peer and returns `true`: the caller discards every
    /// byte and fetches again, from upstream only. `false`: upstream's own bytes were bad (or a
    /// peer's already were once): the fill fails.
    pub(super) async fn refuse_peer(&mut self, digest: &Digest, got: &Digest) -> bool {
        let (Some(c), Some(peer)) = (self.cluster.clone(), self.sent_by.take()) else {
            return false;
        };
        c.count_peer_failure("digest_mismatch");
        tracing::warn!(%digest, %got, %peer, "bytes from peer did not match the digest; discarded, refetching from upstream");
        self.peer = None;
        match c.take_over_from(digest, &peer).await {
            Ok(true) => {
                c.count_fill("takeover");
                if self.guard.is_none() {
                    self.guard = Some(c.hold(digest));
                }
            }
            // Another replica holds it now: fetch anyway, the digest decides.
            Ok(false) => {}
            Err(e) => tracing::warn!(%digest, "cannot take the fill lease, fetching upstream: {e}"),
        }
        true
    }

    /// Releases the lease, if held (see [`LeaseGuard::finish`]).
    pub(super) async fn finish(self, committed: bool) {
        if let Some(g) = self.guard {
            g.finish(committed).await;
        }
    }
}
