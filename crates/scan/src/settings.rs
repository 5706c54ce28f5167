//! Configuration of vulnerability scanning: the `[scan]` section (vulnerability data, when scans
//! run, how often the data is checked for changes) and its `[[scan.gates]]` pull-gate policies.
//! `config.rs` embeds the raw section.

use crate::osv::Severity;
use breakwater_oci::RepoPattern;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Scan settings.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// OSV sources: directories of `*.json`, single `.json` files, or osv.dev `all.zip` files.
    pub osv_paths: Vec<PathBuf>,
    /// Which repositories (`<upstream>/<name>`) are scanned when an image is first cached.
    pub on_cache: Vec<RepoPattern>,
    /// How often the sources are checked for changes (mtime, size, then content hash).
    pub rescan_interval: Duration,
    /// Pull gates; the first whose pattern matches a repository applies.
    pub gates: Vec<GatePolicy>,
    /// Most images whose inventory an older analyzer made (before a breakwater upgrade)
    /// rescanned per `rescan_interval`, oldest first; 0 turns upgrade rescans off.
    pub upgrade_batch: usize,
}

/// Default of [`ScanSettings::upgrade_batch`].
pub const DEFAULT_UPGRADE_BATCH: usize = 16;

/// What a gate does with an image over its threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateMode {
    /// Answer the manifest request 403 `DENIED`.
    Enforce,
    /// Serve it with an `X-Breakwater-Scan` header, and count it.
    Warn,
    /// No gate (lets a narrower pattern exempt repositories from a broader one).
    Off,
}

impl GateMode {
    /// Lower-case name for metrics and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            GateMode::Enforce => "enforce",
            GateMode::Warn => "warn",
            GateMode::Off => "off",
        }
    }
}

/// A pull gate for the repositories matching a pattern.
#[derive(Debug, Clone)]
pub struct GatePolicy {
    /// Repositories (`<upstream>/<name>`) it applies to.
    pub repositories: RepoPattern,
    /// Enforce, warn or off.
    pub mode: GateMode,
    /// Findings at or above this severity count against the image.
    pub severity: Severity,
    /// Advisory ids or aliases (CVE-…, GHSA-…) that never count.
    pub allow: Vec<String>,
}

impl ScanSettings {
    /// True when images of `repository` are scanned as soon as they are cached.
    pub fn scans_on_cache(&self, repository: &str) -> bool {
        self.on_cache.iter().any(|p| p.matches(repository))
    }

    /// The gate for `repository`, unless none applies or it is off.
    pub fn gate(&self, repository: &str) -> Option<&GatePolicy> {
        self.gates
            .iter()
            .find(|g| g.repositories.matches(repository))
            .filter(|g| g.mode != GateMode::Off)
    }
}

/// `on_cache` as written: a switch for every repository, or a list of patterns.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawOnCache {
    All(bool),
    Patterns(Vec<String>),
}

/// `[scan]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawScan {
    osv_paths: Option<Vec<PathBuf>>,
    on_cache: Option<RawOnCache>,
    #[serde(default, with = "humantime_serde")]
    rescan_interval: Option<Duration>,
    gates: Option<Vec<RawGate>>,
    upgrade_batch: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGate {
    repositories: String,
    mode: GateMode,
    severity: Option<String>,
    allow: Option<Vec<String>>,
}

impl ScanSettings {
    /// Typed settings from the raw `[scan]` section.
    pub fn from_raw(raw: RawScan) -> Result<Self, String> {
        let pattern =
            |p: &str, at: &str| RepoPattern::new(p).map_err(|e| format!("{at} {p:?}: {e}"));
        let on_cache = match raw.on_cache {
            None | Some(RawOnCache::All(false)) => Vec::new(),
            Some(RawOnCache::All(true)) => vec![pattern("**", "scan.on_cache")?],
            Some(RawOnCache::Patterns(ps)) => ps
                .iter()
                .map(|p| pattern(p, "scan.on_cache"))
                .collect::<Result<_, _>>()?,
        };
        let gates = raw
            .gates
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                let at = format!("scan.gates[{i}]");
                let severity = match g.severity.as_deref() {
                    None => Severity::High,
                    Some(s) => Severity::from_text(s).ok_or_else(|| {
                        format!("{at}.severity {s:?}: use CRITICAL, HIGH, MEDIUM or LOW")
                    })?,
                };
                Ok(GatePolicy {
                    repositories: pattern(&g.repositories, &format!("{at}.repositories"))?,
                    mode: g.mode,
                    severity,
                    allow: g.allow.unwrap_or_default(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let osv_paths = raw.osv_paths.unwrap_or_default();
        // A gate without data would judge every image clean (or, fail-closed, block them all).
        if osv_paths.is_empty() && gates.iter().any(|g| g.mode != GateMode::Off) {
            return Err("scan.gates need vulnerability data: set scan.osv_paths".into());
        }
        let rescan_interval = raw.rescan_interval.unwrap_or(Duration::from_secs(300));
        if rescan_interval.is_zero() {
            return Err("scan.rescan_interval must be more than 0s".into());
        }
        Ok(ScanSettings {
            osv_paths,
            on_cache,
            rescan_interval,
            gates,
            upgrade_batch: raw.upgrade_batch.unwrap_or(DEFAULT_UPGRADE_BATCH),
        })
    }
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self::from_raw(RawScan::default()).expect("empty scan settings are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ScanSettings, String> {
        let raw: RawScan = toml::from_str(text).map_err(|e| e.to_string())?;
        ScanSettings::from_raw(raw)
    }

    #[test]
    fn defaults_scan_nothing_and_gate_nothing() {
        let s = ScanSettings::default();
        assert!(s.osv_paths.is_empty() && s.gates.is_empty());
        assert!(!s.scans_on_cache("docker.io/library/nginx"));
        assert_eq!(s.rescan_interval, Duration::from_secs(300));
        assert_eq!(s.upgrade_batch, DEFAULT_UPGRADE_BATCH);
        assert_eq!(parse("upgrade_batch = 0").unwrap().upgrade_batch, 0);
    }

    #[test]
    fn on_cache_switch_or_patterns_and_first_gate_wins() {
        let s = parse(
            r#"
            osv_paths = ["/osv"]
            on_cache = ["docker.io/library/*"]
            rescan_interval = "30s"
            [[gates]]
            repositories = "docker.io/library/debug*"
            mode = "off"
            [[gates]]
            repositories = "docker.io/**"
            mode = "enforce"
            severity = "critical"
            allow = ["CVE-2024-1"]
            "#,
        )
        .unwrap();
        assert!(s.scans_on_cache("docker.io/library/nginx"));
        assert!(!s.scans_on_cache("docker.io/team/app"));
        assert!(
            s.gate("docker.io/library/debugger").is_none(),
            "off exempts"
        );
        let g = s.gate("docker.io/team/app").unwrap();
        assert_eq!(
            (g.mode, g.severity),
            (GateMode::Enforce, Severity::Critical)
        );
        assert!(s.gate("quay.io/x/y").is_none());
        assert!(parse("on_cache = true").unwrap().scans_on_cache("a/b/c"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[[gates]]\nrepositories = \"**\"\nmode = \"warn\"").unwrap_err();
        assert!(e.contains("osv_paths"), "{e}");
        let e = parse("osv_paths=[\"/x\"]\n[[gates]]\nrepositories = \"**\"\nmode = \"warn\"\nseverity = \"bad\"")
            .unwrap_err();
        assert!(e.contains("scan.gates[0].severity"), "{e}");
        assert!(parse("[[gates]]\nrepositories = \"**\"\nmode = \"block\"").is_err());
        assert!(parse("rescan_interval = \"0s\"").is_err());
        assert!(parse("on_cache = [\"a//b\"]")
            .unwrap_err()
            .contains("scan.on_cache"));
    }
}
