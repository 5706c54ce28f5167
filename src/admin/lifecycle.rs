//! Admin API handlers for lifecycle policies, preview, apply and GC.

use super::api::{blocking, Answer};
use super::http::{json, ApiError, Request};
use crate::lifecycle::apply::PreviewRequest;
use crate::lifecycle::gc::GcRequest;
use crate::lifecycle::{Lifecycle, OpError};
use serde::Deserialize;
use serde_json::json as j;
use std::sync::Arc;

/// `GET /lifecycle/policies`.
pub async fn policies(lc: &Arc<Lifecycle>) -> Answer {
    let p = blocking(lc, |lc| lc.policy_list()).await?;
    Ok(json(200, &j!({ "policies": p })))
}

/// `GET /lifecycle/policy?scope=S` (the policy set for a scope) or `?repository=R` (the policy
/// that applies to a repository, ECR's get-lifecycle-policy).
pub async fn get_policy(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let scope = req.param("scope").map(str::to_string);
    let repo = req.param("repository").map(str::to_string);
    if scope.is_none() && repo.is_none() {
        return Err(ApiError::new(
            400,
            "query parameter \"scope\" (default or a repository pattern) or \"repository\" is required",
        ));
    }
    let answer = blocking(lc, move |lc| {
        let policies = lc.policies()?;
        let (found, what) = match (&scope, &repo) {
            (Some(s), _) => (policies.scope(s), format!("scope {s}")),
            (None, Some(r)) => (policies.for_repo(r), format!("repository {r}")),
            (None, None) => (None, String::new()),
        };
        let s = found
            .ok_or_else(|| OpError::NotFound(format!("no lifecycle policy applies to {what}")))?;
        Ok(j!({
            "repository": repo,
            "scope": s.scope,
            "source": s.source,
            "updated_ms": s.updated_ms,
            "policy": serde_json::from_str::<serde_json::Value>(&s.policy.to_json())
                .unwrap_or_default(),
        }))
    })
    .await?;
    Ok(json(200, &answer))
}

/// `PUT /lifecycle/policy?scope=S` with the policy JSON (ECR's shape) as the body.
pub async fn put_policy(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let scope = req.required("scope")?.to_string();
    let text = req.text()?.to_string();
    if text.trim().is_empty() {
        return Err(ApiError::new(
            400,
            "request body must be the lifecycle policy JSON ({\"rules\": [...]})",
        ));
    }
    let view = blocking(lc, move |lc| lc.put_policy(&scope, &text)).await?;
    Ok(json(200, &view))
}

/// `DELETE /lifecycle/policy?scope=S`.
pub async fn delete_policy(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let scope = req.required("scope")?.to_string();
    let s = scope.clone();
    blocking(lc, move |lc| lc.delete_policy(&s)).await?;
    Ok(json(200, &j!({ "deleted": scope })))
}

/// `POST /lifecycle/preview`.
pub async fn preview(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let p: PreviewRequest = req.json()?;
    let report = blocking(lc, move |lc| lc.preview(&p)).await?;
    Ok(json(200, &report))
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    repository: Option<String>,
}

/// `POST /lifecycle/apply`.
pub async fn apply(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let a: ApplyRequest = req.json()?;
    let report = blocking(lc, move |lc| lc.apply(a.repository.as_deref())).await?;
    Ok(json(200, &report))
}

/// `POST /gc`.
pub async fn gc(lc: &Arc<Lifecycle>, req: &Request) -> Answer {
    let g: GcRequest = req.json()?;
    let report = blocking(lc, move |lc| lc.gc(&g)).await?;
    Ok(json(200, &report))
}
