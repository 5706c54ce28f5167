//! What the admin API answers (and the CLI reads back): images, repositories, policies, pins,
//! previews and reports. Times are unix milliseconds; sizes are bytes.

use breakwater_oci::Digest;
use serde::{Deserialize, Serialize};

/// One cached image, the `describe-images` view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageView {
    /// `<upstream>/<name>`.
    pub repository: String,
    /// The upstream it was cached from.
    pub upstream: String,
    /// Manifest digest.
    pub digest: Digest,
    /// Tags (of the image and of its child manifests).
    pub tags: Vec<String>,
    /// Manifest media type.
    pub media_type: String,
    /// Bytes of the manifest and everything it references.
    pub size_bytes: u64,
    /// Of those, the bytes held in the store now.
    pub stored_bytes: u64,
    /// Its "pushed" time: when breakwater last cached its bytes (its first cache, or its
    /// restore from archive).
    pub first_cached_ms: i64,
    /// When a client last pulled it (or one of its platform manifests).
    pub last_pulled_ms: Option<i64>,
    /// Pulls of its top-level manifest.
    pub pull_count: u64,
    /// `standard` or `archive`.
    pub storage_class: String,
    /// When it moved to archive.
    pub transitioned_at_ms: Option<i64>,
    /// Exempt from lifecycle policies and quota eviction.
    pub pinned: bool,
    /// Platform manifests of an index that clients fetched.
    #[serde(default)]
    pub children: Vec<ChildView>,
}

/// A platform manifest of an image index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildView {
    /// Its digest.
    pub digest: Digest,
    /// `os/arch[/variant]` as the index lists it.
    pub platform: Option<String>,
    /// Media type.
    pub media_type: String,
    /// Pulls by digest.
    pub pull_count: u64,
    /// Last pull.
    pub last_pulled_ms: Option<i64>,
}

/// Which policy governs something, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// `default` or the repository pattern.
    pub scope: String,
    /// `config` (the file) or `api`.
    pub source: String,
}

/// One cached repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepositoryView {
    /// `<upstream>/<name>`.
    pub repository: String,
    /// Upstream.
    pub upstream: String,
    /// Images.
    pub images: usize,
    /// Tags.
    pub tags: usize,
    /// Bytes in the store its images reference, each digest once.
    pub stored_bytes: u64,
    /// The lifecycle policy that applies, if any.
    pub policy: Option<PolicyRef>,
}

/// A lifecycle policy as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyView {
    /// `default` or the repository pattern.
    pub scope: String,
    /// `config` or `api`.
    pub source: String,
    /// False when an API policy for the same scope overrides this config policy.
    pub effective: bool,
    /// When set through the API.
    pub updated_ms: Option<i64>,
    /// The policy in ECR's JSON shape.
    pub policy: serde_json::Value,
}

/// A pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinView {
    /// `<repository>@<digest>` or a repository pattern.
    pub target: String,
    /// The image digest, for an image pin.
    pub digest: Option<Digest>,
    /// When pinned.
    pub created_ms: i64,
    /// Why.
    pub note: Option<String>,
    /// Set when pinning something that protects nothing yet (a pattern no cached repository
    /// matches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// What a rule does to one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultView {
    /// Image digest.
    pub digest: Digest,
    /// Its tags.
    pub tags: Vec<String>,
    /// Priority of the deciding rule.
    pub rule_priority: u32,
    /// `expire` or `transition`.
    pub action: String,
    /// `archive` for a transition.
    pub target_storage_class: Option<String>,
    /// Why the rule selected it.
    pub reason: String,
    /// Bytes of the image in the store (shared layers counted for every image).
    pub stored_bytes: u64,
    /// Its "pushed" time (first cache, or restore from archive).
    pub first_cached_ms: i64,
    /// When last pulled.
    pub last_pulled_ms: Option<i64>,
}

/// Effect of one rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    /// Its priority.
    pub rule_priority: u32,
    /// `expire` or `transition`.
    pub action: String,
    /// Images it acts on.
    pub images: usize,
    /// Their stored bytes.
    pub bytes: u64,
}

/// Preview (or result) of a policy on one repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoPreview {
    /// `<upstream>/<name>`.
    pub repository: String,
    /// The policy evaluated.
    pub policy: PolicyRef,
    /// Images acted on, by rule priority, oldest first.
    pub results: Vec<ResultView>,
    /// Per rule.
    pub rules: Vec<RuleView>,
}

/// Preview or apply over the selected repositories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LifecycleReport {
    /// False for a preview.
    pub applied: bool,
    /// The evaluation time.
    pub at_ms: i64,
    /// Repositories with a policy, each with what it does.
    pub repositories: Vec<RepoPreview>,
    /// Images expired (or that would be).
    pub expiring_images: usize,
    /// Images moved to archive (or that would be).
    pub transitioning_images: usize,
    /// Stored bytes no retained image references afterwards: what GC reclaims.
    pub reclaimable_bytes: u64,
}

/// An image removed by quota eviction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvictedView {
    /// `<upstream>/<name>`.
    pub repository: String,
    /// Digest.
    pub digest: Digest,
    /// Tags it had.
    pub tags: Vec<String>,
    /// Last pull (or first cached when never pulled).
    pub last_used_ms: i64,
    /// Stored bytes only it held.
    pub freed_bytes: u64,
}

/// What the quota check found and did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaReport {
    /// Configured maximum.
    pub max_bytes: u64,
    /// Eviction threshold.
    pub high_water_bytes: u64,
    /// Eviction target.
    pub low_water_bytes: u64,
    /// Store size found.
    pub usage_bytes: u64,
    /// Images evicted, least recently used first.
    pub evicted: Vec<EvictedView>,
    /// Store size expected once GC has run.
    pub projected_bytes: u64,
    /// False when pinned, recently used and shared content alone exceed the low-water mark.
    pub low_water_reachable: bool,
    /// Unpinned images not evicted because they were pulled or cached within the grace period.
    #[serde(default)]
    pub kept_recent_images: usize,
}

/// What one GC run found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcReport {
    /// Nothing was deleted when true.
    pub dry_run: bool,
    /// When it began.
    pub started_ms: i64,
    /// Total time.
    pub duration_ms: u64,
    /// Time to load the index and mark.
    pub mark_ms: u64,
    /// Archived images restored because a client pulled them again.
    pub restored_images: usize,
    /// The quota check, when a quota is configured.
    pub quota: Option<QuotaReport>,
    /// Blobs in the store before.
    pub store_blobs_before: usize,
    /// Bytes in the store before.
    pub store_bytes_before: u64,
    /// Digests a retained image keeps.
    pub live_blobs: usize,
    /// Stored blobs no retained image references.
    pub unreferenced_blobs: usize,
    /// Blobs deleted (or, dry run, that would be).
    pub deleted_blobs: usize,
    /// Their bytes.
    pub freed_bytes: u64,
    /// Kept: committed within the grace period.
    pub kept_recent: usize,
    /// Kept: a fill of it was running.
    pub kept_in_flight: usize,
    /// Kept: referenced by a manifest recorded while GC ran.
    pub kept_referenced: usize,
    /// Kept: served, or named by a manifest served or recorded, within the grace period.
    #[serde(default)]
    pub kept_served: usize,
    /// Stored blobs the index had no record of, recorded now (collected after the grace period).
    pub adopted: usize,
    /// Blob records dropped because their bytes were not in the store.
    pub forgotten_records: usize,
    /// Blobs in the store after.
    pub store_blobs_after: usize,
    /// Bytes in the store after.
    pub store_bytes_after: u64,
}

/// Store size, quota and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageView {
    /// Bytes in the store (as last counted).
    pub store_bytes: i64,
    /// Blobs in the store.
    pub store_blobs: i64,
    /// Quota maximum.
    pub max_bytes: Option<u64>,
    /// Quota high-water mark.
    pub high_water_bytes: Option<u64>,
    /// Quota low-water mark.
    pub low_water_bytes: Option<u64>,
    /// Seconds between policy applications (0: on demand only).
    pub apply_interval_s: u64,
    /// Seconds between GC runs (0: on demand only).
    pub gc_interval_s: u64,
    /// GC grace period in seconds.
    pub gc_grace_s: u64,
    /// The last GC run since start-up.
    pub last_gc: Option<GcReport>,
    /// The last policy application since start-up.
    pub last_apply_ms: Option<i64>,
}
