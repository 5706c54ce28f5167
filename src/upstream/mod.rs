//! The client side of the cache: one `Upstream` per configured registry. It speaks the
//! distribution API with the token dance, follows redirects (dropping `Authorization` when the
//! host changes, which reqwest does), enforces connect / first-byte / idle timeouts, and records
//! what upstream said (status, rate-limit headers) in metrics.

mod body;
pub mod breaker;
// The WWW-Authenticate parser is pure and lives in crates/oci (fuzzed there).
pub use crate::oci::challenge;
mod credentials;
mod referrers;
pub mod token;

use body::{read_limited, ReadError};

use crate::config::{Credentials, UpstreamSettings};
use crate::metrics::Metrics;
use crate::oci::manifest::{upstream_accept, MAX_MANIFEST_BYTES};
use crate::oci::{Digest, Reference, RepoName};
use bytes::Bytes;
use challenge::Challenge;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, RANGE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use token::TokenCache;

/// Why an upstream request did not give what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    /// No answer: connection refused, reset, DNS failure or a timeout.
    #[error("upstream {upstream} unreachable: {reason}")]
    Unreachable {
        /// Upstream name.
        upstream: String,
        /// What happened.
        reason: String,
    },
    /// Upstream answered with an error status.
    #[error("upstream {upstream} answered HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        /// Upstream name.
        upstream: String,
        /// HTTP status.
        status: u16,
        /// OCI error code from the body, when there was one.
        code: Option<String>,
        /// Message from the body, or the status text.
        message: String,
        /// `Retry-After`, when given.
        retry_after: Option<Duration>,
    },
    /// Upstream answered, but with something unusable (too large, mismatching digest …).
    #[error("upstream {upstream} sent an invalid response: {reason}")]
    Invalid {
        /// Upstream name.
        upstream: String,
        /// What was wrong.
        reason: String,
    },
}

impl UpstreamError {
    /// True when serving stale content is the right answer: unreachable, 5xx, or rate-limited.
    pub fn is_outage(&self) -> bool {
        match self {
            UpstreamError::Unreachable { .. } => true,
            UpstreamError::Status { status, .. } => *status >= 500 || *status == 429,
            UpstreamError::Invalid { .. } => false,
        }
    }

    /// The HTTP status upstream answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            UpstreamError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A manifest as upstream answered it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The exact bytes (empty for HEAD).
    pub bytes: Bytes,
    /// `Content-Type`, when given.
    pub media_type: Option<String>,
    /// `Docker-Content-Digest`, when given and valid.
    pub digest: Option<Digest>,
    /// `Content-Length`, when given.
    pub size: Option<u64>,
}

/// A tags/list answer passed through.
#[derive(Debug, Clone)]
pub struct FetchedTags {
    /// The JSON body.
    pub body: Bytes,
    /// The `Link` header for the next page, if any.
    pub link: Option<String>,
}

/// One configured upstream registry.
pub struct Upstream {
    /// Configured name, e.g. `docker.io`.
    pub name: String,
    /// The same name, shared: access-log lines carry it without copying.
    pub shared_name: Arc<str>,
    /// Its settings.
    pub settings: UpstreamSettings,
    http: reqwest::Client,
    tokens: TokenCache,
    bearer: RwLock<Option<Challenge>>,
    basic: AtomicBool,
    metrics: Arc<Metrics>,
    /// Marks the upstream down after repeated failures so requests fail fast.
    pub breaker: breaker::Breaker,
}

impl Upstream {
    /// Builds the client for one upstream.
    pub fn new(name: &str, settings: UpstreamSettings, metrics: Arc<Metrics>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.idle_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("breakwater/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client builds with static settings");
        Upstream {
            name: name.to_string(),
            shared_name: Arc::from(name),
            http,
            tokens: TokenCache::default(),
            bearer: RwLock::new(None),
            basic: AtomicBool::new(false),
            breaker: breaker::Breaker::new(
                settings.breaker_failures,
                settings.breaker_backoff,
                Duration::from_secs(60),
            ),
            settings,
            metrics,
        }
    }

    fn url(&self, repo: &RepoName, tail: &str) -> String {
        let mut url = format!("{}/v2/{}/{}", self.settings.url, repo, tail);
        if let Some(ns) = &self.settings.ns {
            url.push_str("?ns=");
            url.push_str(ns);
        }
        url
    }

    fn scope_for(&self, repo: &RepoName) -> String {
        // ECR Public challenges with a registry-wide scope ("aws"); reuse whatever non-repository
        // scope upstream asked for, else ask for pull on the repository.
        if let Some(c) = self.bearer.read().expect("lock").as_ref() {
            if let Some(s) = c.param("scope") {
                if !s.starts_with("repository:") && !s.is_empty() {
                    return s.to_string();
                }
            }
        }
        format!("repository:{repo}:pull")
    }

    fn unreachable(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Unreachable {
            upstream: self.name.clone(),
            reason: reason.into(),
        }
    }

    async fn authorization(
        &self,
        scope: &str,
        client: Option<&Credentials>,
    ) -> Result<Option<String>, UpstreamError> {
        let challenge = self.bearer.read().expect("lock").clone();
        let credentials = self.credentials(client);
        if let Some(c) = challenge {
            let t = self
                .tokens
                .get(
                    &self.http,
                    &c,
                    &self.token_key(scope, client),
                    scope,
                    credentials,
                    self.settings.first_byte_timeout,
                )
                .await
                .map_err(|e| match e {
                    token::TokenError::Refused { status, .. } => UpstreamError::Status {
                        upstream: self.name.clone(),
                        status,
                        code: Some("UNAUTHORIZED".into()),
                        message: e.to_string(),
                        retry_after: None,
                    },
                    e => self.unreachable(e.to_string()),
                })?;
            return Ok(Some(format!("Bearer {}", t.value)));
        }
        match credentials {
            Some(Credentials::Basic { username, password })
                if self.basic.load(Ordering::Relaxed) =>
            {
                use base64::Engine as _;
                let pair = format!("{username}:{password}");
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Ok(Some(format!("Basic {encoded}")))
            }
            Some(Credentials::Bearer(t)) => Ok(Some(format!("Bearer {t}"))),
            _ => Ok(None),
        }
    }

    /// Sends one request with authentication, retrying once after a 401 challenge.
    async fn send(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        headers: &[(reqwest::header::HeaderName, String)],
        repo: &RepoName,
        client: Option<&Credentials>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut challenged = false;
        if let breaker::Admission::Open(wait) = self.breaker.admit() {
            self.count(op, "breaker_open");
            return Err(self.unreachable(format!(
                "marked down after repeated failures (circuit open; next probe in {:.1}s)",
                wait.as_secs_f32()
            )));
        }
        loop {
            let scope = self.scope_for(repo);
            let mut req = self.http.request(method.clone(), url);
            for (k, v) in headers {
                req = req.header(k, v);
            }
            if let Some(auth) = self.authorization(&scope, client).await? {
                req = req.header(AUTHORIZATION, auth);
            }
            let sent = tokio::time::timeout(self.settings.first_byte_timeout, req.send()).await;
            let resp = match sent {
                Err(_) => {
                    self.count(op, "timeout");
                    self.note_failure();
                    return Err(self.unreachable(format!(
                        "no response within {:?}",
                        self.settings.first_byte_timeout
                    )));
                }
                Ok(Err(e)) => {
                    self.count(op, if e.is_timeout() { "timeout" } else { "error" });
                    self.note_failure();
                    return Err(self.unreachable(token::describe(&e)));
                }
                Ok(Ok(r)) => r,
            };
            self.count(op, resp.status().as_str());
            let status = resp.status();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after)
                    .unwrap_or(Duration::from_secs(10));
                self.breaker.rate_limited(wait);
                self.set_breaker_gauge();
            } else if status.is_server_error() {
                self.note_failure();
            } else {
                self.breaker.success();
                self.set_breaker_gauge();
            }
            if resp.status() == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                if self.learn_challenge(resp.headers(), &scope, client).await {
                    continue;
                }
            }
            return Ok(resp);
        }
    }

    /// Remembers what a 401 asked for; true when a retry can succeed.
    async fn learn_challenge(
        &self,
        headers: &HeaderMap,
        scope: &str,
        client: Option<&Credentials>,
    ) -> bool {
        let challenges: Vec<Challenge> = headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(challenge::parse)
            .collect();
        if let Some(b) = challenges
            .iter()
            .find(|c| c.scheme == "bearer" && c.param("realm").is_some())
        {
            *self.bearer.write().expect("lock") = Some(b.clone());
            // The token we sent (if any) was refused for this scope.
            self.tokens.forget(&self.token_key(scope, client)).await;
            return true;
        }
        if challenges.iter().any(|c| c.scheme == "basic")
            && matches!(self.credentials(client), Some(Credentials::Basic { .. }))
            && !self.basic.swap(true, Ordering::Relaxed)
        {
            return true;
        }
        false
    }

    fn note_failure(&self) {
        if self.breaker.failure() {
            tracing::warn!(upstream = %self.name, "upstream marked down after repeated failures");
        }
        self.set_breaker_gauge();
    }

    fn set_breaker_gauge(&self) {
        self.metrics
            .breaker_open
            .with_label_values(&[&self.name])
            .set(self.breaker.is_open() as i64);
    }

    fn count(&self, op: &str, status: &str) {
        self.metrics
            .upstream_requests
            .with_label_values(&[&self.name, op, status])
            .inc();
    }

    fn note_rate_limit(&self, headers: &HeaderMap) {
        // `ratelimit-remaining: 76;w=21600`
        if let Some(v) = headers
            .get("ratelimit-remaining")
            .and_then(|v| v.to_str().ok())
        {
            if let Ok(n) = v.split(';').next().unwrap_or("").trim().parse::<i64>() {
                self.metrics
                    .ratelimit_remaining
                    .with_label_values(&[&self.name])
                    .set(n);
            }
        }
    }

    async fn error_from(&self, resp: reqwest::Response) -> UpstreamError {
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let reason = resp
            .status()
            .canonical_reason()
            .unwrap_or("error")
            .to_string();
        let body = read_limited(resp, 64 * 1024, self.settings.manifest_timeout)
            .await
            .unwrap_or_default();
        let (code, message) = oci_error_text(&body).unwrap_or((None, reason));
        UpstreamError::Status {
            upstream: self.name.clone(),
            status,
            code,
            message,
            retry_after,
        }
    }

    /// GET (or HEAD) a manifest with the full Accept list.
    pub async fn manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        head: bool,
        client: Option<&Credentials>,
    ) -> Result<FetchedManifest, UpstreamError> {
        let url = self.url(repo, &format!("manifests/{reference}"));
        let (method, op) = if head {
            (Method::HEAD, "manifest_head")
        } else {
            (Method::GET, "manifest_get")
        };
        let resp = self
            .send(
                op,
                method,
                &url,
                &[(ACCEPT, upstream_accept())],
                repo,
                client,
            )
            .await?;
        self.note_rate_limit(resp.headers());
        if !resp.status().is_success() {
            return Err(self.error_from(resp).await);
        }
        let h = resp.headers();
        let media_type = h
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.split(';').next().unwrap_or("").trim().to_string())
            .filter(|s| !s.is_empty());
        let digest = h
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| Digest::parse(s.trim()).ok());
        let size = h
            .get(reqwest::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse().ok());
        if size.is_some_and(|s: u64| s > MAX_MANIFEST_BYTES as u64) {
            return Err(self.invalid(format!("manifest {reference} of {repo} exceeds 4 MiB")));
        }
        let bytes = if head {
            Bytes::new()
        } else {
            read_limited(resp, MAX_MANIFEST_BYTES, self.settings.manifest_timeout)
                .await
                .map_err(|e| match e {
                    ReadError::TooLarge => {
                        self.invalid(format!("manifest {reference} of {repo} exceeds 4 MiB"))
                    }
                    ReadError::Io(r) => self.unreachable(r),
                })?
        };
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
            size,
        })
    }

    /// GET a blob, from byte `from` on (a resume). The caller streams the body.
    pub async fn blob(
        &self,
        repo: &RepoName,
        digest: &Digest,
        from: u64,
        client: Option<&Credentials>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let headers = if from > 0 {
            vec![(RANGE, format!("bytes={from}-"))]
        } else {
            vec![]
        };
        let resp = self
            .send("blob_get", Method::GET, &url, &headers, repo, client)
            .await?;
        if !resp.status().is_success() {
            return Err(self.error_from(resp).await);
        }
        Ok(resp)
    }

    /// HEAD a blob: its size if upstream has it.
    pub async fn blob_size(
        &self,
        repo: &RepoName,
        digest: &Digest,
        client: Option<&Credentials>,
    ) -> Result<Option<u64>, UpstreamError> {
        let url = self.url(repo, &format!("blobs/{digest}"));
        let resp = self
            .send("blob_head", Method::HEAD, &url, &[], repo, client)
            .await?;
        if !resp.status().is_success() {
            return Err(self.error_from(resp).await);
        }
        Ok(resp.content_length().filter(|&n| n > 0).or_else(|| {
            resp.headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.parse().ok())
        }))
    }

    /// GET tags/list with the client's `n` / `last` passed through.
    pub async fn tags(
        &self,
        repo: &RepoName,
        query: &str,
        client: Option<&Credentials>,
    ) -> Result<FetchedTags, UpstreamError> {
        let mut url = self.url(repo, "tags/list");
        if !query.is_empty() {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(query);
        }
        let resp = self
            .send("tags", Method::GET, &url, &[], repo, client)
            .await?;
        if !resp.status().is_success() {
            return Err(self.error_from(resp).await);
        }
        let link = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = read_limited(resp, 16 * 1024 * 1024, self.settings.manifest_timeout)
            .await
            .map_err(|e| match e {
                ReadError::TooLarge => self.invalid("tag list larger than 16 MiB"),
                ReadError::Io(r) => self.invalid(format!("tag list cut short: {r}")),
            })?;
        Ok(FetchedTags { body, link })
    }

    fn invalid(&self, reason: impl Into<String>) -> UpstreamError {
        UpstreamError::Invalid {
            upstream: self.name.clone(),
            reason: reason.into(),
        }
    }
}

fn oci_error_text(body: &[u8]) -> Option<(Option<String>, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let e = v.get("errors")?.get(0)?;
    let code = e.get("code").and_then(|c| c.as_str()).map(str::to_string);
    let message = e
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_string();
    Some((code, message))
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v.trim()).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT").is_some());
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn oci_error_body() {
        let (c, m) = oci_error_text(
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
        )
        .unwrap();
        assert_eq!(c.as_deref(), Some("MANIFEST_UNKNOWN"));
        assert_eq!(m, "manifest unknown");
        assert!(oci_error_text(b"<html>").is_none());
    }
}
