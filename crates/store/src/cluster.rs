//! What several replicas share beyond the index: fill leases (one upstream fetch per digest
//! across the cluster), job leases (one replica at a time runs lifecycle, quota and GC), tag
//! revalidation leases (one upstream HEAD when a tag expires on several replicas at once) and
//! membership heartbeats. Only PostgreSQL implements it: a cluster needs a shared database.
//!
//! Expiry is judged by the database's clock (`now()`), so replicas' clocks need not agree.

use crate::index::{IndexError, RepoKey};
use crate::oci::Digest;
use serde::Serialize;
use std::time::Duration;

type Result<T> = std::result::Result<T, IndexError>;

/// Who holds a fill lease, as seen by the replica that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's node id.
    pub owner: String,
    /// Where the holder's peer endpoint is reached.
    pub peer_url: String,
}

/// A fill lease, for status and GC.
#[derive(Debug, Clone, Serialize)]
pub struct FillLease {
    /// The digest being filled.
    pub digest: Digest,
    /// The holder's node id.
    pub owner: String,
    /// Where the holder serves the bytes to peers.
    pub peer_url: String,
    /// Milliseconds until the lease expires unless renewed.
    pub expires_in_ms: i64,
}

/// A replica that registered.
#[derive(Debug, Clone, Serialize)]
pub struct Member {
    /// The node id.
    pub node: String,
    /// Where its peer endpoint is reached.
    pub peer_url: String,
    /// When it first registered (ms since the epoch).
    pub started_at_ms: i64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: i64,
}

/// A job lease's holder.
#[derive(Debug, Clone, Serialize)]
pub struct JobLease {
    /// The job (`lifecycle`, …).
    pub name: String,
    /// The holder's node id.
    pub owner: String,
    /// Milliseconds until the lease expires unless renewed.
    pub expires_in_ms: i64,
}

/// Leases and membership in the shared database.
pub trait ClusterIndex: Send + Sync + 'static {
    /// Takes the fill lease of `digest` for `node` when it is free, expired or already
    /// `node`'s (atomically); returns the holder afterwards (`node` itself when taken).
    fn take_fill_lease(
        &self,
        digest: &Digest,
        node: &str,
        peer_url: &str,
        ttl: Duration,
    ) -> Result<LeaseHolder>;
    /// Takes the fill lease of `digest` for `node` even while `from` holds it (its bytes failed
    /// verification), or when free, expired or `node`'s; `false` when a third replica holds it.
    fn take_fill_lease_from(
        &self,
        digest: &Digest,
        node: &str,
        peer_url: &str,
        from: &str,
        ttl: Duration,
    ) -> Result<bool>;
    /// Extends `node`'s lease of `digest` by `ttl`; `false` when `node` no longer holds it.
    fn renew_fill_lease(&self, digest: &Digest, node: &str, ttl: Duration) -> Result<bool>;
    /// Ends `node`'s lease of `digest` after `linger` (zero: now). A lingering lease keeps
    /// pointing late replicas at the holder's copy and keeps GC away from the digest.
    fn release_fill_lease(&self, digest: &Digest, node: &str, linger: Duration) -> Result<()>;
    /// The fill leases that have not expired.
    fn live_fill_leases(&self) -> Result<Vec<FillLease>>;
    /// Takes (or renews) the lease of job `name` for `node`; `false` when another node holds it.
    fn take_job_lease(&self, name: &str, node: &str, ttl: Duration) -> Result<bool>;
    /// Ends `node`'s lease of job `name`.
    fn release_job_lease(&self, name: &str, node: &str) -> Result<()>;
    /// The job leases that have not expired.
    fn live_job_leases(&self) -> Result<Vec<JobLease>>;
    /// Takes the revalidation lease of `tag` in `repo` for `node` when it is free, expired or
    /// already `node`'s; `false` when another replica holds it (and is asking upstream now).
    fn take_tag_lease(&self, repo: &RepoKey, tag: &str, node: &str, ttl: Duration) -> Result<bool>;
    /// Ends `node`'s revalidation lease of `tag` in `repo`.
    fn release_tag_lease(&self, repo: &RepoKey, tag: &str, node: &str) -> Result<()>;
    /// Registers `node` or refreshes its heartbeat.
    fn heartbeat(&self, node: &str, peer_url: &str, started_at_ms: i64) -> Result<()>;
    /// Every registered member, the longest silent last.
    fn members(&self) -> Result<Vec<Member>>;
}
