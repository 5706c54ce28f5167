//! Blob GET and HEAD: routing and access checks, then the stored blob, a fill to tail, or a
//! redirect, with `Range` (206, 416).

use super::range::{self, ByteRange};
use super::respond::{self, header, send_bytes, set};
use super::zerocopy::{self, Sent};
use super::{Outcome, RegistryApp};
use crate::access::Client;
use crate::oci::{Digest, ErrorCode, RegistryError};
use crate::registry::blobs::BlobSource;
use crate::registry::fill::{FillReader, Phase};
use bytes::Bytes;
use pingora::protocols::http::ServerSession;

impl RegistryApp {
    pub(super) async fn blob(
        &self,
        session: &mut ServerSession,
        client: Option<&Client>,
        name: &str,
        digest: &str,
        query: &str,
        head: bool,
    ) -> Outcome {
        let (target, digest) = match self
            .digest_target(session, (client, "blob"), name, digest, query, head)
            .await
        {
            Ok(found) => found,
            Err(refused) => return refused,
        };
        let base = |status: u16| {
            let mut h = header(status);
            set(&mut h, "Content-Type", "application/octet-stream");
            set(&mut h, "Docker-Content-Digest", &digest);
            set(&mut h, "ETag", format!("\"{digest}\""));
            set(&mut h, "Accept-Ranges", "bytes");
            h
        };
        if head {
            return match self.registry.blob_size(&target, &digest).await {
                Ok(size) => {
                    self.registry.metrics().request("blob", "head");
                    let mut h = base(200);
                    set(&mut h, "Content-Length", size);
                    session.write_response_header(h).await.is_ok().into()
                }
                Err(e) => {
                    self.refuse_or_fail(session, (client, name), &target, "blob", &e, true)
                        .await
                }
            };
        }
        let range_header = session
            .req_header()
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let source = match self.registry.blob(&target, &digest).await {
            Ok(s) => s,
            Err(e) => {
                return self
                    .refuse_or_fail(session, (client, name), &target, "blob", &e, false)
                    .await
            }
        };
        let metrics = self.registry.metrics();
        match source {
            BlobSource::Stored(b) => {
                if let Some(url) = self.registry.blob_redirect(&digest).await {
                    metrics.request("blob", "redirect");
                    let mut h = header(307);
                    set(&mut h, "Location", url);
                    set(&mut h, "Docker-Content-Digest", &digest);
                    set(&mut h, "Content-Length", 0);
                    return session.write_response_header(h).await.is_ok().into();
                }
                metrics.request("blob", "hit");
                let base = |status: u16| {
                    let mut h = base(status);
                    set(&mut h, "X-Breakwater-Cache", "hit");
                    h
                };
                let (status, start, end) = match range::parse(range_header.as_deref(), b.size) {
                    ByteRange::Full => (200, 0, b.size),
                    ByteRange::Partial { start, end } => (206, start, end + 1),
                    ByteRange::Unsatisfiable => {
                        return self.unsatisfiable(session, &digest, b.size).await
                    }
                };
                let mut h = base(status);
                set(&mut h, "Content-Length", end - start);
                if status == 206 {
                    set(
                        &mut h,
                        "Content-Range",
                        format!("bytes {start}-{}/{}", end - 1, b.size),
                    );
                }
                if session.write_response_header(h).await.is_err() {
                    return Outcome::Cut;
                }
                if start == end {
                    return session
                        .write_response_body(Bytes::new(), true)
                        .await
                        .is_ok()
                        .into();
                }
                if let Some(file) = b.reader.file() {
                    match zerocopy::send_file_range(session, file, start, end).await {
                        Sent::Done(n) => {
                            metrics.bytes_served.with_label_values(&["cache"]).inc_by(n);
                            metrics.blob_bodies.with_label_values(&["sendfile"]).inc();
                            return Outcome::Done;
                        }
                        Sent::Failed => return Outcome::Cut,
                        Sent::Unsupported => {}
                    }
                }
                match respond::send_blob_range(session, b.reader, start, end).await {
                    Some(n) => {
                        metrics.bytes_served.with_label_values(&["cache"]).inc_by(n);
                        metrics.blob_bodies.with_label_values(&["copy"]).inc();
                        Outcome::Done
                    }
                    None => Outcome::Cut,
                }
            }
            BlobSource::Filling(fill) => {
                metrics.request("blob", "miss");
                let base = |status: u16| {
                    let mut h = base(status);
                    set(&mut h, "X-Breakwater-Cache", "miss");
                    h
                };
                let p = fill.started().await;
                if let Phase::Failed(e) = &p.phase {
                    return self.fail(session, "blob", &e.into(), false).await;
                }
                let (status, start, end) = match (
                    p.total,
                    range::parse(range_header.as_deref(), p.total.unwrap_or(0)),
                ) {
                    (Some(_), ByteRange::Partial { start, end }) => (206, start, Some(end + 1)),
                    (Some(total), ByteRange::Unsatisfiable) => {
                        return self.unsatisfiable(session, &digest, total).await
                    }
                    (total, _) => (200, 0, total),
                };
                let mut h = base(status);
                match end {
                    Some(e) => set(&mut h, "Content-Length", e - start),
                    None if session.is_http2() => {}
                    None => set(&mut h, "Transfer-Encoding", "chunked"),
                }
                if status == 206 {
                    set(
                        &mut h,
                        "Content-Range",
                        format!(
                            "bytes {start}-{}/{}",
                            end.unwrap_or(1) - 1,
                            p.total.unwrap_or(0)
                        ),
                    );
                }
                if session.write_response_header(h).await.is_err() {
                    return Outcome::Cut;
                }
                let reader = FillReader::new(fill, start, end);
                match respond::send_fill(session, reader).await {
                    Ok(n) => {
                        metrics
                            .bytes_served
                            .with_label_values(&["upstream"])
                            .inc_by(n);
                        Outcome::Done
                    }
                    Err(msg) => {
                        tracing::warn!(%digest, "cutting blob response: {msg}");
                        Outcome::Cut
                    }
                }
            }
        }
    }

    async fn unsatisfiable(
        &self,
        session: &mut ServerSession,
        digest: &Digest,
        size: u64,
    ) -> Outcome {
        self.registry.metrics().request("blob", "error");
        let e = RegistryError::new(
            ErrorCode::RangeInvalid,
            format!("requested range is outside blob {digest} of {size} bytes"),
        );
        let mut h = header(416);
        set(&mut h, "Content-Type", "application/json");
        set(&mut h, "Content-Range", format!("bytes */{size}"));
        send_bytes(session, h, Bytes::from(e.to_json()), false)
            .await
            .into()
    }
}
