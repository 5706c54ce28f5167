//! The registry listener: a Pingora HTTP app that parses each request at the edge into typed
//! values, routes it, calls the registry operation, and writes the answer. No cache policy here.

mod auth;
mod blob;
pub mod drain;
pub mod limits;
mod listing;
mod manifest;
pub mod peer;
// The Range parser is pure and lives with the other header parsers in crates/oci (fuzzed there).
pub use crate::oci::range;
mod referrers;
pub mod respond;
pub mod route;
pub mod zerocopy;

use crate::access::{AccessControl, Client};
use crate::accesslog::{AccessLog, Entry};
use crate::config::ClientLimits;
use crate::oci::{Digest, ErrorCode, RegistryError};
use crate::registry::Registry;
use async_trait::async_trait;
use bytes::Bytes;
use limits::{ClientSlot, ClientSlots, LimitMetrics};
use pingora::apps::{HttpPersistentSettings, HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use respond::{header, send_bytes, send_error, send_error_status, set};
use route::{parse_path, query_param, Endpoint, Router};
use std::sync::Arc;

/// The registry HTTP app.
pub struct RegistryApp {
    registry: Arc<Registry>,
    router: Router,
    access: Option<Arc<AccessControl>>,
    access_log: Option<Arc<AccessLog>>,
    in_flight: drain::InFlight,
    limits: ClientLimits,
    /// Running requests per client address, when `max_requests_per_client` is set.
    slots: Option<(Arc<ClientSlots>, LimitMetrics)>,
    options: HttpServerOptions,
}

/// Marks a connection that already carried a request (Pingora hands it to the next session).
struct KeptAlive;

impl RegistryApp {
    /// An app serving `registry`, routing with its upstreams and `default_upstream`.
    pub fn new(registry: Arc<Registry>, default_upstream: &str) -> Self {
        let router = Router::new(registry.upstreams(), default_upstream);
        RegistryApp {
            registry,
            router,
            access: None,
            access_log: None,
            in_flight: drain::InFlight::default(),
            limits: ClientLimits::default(),
            slots: None,
            options: HttpServerOptions::default(),
        }
    }

    /// Applies the client limits: head and keep-alive timeouts, requests per client address.
    pub fn with_client_limits(mut self, limits: &ClientLimits, metrics: LimitMetrics) -> Self {
        self.limits = limits.clone();
        self.slots = limits
            .max_requests_per_client
            .map(|max| (ClientSlots::new(max), metrics));
        // An HTTP/2 connection with no stream open is idle like an HTTP/1 keep-alive one.
        self.options.h2_idle_timeout = Some(limits.keepalive_timeout);
        self
    }

    /// Keep-alive in whole seconds, as Pingora counts it (at least one).
    fn keepalive_secs(&self) -> u64 {
        self.limits.keepalive_timeout.as_secs().max(1)
    }

    /// A running-request slot for the session's client address, or the 429 answer's error
    /// when that address already runs its limit.
    fn client_slot(&self, session: &ServerSession) -> Result<Option<ClientSlot>, RegistryError> {
        let Some((slots, metrics)) = &self.slots else {
            return Ok(None);
        };
        let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip())
        else {
            return Ok(None); // not an IP client (a Unix socket): nobody to count it against
        };
        match slots.try_enter(ip) {
            Some(slot) => Ok(Some(slot)),
            None => {
                metrics.refused("requests_per_client");
                Err(RegistryError::new(
                    ErrorCode::TooManyRequests,
                    format!(
                        "{ip} already has {} requests running, the limit per client address \
                         (server.max_requests_per_client); retry when some have finished",
                        slots.max()
                    ),
                ))
            }
        }
    }

    /// The requests-in-flight counter graceful shutdown waits on.
    pub fn in_flight(&self) -> drain::InFlight {
        self.in_flight.clone()
    }

    /// Records one access log line per request.
    pub fn with_access_log(mut self, log: Arc<AccessLog>) -> Self {
        self.access_log = log.enabled().then_some(log);
        self
    }

    /// Puts client access control in front of every registry request.
    pub fn with_access(mut self, access: Arc<AccessControl>) -> Self {
        self.access = Some(access);
        self
    }
}

/// What became of a request.
enum Outcome {
    /// Response complete; the connection may be reused.
    Done,
    /// Response cut short (bad upstream bytes, client gone): the connection must close.
    Cut,
}

impl From<bool> for Outcome {
    fn from(ok: bool) -> Self {
        if ok {
            Outcome::Done
        } else {
            Outcome::Cut
        }
    }
}

#[async_trait]
impl HttpServerApp for RegistryApp {
    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }

    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // A new connection has header_timeout to deliver its whole request head; a kept-alive
        // one has keepalive_timeout to start the next (Pingora's idle read timeout) and
        // header_timeout more to finish it. A silent or dripping client is closed.
        let reused = session.take_connection_user_context().is_some();
        let wait = if reused {
            self.limits.keepalive_timeout + self.limits.header_timeout
        } else {
            self.limits.header_timeout
        };
        match tokio::time::timeout(wait, session.read_request()).await {
            Ok(Ok(true)) => {}
            _ => return None,
        }
        // Every body write (at most SEND_PIECE bytes) must be taken within send_timeout: a
        // client that stops reading frees its connection and request slot.
        session.set_write_timeout(Some(self.limits.send_timeout));
        let _counted = self.in_flight.enter();
        let keepalive = (!*shutdown.borrow()).then(|| self.keepalive_secs());
        session.set_keepalive(keepalive);
        let entry = self.access_log.as_ref().map(|_| {
            let req = session.req_header();
            let path = req
                .uri
                .path_and_query()
                .map_or_else(|| req.uri.path(), |p| p.as_str());
            let client = session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip());
            (
                Entry::begin(std::time::SystemTime::now(), client, &req.method, path),
                std::time::Instant::now(),
            )
        });
        let mut user = None;
        let outcome = self.handle(&mut session, &mut user).await;
        if let (Some(log), Some((e, started))) = (&self.access_log, entry) {
            log.record(self.complete_entry(&session, e, started, user));
        }
        match outcome {
            Outcome::Done => {
                let mut persistent = HttpPersistentSettings::for_session(&session);
                persistent.set_user_context(Box::new(KeptAlive));
                match session.finish().await {
                    Ok(Some(s)) => Some(ReusedHttpStream::from_reusable_stream(s, persistent)),
                    _ => None,
                }
            }
            Outcome::Cut => {
                session.shutdown().await;
                None
            }
        }
    }
}

fn invalid(code: ErrorCode, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(code, e.to_string())
}

impl RegistryApp {
    /// Fills in what the response was: status, bytes, cache result, upstream and user.
    fn complete_entry(
        &self,
        session: &ServerSession,
        mut e: Entry,
        started: std::time::Instant,
        user: Option<String>,
    ) -> Box<Entry> {
        // Microsecond precision is all a log reader needs.
        e.duration_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1000.0;
        e.bytes = session.body_bytes_sent() as u64;
        if let Some(h) = session.response_written() {
            e.status = h.status.as_u16();
            e.cache = h.headers.get("x-breakwater-cache").cloned();
        }
        e.user = user;
        let path = session.req_header().uri.path();
        let query = session.req_header().uri.query().unwrap_or("");
        let name = match parse_path(path) {
            Endpoint::Manifest { name, .. }
            | Endpoint::Blob { name, .. }
            | Endpoint::Tags { name }
            | Endpoint::Referrers { name, .. } => Some(name),
            _ => None,
        };
        if let Some(name) = name {
            // Without `ns` (the usual case) nothing is decoded or allocated.
            let ns = query
                .contains("ns=")
                .then(|| query_param(query, "ns"))
                .flatten();
            e.upstream = self
                .router
                .upstream_of(name, ns.as_deref())
                .map(|u| u.shared_name.clone());
        }
        Box::new(e)
    }

    async fn handle(&self, session: &mut ServerSession, user: &mut Option<String>) -> Outcome {
        let _slot = match self.client_slot(session) {
            Ok(slot) => slot,
            Err(e) => return self.too_many(session, &e).await,
        };
        let req = session.req_header();
        let method = req.method.clone();
        let path = req.uri.path().to_string();
        let query = req.uri.query().unwrap_or("").to_string();
        let head = method == http::Method::HEAD;
        if path == "/token" {
            return self.token(session).await;
        }
        if method != http::Method::GET && !head {
            // Not reading a request body we will not use: close after answering.
            session.set_keepalive(None);
            let e = RegistryError::new(
                ErrorCode::Unsupported,
                format!("{method} is not supported: breakwater is a read-only pull-through cache"),
            );
            return send_error(session, &e, false).await.into();
        }
        let client = match self.authenticate(session, head).await {
            Ok(c) => c,
            Err(refused) => return refused,
        };
        let client = client.as_ref();
        if self.access_log.is_some() {
            *user = client.map(Client::label);
        }
        match parse_path(&path) {
            Endpoint::Base => {
                // Anonymous clients are always challenged here, even where they may pull:
                // docker never sends credentials to a registry whose /v2/ answered 200.
                if client.is_some_and(|c| c.principal.is_anonymous()) {
                    return self
                        .unauthorized(session, "authentication required".into(), None, None, head)
                        .await;
                }
                let mut h = header(200);
                set(&mut h, "Content-Type", "application/json");
                send_bytes(session, h, Bytes::from_static(b"{}"), head)
                    .await
                    .into()
            }
            Endpoint::Catalog => self.catalog(session, client, &query, head).await,
            Endpoint::Manifest { name, reference } => {
                self.manifest(session, client, name, reference, &query, head)
                    .await
            }
            Endpoint::Blob { name, digest } => {
                self.blob(session, client, name, digest, &query, head).await
            }
            Endpoint::Tags { name } => self.tags(session, client, name, &path, &query, head).await,
            Endpoint::Referrers { name, digest } => {
                self.referrers(session, client, name, digest, &query, head)
                    .await
            }
            Endpoint::Write => {
                session.set_keepalive(None);
                let e = RegistryError::new(
                    ErrorCode::Unsupported,
                    "pushing is not supported: breakwater is a read-only pull-through cache",
                );
                send_error(session, &e, head).await.into()
            }
            Endpoint::Unknown => {
                let e =
                    RegistryError::new(ErrorCode::Unsupported, format!("unknown endpoint {path}"));
                send_error_status(session, &e, 404, head).await.into()
            }
        }
    }

    /// 429 for a flooding client address, with when to retry.
    async fn too_many(&self, session: &mut ServerSession, e: &RegistryError) -> Outcome {
        let head = session.req_header().method == http::Method::HEAD;
        let mut h = header(429);
        set(&mut h, "Content-Type", "application/json");
        // Running requests finish in seconds (manifests) to minutes (big blobs): one second
        // spreads retries without leaving a node waiting long.
        set(&mut h, "Retry-After", 1);
        send_bytes(session, h, Bytes::from(e.to_json()), head)
            .await
            .into()
    }

    async fn fail(
        &self,
        session: &mut ServerSession,
        kind: &str,
        e: &RegistryError,
        head: bool,
    ) -> Outcome {
        self.registry.metrics().request(kind, "error");
        send_error(session, e, head).await.into()
    }

    /// Routes the repository a request names and checks the client may pull it (and whether
    /// it may fill); a refusal is answered here.
    async fn target(
        &self,
        session: &mut ServerSession,
        client: Option<&Client>,
        kind: &str,
        name: &str,
        query: &str,
        head: bool,
    ) -> Result<crate::registry::Target, Outcome> {
        let mut target = match self
            .router
            .resolve(name, query_param(query, "ns").as_deref())
        {
            Ok(t) => t,
            Err(e) => return Err(self.fail(session, kind, &e, head).await),
        };
        self.authorize(session, client, name, &mut target, head)
            .await?;
        Ok(target)
    }

    /// [`Self::target`] for a request about one digest, which is parsed here (400
    /// `DIGEST_INVALID` when it is not one), after the access checks.
    async fn digest_target(
        &self,
        session: &mut ServerSession,
        (client, kind): (Option<&Client>, &str),
        name: &str,
        digest: &str,
        query: &str,
        head: bool,
    ) -> Result<(crate::registry::Target, Digest), Outcome> {
        let target = self
            .target(session, client, kind, name, query, head)
            .await?;
        match Digest::parse(digest) {
            Ok(d) => Ok((target, d)),
            Err(e) => {
                let e = invalid(ErrorCode::DigestInvalid, e);
                Err(self.fail(session, kind, &e, head).await)
            }
        }
    }

    /// Answers a registry failure; a fill the rules refused is also counted and audited.
    async fn refuse_or_fail(
        &self,
        session: &mut ServerSession,
        (client, name): (Option<&Client>, &str),
        target: &crate::registry::Target,
        kind: &str,
        e: &RegistryError,
        head: bool,
    ) -> Outcome {
        if let (ErrorCode::Denied, Some(c)) = (e.code, client) {
            self.audit_denial(session, c, &target.key().to_string(), "fill");
        }
        if e.code == ErrorCode::Unauthorized {
            // An upstream taking clients' own credentials wants some: challenge for them.
            self.registry.metrics().request(kind, "error");
            let scope = format!("repository:{name}:pull");
            return self
                .unauthorized(session, e.message.clone(), Some(&scope), None, head)
                .await;
        }
        self.fail(session, kind, e, head).await
    }
}
