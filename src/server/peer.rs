//! The peer endpoint, on its own listener (`cluster.peer_listen`): other replicas fetch a blob
//! this one is filling (relayed as bytes land, the last byte only once verified) or holds.
//! `GET /peer/v1/blobs/<digest>` with `Authorization: Bearer <cluster secret>`; `Range:
//! bytes=N-` resumes. Never fetches from upstream and never starts a fill.

use super::range::{self, ByteRange};
use super::respond::{self, header, send_error, set};
use crate::cluster::PEER_BLOBS;
use crate::config::AdminToken;
use crate::oci::{Digest, ErrorCode, RegistryError};
use crate::registry::blobs::BlobSource;
use crate::registry::fill::{FillReader, Phase};
use crate::registry::Registry;
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

/// The peer HTTP app.
pub struct PeerApp {
    registry: Arc<Registry>,
    secret: AdminToken,
}

impl PeerApp {
    /// Serves `registry`'s fills and blobs to peers presenting `secret`.
    pub fn new(registry: Arc<Registry>, secret: AdminToken) -> Self {
        PeerApp { registry, secret }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let presented = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        presented.is_some_and(|p| self.secret.matches(p))
    }

    /// Answers one request; `false`: the response was cut, close the connection.
    async fn handle(&self, session: &mut ServerSession) -> bool {
        let req = session.req_header();
        let digest = req.uri.path().strip_prefix(PEER_BLOBS).map(Digest::parse);
        let get = req.method == http::Method::GET;
        if !self.authorized(session) {
            let e = RegistryError::new(
                ErrorCode::Unauthorized,
                "the peer endpoint needs the cluster secret",
            );
            return send_error(session, &e, false).await;
        }
        let digest = match (get, digest) {
            (true, Some(Ok(d))) => d,
            (true, Some(Err(e))) => {
                let e = RegistryError::new(ErrorCode::DigestInvalid, e.to_string());
                return send_error(session, &e, false).await;
            }
            _ => {
                let e = RegistryError::new(
                    ErrorCode::Unsupported,
                    "the peer endpoint serves GET /peer/v1/blobs/<digest> only",
                );
                return send_error(session, &e, false).await;
            }
        };
        let range_header = session
            .req_header()
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let source = match self.registry.local_blob(&digest).await {
            Ok(Some(s)) => s,
            Ok(None) => {
                let e = RegistryError::new(
                    ErrorCode::BlobUnknown,
                    format!("this replica is neither filling nor holding {digest}"),
                );
                return send_error(session, &e, false).await;
            }
            Err(e) => return send_error(session, &e, false).await,
        };
        let (total, fill) = match source {
            BlobSource::Stored(b) => (b.size, Err(b.reader)),
            BlobSource::Filling(f) => {
                let p = f.started().await;
                match (&p.phase, p.total) {
                    (Phase::Failed(e), _) => return send_error(session, &e.into(), false).await,
                    (_, Some(t)) => (t, Ok(f)),
                    // Upstream gave no length: peers need one to resume; let them retry.
                    (_, None) => {
                        let e = RegistryError::new(
                            ErrorCode::Unavailable,
                            format!("the size of {digest} is not known yet"),
                        );
                        return send_error(session, &e, false).await;
                    }
                }
            }
        };
        let (status, start, end) = match range::parse(range_header.as_deref(), total) {
            ByteRange::Partial { start, end } => (206, start, end + 1),
            ByteRange::Full => (200, 0, total),
            ByteRange::Unsatisfiable => {
                let e = RegistryError::new(ErrorCode::RangeInvalid, "range outside the blob");
                return send_error(session, &e, false).await;
            }
        };
        let mut h = header(status);
        set(&mut h, "Content-Type", "application/octet-stream");
        set(&mut h, "Docker-Content-Digest", &digest);
        set(&mut h, "Content-Length", end - start);
        if status == 206 {
            set(
                &mut h,
                "Content-Range",
                format!("bytes {start}-{}/{total}", end - 1),
            );
        }
        if session.write_response_header(h).await.is_err() {
            return false;
        }
        if start == end {
            return session
                .write_response_body(bytes::Bytes::new(), true)
                .await
                .is_ok();
        }
        let sent = match fill {
            Err(reader) => respond::send_blob_range(session, reader, start, end)
                .await
                .ok_or_else(|| "read or write failed".to_string()),
            Ok(f) => respond::send_fill(session, FillReader::new(f, start, Some(end))).await,
        };
        match sent {
            Ok(n) => {
                let m = self.registry.metrics();
                m.bytes_served.with_label_values(&["peer"]).inc_by(n);
                true
            }
            Err(msg) => {
                tracing::warn!(%digest, "cutting peer response: {msg}");
                false
            }
        }
    }
}

#[async_trait]
impl HttpServerApp for PeerApp {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        match session.read_request().await {
            Ok(true) => {}
            _ => return None,
        }
        session.set_keepalive(if *shutdown.borrow() { None } else { Some(60) });
        if self.handle(&mut session).await {
            let persistent = HttpPersistentSettings::for_session(&session);
            match session.finish().await {
                Ok(Some(s)) => Some(ReusedHttpStream::from_reusable_stream(s, persistent)),
                _ => None,
            }
        } else {
            session.shutdown().await;
            None
        }
    }
}
