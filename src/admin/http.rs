//! Request and response plumbing of the admin API: the request read whole (body capped), query
//! parameters decoded, JSON answers, and errors as `{"error": "..."}` with a fitting status.

use pingora::protocols::http::ServerSession;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;

/// Largest request body accepted (policies and preview requests are a few KiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// An API failure: status and a message naming the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with `status`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::lifecycle::OpError> for ApiError {
    fn from(e: crate::lifecycle::OpError) -> Self {
        ApiError::new(e.status(), e.to_string())
    }
}

/// A request read whole.
pub struct Request {
    /// Method, upper case.
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// Decoded query parameters (last one wins).
    pub query: HashMap<String, String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A required query parameter.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.param(name)
            .ok_or_else(|| ApiError::new(400, format!("query parameter {name:?} is required")))
    }

    /// The body as `T`; an empty body is `T::default()`.
    pub fn json<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::new(400, format!("request body is not valid: {e}")))
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, ApiError> {
        std::str::from_utf8(&self.body)
            .map_err(|_| ApiError::new(400, "request body is not UTF-8 text"))
    }
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Parses `a=1&b=x%2Fy` into decoded pairs.
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Reads the request head and a body of at most [`MAX_BODY`] bytes.
pub async fn read(session: &mut ServerSession) -> Result<Request, ApiError> {
    let head = session.req_header();
    let method = head.method.as_str().to_ascii_uppercase();
    let raw_path = head.uri.path().to_string();
    let query = parse_query(head.uri.query().unwrap_or(""));
    let path = percent_encoding::percent_decode_str(&raw_path)
        .decode_utf8()
        .map_err(|_| ApiError::new(400, "request path is not UTF-8 once decoded"))?
        .into_owned();
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(ApiError::new(
                        413,
                        format!("request body is larger than {MAX_BODY} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(ApiError::new(
                    400,
                    format!("cannot read the request body: {e}"),
                ))
            }
        }
    }
    Ok(Request {
        method,
        path,
        query,
        body,
    })
}

/// A response with `body` of `content_type`.
pub fn response(status: u16, content_type: &str, body: Vec<u8>) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .body(body)
        .expect("static response parts are valid")
}

/// A JSON response.
pub fn json<T: Serialize>(status: u16, value: &T) -> http::Response<Vec<u8>> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut body) => {
            body.push(b'\n');
            response(status, "application/json", body)
        }
        Err(e) => error(&ApiError::new(
            500,
            format!("cannot encode the answer: {e}"),
        )),
    }
}

/// The JSON error response.
pub fn error(e: &ApiError) -> http::Response<Vec<u8>> {
    let body = serde_json::json!({ "error": e.message }).to_string() + "\n";
    response(e.status, "application/json", body.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_decoded() {
        let q = parse_query("repository=docker.io%2Flibrary%2F*&dry_run&x=a+b&x=c");
        assert_eq!(q["repository"], "docker.io/library/*");
        assert_eq!(q["dry_run"], "");
        assert_eq!(q["x"], "c");
    }
}
