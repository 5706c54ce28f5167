//! The admin listener, apart from the registry port: Prometheus metrics, a health check, and the
//! admin API (`/api/v1/...`, JSON) over lifecycle policies, images, pins, GC and the audit trail.
//! The `breakwater images|lifecycle|gc|pin|events` commands are clients of that API.

pub mod api;
pub mod cli;
mod client;
pub mod http;
mod images;
mod lifecycle;
mod scan;
pub mod scan_cli;
pub mod table;

use crate::lifecycle::Lifecycle;
use crate::registry::Registry;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The admin HTTP app.
pub struct AdminApp {
    registry: Arc<Registry>,
    lifecycle: Arc<Lifecycle>,
}

impl AdminApp {
    /// An admin app over `registry` and its lifecycle.
    pub fn new(registry: Arc<Registry>, lifecycle: Arc<Lifecycle>) -> Self {
        AdminApp {
            registry,
            lifecycle,
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> ::http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => http::response(
                200,
                "text/plain; version=0.0.4",
                self.registry.metrics.render(),
            ),
            "/healthz" => http::response(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            p if scan::handles(p) => match http::read(session).await {
                Ok(req) => scan::handle(&self.registry, req).await,
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
