//! Several replicas, one cache: fill leases in the shared database decide which replica fetches
//! a digest from upstream; the others stream the bytes from it over the peer endpoint
//! (`peer.rs`) as they arrive, and take the lease over when it dies. Membership heartbeats and
//! job leases live in `members.rs`. Policy only: the fill (`registry::fill`) uses this as one
//! more byte source, with the same verification by digest.

pub mod jobs;
pub mod members;
pub mod peer_manifest;
pub mod revalidate;

use crate::config::ClusterSettings;
use crate::metrics::Metrics;
use crate::oci::Digest;
use crate::upstream::UpstreamError;
use breakwater_store::cluster::{ClusterIndex, LeaseHolder};
use reqwest::header::{AUTHORIZATION, RANGE};
use std::sync::Arc;
use std::time::Duration;

/// The path prefix of the peer endpoint's blob route.
pub const PEER_BLOBS: &str = "/peer/v1/blobs/";

/// This replica's view of the cluster.
pub struct Cluster {
    /// The `[cluster]` settings.
    pub settings: ClusterSettings,
    /// Leases and membership.
    pub index: Arc<dyn ClusterIndex>,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
    /// When this process started (ms since the epoch), as registered.
    pub started_at_ms: i64,
}

/// Who fetches a digest from upstream.
pub enum Claim {
    /// This replica holds the lease.
    Owner,
    /// Another replica does: stream from it.
    Peer(LeaseHolder),
}

impl Cluster {
    /// The cluster view over `index`.
    pub fn new(
        settings: ClusterSettings,
        index: Arc<dyn ClusterIndex>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // A peer relays its upstream's pace; upstream's own idle timeout is the real guard.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build the peer client: {e}"))?;
        Ok(Cluster {
            settings,
            index,
            metrics,
            http,
            started_at_ms: crate::now_ms(),
        })
    }

    /// This replica's node id.
    pub fn node(&self) -> &str {
        &self.settings.node
    }

    /// Counts a fill by source (`upstream`, `peer`, `takeover`).
    pub fn count_fill(&self, source: &str) {
        self.metrics
            .cluster_fills
            .with_label_values(&[source])
            .inc();
    }

    /// Counts a failed peer fetch by reason (`digest_mismatch`, `unavailable`).
    pub fn count_peer_failure(&self, reason: &str) {
        self.metrics
            .cluster_peer_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// Takes the fill lease of `digest` from `peer`, whose bytes failed verification (or when
    /// free or expired); `false` when yet another replica holds it.
    pub async fn take_over_from(&self, digest: &Digest, peer: &str) -> Result<bool, String> {
        let (ix, d, s, p) = (
            self.index.clone(),
            digest.clone(),
            self.settings.clone(),
            peer.to_string(),
        );
        tokio::task::spawn_blocking(move || {
            ix.take_fill_lease_from(&d, &s.node, &s.peer_url, &p, s.lease_ttl)
        })
        .await
        .map_err(|e| format!("lease task failed: {e}"))?
        .map_err(|e| e.to_string())
    }

    /// Takes the fill lease of `digest`, or learns its holder.
    pub async fn claim(&self, digest: &Digest) -> Result<Claim, String> {
        let (ix, d, s) = (self.index.clone(), digest.clone(), self.settings.clone());
        let holder = tokio::task::spawn_blocking(move || {
            ix.take_fill_lease(&d, &s.node, &s.peer_url, s.lease_ttl)
        })
        .await
        .map_err(|e| format!("lease task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        Ok(if holder.owner == self.settings.node {
            Claim::Owner
        } else {
            Claim::Peer(holder)
        })
    }

    /// Keeps this replica's lease of `digest` renewed until the returned guard is finished or
    /// dropped.
    pub fn hold(self: &Arc<Self>, digest: &Digest) -> LeaseGuard {
        let (me, d) = (self.clone(), digest.clone());
        let every = self.settings.lease_ttl / 3;
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let (ix, d2, node, ttl) = (
                    me.index.clone(),
                    d.clone(),
                    me.settings.node.clone(),
                    me.settings.lease_ttl,
                );
                match tokio::task::spawn_blocking(move || ix.renew_fill_lease(&d2, &node, ttl))
                    .await
                {
                    Ok(Ok(true)) => {}
                    // The digest still decides correctness; another replica may fetch too.
                    Ok(Ok(false)) => {
                        tracing::warn!(digest = %d, "fill lease lost to another replica")
                    }
                    Ok(Err(e)) => tracing::warn!(digest = %d, "cannot renew fill lease: {e}"),
                    Err(_) => {}
                }
            }
        });
        LeaseGuard {
            cluster: self.clone(),
            digest: digest.clone(),
            renewer: Some(renewer),
        }
    }

    /// Asks the holder's peer endpoint for `digest` from byte `from`.
    pub async fn peer_blob(
        &self,
        holder: &LeaseHolder,
        digest: &Digest,
        from: u64,
    ) -> Result<reqwest::Response, UpstreamError> {
        let who = format!("peer {}", holder.owner);
        let url = format!("{}{PEER_BLOBS}{digest}", holder.peer_url);
        let mut req = self.http.get(&url).header(
            AUTHORIZATION,
            format!("Bearer {}", self.settings.secret.secret()),
        );
        if from > 0 {
            req = req.header(RANGE, format!("bytes={from}-"));
        }
        let resp = req.send().await.map_err(|e| UpstreamError::Unreachable {
            upstream: who.clone(),
            reason: crate::upstream::token::describe(&e),
        })?;
        if !resp.status().is_success() {
            return Err(UpstreamError::Status {
                upstream: who,
                status: resp.status().as_u16(),
                code: None,
                message: format!("the peer endpoint answered {}", resp.status()),
                retry_after: None,
            });
        }
        Ok(resp)
    }
}

/// A held fill lease, renewed in the background; released by [`LeaseGuard::finish`] (or left
/// to expire if dropped without it).
pub struct LeaseGuard {
    cluster: Arc<Cluster>,
    digest: Digest,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    /// Stops renewing and releases the lease: after a grace of one lease TTL when the blob was
    /// committed (late replicas stream it from this one, GC elsewhere keeps away), at once
    /// otherwise (another replica may try upstream).
    pub async fn finish(mut self, committed: bool) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        let c = &self.cluster;
        let linger = if committed {
            c.settings.lease_ttl
        } else {
            Duration::ZERO
        };
        let (ix, d, node) = (c.index.clone(), self.digest.clone(), c.node().to_string());
        let released =
            tokio::task::spawn_blocking(move || ix.release_fill_lease(&d, &node, linger)).await;
        if let Ok(Err(e)) = released {
            tracing::warn!(digest = %self.digest, "cannot release fill lease (it will expire): {e}");
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
    }
}
