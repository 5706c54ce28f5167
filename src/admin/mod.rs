//! The admin listener, apart from the registry port: Prometheus metrics, a health check, and the
//! admin API (`/api/v1/...`, JSON) over lifecycle policies, images, pins, GC and the audit trail.
//! The `breakwater images|lifecycle|gc|pin|events` commands are clients of that API.

pub mod api;
pub mod cli;
mod client;
pub mod cluster;
pub mod http;
mod images;
mod lifecycle;
mod ready;
pub mod ready_cli;
mod scan;
pub mod scan_cli;
pub mod table;

use crate::config::AdminToken;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::scan::Scanner;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The admin HTTP app.
pub struct AdminApp {
    metrics: Arc<Metrics>,
    lifecycle: Arc<Lifecycle>,
    scanner: Arc<Scanner>,
    token: Option<AdminToken>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl AdminApp {
    /// An admin app over a cache's lifecycle and scanner, exporting `metrics`; with a token,
    /// `/api/...` requires it.
    pub fn new(
        metrics: Arc<Metrics>,
        lifecycle: Arc<Lifecycle>,
        scanner: Arc<Scanner>,
        token: Option<AdminToken>,
    ) -> Self {
        AdminApp {
            metrics,
            lifecycle,
            scanner,
            token,
            cluster: None,
        }
    }

    /// Serves `cluster status` for this replica's cluster.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::Cluster>>) -> Self {
        self.cluster = cluster;
        self
    }

    /// Checks `Authorization: Bearer <token>` when a token is configured. Metrics and the
    /// health check stay open, so scrapers and probes need no secret.
    fn authorize(&self, session: &ServerSession) -> Result<(), http::ApiError> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        let presented = session
            .req_header()
            .headers
            .get(::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            })
            .map(|(_, t)| t.trim());
        match presented {
            Some(t) if token.matches(t) => Ok(()),
            Some(_) => Err(http::ApiError::new(
                401,
                "the admin token presented is not the one configured (server.admin_token_file \
                 or server.admin_token_env)",
            )),
            None => Err(http::ApiError::new(
                401,
                "the admin API requires Authorization: Bearer <token> (the CLI sends the token \
                 of --config, or BREAKWATER_ADMIN_TOKEN)",
            )),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> ::http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let is_api = scan::handles(&path) || path == "/api" || path.starts_with("/api/");
        if let Err(e) = self
            .authorize(session)
            .or_else(|e| if is_api { Err(e) } else { Ok(()) })
        {
            let mut resp = http::error(&e);
            resp.headers_mut().insert(
                ::http::header::WWW_AUTHENTICATE,
                ::http::HeaderValue::from_static("Bearer realm=\"breakwater-admin\""),
            );
            return resp;
        }
        match path.as_str() {
            "/metrics" => http::response(200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => http::response(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            cluster::STATUS_PATH => cluster::status(self.cluster.as_ref()).await,
            p if scan::handles(p) => match http::read(session).await {
                Ok(req) => scan::handle(&self.scanner, &self.lifecycle.cache.index, req).await,
                Err(e) => http::error(&e),
            },
            p if ready::handles(p) => match http::read(session).await {
                Ok(req) => ready::handle(&self.lifecycle.cache, self.scanner.source(), req).await,
                Err(e) => http::error(&e),
            },
            "/api/v1/gc" if self.cluster.is_some() => match http::read(session).await {
                Ok(req) if req.method == "POST" => match &self.cluster {
                    Some(c) => cluster::gc(c, &self.lifecycle, req).await,
                    None => api::handle(&self.lifecycle, req).await,
                },
                Ok(req) => api::handle(&self.lifecycle, req).await,
                Err(e) => http::error(&e),
            },
            p if p == "/api" || p.starts_with("/api/") => match http::read(session).await {
                Ok(req) => api::handle(&self.lifecycle, req).await,
                Err(e) => http::error(&e),
            },
            _ => http::error(&http::ApiError::new(
                404,
                format!("no admin endpoint {path}"),
            )),
        }
    }
}
