//! Periodic lifecycle work beside the listeners: policies applied every `apply_interval`, the
//! quota enforced and GC run every `gc.interval`. The first runs come one interval after start.
//! With a quota, the store size gauge is also watched (fills and recorded manifests add to it,
//! GC sets it from the store listing): crossing the high-water mark starts a GC run early (at
//! most one a minute), so a burst of pulls does not wait for the next interval.

use super::gc::GcRequest;
use super::service::Lifecycle;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often the store size is compared with the high-water mark.
const QUOTA_POLL: Duration = Duration::from_secs(10);
/// Least time between GC runs started by the quota watch.
const QUOTA_SPACING: Duration = Duration::from_secs(60);

/// The background service running policies, quota and GC on schedule.
pub struct LifecycleRunner {
    /// The lifecycle to run.
    pub lifecycle: Arc<Lifecycle>,
    /// In a cluster, runs wait for the job lease (one replica at a time).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

fn next(period: Duration) -> Option<Instant> {
    (!period.is_zero()).then(|| Instant::now() + period)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Job {
    Apply,
    Gc,
    QuotaCheck,
}

impl LifecycleRunner {
    /// Runs `job` on the blocking pool (the lifecycle's lock keeps runs from overlapping).
    async fn run(&self, job: Job) {
        match &self.cluster {
            Some(c) => {
                let name = if job == Job::Apply { "lifecycle" } else { "gc" };
                c.exclusive(name, self.run_now(job)).await;
            }
            None => self.run_now(job).await,
        }
    }

    async fn run_now(&self, job: Job) {
        let lc = self.lifecycle.clone();
        let outcome = tokio::task::spawn_blocking(move || match job {
            Job::Apply => lc.apply(None).map(|r| {
                format!(
                    "lifecycle applied: {} images expired, {} archived",
                    r.expiring_images, r.transitioning_images
                )
            }),
            Job::Gc | Job::QuotaCheck => lc
                .gc(&GcRequest::default())
                .map(|r| format!("GC freed {} bytes", r.freed_bytes)),
        })
        .await;
        match outcome {
            Ok(Ok(msg)) => tracing::info!("{msg}"),
            Ok(Err(e)) => tracing::error!("scheduled lifecycle run failed: {e}"),
            Err(e) => tracing::error!("scheduled lifecycle task failed: {e}"),
        }
    }

    fn over_high_water(&self) -> bool {
        self.lifecycle
            .quota
            .as_ref()
            .is_some_and(|q| self.lifecycle.cache.store.usage().bytes > q.high_water_bytes())
    }
}

#[async_trait]
impl BackgroundService for LifecycleRunner {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let s = &self.lifecycle.settings;
        let (apply_every, gc_every) = (s.apply_interval, s.gc_interval);
        let quota_every = if self.lifecycle.quota.is_some() {
            QUOTA_POLL
        } else {
            Duration::ZERO
        };
        let mut next_apply = next(apply_every);
        let mut next_gc = next(gc_every);
        let mut next_quota = next(quota_every);
        let mut quota_ran: Option<Instant> = None;
        loop {
            let job = tokio::select! {
                _ = sleep_until(next_apply) => Job::Apply,
                _ = sleep_until(next_gc) => Job::Gc,
                _ = sleep_until(next_quota) => Job::QuotaCheck,
                _ = shutdown.changed() => return,
            };
            match job {
                Job::Apply => {
                    self.run(job).await;
                    next_apply = next(apply_every);
                }
                Job::Gc => {
                    self.run(job).await;
                    next_gc = next(gc_every);
                }
                Job::QuotaCheck => {
                    let spaced = quota_ran.is_none_or(|t| t.elapsed() >= QUOTA_SPACING);
                    if spaced && self.over_high_water() {
                        tracing::info!("store above the high-water mark: running GC now");
                        quota_ran = Some(Instant::now());
                        self.run(job).await;
                    }
                    next_quota = next(quota_every);
                }
            }
        }
    }
}
