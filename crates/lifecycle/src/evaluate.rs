//! Applies a lifecycle policy to one repository's cached images, following
//! ECR's evaluation rules:
//!
//! * Every rule is evaluated against every image as if no other rule existed:
//!   it *matches* images by tag status, tag list and storage class, and *marks*
//!   some of them by count or age. Counting includes images that
//!   higher-priority rules also match, as in ECR's multi-rule examples.
//! * Rules are then applied in ascending `rulePriority`. An image belongs to
//!   the first rule that matches it; it is acted on only if that rule marked
//!   it. So an image kept by a higher-priority rule (e.g. one of the newest 30
//!   `v*` images) is never expired by a later rule, not even an `any` rule.
//! * Matching is per storage class: a `standard` rule never shields an
//!   archived image from an `archive` rule.
//!
//! Breakwater-specific: pinned images are invisible to every rule. They are
//! never matched, never counted towards `imageCountMoreThan`, never acted on.
//!
//! Cost: one O(n log n) sort by age, then O(rules × n) matching.

use super::policy::{
    ActionType, CountType, LifecyclePolicy, Rule, Selection, StorageClass, TagStatus,
};
use breakwater_oci::time::{Millis, Timestamp, DAY_MS};
use breakwater_oci::Digest;
use serde::Serialize;

/// One cached image (manifest digest) of a repository, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedImage {
    /// Manifest digest.
    pub digest: Digest,
    /// Tags currently pointing at the digest; empty means untagged.
    pub tags: Vec<String>,
    /// When breakwater last cached the image's bytes (its first cache, or its restore from
    /// archive); plays ECR's "pushed" time. To the millisecond, so images cached in one burst
    /// (a CI run pulling many tags) still rank newest first for `imageCountMoreThan`.
    pub first_cached: Timestamp,
    /// The last pull; `None` (never pulled) falls back to `first_cached`.
    pub last_pulled: Option<Timestamp>,
    /// When moved to archive; used by `sinceImageTransitioned`.
    pub transitioned_at: Option<Timestamp>,
    /// Current storage class.
    pub storage_class: StorageClass,
    /// Bytes attributed to the image, summed into previews.
    pub size_bytes: u64,
    /// Pinned images are exempt from lifecycle policies.
    pub pinned: bool,
}

/// What to do with an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "type", content = "targetStorageClass", rename_all = "lowercase")]
pub enum DecisionAction {
    /// Delete the image.
    Expire,
    /// Move the image to the given storage class (always `archive` today).
    Transition(StorageClass),
}

/// A rule's verdict on one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// Digest of the affected image.
    pub digest: Digest,
    /// Priority of the rule that decided.
    pub rule_priority: u32,
    /// Expire or transition.
    pub action: DecisionAction,
    /// Human-readable explanation, e.g. `sinceImagePushed 7 days: first cached 9d 2h ago`.
    pub reason: String,
}

/// Evaluates `policy` over one repository's images at time `now`. Decisions come grouped by
/// rule priority, oldest image first.
pub fn evaluate(policy: &LifecyclePolicy, images: &[CachedImage], now: Timestamp) -> Vec<Decision> {
    let mut out = Vec::new();
    for_each_decision(policy, images, now, |_, decision| out.push(decision));
    out
}

/// Drives evaluation, handing each decision and its index into `images` to
/// `emit` in [`evaluate`]'s order, so callers can aggregate without copying.
pub(super) fn for_each_decision(
    policy: &LifecyclePolicy,
    images: &[CachedImage],
    now: Timestamp,
    mut emit: impl FnMut(usize, Decision),
) {
    // Ages count whole seconds (see `older_than`).
    let now = now.floor_secs();
    let order = newest_first(images);
    let mut owned = vec![false; images.len()];
    let mut matched = vec![false; images.len()];
    for rule in policy.rules_by_priority() {
        let class = rule.selection.selected_storage_class();
        // Matching in storage order keeps memory access sequential.
        let mut total = 0usize;
        for (m, image) in matched.iter_mut().zip(images) {
            *m = !image.pinned
                && image.storage_class == class
                && tags_match(&rule.selection, &image.tags);
            total += usize::from(*m);
        }
        // Walk oldest first (the order ECR expires in) while ranking newest
        // first: the oldest match has rank `total`, the newest rank 1.
        let mut rank = total + 1;
        for &i in order.iter().rev() {
            if !matched[i] {
                continue;
            }
            rank -= 1;
            if std::mem::replace(&mut owned[i], true) {
                // Claimed by a higher-priority rule: counted here, never acted on.
                continue;
            }
            if let Some(reason) = mark(&rule.selection, &images[i], rank, now) {
                emit(i, decision(rule, &images[i], reason));
            }
        }
    }
}

/// Image indexes, newest first as ECR ranks them for imageCountMoreThan.
/// Equal times are broken by digest so results never depend on input order.
fn newest_first(images: &[CachedImage]) -> Vec<usize> {
    let mut keys: Vec<(Timestamp, usize)> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (img.first_cached, i))
        .collect();
    keys.sort_unstable_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| images[b.1].digest.cmp(&images[a.1].digest))
    });
    keys.into_iter().map(|(_, i)| i).collect()
}

fn decision(rule: &Rule, image: &CachedImage, reason: String) -> Decision {
    let action = match rule.action.kind {
        ActionType::Expire => DecisionAction::Expire,
        ActionType::Transition => DecisionAction::Transition(
            rule.action
                .target_storage_class
                .unwrap_or(StorageClass::Archive),
        ),
    };
    Decision {
        digest: image.digest.clone(),
        rule_priority: rule.rule_priority,
        action,
        reason,
    }
}

/// ECR's tag test: every entry of the rule's list must match at least one of
/// the image's tags (for prefixes and patterns alike).
fn tags_match(sel: &Selection, tags: &[String]) -> bool {
    match sel.tag_status {
        TagStatus::Any => true,
        TagStatus::Untagged => tags.is_empty(),
        TagStatus::Tagged => {
            !tags.is_empty()
                && sel
                    .tag_prefix_list
                    .iter()
                    .flatten()
                    .all(|p| tags.iter().any(|t| t.starts_with(p.as_str())))
                && sel
                    .tag_pattern_list
                    .iter()
                    .flatten()
                    .all(|p| tags.iter().any(|t| p.matches(t)))
        }
    }
}

/// Returns the reason when the rule's count or age criterion marks the image;
/// `rank` is the image's 1-based position, newest first, among the rule's matches.
fn mark(sel: &Selection, image: &CachedImage, rank: usize, now: Timestamp) -> Option<String> {
    let n = sel.count_number;
    match sel.count_type {
        CountType::ImageCountMoreThan => (rank > n as usize).then(|| {
            format!(
                "imageCountMoreThan {n}: {} newer images match this rule",
                rank - 1
            )
        }),
        CountType::SinceImagePushed => older_than(now, image.first_cached, n).map(|age| {
            format!(
                "sinceImagePushed {n} days: first cached {} ago",
                fmt_age(age)
            )
        }),
        CountType::SinceImagePulled => {
            let (at, what) = match image.last_pulled {
                Some(t) => (t, "last pulled"),
                None => (image.first_cached, "never pulled; first cached"),
            };
            older_than(now, at, n)
                .map(|age| format!("sinceImagePulled {n} days: {what} {} ago", fmt_age(age)))
        }
        // An archived image without a transition time cannot be shown to be
        // old enough, so it is kept rather than guessed at.
        CountType::SinceImageTransitioned => image
            .transitioned_at
            .and_then(|t| older_than(now, t, n))
            .map(|age| {
                format!(
                    "sinceImageTransitioned {n} days: archived {} ago",
                    fmt_age(age)
                )
            }),
    }
}

/// The age of `at` when strictly more than `days` days before `now`. Ages count whole seconds
/// (both times truncated to theirs), as breakwater has always counted them: an image is not
/// "older than 7 days" a few milliseconds earlier than it used to be. `now` is already
/// truncated ([`for_each_decision`] does it once), so the test itself divides nothing:
/// `⌊at⌋ < now − days` holds exactly when `at < now − days` for a whole-second right side.
fn older_than(now: Timestamp, at: Timestamp, days: u32) -> Option<Millis> {
    (at < now - Millis::days(i64::from(days))).then(|| now.since(at.floor_secs()))
}

fn fmt_age(age: Millis) -> String {
    let ms = age.as_ms();
    let days = ms / DAY_MS;
    let hours = (ms % DAY_MS) / Millis::hours(1).as_ms();
    format!("{days}d {hours}h")
}
