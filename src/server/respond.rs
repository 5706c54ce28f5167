//! Writing responses: registry headers, error JSON, and streaming blob bodies from a stored file
//! or a running fill with large positional reads (no per-4-KiB syscalls, no whole-blob buffers).

use crate::oci::RegistryError;
use crate::registry::fill::{Fill, Phase};
use bytes::{Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Bytes per read and per body write when streaming a blob: large enough to keep syscalls and
/// task hops rare, small enough that memory per client stays low (two chunks in flight each).
const CHUNK: usize = 256 * 1024;

/// A response header with the registry's common headers.
pub fn header(status: u16) -> Box<ResponseHeader> {
    let mut h = ResponseHeader::build(status, Some(8)).expect("valid status");
    let _ = h.insert_header("Docker-Distribution-API-Version", "registry/2.0");
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

async fn read_chunk(file: Arc<File>, pos: u64, len: usize) -> std::io::Result<Bytes> {
    tokio::task::spawn_blocking(move || {
        let mut buf = BytesMut::zeroed(len);
        file.read_exact_at(&mut buf, pos)?;
        Ok(buf.freeze())
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Streams `file[start..end]`; the next chunk is read while the current one is written.
/// Returns the bytes sent, or `None` if the client went away or a read failed (caller cuts).
pub async fn send_file_range(
    session: &mut ServerSession,
    file: Arc<File>,
    start: u64,
    end: u64,
) -> Option<u64> {
    let mut pos = start;
    let next = |p: u64| {
        let len = (end - p).min(CHUNK as u64) as usize;
        tokio::spawn(read_chunk(file.clone(), p, len))
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

/// Streams `[start, end)` of a running fill as bytes land (`end = None`: to the end, size not yet
/// known). The final byte is released only after verification; `Err` means cut the response.
pub async fn send_fill_range(
    session: &mut ServerSession,
    fill: &Fill,
    start: u64,
    end: Option<u64>,
) -> Result<u64, String> {
    let mut rx = fill.watch();
    let mut pos = start;
    loop {
        let p = rx.borrow_and_update().clone();
        if let Phase::Failed(m) = &p.phase {
            return Err(m.clone());
        }
        let stop = end.map_or(p.readable(), |e| e.min(p.readable()));
        if pos < stop {
            let len = (stop - pos).min(CHUNK as u64) as usize;
            let chunk = fill
                .read(pos, len)
                .await
                .map_err(|e| format!("reading the fill failed: {e}"))?;
            pos += chunk.len() as u64;
            let finished = match end {
                Some(e) => pos >= e,
                None => p.phase == Phase::Done && pos >= p.written,
            };
            session
                .write_response_body(chunk, finished)
                .await
                .map_err(|e| format!("client went away: {e}"))?;
            if finished {
                return Ok(pos - start);
            }
            continue;
        }
        let finished = match end {
            Some(e) => pos >= e,
            None => p.phase == Phase::Done && pos >= p.written,
        };
        if finished {
            session
                .write_response_body(Bytes::new(), true)
                .await
                .map_err(|e| format!("client went away: {e}"))?;
            return Ok(pos - start);
        }
        if rx.changed().await.is_err() && rx.borrow().phase != Phase::Done {
            return Err("fill ended without a result".into());
        }
    }
}
