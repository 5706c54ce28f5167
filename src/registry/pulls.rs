//! Pull statistics (count, last pulled) gathered in memory and written in batches, so the hot
//! manifest path never waits on a database write.

use crate::cache::index::Pull;
use crate::cache::{Index, RepoKey};
use crate::oci::Digest;
use std::collections::HashMap;
use std::sync::Mutex;

/// A repository a digest was pulled from, how often, and when last.
type RepoPulls = (RepoKey, u64, i64);

/// Pulls not yet written to the index: per digest, per repository (a digest is pulled from one
/// repository or a few, so a short list).
#[derive(Default)]
pub struct PullRecorder {
    pending: Mutex<HashMap<Digest, Vec<RepoPulls>>>,
}

impl PullRecorder {
    /// Notes one pull of `digest` from `repo` now.
    pub fn record(&self, repo: RepoKey, digest: Digest) {
        self.record_ref(&repo.upstream, &repo.name, &digest);
    }

    /// Notes one pull of `digest` from `name` on `upstream` now; allocates only for the first
    /// pull of that pair since the last flush (repeated pulls are the hit path).
    pub fn record_ref(&self, upstream: &str, name: &str, digest: &Digest) {
        let now = crate::now_ms();
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let repos = match p.get_mut(digest) {
            Some(r) => r,
            None => p.entry(digest.clone()).or_default(),
        };
        match repos
            .iter_mut()
            .find(|(k, _, _)| k.upstream == upstream && k.name == name)
        {
            Some((_, count, at)) => {
                *count += 1;
                *at = now;
            }
            None => repos.push((
                RepoKey {
                    upstream: upstream.to_string(),
                    name: name.to_string(),
                },
                1,
                now,
            )),
        }
    }

    /// Writes what has gathered to the index (call from a blocking context).
    pub fn flush(&self, index: &dyn Index) {
        let batch: Vec<Pull> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.drain()
                .flat_map(|(digest, repos)| {
                    repos.into_iter().map(move |(repo, count, at_ms)| Pull {
                        repo,
                        digest: digest.clone(),
                        count,
                        at_ms,
                    })
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
