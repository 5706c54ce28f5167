//! Scan results in the shape of ECR's `DescribeImageScanFindings`: `imageScanStatus`,
//! `imageScanFindings` with `imageScanCompletedAt`, `vulnerabilitySourceUpdatedAt`,
//! `findingSeverityCounts` and `findings[]` (`name`, `severity`, `uri`, `description`,
//! `attributes` as key/value pairs), plus a short inventory summary.
//!
//! An index (multi-platform image) reports each platform image under `platforms`, and as its
//! own findings the union over the platforms: one entry per (advisory, package, version),
//! with the platforms it affects in a `platforms` attribute.

use crate::clock::rfc3339;
use crate::findings::{severity_counts, VulnFinding};
use crate::record::{ImageScan, ScanStatus};
use breakwater_oci::Digest;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// The report of one image manifest.
pub fn image_report(repository: &str, tag: Option<&str>, scan: &ImageScan) -> Value {
    let findings: Vec<Value> = scan.findings.iter().map(|f| finding(f, None)).collect();
    json!({
        "repositoryName": repository,
        "imageId": image_id(&scan.digest, tag),
        "imageScanStatus": {"status": scan.status.as_str(), "description": scan.description},
        "imageScanFindings": {
            "imageScanCompletedAt": rfc3339(scan.matched_at_ms),
            "vulnerabilitySourceUpdatedAt": scan.db_updated_at_ms.map(rfc3339),
            "findingSeverityCounts": counts(&scan.findings),
            "findings": findings,
        },
        "inventory": inventory(scan),
    })
}

/// One platform image of an index, or why it has no scan.
pub struct Platform {
    /// `os/arch[/variant]`, when the index says.
    pub platform: Option<String>,
    /// The child manifest digest.
    pub digest: Digest,
    /// Its scan, or the error that prevented it.
    pub scan: Result<ImageScan, String>,
}

/// The report of an index: per platform, and the union of their findings.
pub fn index_report(
    repository: &str,
    digest: &Digest,
    tag: Option<&str>,
    platforms: &[Platform],
) -> Value {
    let mut union: BTreeMap<(String, String, String), (VulnFinding, Vec<String>)> = BTreeMap::new();
    let mut status = ScanStatus::Complete;
    let mut completed = None::<i64>;
    let mut source = None::<i64>;
    let mut per = Vec::new();
    for p in platforms {
        let label = p.platform.clone().unwrap_or_else(|| "unknown".into());
        match &p.scan {
            Ok(s) => {
                for f in &s.findings {
                    let key = (
                        f.id.clone(),
                        f.package_name.clone(),
                        f.package_version.clone(),
                    );
                    union
                        .entry(key)
                        .or_insert_with(|| (f.clone(), Vec::new()))
                        .1
                        .push(label.clone());
                }
                if s.status != ScanStatus::Complete && s.status != ScanStatus::UnsupportedImage {
                    status = worse(status, s.status);
                }
                completed = completed.max(Some(s.matched_at_ms));
                source = source.max(s.db_updated_at_ms);
                per.push(json!({
                    "platform": label,
                    "imageDigest": p.digest,
                    "imageScanStatus": {"status": s.status.as_str(), "description": s.description},
                    "findingSeverityCounts": counts(&s.findings),
                }));
            }
            Err(e) => {
                status = ScanStatus::Failed;
                per.push(json!({
                    "platform": label,
                    "imageDigest": p.digest,
                    "imageScanStatus": {"status": "FAILED", "description": e},
                }));
            }
        }
    }
    let mut merged: Vec<(VulnFinding, Vec<String>)> = union.into_values().collect();
    merged.sort_by(|a, b| {
        b.0.severity
            .cmp(&a.0.severity)
            .then_with(|| a.0.name.cmp(&b.0.name))
    });
    let flat: Vec<VulnFinding> = merged.iter().map(|(f, _)| f.clone()).collect();
    let description = format!(
        "Index of {} platform images; findings are the union over the platforms.",
        platforms.len()
    );
    json!({
        "repositoryName": repository,
        "imageId": image_id(digest, tag),
        "imageScanStatus": {"status": status.as_str(), "description": description},
        "imageScanFindings": {
            "imageScanCompletedAt": completed.map(rfc3339),
            "vulnerabilitySourceUpdatedAt": source.map(rfc3339),
            "findingSeverityCounts": counts(&flat),
            "findings": merged.iter().map(|(f, p)| finding(f, Some(&p.join(",")))).collect::<Vec<_>>(),
        },
        "platforms": per,
    })
}

fn worse(a: ScanStatus, b: ScanStatus) -> ScanStatus {
    let rank = |s| match s {
        ScanStatus::Failed => 3,
        ScanStatus::FindingsUnavailable => 2,
        ScanStatus::UnsupportedImage => 1,
        ScanStatus::Complete => 0,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

fn image_id(digest: &Digest, tag: Option<&str>) -> Value {
    let mut id = json!({ "imageDigest": digest });
    if let Some(t) = tag {
        id["imageTag"] = json!(t);
    }
    id
}

/// Non-zero counts by severity, as ECR reports them.
fn counts(f: &[VulnFinding]) -> Map<String, Value> {
    severity_counts(f)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s.as_str().to_string(), json!(n)))
        .collect()
}

fn finding(f: &VulnFinding, platforms: Option<&str>) -> Value {
    let mut attrs: Vec<(&str, String)> = vec![
        ("package_name", f.package_name.clone()),
        ("package_version", f.package_version.clone()),
    ];
    if let Some(v) = &f.fixed_version {
        attrs.push(("fixed_version", v.clone()));
    }
    attrs.push(("package_type", f.package_type.clone()));
    attrs.push(("ecosystem", f.ecosystem.clone()));
    attrs.push(("file_path", f.file_path.clone()));
    if let Some(s) = &f.source_name {
        attrs.push(("source_name", s.clone()));
    }
    if let Some(s) = &f.source_version {
        attrs.push(("source_version", s.clone()));
    }
    if let Some(score) = f.cvss_score {
        attrs.push(("CVSS_SCORE", format!("{score:.1}")));
    }
    if !f.aliases.is_empty() {
        attrs.push(("aliases", f.aliases.join(",")));
    }
    attrs.push(("advisory_id", f.id.clone()));
    if let Some(p) = platforms {
        attrs.push(("platforms", p.to_string()));
    }
    json!({
        "name": f.name,
        "severity": f.severity.as_str(),
        "uri": f.uri,
        "description": f.description,
        "attributes": attrs.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
}

fn inventory(scan: &ImageScan) -> Value {
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for p in &scan.inventory.packages {
        let kind = serde_json::to_value(p.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        *by_type.entry(kind).or_default() += 1;
    }
    json!({
        "os": scan.inventory.os.as_ref().map(|o| o.pretty_name.clone().unwrap_or_else(|| o.distro_qualifier())),
        "packages": scan.inventory.packages.len(),
        "packagesByType": by_type,
        "layers": scan.layers.len(),
        "problems": scan.inventory.problems,
        "scannedAt": rfc3339(scan.scanned_at_ms),
    })
}
