//! Admin API handlers for what is cached: repositories, images, pins, the audit trail and the
//! store's size.

use super::api::{blocking, Answer};
use super::http::{json, ApiError, Request};
use crate::cache::EventQuery;
use crate::lifecycle::views::StorageView;
use crate::lifecycle::{Lifecycle, OpError};
use serde::Deserialize;
use serde_json::json as j;
use std::sync::Arc;

/// `GET /repositories`.
pub async fn repositories(lc: &Arc<Lifecycle>) -> Answer {
    let r = blocking(lc, |lc| lc.repositories()).await?;
    Ok(json(200, &j!({ "repositories": r })))
}

/// `GET /images[?repository=R]`.
pub async fn list(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let filter = req.param("repository").map(str::to_string);
    let images = blocking(lc, move |lc| lc.images(filter.as_deref())).await?;
    Ok(json(200, &j!({ "images": images })))
}

/// `GET /images/<reference>`.
pub async fn one(lc: &Arc<Lifecycle>, reference: &str) -> Answer {
    let r = reference.to_string();
    let image = blocking(lc, move |lc| lc.image(&r)).await?;
    Ok(json(200, &image))
}

/// `DELETE /images/<reference>`: removes the image from the index now; GC reclaims its bytes.
pub async fn delete(lc: &Arc<Lifecycle>, reference: &str) -> Answer {
    let r = reference.to_string();
    let image = blocking(lc, move |lc| lc.delete_image(&r)).await?;
    Ok(json(200, &j!({ "deleted": image })))
}

/// `GET /pins`.
pub async fn pins(lc: &Arc<Lifecycle>) -> Answer {
    let pins = blocking(lc, |lc| lc.pins()).await?;
    Ok(json(200, &j!({ "pins": pins })))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinRequest {
    target: Option<String>,
    note: Option<String>,
}

/// `POST /pins` with `{"target": "<repo>@<digest>" | "<repo>:<tag>" | "<pattern>", "note"?}`.
pub async fn pin(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let p: PinRequest = req.json()?;
    let target = p
        .target
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(400, "request body needs \"target\": an image reference (<upstream>/<repository>@<digest> or <upstream>/<repository>:<tag>) or a repository pattern"))?;
    let note = p.note;
    let pin = blocking(lc, move |lc| lc.pin(&target, note)).await?;
    Ok(json(201, &pin))
}

/// `DELETE /pins/<target>`.
pub async fn unpin(lc: &Arc<Lifecycle>, target: &str) -> Answer {
    let t = target.to_string();
    blocking(lc, move |lc| lc.unpin(&t)).await?;
    Ok(json(200, &j!({ "unpinned": target })))
}

fn number<T: std::str::FromStr>(req: &Request, name: &str) -> Result<Option<T>, ApiError> {
    req.param(name)
        .map(|v| {
            v.parse().map_err(|_| {
                ApiError::new(
                    400,
                    format!("query parameter {name} must be a number, not {v:?}"),
                )
            })
        })
        .transpose()
}

/// `GET /events?kind=&repository=&since_ms=&limit=`: newest first.
pub async fn events(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    // Events name the repository as the upstream does; the API takes `<upstream>/<name>`.
    let (upstream, name) =
        match req.param("repository") {
            Some(full) => {
                match lc.cache.upstreams().iter().find_map(|u| {
                    Some((u.clone(), full.strip_prefix(u.as_str())?.strip_prefix('/')?))
                }) {
                    Some((u, n)) => (Some(u), Some(n.to_string())),
                    None => (None, Some(full.to_string())),
                }
            }
            None => (None, None),
        };
    // Both filters in the query, so `limit` counts matching events.
    let q = EventQuery {
        kind: req.param("kind").map(str::to_string),
        repository: name,
        upstream,
        since_ms: number(req, "since_ms")?,
        limit: number(req, "limit")?,
    };
    let events = blocking(lc, move |lc| Ok::<_, OpError>(lc.cache.index.events(&q)?)).await?;
    Ok(json(200, &j!({ "events": events })))
}

/// `GET /storage`: store size, quota, schedule and the last runs.
pub async fn storage(lc: &Arc<Lifecycle>) -> Answer {
    let m = &lc.cache.metrics;
    let (last_gc, last_apply_ms) = lc.last_runs();
    let q = lc.quota.as_ref();
    let s = &lc.settings;
    Ok(json(
        200,
        &StorageView {
            store_bytes: m.store_bytes.get(),
            store_blobs: m.store_blobs.get(),
            max_bytes: q.map(|q| q.max_bytes),
            high_water_bytes: q.map(|q| q.high_water_bytes()),
            low_water_bytes: q.map(|q| q.low_water_bytes()),
            apply_interval_s: s.apply_interval.as_secs(),
            gc_interval_s: s.gc_interval.as_secs(),
            gc_grace_s: s.gc_grace.as_secs(),
            last_gc,
            last_apply_ms,
        },
    ))
}
