//! Shared fixtures: a fixed clock, image builders and outcome helpers.

use crate::evaluate::{evaluate, CachedImage, DecisionAction};
use crate::policy::{LifecyclePolicy, StorageClass};

/// Fixed "now" for every test (unix seconds).
pub const NOW: i64 = 1_750_000_000;
/// One day in seconds.
pub const DAY: i64 = 86_400;

/// A standard-storage image first cached `days_ago` days before [`NOW`].
pub fn img(digest: &str, tags: &[&str], days_ago: i64) -> CachedImage {
    CachedImage {
        digest: digest.to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        first_cached: NOW - days_ago * DAY,
        first_cached_subsec_ms: 0,
        last_pulled: None,
        transitioned_at: None,
        storage_class: StorageClass::Standard,
        size_bytes: 1_000,
        pinned: false,
    }
}

/// An archived image, transitioned `archived_days_ago` days before [`NOW`].
pub fn archived(digest: &str, tags: &[&str], days_ago: i64, archived_days_ago: i64) -> CachedImage {
    CachedImage {
        storage_class: StorageClass::Archive,
        transitioned_at: Some(NOW - archived_days_ago * DAY),
        ..img(digest, tags, days_ago)
    }
}

/// Parses a policy that the test expects to be valid.
pub fn policy(json: &str) -> LifecyclePolicy {
    match LifecyclePolicy::from_json(json) {
        Ok(p) => p,
        Err(e) => panic!("policy should be valid: {e}"),
    }
}

/// Digests acted on, sorted, each with the deciding rule and action.
pub fn outcome(json: &str, images: &[CachedImage]) -> Vec<(String, u32, DecisionAction)> {
    let mut out: Vec<_> = evaluate(&policy(json), images, NOW)
        .into_iter()
        .map(|d| (d.digest, d.rule_priority, d.action))
        .collect();
    out.sort();
    out
}

/// Sorted digests that the policy would expire.
pub fn expired(json: &str, images: &[CachedImage]) -> Vec<String> {
    acted(json, images, DecisionAction::Expire)
}

/// Sorted digests that the policy would move to archive.
pub fn archived_by(json: &str, images: &[CachedImage]) -> Vec<String> {
    acted(
        json,
        images,
        DecisionAction::Transition(StorageClass::Archive),
    )
}

fn acted(json: &str, images: &[CachedImage], action: DecisionAction) -> Vec<String> {
    outcome(json, images)
        .into_iter()
        .filter(|(_, _, a)| *a == action)
        .map(|(d, _, _)| d)
        .collect()
}

/// Builds one rule's JSON from its selection and action bodies.
pub fn rule(priority: u32, selection: &str, action: &str) -> String {
    format!(r#"{{"rulePriority":{priority},"selection":{selection},"action":{action}}}"#)
}

/// Wraps rule JSON fragments into a policy document.
pub fn rules(parts: &[String]) -> String {
    format!(r#"{{"rules":[{}]}}"#, parts.join(","))
}

/// `{"type":"expire"}`.
pub const EXPIRE: &str = r#"{"type":"expire"}"#;
/// `{"type":"transition","targetStorageClass":"archive"}`.
pub const ARCHIVE: &str = r#"{"type":"transition","targetStorageClass":"archive"}"#;
