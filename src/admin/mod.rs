//! The admin listener, apart from the registry port: Prometheus metrics and a health check.

use crate::registry::Registry;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// The admin HTTP app.
pub struct AdminApp {
    registry: Arc<Registry>,
}

impl AdminApp {
    /// An admin app over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        AdminApp { registry }
    }
}

fn response(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .body(body)
        .expect("static response parts are valid")
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        match path.as_str() {
            "/metrics" => response(
                200,
                "text/plain; version=0.0.4",
                self.registry.metrics.render(),
            ),
            "/healthz" => response(200, "application/json", br#"{"status":"ok"}"#.to_vec()),
            _ => response(
                404,
                "application/json",
                serde_json::json!({"error": format!("no admin endpoint {path}")})
                    .to_string()
                    .into_bytes(),
            ),
        }
    }
}
