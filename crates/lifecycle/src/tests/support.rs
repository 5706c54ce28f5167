//! Shared fixtures: a fixed clock, image builders and outcome helpers.

use crate::evaluate::{evaluate, CachedImage, DecisionAction};
use crate::policy::{LifecyclePolicy, StorageClass};
use breakwater_oci::time::{Millis, Timestamp};
use breakwater_oci::Digest;

/// Fixed "now" for every test.
pub const NOW: Timestamp = Timestamp::from_secs(1_750_000_000);
/// One day.
pub const DAY: Millis = Millis::days(1);
/// One second.
pub const SECOND: Millis = Millis::secs(1);

/// The digest standing for the image called `name` (at most 32 bytes): its bytes in hex,
/// zero-padded, so digests order as the names do and ties break as they would by name.
pub fn digest(name: &str) -> Digest {
    assert!(name.len() <= 32, "test image name too long: {name}");
    let mut raw = [0u8; 32];
    raw[..name.len()].copy_from_slice(name.as_bytes());
    Digest::parse(&format!("sha256:{}", hex::encode(raw))).expect("hex digest")
}

/// The name [`digest`] made `d` from.
pub fn name(d: &Digest) -> String {
    let raw = hex::decode(d.hex()).expect("hex digest");
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8(raw[..end].to_vec()).expect("a test name")
}

/// A standard-storage image first cached `days_ago` days before [`NOW`].
pub fn img(name: &str, tags: &[&str], days_ago: i64) -> CachedImage {
    CachedImage {
        digest: digest(name),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        first_cached: NOW - Millis::days(days_ago),
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
        transitioned_at: Some(NOW - Millis::days(archived_days_ago)),
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
        .map(|d| (name(&d.digest), d.rule_priority, d.action))
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
