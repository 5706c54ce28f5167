//! The pull gate: before a gated image manifest is served, its scan must exist (made now if
//! needed, pulling the layers through the cache) and have no finding at or above the policy's
//! severity outside its allow-list.
//!
//! Multi-arch: an index is let through; the image the client then fetches (by digest) is
//! gated, so each platform is judged on its own packages. Artifacts that are not container
//! images (signatures, attestations, charts) are let through: there is nothing to judge.
//! Enforce mode fails closed: without vulnerability data, or when a layer cannot be analysed,
//! the image is not served; warn mode serves it and says why in the header.

use crate::oci::manifest;
use crate::oci::{ErrorCode, RegistryError};
use crate::registry::manifests::CachedManifest;
use crate::registry::{Target, Verdict};
use crate::scan::findings::VulnFinding;
use crate::scan::record::ScanStatus;
use crate::scan::scanner::{Scanner, Trigger};
use crate::scan::settings::{GateMode, GatePolicy};
use std::sync::Arc;

/// Findings named in a denial message or warning header.
const NAMED: usize = 5;

impl Scanner {
    /// Judges a manifest about to be served from `t`.
    pub async fn gate(self: &Arc<Self>, t: &Target, m: &CachedManifest) -> Verdict {
        let repo = t.key().to_string();
        let Some(policy) = self.settings.gate(&repo) else {
            return Verdict::Allow;
        };
        if manifest::is_index(&m.media_type) {
            return self.count(policy, Verdict::Allow);
        }
        let image = format!("{repo}@{}", m.digest);
        // The first gated pulls after start-up wait for the data rather than judge without it.
        let status = self.db.settled().await;
        if status.snapshot.is_none() {
            let why = status
                .error
                .unwrap_or_else(|| "no vulnerability data loaded".into());
            return self.unjudged(
                policy,
                &image,
                &format!("vulnerability data unavailable: {why}"),
            );
        }
        let scan = match self.image(t, &m.digest, Trigger::Gate, false).await {
            Ok(s) => s,
            Err(e) => return self.unjudged(policy, &image, &format!("scan failed: {}", e.message)),
        };
        match scan.status {
            ScanStatus::UnsupportedImage => return self.count(policy, Verdict::Allow),
            ScanStatus::Failed => {
                return self.unjudged(
                    policy,
                    &image,
                    &format!("scan incomplete: {}", scan.description),
                )
            }
            _ => {}
        }
        let over: Vec<&VulnFinding> = scan
            .findings
            .iter()
            .filter(|f| f.severity >= policy.severity && !f.allowed_by(&policy.allow))
            .collect();
        if over.is_empty() {
            return self.count(policy, Verdict::Allow);
        }
        let named: Vec<String> = over.iter().take(NAMED).map(|f| f.short()).collect();
        let more = match over.len().saturating_sub(NAMED) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let verdict = match policy.mode {
            GateMode::Enforce => Verdict::Deny(RegistryError::new(
                ErrorCode::Denied,
                format!(
                    "{image} is blocked by the vulnerability scan gate ({}): {} findings at or above {}: {}{more}. \
                     Pull a fixed image, or allow-list the advisories in scan.gates.allow",
                    policy.repositories.as_str(),
                    over.len(),
                    policy.severity,
                    named.join("; ")
                ),
            )),
            _ => Verdict::Warn(header_value(&format!(
                "{} findings >= {}: {}{more}",
                over.len(),
                policy.severity,
                named.join("; ")
            ))),
        };
        self.count(policy, verdict)
    }

    /// No judgement possible: enforce refuses, warn serves and says so.
    fn unjudged(&self, policy: &GatePolicy, image: &str, why: &str) -> Verdict {
        tracing::warn!(%image, mode = policy.mode.as_str(), "scan gate cannot judge: {why}");
        let verdict = match policy.mode {
            GateMode::Enforce => Verdict::Deny(RegistryError::new(
                ErrorCode::Denied,
                format!(
                    "{image} is blocked by the vulnerability scan gate ({}): it could not be judged: {why}",
                    policy.repositories.as_str()
                ),
            )),
            _ => Verdict::Warn(header_value(&format!("not scanned: {why}"))),
        };
        self.count(policy, verdict)
    }

    fn count(&self, policy: &GatePolicy, v: Verdict) -> Verdict {
        let result = match &v {
            Verdict::Allow => "allowed",
            Verdict::Warn(_) => "warned",
            Verdict::Deny(_) => "denied",
        };
        self.metrics
            .gate
            .with_label_values(&[policy.mode.as_str(), result])
            .inc();
        v
    }
}

/// A header-safe rendering: printable ASCII only, bounded length.
fn header_value(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.len() > 1000 {
        out.truncate(997);
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::header_value;

    #[test]
    fn header_values_are_ascii_and_bounded() {
        assert_eq!(header_value("a\r\nb ≥ c"), "a??b ? c");
        assert_eq!(header_value(&"x".repeat(5000)).len(), 1000);
    }
}
