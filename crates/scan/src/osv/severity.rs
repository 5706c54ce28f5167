//! Severity of a finding: the advisory's own rating text when it has one,
//! else a rating derived from a CVSS base score.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::model::{Affected, Record, SeverityEntry};

/// A qualitative severity, ordered from `Undefined` (lowest) to `Critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// No rating and no usable CVSS vector (e.g. every Go advisory).
    Undefined,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// Maps a distro/database rating word to a severity (case-insensitive).
    ///
    /// Covers GitHub (`MODERATE`), Red Hat (`Important`), Debian
    /// (`unimportant`) and Ubuntu (`negligible`) spellings; unknown words and
    /// "not yet assigned" give `None`.
    pub fn from_text(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Severity::Critical),
            "high" | "important" => Some(Severity::High),
            "medium" | "moderate" => Some(Severity::Medium),
            "low" | "negligible" | "unimportant" => Some(Severity::Low),
            _ => None,
        }
    }

    /// Buckets a CVSS base score: ≥ 9 critical, ≥ 7 high, ≥ 4 medium, > 0 low.
    pub fn from_score(score: f64) -> Self {
        match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            s if s > 0.0 => Severity::Low,
            _ => Severity::Undefined,
        }
    }

    /// The upper-case name (`CRITICAL`, …, `UNDEFINED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Undefined => "UNDEFINED",
            Severity::Low => "LOW",
            Severity::Medium => "MEDIUM",
            Severity::High => "HIGH",
            Severity::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The base score of a CVSS vector of the given OSV severity type, if it parses.
pub fn cvss_base_score(kind: &str, vector: &str) -> Option<f64> {
    let v = vector.trim();
    match kind {
        "CVSS_V2" => cvss::v2::Vector::from_str(v)
            .ok()
            .map(|x| x.score().value()),
        "CVSS_V3" => cvss::v3::Vector::from_str(v)
            .ok()
            .map(|x| x.base_score().value()),
        "CVSS_V4" => cvss::v4::Vector::from_str(v)
            .ok()
            .map(|x| x.score().value()),
        _ => None,
    }
}

/// Best CVSS score among entries: v3 preferred (the most widely used), then v4, then v2.
fn best_score(entries: &[SeverityEntry]) -> Option<f64> {
    ["CVSS_V3", "CVSS_V4", "CVSS_V2"].iter().find_map(|kind| {
        entries
            .iter()
            .filter(|e| e.kind == *kind)
            .filter_map(|e| cvss_base_score(kind, &e.score))
            .reduce(f64::max)
    })
}

/// `severity` text inside a database/ecosystem-specific object.
fn text_in(v: Option<&Value>) -> Option<Severity> {
    v.and_then(|v| v.get("severity"))
        .and_then(Value::as_str)
        .and_then(Severity::from_text)
}

/// A distro's own rating carried in `severity[]` as text rather than a vector (Ubuntu's
/// records: `{"type": "Ubuntu", "score": "medium"}`).
fn rating_entry(entries: &[SeverityEntry]) -> Option<Severity> {
    entries
        .iter()
        .filter(|e| e.kind == "Ubuntu")
        .find_map(|e| Severity::from_text(&e.score))
}

/// A resolved severity and, when it came from CVSS, the score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rated {
    /// The rating.
    pub severity: Severity,
    /// The CVSS base score it was derived from, if any.
    pub score: Option<f64>,
}

/// Severity of `record` for one of its affected entries.
///
/// Rating text wins over vectors (the distro knows its context best), the
/// package's own data over the record's: affected `ecosystem_specific` /
/// `database_specific` text, record `database_specific` text, a distro rating in
/// `severity[]` (Ubuntu's), then the best
/// CVSS score of the affected entry, then of the record.
pub fn rate(record: &Record, affected: &Affected) -> Rated {
    let text = text_in(affected.ecosystem_specific.as_ref())
        .or_else(|| text_in(affected.database_specific.as_ref()))
        .or_else(|| text_in(record.database_specific.as_ref()))
        .or_else(|| rating_entry(&affected.severity))
        .or_else(|| rating_entry(&record.severity));
    let score = best_score(&affected.severity).or_else(|| best_score(&record.severity));
    match (text, score) {
        (Some(severity), score) => Rated { severity, score },
        (None, Some(s)) => Rated {
            severity: Severity::from_score(s),
            score: Some(s),
        },
        (None, None) => Rated {
            severity: Severity::Undefined,
            score: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_buckets() {
        assert_eq!(Severity::from_text("MODERATE"), Some(Severity::Medium));
        assert_eq!(Severity::from_text("Important"), Some(Severity::High));
        assert_eq!(Severity::from_text("unimportant"), Some(Severity::Low));
        assert_eq!(Severity::from_text("not yet assigned"), None);
        assert_eq!(Severity::from_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_score(8.9), Severity::High);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(0.1), Severity::Low);
        assert_eq!(Severity::from_score(0.0), Severity::Undefined);
    }

    #[test]
    fn cvss_scores() {
        let s = |k, v| cvss_base_score(k, v).unwrap();
        // Reference scores from the FIRST calculators.
        assert_eq!(
            s("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"),
            9.8
        );
        assert_eq!(
            s("CVSS_V3", "CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"),
            6.1
        );
        assert_eq!(s("CVSS_V2", "AV:N/AC:L/Au:N/C:P/I:P/A:P"), 7.5);
        assert_eq!(
            s(
                "CVSS_V4",
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"
            ),
            9.3
        );
        assert_eq!(cvss_base_score("CVSS_V3", "garbage"), None);
        assert_eq!(cvss_base_score("Ubuntu", "high"), None);
    }

    #[test]
    fn ubuntu_rating_counts_as_text() {
        let record: Record = serde_json::from_str(
            r#"{"id":"UBUNTU-CVE-1","severity":[{"type":"Ubuntu","score":"medium"},
                {"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected":[{"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"zlib"}}]}"#,
        )
        .unwrap();
        let rated = rate(&record, &record.affected[0]);
        assert_eq!(rated.severity, Severity::Medium, "the distro's rating wins");
        assert_eq!(rated.score, Some(9.8));
    }
}
