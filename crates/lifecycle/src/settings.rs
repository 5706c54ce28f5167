//! Configuration of lifecycle, quota and GC: the `[lifecycle]` and `[gc]` sections and the quota
//! keys of `[storage]`, turned into typed settings. `config.rs` embeds the raw sections.

use super::pattern::RepoPattern;
use super::policy::LifecyclePolicy;
use serde::{Deserialize, Deserializer};
use std::time::Duration;

/// Lifecycle, quota and GC settings.
#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// How often policies are applied; zero: only on demand.
    pub apply_interval: Duration,
    /// How often the quota is enforced and GC runs; zero: only on demand.
    pub gc_interval: Duration,
    /// Blobs committed more recently than this are never collected.
    pub gc_grace: Duration,
    /// The registry-wide default policy from the config file.
    pub default_policy: Option<LifecyclePolicy>,
    /// Policies by repository pattern from the config file, in file order.
    pub policies: Vec<ConfiguredPolicy>,
}

/// A policy for the repositories matching a pattern.
#[derive(Debug, Clone)]
pub struct ConfiguredPolicy {
    /// Repositories (`<upstream>/<name>`) it applies to.
    pub repositories: RepoPattern,
    /// The policy.
    pub policy: LifecyclePolicy,
}

/// A byte quota on the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Quota {
    /// The maximum store size.
    pub max_bytes: u64,
    /// Eviction starts above this percentage of `max_bytes`.
    pub high_water: f64,
    /// Eviction frees down to this percentage of `max_bytes`.
    pub low_water: f64,
}

impl Quota {
    /// The high-water mark in bytes.
    pub fn high_water_bytes(&self) -> u64 {
        (self.max_bytes as f64 * self.high_water / 100.0) as u64
    }

    /// The low-water mark in bytes.
    pub fn low_water_bytes(&self) -> u64 {
        (self.max_bytes as f64 * self.low_water / 100.0) as u64
    }
}

/// `[lifecycle]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLifecycle {
    #[serde(default, with = "humantime_serde")]
    apply_interval: Option<Duration>,
    default_policy: Option<toml::Value>,
    policies: Option<Vec<RawScopedPolicy>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScopedPolicy {
    repositories: String,
    policy: toml::Value,
}

/// `[gc]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawGc {
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    grace: Option<Duration>,
}

/// A byte count written as an integer or with a unit (`"500MiB"`, `"20GB"`, `"1.5TiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => parse_bytes(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `123`, `10KB`, `1.5GiB`, … (decimal and binary units, case-insensitive).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = (s[..split].trim(), s[split..].trim());
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 500MiB or 20GB)"))?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024f64.powi(2),
        "gi" | "gib" => 1024f64.powi(3),
        "ti" | "tib" => 1024f64.powi(4),
        _ => return Err(format!("{text:?} has an unknown unit {unit:?}")),
    };
    Ok((n * mult).round() as u64)
}

/// Builds the quota from `[storage]`'s `max_bytes`, `high_water` and `low_water`.
pub fn quota(
    max_bytes: Option<ByteSize>,
    high_water: Option<f64>,
    low_water: Option<f64>,
) -> Result<Option<Quota>, String> {
    let high = high_water.unwrap_or(90.0);
    let low = low_water.unwrap_or(80.0);
    if !(low > 0.0 && low < high && high <= 100.0) {
        return Err(format!(
            "storage.low_water ({low}) and storage.high_water ({high}) must satisfy 0 < low_water < high_water <= 100"
        ));
    }
    match max_bytes {
        None => Ok(None),
        Some(ByteSize(0)) => Err("storage.max_bytes must be more than 0".into()),
        Some(ByteSize(max_bytes)) => Ok(Some(Quota {
            max_bytes,
            high_water: high,
            low_water: low,
        })),
    }
}

/// A policy written as a JSON string or as a TOML table of the same shape.
fn policy_value(v: toml::Value, at: &str) -> Result<LifecyclePolicy, String> {
    let parsed = match v {
        toml::Value::String(json) => LifecyclePolicy::from_json(&json),
        other => {
            let json = serde_json::to_value(&other)
                .map_err(|e| format!("{at}: cannot be read as a policy: {e}"))?;
            LifecyclePolicy::from_value(&json)
        }
    };
    parsed.map_err(|e| format!("{at}: {e}"))
}

impl LifecycleSettings {
    /// Typed settings from the raw `[lifecycle]` and `[gc]` sections.
    pub fn from_raw(l: RawLifecycle, gc: RawGc) -> Result<Self, String> {
        let default_policy = l
            .default_policy
            .map(|v| policy_value(v, "lifecycle.default_policy"))
            .transpose()?;
        let policies = l
            .policies
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let at = format!("lifecycle.policies[{i}]");
                let repositories = RepoPattern::new(&p.repositories)
                    .map_err(|e| format!("{at}.repositories {:?}: {e}", p.repositories))?;
                if p.repositories == "default" {
                    return Err(format!(
                        "{at}.repositories: \"default\" is reserved; use lifecycle.default_policy"
                    ));
                }
                let policy = policy_value(p.policy, &format!("{at}.policy"))?;
                Ok(ConfiguredPolicy {
                    repositories,
                    policy,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(LifecycleSettings {
            apply_interval: l.apply_interval.unwrap_or(Duration::from_secs(3600)),
            gc_interval: gc.interval.unwrap_or(Duration::from_secs(15 * 60)),
            gc_grace: gc.grace.unwrap_or(Duration::from_secs(10 * 60)),
            default_policy,
            policies,
        })
    }
}

impl Default for LifecycleSettings {
    fn default() -> Self {
        Self::from_raw(RawLifecycle::default(), RawGc::default())
            .expect("empty lifecycle settings are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_bytes("123").unwrap(), 123);
        assert_eq!(parse_bytes("10KB").unwrap(), 10_000);
        assert_eq!(parse_bytes("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_bytes(" 2 tb ").unwrap(), 2_000_000_000_000);
        assert!(parse_bytes("12 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
    }

    #[test]
    fn quota_marks_are_checked() {
        let q = quota(Some(ByteSize(1000)), None, None).unwrap().unwrap();
        assert_eq!((q.high_water_bytes(), q.low_water_bytes()), (900, 800));
        assert!(quota(None, Some(50.0), Some(60.0))
            .unwrap_err()
            .contains("low_water"));
        assert!(quota(Some(ByteSize(0)), None, None).is_err());
        assert_eq!(quota(None, None, None).unwrap(), None);
    }
}
