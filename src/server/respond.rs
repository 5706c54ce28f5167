//! Writing responses: registry headers, error JSON, and streaming blob bodies from the store or
//! a running fill with large positional reads (256 KiB chunks: no per-4-KiB syscalls, no
//! whole-blob buffers; two chunks in flight per client at most).

use crate::cache::store::BlobReader;
use crate::oci::RegistryError;
use crate::registry::fill::{FillReader, CHUNK};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// A response header with the registry's common headers.
pub fn header(status: u16) -> Box<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(8)).expect("valid status");
    let _ = h.insert_header(
        "Docker-Distribution-API-Version",
        http::HeaderValue::from_static("registry/2.0"),
    );
    Box::new(h)
}

/// Sets a header, ignoring values that cannot be headers (they never come from clients).
pub fn set(h: &mut ResponseHeader, name: &'static str, value: impl ToString) {
    let _ = h.insert_header(name, value.to_string());
}

/// Sends a complete small response.
pub async fn send_bytes(
    session: &mut ServerSession,
    mut h: Box<ResponseHeader>,
    body: Bytes,
    head: bool,
) -> bool {
    set(&mut h, "Content-Length", body.len());
    send_prepared(session, h, body, head).await
}

/// Sends a complete small response whose header already has its `Content-Length`.
pub async fn send_prepared(
    session: &mut ServerSession,
    h: Box<ResponseHeader>,
    body: Bytes,
    head: bool,
) -> bool {
    if session.write_response_header(h).await.is_err() {
        return false;
    }
    if head || body.is_empty() {
        return true;
    }
    session.write_response_body(body, true).await.is_ok()
}

/// Sends the OCI error JSON.
pub async fn send_error(session: &mut ServerSession, e: &RegistryError, head: bool) -> bool {
    send_error_status(session, e, e.code.status(), head).await
}

/// Sends the OCI error JSON with an explicit status.
pub async fn send_error_status(
    session: &mut ServerSession,
    e: &RegistryError,
    status: u16,
    head: bool,
) -> bool {
    let mut h = header(status);
    set(&mut h, "Content-Type", "application/json");
    send_bytes(session, h, Bytes::from(e.to_json()), head).await
}

/// Streams `blob[start..end]`; the next chunk is read while the current one is written.
/// Returns the bytes sent, or `None` if the client went away or a read failed (caller cuts).
pub async fn send_blob_range(
    session: &mut ServerSession,
    blob: Arc<dyn BlobReader>,
    start: u64,
    end: u64,
) -> Option<u64> {
    let mut pos = start;
    let next = |p: u64| {
        let len = (end - p).min(CHUNK as u64) as usize;
        let blob = blob.clone();
        tokio::spawn(async move { blob.read_at(p, len).await })
    };
    let mut pending = (pos < end).then(|| next(pos));
    while let Some(job) = pending.take() {
        let chunk = job.await.ok()?.ok()?;
        let n = chunk.len() as u64;
        let last = pos + n >= end;
        if !last {
            pending = Some(next(pos + n));
        }
        session.write_response_body(chunk, last).await.ok()?;
        pos += n;
    }
    Some(pos - start)
}

/// Streams a running fill through `reader` as bytes land (the reader holds the final byte until
/// the blob verified). Returns the bytes sent; `Err` means cut the response.
pub async fn send_fill(session: &mut ServerSession, reader: FillReader) -> Result<u64, String> {
    // Bytes handed out before an upstream pause must reach the client now, not after it.
    super::zerocopy::write_through(session, true);
    let sent = stream_fill(session, reader).await;
    super::zerocopy::write_through(session, false);
    sent
}

async fn stream_fill(session: &mut ServerSession, mut reader: FillReader) -> Result<u64, String> {
    let mut sent = 0;
    loop {
        let chunk = reader.next_chunk().await.map_err(|e| e.to_string())?;
        let (chunk, finished) = match chunk {
            Some(c) => (c, reader.finished()),
            None => (Bytes::new(), true),
        };
        sent += chunk.len() as u64;
        session
            .write_response_body(chunk, finished)
            .await
            .map_err(|e| format!("client went away: {e}"))?;
        if finished {
            return Ok(sent);
        }
    }
}
