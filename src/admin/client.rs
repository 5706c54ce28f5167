//! A small blocking client of the admin API for the CLI.

use serde_json::Value;
use std::time::Duration;

/// A request body.
pub enum Body {
    /// JSON.
    Json(Value),
    /// Raw text (a policy document as the user wrote it).
    Text(String),
}

/// Talks to one running breakwater's admin listener.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Client {
    /// A client of the admin API at `base` (`http://host:port`; the scheme may be left out).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, String> {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        Ok(Client {
            base,
            token,
            http,
            rt,
        })
    }

    /// Sends a request to `/api/v1{path}` and returns the JSON answer, or the API's error.
    pub fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Body>,
    ) -> Result<Value, String> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req = match body {
            Some(Body::Json(v)) => req.json(&v),
            Some(Body::Text(t)) => req.header("Content-Type", "application/json").body(t),
            None => req,
        };
        self.rt.block_on(async move {
            let resp = req.send().await.map_err(|e| {
                format!(
                    "cannot reach the admin API at {}: {e} (is breakwater serving? use --admin URL or --config FILE)",
                    self.base
                )
            })?;
            let status = resp.status();
            let text = resp
                .text()
                .await
                .map_err(|e| format!("reading the answer of {method} {url} failed: {e}"))?;
            let value: Value = serde_json::from_str(&text).map_err(|_| {
                format!("{method} {url} answered {status} with non-JSON: {text:.200}")
            })?;
            if status.is_success() {
                Ok(value)
            } else {
                Err(format!(
                    "{} ({status})",
                    value["error"].as_str().unwrap_or(&text)
                ))
            }
        })
    }
}
