//! Membership: each replica registers in the shared database and heartbeats every third of the
//! lease TTL; `breakwater cluster status` reads the members back (alive while their heartbeat
//! is younger than three TTLs), with the live fill and job leases.

use super::Cluster;
use async_trait::async_trait;
use breakwater_store::cluster::{FillLease, JobLease, Member};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use serde::Serialize;
use std::sync::Arc;

/// The background service that keeps this replica registered.
pub struct Heartbeat {
    /// The cluster.
    pub cluster: Arc<Cluster>,
}

#[async_trait]
impl BackgroundService for Heartbeat {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let every =
            (self.cluster.settings.lease_ttl / 3).max(std::time::Duration::from_millis(500));
        let mut logged = false;
        loop {
            let c = self.cluster.clone();
            let beat = tokio::task::spawn_blocking(move || {
                c.index
                    .heartbeat(c.node(), &c.settings.peer_url, c.started_at_ms)
            })
            .await;
            match beat {
                Ok(Ok(())) => logged = false,
                // Once per outage: the database being down is reported by the index already.
                Ok(Err(e)) if !logged => {
                    logged = true;
                    tracing::warn!("cluster heartbeat failed: {e}");
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A member as `cluster status` shows it.
#[derive(Debug, Serialize)]
pub struct MemberStatus {
    /// The registered member.
    #[serde(flatten)]
    pub member: Member,
    /// Whether its heartbeat is younger than three lease TTLs.
    pub alive: bool,
    /// Whether it is the replica answering.
    pub this_node: bool,
}

/// What `cluster status` shows.
#[derive(Debug, Serialize)]
pub struct ClusterStatus {
    /// The replica answering.
    pub node: String,
    /// Every registered member.
    pub members: Vec<MemberStatus>,
    /// Live fill leases (fills running, or just committed and lingering).
    pub fill_leases: Vec<FillLease>,
    /// Live job leases.
    pub job_leases: Vec<JobLease>,
}

impl Cluster {
    /// Members and leases, read from the shared database (on the blocking pool).
    pub async fn status(self: &Arc<Self>) -> Result<ClusterStatus, String> {
        let c = self.clone();
        tokio::task::spawn_blocking(move || {
            let dead_after = (c.settings.lease_ttl * 3).as_millis() as i64;
            let members = c
                .index
                .members()
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|m| MemberStatus {
                    alive: m.heartbeat_age_ms < dead_after,
                    this_node: m.node == c.node(),
                    member: m,
                })
                .collect();
            Ok(ClusterStatus {
                node: c.node().to_string(),
                members,
                fill_leases: c.index.live_fill_leases().map_err(|e| e.to_string())?,
                job_leases: c.index.live_job_leases().map_err(|e| e.to_string())?,
            })
        })
        .await
        .map_err(|e| format!("status task failed: {e}"))?
    }
}
