//! Bearer tokens: fetched from the realm a challenge names, cached per scope until shortly before
//! they expire, one request for any number of concurrent misses.

use super::challenge::Challenge;
use crate::config::Credentials;
use moka::future::Cache;
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A bearer token and how long it may be reused.
#[derive(Debug)]
pub struct Token {
    /// The token value for `Authorization: Bearer`.
    pub value: String,
    ttl: Duration,
}

/// Why no token could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// The realm could not be reached or answered an error.
    #[error("token request to {realm} failed: {reason}")]
    Request {
        /// The realm URL.
        realm: String,
        /// What happened.
        reason: String,
    },
    /// The realm refused the credentials (401/403): an answer, not an outage.
    #[error("token request to {realm} refused the credentials (HTTP {status})")]
    Refused {
        /// The realm URL.
        realm: String,
        /// The status it answered.
        status: u16,
    },
    /// The realm's answer carried no token.
    #[error("token response from {0} has neither token nor access_token")]
    Empty(String),
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

struct TokenExpiry;

impl moka::Expiry<String, Arc<Token>> for TokenExpiry {
    fn expire_after_create(&self, _: &String, v: &Arc<Token>, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Per-upstream token cache keyed by scope.
pub struct TokenCache {
    cache: Cache<String, Arc<Token>>,
}

impl Default for TokenCache {
    fn default() -> Self {
        TokenCache {
            cache: Cache::builder()
                .max_capacity(10_000)
                .expire_after(TokenExpiry)
                .build(),
        }
    }
}

impl TokenCache {
    /// A cached token for `scope`, if still valid.
    pub async fn cached(&self, scope: &str) -> Option<Arc<Token>> {
        self.cache.get(scope).await
    }

    /// Drops the token for `scope` (upstream refused it).
    pub async fn forget(&self, scope: &str) {
        self.cache.invalidate(scope).await;
    }

    /// The token for `scope`, fetching it once however many callers wait.
    pub async fn get(
        &self,
        http: &reqwest::Client,
        challenge: &Challenge,
        key: &str,
        scope: &str,
        credentials: Option<&Credentials>,
        timeout: Duration,
    ) -> Result<Arc<Token>, TokenError> {
        self.cache
            .try_get_with(
                key.to_string(),
                fetch(http, challenge, scope, credentials, timeout),
            )
            .await
            .map_err(|e| (*e).clone())
    }
}

async fn fetch(
    http: &reqwest::Client,
    challenge: &Challenge,
    scope: &str,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> Result<Arc<Token>, TokenError> {
    let realm = challenge.param("realm").unwrap_or_default().to_string();
    let err = |reason: String| TokenError::Request {
        realm: realm.clone(),
        reason,
    };
    let mut url = reqwest::Url::parse(&realm).map_err(|e| err(format!("bad realm URL: {e}")))?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(service) = challenge.param("service") {
            q.append_pair("service", service);
        }
        // Several scopes are space-separated in a challenge but separate parameters in the request.
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            q.append_pair("scope", s);
        }
    }
    let mut req = http.get(url).timeout(timeout);
    match credentials {
        Some(Credentials::Basic { username, password }) => {
            req = req.basic_auth(username, Some(password));
        }
        Some(Credentials::Bearer(t)) => {
            // A static token is used directly; asking the realm with it is what GHCR expects.
            req = req.bearer_auth(t);
        }
        None => {}
    }
    let resp = req.send().await.map_err(|e| err(describe(&e)))?;
    let status = resp.status();
    if matches!(status.as_u16(), 401 | 403) {
        return Err(TokenError::Refused {
            realm: realm.clone(),
            status: status.as_u16(),
        });
    }
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(err(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        )));
    }
    let body = resp.bytes().await.map_err(|e| err(describe(&e)))?;
    let tr: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| err(format!("unreadable JSON: {e}")))?;
    let value = tr
        .token
        .filter(|t| !t.is_empty())
        .or(tr.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| TokenError::Empty(realm.clone()))?;
    // Distribution's default is 60 s; renew a little early so a request never races expiry.
    let lifetime = tr.expires_in.unwrap_or(60).max(1);
    let ttl = Duration::from_secs(lifetime.saturating_sub(lifetime / 10).max(1));
    Ok(Arc::new(Token { value, ttl }))
}

/// A one-line description of a reqwest error without URLs that may carry secrets in queries.
pub fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
