//! Background jobs one replica at a time: lifecycle, quota and GC runs take a job lease in the
//! shared database first (waiting their turn while another replica holds it), and GC keeps
//! away from digests with a live fill lease anywhere in the cluster.

use super::Cluster;
use crate::oci::Digest;
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for another replica's run to end before this round is skipped.
const MAX_WAIT: Duration = Duration::from_secs(600);

impl Cluster {
    /// Runs `work` holding job lease `name` (renewed meanwhile), after any other replica's run
    /// of it ended; `None` when the turn never came within ten minutes or the database failed.
    pub async fn exclusive<T>(
        self: &Arc<Self>,
        name: &str,
        work: impl Future<Output = T>,
    ) -> Option<T> {
        match self.exclusive_within(name, MAX_WAIT, work).await {
            Ok(out) => Some(out),
            Err(why) => {
                tracing::info!(job = name, "skipping this run: {why}");
                None
            }
        }
    }

    /// Like [`Self::exclusive`], waiting at most `wait` for the lease (zero: one try); `Err`
    /// says why `work` did not run.
    pub async fn exclusive_within<T>(
        self: &Arc<Self>,
        name: &str,
        wait: Duration,
        work: impl Future<Output = T>,
    ) -> Result<T, String> {
        let ttl = self.settings.lease_ttl;
        let started = Instant::now();
        loop {
            match self.job_lease(name).await {
                Ok(true) => break,
                Ok(false) if started.elapsed() < wait => {
                    tracing::debug!(job = name, "another replica runs it; waiting for the lease");
                    tokio::time::sleep(ttl / 2).await;
                }
                Ok(false) => {
                    return Err(format!(
                        "another replica holds the job lease {name:?} (it is running there)"
                    ))
                }
                Err(e) => return Err(format!("cannot take the job lease {name:?}: {e}")),
            }
        }
        let (me, job) = (self.clone(), name.to_string());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(ttl / 3).await;
                if !matches!(me.job_lease(&job).await, Ok(true)) {
                    tracing::warn!(job = %job, "job lease lost while running");
                }
            }
        });
        let out = work.await;
        renewer.abort();
        let (ix, job, node) = (
            self.index.clone(),
            name.to_string(),
            self.node().to_string(),
        );
        let _ = tokio::task::spawn_blocking(move || ix.release_job_lease(&job, &node)).await;
        Ok(out)
    }

    async fn job_lease(&self, name: &str) -> Result<bool, String> {
        let (ix, job, node, ttl) = (
            self.index.clone(),
            name.to_string(),
            self.node().to_string(),
            self.settings.lease_ttl,
        );
        tokio::task::spawn_blocking(move || ix.take_job_lease(&job, &node, ttl))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

/// Digests with a live fill lease anywhere in the cluster, as GC asks (from the blocking pool),
/// read at most once a second.
pub struct LeasedDigests {
    cluster: Arc<Cluster>,
    snapshot: Mutex<Option<(Instant, HashSet<Digest>)>>,
}

impl LeasedDigests {
    /// The view over `cluster`'s fill leases.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        LeasedDigests {
            cluster,
            snapshot: Mutex::new(None),
        }
    }

    /// Whether `digest` is being filled (or was just served) by some replica. Blocking; when
    /// the database cannot say, every digest counts as leased, so GC deletes nothing.
    pub fn contains(&self, digest: &Digest) -> bool {
        let mut snap = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = snap
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1));
        if !fresh {
            match self.cluster.index.live_fill_leases() {
                Ok(l) => *snap = Some((Instant::now(), l.into_iter().map(|l| l.digest).collect())),
                Err(e) => {
                    tracing::warn!("cannot read fill leases; GC keeps every blob: {e}");
                    *snap = None;
                    return true;
                }
            }
        }
        snap.as_ref().is_some_and(|(_, s)| s.contains(digest))
    }
}
