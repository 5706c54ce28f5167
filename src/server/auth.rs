//! The HTTP side of access control: reading credentials off requests, challenges, refusals, and
//! the token endpoint (`GET /token`, and the OAuth2 `POST` form containerd uses). The decisions
//! are `crate::access`'s.

use super::respond::{header, send_bytes, set};
use super::{Outcome, RegistryApp};
use crate::access::{AuthFailure, Client};
use crate::config::access::Challenge;
use crate::oci::{ErrorCode, RegistryError};
use crate::registry::Target;
use breakwater_auth::parse_scopes;
use bytes::Bytes;
use pingora::protocols::http::ServerSession;
use std::net::IpAddr;

/// Largest token request body read (an OAuth2 form is a few hundred bytes).
const MAX_FORM: usize = 16 * 1024;

fn client_ip(session: &ServerSession) -> IpAddr {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

fn is_tls(session: &ServerSession) -> bool {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .is_some()
}

fn cert_digest(session: &ServerSession) -> Option<Vec<u8>> {
    session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .map(|s| s.cert_digest.clone())
        .filter(|d| !d.is_empty())
}

impl RegistryApp {
    /// The challenge for this request: `Bearer` with this cache's token realm (and the scope
    /// the client lacks), or `Basic`.
    fn challenge(
        &self,
        session: &ServerSession,
        scope: Option<&str>,
        error: Option<&str>,
    ) -> String {
        let Some(ac) = &self.access else {
            return String::new();
        };
        if ac.challenge() == Challenge::Basic {
            return "Basic realm=\"breakwater\"".into();
        }
        let realm = match ac.realm() {
            Some(r) => r.to_string(),
            None => {
                let host = session
                    .req_header()
                    .headers
                    .get("host")
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| !h.is_empty() && !h.contains(['"', '\\']))
                    .map(str::to_string)
                    .or_else(|| session.server_addr().map(|a| a.to_string()))
                    .unwrap_or_else(|| "localhost".into());
                let scheme = if is_tls(session) { "https" } else { "http" };
                format!("{scheme}://{host}/token")
            }
        };
        let mut c = format!("Bearer realm=\"{realm}\",service=\"{}\"", ac.service());
        if let Some(s) = scope {
            c.push_str(&format!(",scope=\"{s}\""));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }

    /// Sends 401 with the challenge and an OCI `UNAUTHORIZED` error.
    pub(super) async fn unauthorized(
        &self,
        session: &mut ServerSession,
        message: String,
        scope: Option<&str>,
        error: Option<&str>,
        head: bool,
    ) -> Outcome {
        let e = RegistryError::new(ErrorCode::Unauthorized, message);
        let mut h = header(401);
        set(&mut h, "Content-Type", "application/json");
        set(
            &mut h,
            "WWW-Authenticate",
            self.challenge(session, scope, error),
        );
        send_bytes(session, h, Bytes::from(e.to_json()), head)
            .await
            .into()
    }

    /// Who sent the request; `Ok(None)` when access control is off. A refusal (wrong or
    /// malformed credentials, throttling) is answered here and returned as the outcome.
    pub(super) async fn authenticate(
        &self,
        session: &mut ServerSession,
        head: bool,
    ) -> Result<Option<Client>, Outcome> {
        let Some(ac) = &self.access else {
            return Ok(None);
        };
        let authorization = session
            .req_header()
            .headers
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        let addr = client_ip(session);
        match ac
            .authenticate(
                authorization.as_deref(),
                addr,
                cert_digest(session).as_deref(),
            )
            .await
        {
            Ok(c) => Ok(Some(c)),
            Err(AuthFailure::Malformed(why)) | Err(AuthFailure::Rejected(why)) => {
                tracing::info!(client = %addr, "authentication refused: {why}");
                Err(self
                    .unauthorized(
                        session,
                        format!("authentication failed: {why}"),
                        None,
                        None,
                        head,
                    )
                    .await)
            }
            Err(AuthFailure::Throttled(after)) => {
                tracing::warn!(client = %addr, "authentication throttled after repeated failures");
                Err(throttled(session, after, head).await)
            }
        }
    }

    /// Checks that the client may pull `target` (requested as `name`) and sets whether it may
    /// fill; a refusal is answered here (401 for anonymous clients, 403 for others).
    pub(super) async fn authorize(
        &self,
        session: &mut ServerSession,
        client: Option<&Client>,
        name: &str,
        target: &mut Target,
        head: bool,
    ) -> Result<(), Outcome> {
        let (Some(ac), Some(c)) = (&self.access, client) else {
            return Ok(());
        };
        let repo = target.key().to_string();
        match ac.rights(c, name, &repo) {
            (true, may_fill) => {
                target.may_fill = may_fill;
                target.client = c.upstream_credentials.clone();
                Ok(())
            }
            (false, _) => {
                let anonymous = c.principal.is_anonymous();
                self.audit_denial(session, c, &repo, "pull");
                let scope = format!("repository:{name}:pull");
                let lacks_scope = c
                    .claims
                    .as_ref()
                    .is_some_and(|claims| !claims.allows(name, "pull"));
                if anonymous || lacks_scope {
                    let why = format!(
                        "{} may not pull {repo}; authenticate with an account that may",
                        c.label()
                    );
                    let error = lacks_scope.then_some("insufficient_scope");
                    return Err(self
                        .unauthorized(session, why, Some(&scope), error, head)
                        .await);
                }
                let e = RegistryError::new(
                    ErrorCode::Denied,
                    format!("{} may not pull {repo} (access rules)", c.label()),
                );
                Err(super::respond::send_error(session, &e, head).await.into())
            }
        }
    }

    /// Counts a denial and records its audit event (who, what, from where).
    pub(super) fn audit_denial(
        &self,
        session: &ServerSession,
        c: &Client,
        repo: &str,
        action: &str,
    ) {
        if self.access.is_none() {
            return;
        }
        self.registry
            .metrics()
            .access_denials
            .with_label_values(&[action, c.kind()])
            .inc();
        let mut ev = crate::cache::Event::new(
            crate::cache::EventKind::AccessDenied,
            format!("{} may not {action} {repo}", c.label()),
        );
        if let Some((u, n)) = repo.split_once('/') {
            ev.upstream = Some(u.to_string());
            ev.repository = Some(n.to_string());
        }
        ev.detail = Some(format!("client {} action {action}", client_ip(session)));
        self.registry.audit(ev);
    }

    /// The token endpoint: authenticates the request's own credentials (Basic, or the OAuth2
    /// password form) and returns a token granting what the rules allow of the asked scopes.
    pub(super) async fn token(&self, session: &mut ServerSession) -> Outcome {
        let Some(ac) = self.access.clone() else {
            let e = RegistryError::new(
                ErrorCode::Unsupported,
                "access control is not configured: no token service",
            );
            return super::respond::send_error_status(session, &e, 404, false)
                .await
                .into();
        };
        let method = session.req_header().method.clone();
        let query = session.req_header().uri.query().unwrap_or("").to_string();
        let mut params: Vec<(String, String)> = form_pairs(&query);
        let mut authorization = session
            .req_header()
            .headers
            .get("authorization")
            .map(|v| v.as_bytes().to_vec());
        if method == http::Method::POST {
            let body = match read_form(session).await {
                Ok(b) => b,
                Err(why) => return self.bad_token_request(session, why).await,
            };
            let form = form_pairs(&body);
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            match get("grant_type").as_deref() {
                Some("password") => {
                    let (Some(u), Some(p)) = (get("username"), get("password")) else {
                        return self
                            .bad_token_request(session, "grant_type=password needs username and password".into())
                            .await;
                    };
                    use base64::Engine as _;
                    let b = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                    authorization = Some(format!("Basic {b}").into_bytes());
                }
                Some(other) => {
                    return self
                        .bad_token_request(
                            session,
                            format!("grant_type {other:?} is not supported (use password, or GET with Basic)"),
                        )
                        .await
                }
                None => {}
            }
            params.extend(form);
        } else if method != http::Method::GET {
            let e = RegistryError::new(
                ErrorCode::Unsupported,
                "the token endpoint takes GET or POST",
            );
            session.set_keepalive(None);
            return super::respond::send_error_status(session, &e, 405, false)
                .await
                .into();
        }
        if let Some((_, svc)) = params.iter().find(|(k, _)| k == "service") {
            if svc != ac.service() {
                return self
                    .bad_token_request(
                        session,
                        format!("unknown service {svc:?}; this is {:?}", ac.service()),
                    )
                    .await;
            }
        }
        let scopes = match parse_scopes(
            params
                .iter()
                .filter(|(k, _)| k == "scope")
                .map(|(_, v)| v.as_str()),
        ) {
            Ok(s) => s,
            Err(e) => {
                return self
                    .bad_token_request(session, format!("invalid scope: {e}"))
                    .await
            }
        };
        let addr = client_ip(session);
        let client = match ac
            .authenticate(
                authorization.as_deref(),
                addr,
                cert_digest(session).as_deref(),
            )
            .await
        {
            Ok(c) => c,
            Err(AuthFailure::Throttled(after)) => return throttled(session, after, false).await,
            Err(AuthFailure::Malformed(why)) | Err(AuthFailure::Rejected(why)) => {
                tracing::info!(client = %addr, "token request refused: {why}");
                return self
                    .unauthorized(
                        session,
                        format!("authentication failed: {why}"),
                        None,
                        None,
                        false,
                    )
                    .await;
            }
        };
        let router = &self.router;
        let issued = ac.issue(&client, &scopes, |name| router.possible_keys(name));
        let issued_at = httpdate_rfc3339(issued.issued_at);
        let body = serde_json::json!({
            "token": issued.token,
            "access_token": issued.token,
            "expires_in": issued.expires_in,
            "issued_at": issued_at,
        });
        let mut h = header(200);
        set(&mut h, "Content-Type", "application/json");
        set(&mut h, "Cache-Control", "no-store");
        send_bytes(session, h, Bytes::from(body.to_string()), false)
            .await
            .into()
    }

    async fn bad_token_request(&self, session: &mut ServerSession, why: String) -> Outcome {
        let body = serde_json::json!({"error": "invalid_request", "error_description": why,
            "errors": [{"code": "UNSUPPORTED", "message": why}]});
        let mut h = header(400);
        set(&mut h, "Content-Type", "application/json");
        send_bytes(session, h, Bytes::from(body.to_string()), false)
            .await
            .into()
    }
}

/// 429 with `Retry-After` for an address that failed authentication too often.
async fn throttled(session: &mut ServerSession, after: std::time::Duration, head: bool) -> Outcome {
    let e = RegistryError::new(
        ErrorCode::TooManyRequests,
        "too many failed authentication attempts from this address; try again later",
    );
    let mut h = header(429);
    set(&mut h, "Content-Type", "application/json");
    set(&mut h, "Retry-After", after.as_secs().max(1));
    send_bytes(session, h, Bytes::from(e.to_json()), head)
        .await
        .into()
}

/// Reads a small request body (the OAuth2 form).
async fn read_form(session: &mut ServerSession) -> Result<String, String> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_FORM {
                    return Err(format!(
                        "token request body is larger than {MAX_FORM} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return Err(format!("cannot read the token request body: {e}")),
        }
    }
    String::from_utf8(body).map_err(|_| "token request body is not UTF-8".to_string())
}

/// `application/x-www-form-urlencoded` pairs (also query strings), percent-decoded.
fn form_pairs(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Seconds since the epoch as RFC 3339 (UTC), as the token specification's `issued_at`.
fn httpdate_rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::form_pairs;

    #[test]
    fn forms_decode() {
        assert_eq!(
            form_pairs("scope=repository%3Ateam%2Fapp%3Apull&service=b+w&x"),
            vec![
                ("scope".into(), "repository:team/app:pull".into()),
                ("service".into(), "b w".into()),
                ("x".into(), String::new())
            ]
        );
    }
}
