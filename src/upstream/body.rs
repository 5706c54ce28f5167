//! Small upstream answers (manifests, tag lists, referrers, error bodies) read whole, bounded
//! in size and in time.

use super::token;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use std::time::Duration;

/// Why a small body could not be read.
pub(super) enum ReadError {
    /// It was larger than the limit.
    TooLarge,
    /// The connection failed, or the body did not arrive in time.
    Io(String),
}

/// A small body whole: at most `limit` bytes, arriving within `within` in all (an upstream
/// sending a byte now and then would otherwise hold the request for ever).
pub(super) async fn read_limited(
    resp: reqwest::Response,
    limit: usize,
    within: Duration,
) -> Result<Bytes, ReadError> {
    tokio::time::timeout(within, read_all(resp, limit))
        .await
        .unwrap_or_else(|_| {
            Err(ReadError::Io(format!(
                "the answer did not arrive in whole within {}",
                humantime::format_duration(within)
            )))
        })
}

async fn read_all(resp: reqwest::Response, limit: usize) -> Result<Bytes, ReadError> {
    let mut buf = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ReadError::Io(token::describe(&e)))?;
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}
