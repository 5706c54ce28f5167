//! Routing of the admin API (`/api/v1/...`). Every answer is JSON; every error is
//! `{"error": "..."}` with 400 (bad input), 404 (unknown thing or endpoint), 405 (method),
//! 409 (conflict), 413 (body too large) or 500 (storage).
//!
//! | Method | Path | Does |
//! |---|---|---|
//! | GET | `/repositories` | repositories with image count, stored bytes, policy |
//! | GET | `/images[?repository=R]` | describe-images (R exact or a pattern) |
//! | GET, DELETE | `/images/<repo>@<digest>` or `/images/<repo>:<tag>` | one image; delete it now |
//! | GET, POST | `/pins` | list; pin `{"target": "...", "note": "..."}` (`warning` when a pattern matches nothing cached) |
//! | DELETE | `/pins/<target>` | unpin |
//! | GET | `/lifecycle/policies` | every policy, with scope and source |
//! | GET, PUT, DELETE | `/lifecycle/policy?scope=S` (GET also `?repository=R`) | one policy |
//! | POST | `/lifecycle/preview` | `{"repository"?, "policy"?, "at_ms"?}` → what would happen |
//! | POST | `/lifecycle/apply` | `{"repository"?}` → apply now |
//! | POST | `/gc` | `{"dry_run"?}` → quota + mark and sweep now |
//! | GET | `/events?kind=&repository=&since_ms=&limit=` | the audit trail, newest first |
//! | GET | `/storage` | store size, quota, schedule, last runs |

use super::http::{self, ApiError, Request};
use super::{images, lifecycle};
use crate::lifecycle::{Lifecycle, OpError};
use std::sync::Arc;

/// What every handler returns.
pub(super) type Answer = Result<::http::Response<Vec<u8>>, ApiError>;

/// Runs a blocking lifecycle operation on the blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    lc: &Arc<Lifecycle>,
    f: impl FnOnce(&Lifecycle) -> Result<T, OpError> + Send + 'static,
) -> Result<T, ApiError> {
    let lc = lc.clone();
    match tokio::task::spawn_blocking(move || f(&lc)).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::new(500, format!("internal task failed: {e}"))),
    }
}

fn not_allowed(req: &Request, allowed: &str) -> ApiError {
    ApiError::new(
        405,
        format!(
            "{} is not allowed on {}; use {allowed}",
            req.method, req.path
        ),
    )
}

/// Answers one API request.
pub async fn handle(lc: &Arc<Lifecycle>, req: Request) -> ::http::Response<Vec<u8>> {
    match route(lc, &req).await {
        Ok(r) => r,
        Err(e) => {
            if e.status >= 500 {
                tracing::error!(path = %req.path, "admin API failed: {}", e.message);
            }
            http::error(&e)
        }
    }
}

async fn route(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let Some(path) = req.path.strip_prefix("/api/v1") else {
        return Err(ApiError::new(
            404,
            format!(
                "no admin endpoint {}; the API lives under /api/v1",
                req.path
            ),
        ));
    };
    let m = req.method.as_str();
    match path {
        "/repositories" => match m {
            "GET" => images::repositories(lc).await,
            _ => Err(not_allowed(req, "GET")),
        },
        "/images" | "/images/" => match m {
            "GET" => images::list(lc, req).await,
            _ => Err(not_allowed(req, "GET")),
        },
        "/pins" | "/pins/" => match m {
            "GET" => images::pins(lc).await,
            "POST" => images::pin(lc, req).await,
            _ => Err(not_allowed(req, "GET, POST")),
        },
        "/lifecycle/policies" => match m {
            "GET" => lifecycle::policies(lc).await,
            _ => Err(not_allowed(req, "GET")),
        },
        "/lifecycle/policy" => match m {
            "GET" => lifecycle::get_policy(lc, req).await,
            "PUT" => lifecycle::put_policy(lc, req).await,
            "DELETE" => lifecycle::delete_policy(lc, req).await,
            _ => Err(not_allowed(req, "GET, PUT, DELETE")),
        },
        "/lifecycle/preview" => match m {
            "POST" => lifecycle::preview(lc, req).await,
            _ => Err(not_allowed(req, "POST")),
        },
        "/lifecycle/apply" => match m {
            "POST" => lifecycle::apply(lc, req).await,
            _ => Err(not_allowed(req, "POST")),
        },
        "/gc" => match m {
            "POST" => lifecycle::gc(lc, req).await,
            _ => Err(not_allowed(req, "POST")),
        },
        "/events" => match m {
            "GET" => images::events(lc, req).await,
            _ => Err(not_allowed(req, "GET")),
        },
        "/storage" => match m {
            "GET" => images::storage(lc).await,
            _ => Err(not_allowed(req, "GET")),
        },
        _ => {
            if let Some(reference) = path.strip_prefix("/images/") {
                return match m {
                    "GET" => images::one(lc, reference).await,
                    "DELETE" => images::delete(lc, reference).await,
                    _ => Err(not_allowed(req, "GET, DELETE")),
                };
            }
            if let Some(target) = path.strip_prefix("/pins/") {
                return match m {
                    "DELETE" => images::unpin(lc, target).await,
                    _ => Err(not_allowed(req, "DELETE")),
                };
            }
            Err(ApiError::new(
                404,
                format!("no admin endpoint {}", req.path),
            ))
        }
    }
}
