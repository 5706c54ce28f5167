//! The download loop of a fill: upstream (or a peer) bytes gathered into batches and handed to
//! the pipeline, a broken stream resumed with `Range` from the bytes already held, and the bytes
//! that complete the blob published only once the digest verified.

use super::batch::{Gathered, BATCH};
use super::pipeline::Pipeline;
use super::size::{self, content_range_start, content_range_total, Cap};
use super::{source, FillContext, FillError, Phase, Progress};
use crate::oci::{Digest, RepoName};
use crate::upstream::{Upstream, UpstreamError};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use std::time::Duration;
use tokio::sync::watch;

/// Upstream attempts for one fill (the first plus resumes).
const MAX_ATTEMPTS: u32 = 4;

/// Streams the blob into the staging file, resuming on breaks; returns the verified size.
pub(super) async fn download(
    ctx: &FillContext,
    (upstream, source): (&Upstream, &mut source::Source),
    (repo, client): (&RepoName, Option<&crate::config::Credentials>),
    (digest, cap): (&Digest, &mut Cap),
    pipe: &mut Pipeline,
    tx: &watch::Sender<Progress>,
) -> Result<u64, FillError> {
    let mut offset: u64 = 0;
    let mut total: Option<u64> = None;
    let mut attempt = 0;
    let fetched = ctx
        .metrics
        .bytes_fetched
        .with_label_values(&[&upstream.name]);
    loop {
        attempt += 1;
        let from_peer = source.is_peer();
        let fetched_resp = source.fetch(upstream, (repo, client), digest, offset).await;
        if from_peer && !source.is_peer() {
            // Took over from a failed peer: upstream gets its full share of attempts.
            attempt = 1;
        }
        // Bytes relayed by a peer were fetched from upstream once, by that peer.
        let upstream_bytes = !source.is_peer();
        let resp = match fetched_resp {
            Ok(r) => r,
            Err(e) => {
                if attempt < MAX_ATTEMPTS && retryable(&e) && offset > 0 {
                    backoff(attempt).await;
                    continue;
                }
                return Err(FillError::Upstream(e));
            }
        };
        // A resume must continue exactly where we stopped; anything else restarts cleanly.
        let resumed = offset > 0
            && resp.status().as_u16() == 206
            && content_range_start(&resp) == Some(offset);
        if offset > 0 && !resumed {
            pipe.restart().await?;
            offset = 0;
        }
        let announced = if resumed {
            content_range_total(&resp)
        } else {
            resp.content_length()
        };
        cap.check_announced(announced).await?;
        let limit = cap.limit().await;
        if total.is_none() {
            total = announced;
            tx.send_modify(|p| {
                p.total = total;
                p.phase = Phase::Streaming;
            });
        }
        let mut stream = resp.bytes_stream();
        // Bytes are gathered into one chunk for the hasher, the writer and readers (few
        // syscalls and queue hops); a smaller chunk goes out when upstream has nothing more
        // ready, so a slow upstream's bytes still reach readers at once.
        let mut buf = Gathered::default();
        let mut broken = None;
        loop {
            // The bytes that complete the announced size stay in `buf` until verified (below).
            let held_back = total.is_some_and(|t| offset + buf.len() as u64 == t);
            // Take what upstream has ready without waiting; before waiting, hand out what was
            // gathered, so the hasher and readers never wait for a batch to fill up. A peer's
            // bytes go out in whole batches only: a blob smaller than one from a peer is then
            // verified before any of it reaches a reader (a bad copy is discarded unseen).
            let next = match stream.next().now_or_never() {
                Some(next) => next,
                None => {
                    if !held_back && upstream_bytes {
                        offset = flush(pipe, &mut buf, offset, tx).await?;
                    }
                    stream.next().await
                }
            };
            match next {
                Some(Ok(chunk)) => {
                    let end = offset + (buf.len() + chunk.len()) as u64;
                    size::check_received(limit, end)?;
                    if total.is_some_and(|t| end > t) {
                        return Err(FillError::Oversize {
                            announced: total.unwrap_or(0),
                        });
                    }
                    if upstream_bytes {
                        fetched.inc_by(chunk.len() as u64);
                    }
                    let last = total == Some(end);
                    // Copied batch by batch, then dropped: the HTTP client reuses its buffer.
                    let mut rest: &[u8] = &chunk;
                    while !rest.is_empty() {
                        let n = rest.len().min(BATCH.saturating_sub(buf.len()).max(1));
                        buf.extend(&rest[..n]);
                        rest = &rest[n..];
                        // The bytes completing the blob stay gathered until verified.
                        if buf.len() >= BATCH && !(last && rest.is_empty()) {
                            offset = flush(pipe, &mut buf, offset, tx).await?;
                        }
                    }
                    drop(chunk);
                }
                Some(Err(e)) => {
                    broken = Some(crate::upstream::token::describe(&e));
                    break;
                }
                None => break,
            }
        }
        let end = offset + buf.len() as u64;
        if broken.is_none() && total.is_none_or(|t| t == end) {
            // Complete. The last bytes are published only once verified: a peer's bad blob
            // smaller than one chunk then never reaches a reader.
            let last = buf.take();
            let got = pipe.verify(last.clone()).await?;
            if &got == digest {
                let end = offset + last.len() as u64;
                pipe.publish(offset, last).await?;
                tx.send_modify(|p| p.written = p.written.max(end));
                return Ok(end);
            }
            if pipe.spilling().await? || !source.refuse_peer(digest, &got).await {
                ctx.metrics.verification_failures.inc();
                return Err(FillError::DigestMismatch {
                    expected: digest.clone(),
                    got,
                });
            }
            // A peer's bytes: discard them all and fetch the blob from upstream, from byte 0.
            // Readers learn first, so none takes a byte of the new run for one of the old.
            tx.send_modify(|p| {
                p.written = 0;
                p.restarts += 1;
            });
            pipe.discard().await?;
            (offset, attempt) = (0, 0);
            continue;
        }
        offset = flush(pipe, &mut buf, offset, tx).await?;
        match broken {
            None => {
                if attempt >= MAX_ATTEMPTS {
                    return Err(FillError::Truncated {
                        offset,
                        total: total.unwrap_or(0),
                    });
                }
            }
            Some(reason) => {
                if attempt >= MAX_ATTEMPTS {
                    return Err(FillError::Broken { offset, reason });
                }
                tracing::info!(%digest, offset, "upstream stream broke ({reason}); resuming");
            }
        }
        backoff(attempt).await;
    }
}

fn retryable(e: &UpstreamError) -> bool {
    // CDN URLs expire (401/403) and connections drop: ask again; a 404 is an answer.
    e.is_outage() || matches!(e.status(), Some(401 | 403))
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(100 << attempt.min(5))).await;
}

/// Hands the gathered bytes on as one chunk (see [`send`]).
async fn flush(
    pipe: &mut Pipeline,
    buf: &mut Gathered,
    offset: u64,
    tx: &watch::Sender<Progress>,
) -> Result<u64, FillError> {
    if buf.is_empty() {
        return Ok(offset);
    }
    send(pipe, buf.take(), offset, tx).await
}

/// Passes the chunk at `offset` to the pipeline, then tells readers it is there.
async fn send(
    pipe: &mut Pipeline,
    data: Bytes,
    offset: u64,
    tx: &watch::Sender<Progress>,
) -> Result<u64, FillError> {
    let end = offset + data.len() as u64;
    pipe.push(offset, data).await?;
    tx.send_modify(|p| p.written = p.written.max(end));
    Ok(end)
}
