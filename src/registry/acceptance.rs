//! `credentials = "client"` upstreams: each client's own credentials go upstream, and content
//! cached from such an upstream is served to a client only after the upstream accepted that
//! client's credentials for the repository. Decisions are kept per credentials and repository
//! for a while (accepted: the configured TTL; refused: briefly), so a warm pull asks once.

use super::{Registry, Target};
use crate::cache::RepoKey;
use crate::oci::{ErrorCode, RegistryError};
use std::time::Duration;

/// Refusals are remembered only this long: a client that just got access upstream retries soon.
const REFUSED_TTL: Duration = Duration::from_secs(10);

/// Remembered decisions, keyed by credentials fingerprint (or "anonymous") and repository.
pub(super) struct Acceptance {
    accepted: moka::sync::Cache<(String, RepoKey), ()>,
    refused: moka::sync::Cache<(String, RepoKey), ()>,
}

impl Acceptance {
    /// Decisions kept for `ttl` when accepted.
    pub(super) fn new(ttl: Duration) -> Self {
        Acceptance {
            accepted: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            refused: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REFUSED_TTL)
                .build(),
        }
    }
}

impl Registry {
    /// Ok unless the target's upstream takes each client's own credentials and has not accepted
    /// this client's for this repository (asked now with a one-tag list when not remembered).
    pub(super) async fn ensure_accepted(&self, t: &Target) -> Result<(), RegistryError> {
        if !t.upstream.settings.client_credentials || t.internal {
            return Ok(());
        }
        let who = t
            .client_credentials()
            .map_or_else(|| "anonymous".to_string(), |c| c.fingerprint());
        let key = (who, t.key());
        if self.acceptance.accepted.contains_key(&key) {
            return Ok(());
        }
        let refused = |why: String| {
            let code = if t.client.is_none() {
                ErrorCode::Unauthorized
            } else {
                ErrorCode::Denied
            };
            RegistryError::new(
                code,
                format!(
                    "upstream {} did not accept this client's credentials for {}: {why}",
                    t.upstream.name, t.repo
                ),
            )
        };
        if self.acceptance.refused.contains_key(&key) {
            return Err(refused("refused moments ago".into()));
        }
        match t
            .upstream
            .tags(&t.repo, "n=1", t.client_credentials())
            .await
        {
            Ok(_) => {
                self.acceptance.accepted.insert(key, ());
                Ok(())
            }
            Err(e) if e.is_outage() => Err(RegistryError::new(
                ErrorCode::Unavailable,
                format!(
                    "cannot check this client's credentials with upstream {}: {e}",
                    t.upstream.name
                ),
            )),
            Err(e) => {
                self.acceptance.refused.insert(key, ());
                Err(refused(e.to_string()))
            }
        }
    }
}
