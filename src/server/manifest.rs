//! `GET`/`HEAD /v2/<name>/manifests/<reference>`: the request parsed, the registry asked, and
//! the answer written from the header values the cached manifest carries, so a hit formats no
//! strings (the tag hit path should approach a static file server).

use super::respond::{header, send_prepared};
use super::{invalid, Outcome, RegistryApp};
use crate::access::Client;
use crate::oci::manifest::Accept;
use crate::oci::{ErrorCode, Reference, RegistryError};
use crate::registry::{CacheStatus, Verdict};
use http::HeaderValue;
use pingora::protocols::http::ServerSession;

const STALE_WARNING: &str = "110 breakwater \"Response is Stale: upstream unavailable\"";

impl RegistryApp {
    pub(super) async fn manifest(
        &self,
        session: &mut ServerSession,
        client: Option<&Client>,
        name: &str,
        reference: &str,
        query: &str,
        head: bool,
    ) -> Outcome {
        let target = match self
            .target(session, client, "manifest", name, query, head)
            .await
        {
            Ok(t) => t,
            Err(refused) => return refused,
        };
        let reference = match Reference::parse(reference) {
            Ok(r) => r,
            Err(e) => {
                // A tag that cannot exist names no manifest: 404, as the specification's pull
                // tests expect (TAG_INVALID is for pushes).
                let e = if reference.contains(':') {
                    invalid(ErrorCode::DigestInvalid, e)
                } else {
                    RegistryError::new(
                        ErrorCode::ManifestUnknown,
                        format!("no manifest can have the reference {reference:?}: {e}"),
                    )
                };
                return self.fail(session, "manifest", &e, head).await;
            }
        };
        let accept = Accept::parse(
            session
                .req_header()
                .headers
                .get_all("accept")
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let answer = match self.registry.manifest(&target, &reference, &accept).await {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse_or_fail(session, (client, name), &target, "manifest", &e, head)
                    .await
            }
        };
        let m = &answer.manifest;
        // The pull gate (the scanner's, installed by main) may scan now, pulling layers via the cache.
        let scan_warning = match self.registry.gate(&target, m).await {
            Verdict::Allow => None,
            Verdict::Warn(w) => Some(w),
            Verdict::Deny(e) => return self.fail(session, "manifest", &e, head).await,
        };
        self.registry
            .metrics()
            .request("manifest", answer.status.as_str());
        if !head {
            self.registry.record_pull_of(&target, &m.digest);
            self.registry.prefetch(&target, m);
        }
        let v = &m.headers;
        let mut h = header(200);
        if let Some(ct) = &v.content_type {
            let _ = h.insert_header("Content-Type", ct.clone());
        }
        let _ = h.insert_header("Docker-Content-Digest", v.digest.clone());
        let _ = h.insert_header("ETag", v.etag.clone());
        let _ = h.insert_header(
            "X-Breakwater-Cache",
            HeaderValue::from_static(answer.status.as_str()),
        );
        if let Some(w) = &scan_warning {
            let _ = h.insert_header("X-Breakwater-Scan", w.clone());
        }
        if answer.status == CacheStatus::Stale {
            let _ = h.insert_header("Warning", HeaderValue::from_static(STALE_WARNING));
        }
        let _ = h.insert_header("Content-Length", v.content_length.clone());
        if !head {
            self.registry
                .metrics()
                .served_from_cache(m.bytes.len() as u64);
        }
        send_prepared(session, h, m.bytes.clone(), head)
            .await
            .into()
    }
}
