//! Pull statistics (count, last pulled) gathered in memory and written in batches, so the hot
//! manifest path never waits on a database write.

use crate::cache::index::Pull;
use crate::cache::{Index, RepoKey};
use crate::oci::Digest;
use std::collections::HashMap;
use std::sync::Mutex;

/// Pulls not yet written to the index.
#[derive(Default)]
pub struct PullRecorder {
    pending: Mutex<HashMap<(RepoKey, Digest), (u64, i64)>>,
}

impl PullRecorder {
    /// Notes one pull of `digest` from `repo` now.
    pub fn record(&self, repo: RepoKey, digest: Digest) {
        let now = crate::now_ms();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let e = p.entry((repo, digest)).or_insert((0, now));
        e.0 += 1;
        e.1 = now;
    }

    /// Writes what has gathered to the index (call from a blocking context).
    pub fn flush(&self, index: &dyn Index) {
        let batch: Vec<Pull> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.drain()
                .map(|((repo, digest), (count, at_ms))| Pull {
                    repo,
                    digest,
                    count,
                    at_ms,
                })
                .collect()
        };
        if batch.is_empty() {
            return;
        }
        if let Err(e) = index.record_pulls(&batch) {
            tracing::warn!("could not record {} pull statistics: {e}", batch.len());
        }
    }
}
