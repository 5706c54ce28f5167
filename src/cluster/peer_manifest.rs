//! Manifests from other replicas: a replica whose own store lacks a manifest the shared index
//! knows (replicas with stores of their own) copies it from a live member's peer endpoint
//! instead of asking upstream, where Docker Hub counts every manifest GET.

use super::{Cluster, PEER_BLOBS};
use crate::oci::manifest::MAX_MANIFEST_BYTES;
use crate::oci::Digest;
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::header::AUTHORIZATION;
use std::sync::Arc;
use std::time::Duration;

/// How long one peer may take to hand over a manifest before the next is asked.
const PEER_MANIFEST_TIMEOUT: Duration = Duration::from_secs(3);

impl Cluster {
    /// The bytes of manifest `digest` from the first live member that has them and whose bytes
    /// `verify` accepts; `None` when no member could give them.
    pub async fn peer_manifest(
        self: &Arc<Self>,
        digest: &Digest,
        verify: impl Fn(&[u8]) -> bool,
    ) -> Option<Bytes> {
        let c = self.clone();
        let dead_after = (self.settings.lease_ttl * 3).as_millis() as i64;
        let peers: Vec<(String, String)> = tokio::task::spawn_blocking(move || {
            c.index.members().map(|ms| {
                ms.into_iter()
                    .filter(|m| m.node != c.node() && m.heartbeat_age_ms < dead_after)
                    .map(|m| (m.node, m.peer_url))
                    .collect()
            })
        })
        .await
        .ok()?
        .ok()?;
        for (node, url) in peers {
            let got = tokio::time::timeout(PEER_MANIFEST_TIMEOUT, self.ask(&url, digest)).await;
            match got {
                Ok(Some(bytes)) if verify(&bytes) => {
                    self.count_fill("peer");
                    return Some(bytes);
                }
                Ok(Some(_)) => {
                    self.count_peer_failure("digest_mismatch");
                    tracing::warn!(peer = %node, %digest, "a peer's copy of a manifest failed verification");
                }
                _ => {}
            }
        }
        None
    }

    /// One peer's copy, if it has one (at most the manifest size limit).
    async fn ask(&self, peer_url: &str, digest: &Digest) -> Option<Bytes> {
        let resp = self
            .http
            .get(format!("{peer_url}{PEER_BLOBS}{digest}"))
            .header(
                AUTHORIZATION,
                format!("Bearer {}", self.settings.secret.secret()),
            )
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.ok()?;
            if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return None;
            }
            body.extend_from_slice(&chunk);
        }
        Some(Bytes::from(body))
    }
}
