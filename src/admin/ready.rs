//! Admin API for outage readiness and prefetch (under `/api/v1`).
//!
//! | Method | Path | Does |
//! |---|---|---|
//! | GET | `/readiness?since=30d` | per image pulled within the window: what it needs, what the store lacks |
//! | POST | `/prefetch` | `{"image": "<upstream>/<name>:<tag>" or "…@<digest>", "platforms"?: ["linux/amd64"] or ["all"]}` → what was fetched |
//!
//! Readiness always answers 200 (the report says what would fail); prefetch answers 200 with
//! `ok: false` and the errors when some content could not be filled, 400/404 when the image
//! cannot be named.

use super::http::{json, ApiError, Request};
use crate::cache::Index;
use crate::lifecycle::service::ImageRef;
use crate::oci::{Digest, Reference, RepoName, Tag};
use crate::ready::prefetch::{prefetch, Platforms};
use crate::ready::{Readiness, DEFAULT_WINDOW};
use crate::registry::{CacheHandle, ImageSource, Target};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

type Answer = Result<::http::Response<Vec<u8>>, ApiError>;

/// True for the paths this module answers.
pub fn handles(path: &str) -> bool {
    matches!(path, "/api/v1/readiness" | "/api/v1/prefetch")
}

/// Answers one readiness or prefetch request.
pub async fn handle(
    cache: &CacheHandle,
    source: &Arc<dyn ImageSource>,
    req: Request,
) -> ::http::Response<Vec<u8>> {
    let m = req.method.as_str();
    let answer = match (req.path.as_str(), m) {
        ("/api/v1/readiness", "GET") => readiness(cache, source, &req).await,
        ("/api/v1/prefetch", "POST") => fetch(&cache.index, source, &req).await,
        (p, _) => Err(ApiError::new(
            405,
            format!(
                "{m} is not allowed on {p}; use {}",
                if p.ends_with("readiness") {
                    "GET"
                } else {
                    "POST"
                }
            ),
        )),
    };
    answer.unwrap_or_else(|e| {
        if e.status >= 500 {
            tracing::error!(path = %req.path, "readiness API failed: {}", e.message);
        }
        super::http::error(&e)
    })
}

/// `GET /readiness?since=30d`.
async fn readiness(cache: &CacheHandle, source: &Arc<dyn ImageSource>, req: &Request) -> Answer {
    let window = match req.param("since") {
        Some(s) => parse_window(s).map_err(|e| ApiError::new(400, e))?,
        None => DEFAULT_WINDOW,
    };
    let r = Readiness::new(cache.clone(), source.clone());
    let report = tokio::task::spawn_blocking(move || r.check(window))
        .await
        .map_err(|e| ApiError::new(500, format!("internal task failed: {e}")))?
        .map_err(|e| ApiError::new(500, e))?;
    Ok(json(200, &report))
}

/// A window such as `30d`, `12h` or `90m`.
pub fn parse_window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("since={s:?} is not a duration such as 30d, 12h or 90m ({e})"))?;
    if d.is_zero() {
        return Err(format!("since={s:?} is empty: give a window such as 30d"));
    }
    Ok(d)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefetchRequest {
    image: Option<String>,
    platforms: Option<Vec<String>>,
}

/// `POST /prefetch`.
async fn fetch(index: &Arc<dyn Index>, source: &Arc<dyn ImageSource>, req: &Request) -> Answer {
    let p: PrefetchRequest = req.json()?;
    let image = p.image.filter(|i| !i.is_empty()).ok_or_else(|| {
        ApiError::new(
            400,
            "request body needs \"image\": <upstream>/<name>:<tag> or <upstream>/<name>@<digest>",
        )
    })?;
    let asked = p.platforms.map(parse_platforms).transpose()?;
    let (target, reference) = resolve(source, &image)?;
    let platforms = Platforms::choose(asked, &target);
    let report = prefetch(source, index, &target, &reference, &image, &platforms).await;
    Ok(json(200, &report))
}

/// `["all"]`, or `os/arch[/variant]` values.
fn parse_platforms(list: Vec<String>) -> Result<Platforms, ApiError> {
    if list.iter().any(|p| p == "all") {
        return Ok(Platforms::All);
    }
    if list.is_empty() {
        return Err(ApiError::new(
            400,
            "\"platforms\" is empty: leave it out (the upstream's prefetch_platforms, else all) \
             or name some, e.g. [\"linux/amd64\"]",
        ));
    }
    for p in &list {
        let parts: Vec<&str> = p.split('/').collect();
        let shaped = (2..=3).contains(&parts.len())
            && parts.iter().all(|s| {
                !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        if !shaped {
            return Err(ApiError::new(
                400,
                format!("platform {p:?} is not os/arch[/variant] (e.g. linux/arm64/v8) or \"all\""),
            ));
        }
    }
    Ok(Platforms::Only(list))
}

/// Resolves `<upstream>/<name>:<tag>` or `@<digest>` to where it is pulled from.
fn resolve(source: &Arc<dyn ImageSource>, image: &str) -> Result<(Target, Reference), ApiError> {
    let bad = |why: String| ApiError::new(400, why);
    let r = ImageRef::parse(image).ok_or_else(|| {
        bad(format!(
            "{image:?} is not an image: use <upstream>/<name>:<tag> or <upstream>/<name>@<digest>"
        ))
    })?;
    let (up, name) = r
        .repository
        .split_once('/')
        .ok_or_else(|| bad(format!("{:?} names no upstream", r.repository)))?;
    let repo = RepoName::parse(name).map_err(|e| bad(format!("repository {name:?}: {e}")))?;
    let target = source.target(up, repo).ok_or_else(|| {
        ApiError::new(
            404,
            format!(
                "no upstream {up:?}; configured: {}",
                source.upstream_names().join(", ")
            ),
        )
    })?;
    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => {
            Reference::Digest(Digest::parse(d).map_err(|e| bad(format!("digest {d:?}: {e}")))?)
        }
        (None, Some(t)) => {
            Reference::Tag(Tag::parse(t).map_err(|e| bad(format!("tag {t:?}: {e}")))?)
        }
        (None, None) => return Err(bad(format!("{image:?} names no tag or digest"))),
    };
    Ok((target, reference))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_platforms_are_checked() {
        assert_eq!(
            parse_window("30d").unwrap(),
            Duration::from_secs(30 * 86_400)
        );
        assert_eq!(parse_window("90m").unwrap(), Duration::from_secs(5_400));
        assert!(parse_window("0s").is_err());
        assert!(parse_window("soon").is_err());
        assert_eq!(
            parse_platforms(vec!["linux/arm64/v8".into()]).unwrap(),
            Platforms::Only(vec!["linux/arm64/v8".into()])
        );
        assert_eq!(
            parse_platforms(vec!["linux/amd64".into(), "all".into()]).unwrap(),
            Platforms::All
        );
        for bad in ["linux", "linux/", "a/b/c/d", "linux/amd 64"] {
            assert_eq!(
                parse_platforms(vec![bad.into()]).unwrap_err().status,
                400,
                "{bad}"
            );
        }
        assert!(parse_platforms(vec![]).is_err());
        assert!(handles("/api/v1/readiness") && handles("/api/v1/prefetch"));
        assert!(!handles("/api/v1/images"));
    }
}
