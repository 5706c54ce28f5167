//! What a stored scan is: the status ECR would report, the image's inventory and findings,
//! and the rows a rematch or an analyser upgrade works on. The index persists these.

use crate::findings::VulnFinding;
use crate::inventory::Inventory;
use breakwater_oci::{Digest, RepoKey};
use serde::{Deserialize, Serialize};

/// ECR's scan statuses that breakwater produces.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScanStatus {
    /// Every layer was analysed and matched.
    Complete,
    /// A layer could not be read or analysed; findings cover the other layers only.
    Failed,
    /// Not a container image (an artifact, a signature, …): nothing to scan.
    UnsupportedImage,
    /// The inventory is known but no vulnerability data is loaded to match it against.
    FindingsUnavailable,
}

impl ScanStatus {
    /// The ECR spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Complete => "COMPLETE",
            ScanStatus::Failed => "FAILED",
            ScanStatus::UnsupportedImage => "UNSUPPORTED_IMAGE",
            ScanStatus::FindingsUnavailable => "FINDINGS_UNAVAILABLE",
        }
    }

    /// Reads a stored status (unknown spellings read as failed).
    pub fn parse(s: &str) -> Self {
        match s {
            "COMPLETE" => ScanStatus::Complete,
            "UNSUPPORTED_IMAGE" => ScanStatus::UnsupportedImage,
            "FINDINGS_UNAVAILABLE" => ScanStatus::FindingsUnavailable,
            _ => ScanStatus::Failed,
        }
    }
}

/// The stored scan of one image manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ImageScan {
    /// Image manifest digest.
    pub digest: Digest,
    /// Upstream of the repository it was first scanned for (events name it).
    pub upstream: String,
    /// That repository, as the upstream names it.
    pub repository: String,
    /// Outcome.
    pub status: ScanStatus,
    /// What the status means for this image (which layer failed, why nothing was matched).
    pub description: String,
    /// Layer digests, base first.
    pub layers: Vec<Digest>,
    /// The merged inventory.
    pub inventory: Inventory,
    /// Findings, worst first.
    pub findings: Vec<VulnFinding>,
    /// When the layers were analysed and merged (unix ms).
    pub scanned_at_ms: i64,
    /// When the findings were last matched (unix ms).
    pub matched_at_ms: i64,
    /// Content hash of the vulnerability data matched against; `None`: never matched.
    pub db_hash: Option<String>,
    /// When that data was last updated (newest record, else load time; unix ms).
    pub db_updated_at_ms: Option<i64>,
}

/// A stored scan whose inventory an older analyzer made (what an upgrade rescan needs).
#[derive(Clone, Debug, PartialEq)]
pub struct Outdated {
    /// Image manifest digest.
    pub digest: Digest,
    /// The repository it was scanned for (upstream and the upstream's name).
    pub repo: RepoKey,
    /// Layer digests, base first.
    pub layers: Vec<Digest>,
    /// When it was scanned (unix ms).
    pub scanned_at_ms: i64,
}

/// New findings for a stored image after a rematch.
pub struct Rematched {
    /// Image digest.
    pub digest: Digest,
    /// The findings now.
    pub findings: Vec<VulnFinding>,
    /// Status now (a data-less scan becomes complete once data is matched).
    pub status: ScanStatus,
    /// Description now.
    pub description: String,
}
