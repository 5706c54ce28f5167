//! Admin API for vulnerability scanning (under `/api/v1`). Images are named
//! `<upstream>/<name>@<digest>` or `<upstream>/<name>:<tag>`, as elsewhere in the API.
//!
//! | Method | Path | Does |
//! |---|---|---|
//! | GET | `/scans/<image>` (or `/scans?repository=R&digest=D` / `&tag=T`) | stored findings, ECR's shape |
//! | POST | `/scans/<image>` (or `/scans?...`) | scan now (pulls what is missing through the cache) |
//! | GET | `/sbom/<image>` | CycloneDX 1.5 JSON of a scanned image |
//! | GET | `/scan/status` | vulnerability data, settings, totals |
//! | POST | `/scan/reload` | check the data sources now; rematch if they changed |
//!
//! GETs never scan or contact an upstream: an image that is not cached or not scanned is 404
//! with a hint. An index answers per platform image plus the union of their findings.

use super::http::{json, ApiError, Request};
use crate::cache::Index;
use crate::lifecycle::service::ImageRef;
use crate::oci::manifest::{self, RefKind};
use crate::oci::{Digest, Reference, RegistryError, RepoName, Tag};
use crate::registry::Target;
use crate::scan::record::ImageScan;
use crate::scan::report::{image_report, index_report, Platform};
use crate::scan::scanner::{Scanner, Trigger};
use serde_json::json as j;
use std::sync::Arc;

type Answer = Result<::http::Response<Vec<u8>>, ApiError>;

/// True for the paths this module answers.
pub fn handles(path: &str) -> bool {
    ["/api/v1/scans", "/api/v1/sbom/", "/api/v1/scan/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// What the scan API works over: the scanner (which reads images through the cache) and the
/// index (to look up what is cached without fetching it).
struct Scans<'a> {
    scanner: &'a Arc<Scanner>,
    index: &'a Arc<dyn Index>,
}

/// Answers one scan API request.
pub async fn handle(
    scanner: &Arc<Scanner>,
    index: &Arc<dyn Index>,
    req: Request,
) -> ::http::Response<Vec<u8>> {
    match route(&Scans { scanner, index }, &req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(path = %req.path, "scan API failed: {}", e.message);
            }
            super::http::error(&e)
        }
    }
}

fn from_registry(e: RegistryError) -> ApiError {
    ApiError::new(e.code.status(), e.message)
}

async fn route(cx: &Scans<'_>, req: &Request) -> Answer {
    let path = req.path.strip_prefix("/api/v1").unwrap_or(&req.path);
    let m = req.method.as_str();
    let not_allowed = |allowed: &str| {
        ApiError::new(
            405,
            format!("{m} is not allowed on {}; use {allowed}", req.path),
        )
    };
    match path {
        "/scan/status" => match m {
            "GET" => status(cx).await,
            _ => Err(not_allowed("GET")),
        },
        "/scan/reload" => match m {
            "POST" => {
                let r = cx
                    .scanner
                    .reload()
                    .await
                    .map_err(|e| ApiError::new(500, e))?;
                Ok(json(200, &r))
            }
            _ => Err(not_allowed("POST")),
        },
        _ => {
            let (image, sbom) = if let Some(r) = path.strip_prefix("/sbom/") {
                (r.to_string(), true)
            } else if let Some(r) = path.strip_prefix("/scans/") {
                (r.to_string(), false)
            } else if path == "/scans" || path == "/scans/" {
                (query_image(req)?, false)
            } else {
                return Err(ApiError::new(
                    404,
                    format!("no admin endpoint {}", req.path),
                ));
            };
            match (m, sbom) {
                ("GET", true) => sbom_of(cx, &image).await,
                ("GET", false) => findings(cx, &image, false).await,
                ("POST", false) => findings(cx, &image, true).await,
                (_, true) => Err(not_allowed("GET")),
                _ => Err(not_allowed("GET, POST")),
            }
        }
    }
}

/// `?repository=R&digest=D` or `?repository=R&tag=T` as an image reference.
fn query_image(req: &Request) -> Result<String, ApiError> {
    let repo = req.required("repository")?;
    match (req.param("digest"), req.param("tag")) {
        (Some(d), _) => Ok(format!("{repo}@{d}")),
        (None, Some(t)) => Ok(format!("{repo}:{t}")),
        (None, None) => Err(ApiError::new(
            400,
            "query parameter \"digest\" or \"tag\" is required",
        )),
    }
}

/// An image reference resolved to where it lives.
struct Named {
    target: Target,
    repository: String,
    tag: Option<String>,
    digest: Digest,
}

/// Resolves `<upstream>/<name>@<digest>` or `:<tag>`. `pull`: a tag or manifest that is not
/// cached is fetched through the cache (POST); otherwise it is a 404 (GET).
async fn resolve(cx: &Scans<'_>, image: &str, pull: bool) -> Result<Named, ApiError> {
    let bad = |why: String| ApiError::new(400, why);
    let r = ImageRef::parse(image).ok_or_else(|| {
        bad(format!(
            "{image:?} is not an image: use <upstream>/<name>@<digest> or <upstream>/<name>:<tag>"
        ))
    })?;
    let (up, name) = r.repository.split_once('/').ok_or_else(|| {
        bad(format!(
            "{:?} names no upstream: use <upstream>/<name>",
            r.repository
        ))
    })?;
    let source = cx.scanner.source();
    let no_upstream = || {
        ApiError::new(
            404,
            format!(
                "no upstream {up:?}; configured: {}",
                source.upstream_names().join(", ")
            ),
        )
    };
    if !source.upstream_names().iter().any(|u| u == up) {
        return Err(no_upstream());
    }
    let repo = RepoName::parse(name).map_err(|e| bad(format!("repository {name:?}: {e}")))?;
    let target: Target = source.target(up, repo).ok_or_else(no_upstream)?;
    let digest = match (&r.digest, &r.tag) {
        (Some(d), _) => Digest::parse(d).map_err(|e| bad(format!("digest {d:?}: {e}")))?,
        (None, Some(t)) if pull => {
            let tag = Tag::parse(t).map_err(|e| bad(format!("tag {t:?}: {e}")))?;
            let m = source
                .manifest(&target, &Reference::Tag(tag))
                .await
                .map_err(from_registry)?;
            m.digest.clone()
        }
        (None, Some(t)) => {
            let (index, key, tag) = (cx.index.clone(), target.key(), t.clone());
            let found = blocking(move || index.tag(&key, &tag)).await?;
            found
                .map_err(|e| ApiError::new(500, e.to_string()))?
                .ok_or_else(|| ApiError::new(404, format!("{image} is not cached")))?
                .digest
        }
        (None, None) => return Err(bad(format!("{image:?} names no tag or digest"))),
    };
    if !pull {
        let (index, d) = (cx.index.clone(), digest.clone());
        let rec = blocking(move || index.manifest(&d)).await?;
        if rec
            .map_err(|e| ApiError::new(500, e.to_string()))?
            .is_none()
        {
            return Err(ApiError::new(404, format!("{image} is not cached")));
        }
    }
    Ok(Named {
        repository: r.repository.clone(),
        tag: r.tag.clone(),
        target,
        digest,
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    crate::registry::blocking(f).await.map_err(from_registry)
}

fn not_scanned(image: &str) -> ApiError {
    ApiError::new(
        404,
        format!("{image} has not been scanned; scan it with POST /api/v1/scans/{image} (breakwater scan run)"),
    )
}

/// `GET` (stored) or `POST` (scan now) `/scans/<image>`.
async fn findings(cx: &Scans<'_>, image: &str, scan: bool) -> Answer {
    let n = resolve(cx, image, scan).await?;
    let scanner = cx.scanner;
    let m = scanner
        .source()
        .manifest(&n.target, &Reference::Digest(n.digest.clone()))
        .await
        .map_err(from_registry)?;
    if !manifest::is_index(&m.media_type) {
        let s = if scan {
            scanner
                .image(&n.target, &n.digest, Trigger::OnDemand, true)
                .await
                .map_err(from_registry)?
        } else {
            scanner
                .stored(&n.digest)
                .await
                .map_err(from_registry)?
                .ok_or_else(|| not_scanned(image))?
        };
        return Ok(json(
            200,
            &image_report(&n.repository, n.tag.as_deref(), &s),
        ));
    }
    let refs = manifest::references(&m.media_type, &m.bytes)
        .map_err(|e| ApiError::new(502, format!("{image}: {e}")))?;
    let mut platforms = Vec::new();
    for r in refs.iter().filter(|r| r.kind == RefKind::Manifest) {
        // Attestation manifests ride along in indexes as platform unknown/unknown.
        if r.platform.as_deref() == Some("unknown/unknown") {
            continue;
        }
        let result: Result<ImageScan, String> = if scan {
            scanner
                .image(&n.target, &r.digest, Trigger::OnDemand, true)
                .await
                .map(|s| (*s).clone())
                .map_err(|e| e.message)
        } else {
            match scanner.stored(&r.digest).await {
                Ok(Some(s)) => Ok((*s).clone()),
                Ok(None) => Err("not scanned yet (POST to scan every platform)".into()),
                Err(e) => Err(e.message),
            }
        };
        platforms.push(Platform {
            platform: r.platform.clone(),
            digest: r.digest.clone(),
            scan: result,
        });
    }
    let report = index_report(&n.repository, &n.digest, n.tag.as_deref(), &platforms);
    Ok(json(200, &report))
}

/// `GET /sbom/<image>`.
async fn sbom_of(cx: &Scans<'_>, image: &str) -> Answer {
    let n = resolve(cx, image, false).await?;
    let Some(s) = cx.scanner.stored(&n.digest).await.map_err(from_registry)? else {
        let (index, d) = (cx.index.clone(), n.digest.clone());
        let rec = blocking(move || index.manifest(&d)).await?.ok().flatten();
        if rec.is_some_and(|r| manifest::is_index(&r.media_type)) {
            return Err(ApiError::new(
                409,
                format!("{image} is an index: ask for the SBOM of one of its platform images (by digest)"),
            ));
        }
        return Err(not_scanned(image));
    };
    Ok(json(200, &crate::scan::sbom::cyclonedx(&n.repository, &s)))
}

/// `GET /scan/status`.
async fn status(cx: &Scans<'_>) -> Answer {
    let scanner = cx.scanner;
    let st = scanner.db().status();
    let settings = scanner.settings();
    let data = st.snapshot.as_ref().map(|s| {
        j!({
            "records": s.db.len(),
            "documents": s.documents,
            "skipped": s.skipped,
            "skippedExamples": s.skipped_examples,
            "unusableFileCount": s.unusable_file_count,
            "unusableFiles": s.unusable_files.iter().map(|f| j!({
                "path": f.source,
                "reason": f.reason,
            })).collect::<Vec<_>>(),
            "recordsBySource": s.by_source.iter().flat_map(|(source, ecos)| {
                ecos.iter().map(move |(eco, n)| j!({
                    "source": source,
                    "ecosystem": eco,
                    "records": n,
                }))
            }).collect::<Vec<_>>(),
            "recordsByEcosystem": s.records_by_ecosystem(),
            "contentHash": s.hash,
            "loadedAt": crate::scan::clock::rfc3339(s.loaded_at_ms),
            "updatedAt": crate::scan::clock::rfc3339(s.updated_at_ms()),
        })
    });
    let s2 = cx.scanner.clone();
    let totals = blocking(move || s2.store().totals()).await?;
    let totals: serde_json::Map<String, serde_json::Value> = totals
        .map_err(|e| ApiError::new(500, e.to_string()))?
        .iter()
        .map(|(s, n)| (s.as_str().to_string(), j!(n)))
        .collect();
    Ok(json(
        200,
        &j!({
            "sources": scanner.db().paths(),
            "loaded": data,
            "loading": !st.settled,
            "error": st.error,
            "onCache": settings.on_cache.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
            "rescanInterval": humantime::format_duration(settings.rescan_interval).to_string(),
            "gates": settings.gates.iter().map(|g| j!({
                "repositories": g.repositories.as_str(),
                "mode": g.mode.as_str(),
                "severity": g.severity.as_str(),
                "allow": g.allow,
            })).collect::<Vec<_>>(),
            "findingTotals": totals,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::handles;

    #[test]
    fn owns_only_scan_paths() {
        assert!(handles("/api/v1/scans/local/a@sha256:x"));
        assert!(handles("/api/v1/scans"));
        assert!(handles("/api/v1/sbom/local/a:1"));
        assert!(handles("/api/v1/scan/status"));
        assert!(!handles("/api/v1/images"));
    }
}
