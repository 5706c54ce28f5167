//! The OSV record schema (<https://ossf.github.io/osv-schema/>), as far as the
//! scanner uses it. Unknown fields are ignored; `null` where a list is expected
//! reads as an empty list, since real feeds emit both.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Reads `null` as the type's default (real feeds write `"aliases": null`).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// One OSV vulnerability record.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Record {
    /// Record id, e.g. `GO-2023-1571`.
    pub id: String,
    /// Last modification time (RFC 3339); Go's feed has `0001-01-01` placeholders.
    #[serde(default)]
    pub modified: Option<String>,
    /// Publication time (RFC 3339).
    #[serde(default)]
    pub published: Option<String>,
    /// When set, the record was withdrawn and must never match.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// Other ids for the same issue (CVE-…, GHSA-…).
    #[serde(default, deserialize_with = "null_default")]
    pub aliases: Vec<String>,
    /// Ids of related but different issues.
    #[serde(default, deserialize_with = "null_default")]
    pub related: Vec<String>,
    /// One-line summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// Longer description (Markdown).
    #[serde(default)]
    pub details: Option<String>,
    /// Severity vectors of the whole record.
    #[serde(default, deserialize_with = "null_default")]
    pub severity: Vec<SeverityEntry>,
    /// Affected packages and their versions.
    #[serde(default, deserialize_with = "null_default")]
    pub affected: Vec<Affected>,
    /// Links about the issue.
    #[serde(default, deserialize_with = "null_default")]
    pub references: Vec<Reference>,
    /// Database-specific extras (may carry `severity` text or a `url`).
    #[serde(default)]
    pub database_specific: Option<Value>,
    /// Schema version the record claims.
    #[serde(default)]
    pub schema_version: Option<String>,
}

/// A `severity[]` entry: a scoring system and its vector.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SeverityEntry {
    /// `CVSS_V2`, `CVSS_V3`, `CVSS_V4`, `Ubuntu`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector string (or the rating, for non-CVSS kinds).
    pub score: String,
}

/// A `references[]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Reference {
    /// `ADVISORY`, `FIX`, `WEB`, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The link.
    pub url: String,
}

/// One `affected[]` entry: a package and the versions of it that are vulnerable.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Affected {
    /// The package; records without one cannot match and are skipped.
    #[serde(default)]
    pub package: Option<PackageRef>,
    /// Per-package severity vectors.
    #[serde(default, deserialize_with = "null_default")]
    pub severity: Vec<SeverityEntry>,
    /// Version ranges.
    #[serde(default, deserialize_with = "null_default")]
    pub ranges: Vec<Range>,
    /// Explicitly enumerated affected versions.
    #[serde(default, deserialize_with = "null_default")]
    pub versions: Vec<String>,
    /// Ecosystem-specific extras (Debian/Ubuntu may carry `severity` text).
    #[serde(default)]
    pub ecosystem_specific: Option<Value>,
    /// Database-specific extras (RustSec puts `informational` here).
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// The package an `affected[]` entry is about.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct PackageRef {
    /// OSV ecosystem, possibly with a release (`Debian:12`, `Alpine:v3.19`).
    pub ecosystem: String,
    /// Package name as the ecosystem spells it.
    pub name: String,
    /// Package URL, when given.
    #[serde(default)]
    pub purl: Option<String>,
}

/// A `ranges[]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Range {
    /// How the event versions are ordered.
    #[serde(rename = "type")]
    pub kind: RangeKind,
    /// Repository of a GIT range.
    #[serde(default)]
    pub repo: Option<String>,
    /// The events, in any order.
    #[serde(default, deserialize_with = "null_default")]
    pub events: Vec<Event>,
    /// Database-specific extras.
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// Range type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RangeKind {
    /// Versions ordered by the ecosystem's own rules.
    Ecosystem,
    /// Versions ordered by SemVer 2.0.
    Semver,
    /// Git commits (ignored by the matcher: images carry no commit ids).
    Git,
    /// Any type this code does not know.
    #[serde(other)]
    Unknown,
}

/// A range event; exactly one field is set in valid records.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Event {
    /// Versions from here on are affected (`"0"`: from the beginning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    /// Versions from here on are not affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    /// The last affected version (versions after it are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    /// Upper limit of the range (`"*"`: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

impl Record {
    /// The first CVE alias, else the record id: the name people search for.
    pub fn display_id(&self) -> &str {
        self.aliases
            .iter()
            .find(|a| a.starts_with("CVE-"))
            .unwrap_or(&self.id)
    }

    /// A link for the record: its `database_specific.url` if any, else osv.dev.
    pub fn url(&self) -> String {
        self.database_specific
            .as_ref()
            .and_then(|d| d.get("url"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("https://osv.dev/vulnerability/{}", self.id))
    }
}
