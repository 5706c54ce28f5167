//! Go module versions: SemVer with an optional `v`, Go's `vMAJOR[.MINOR]`
//! shorthands, pseudo-versions (ordinary SemVer pre-releases), and Go
//! toolchain names (`go1.21.3`, `go1.21rc2`) as the `stdlib`/`toolchain`
//! pseudo-modules use them. `+incompatible` and other build metadata do not
//! affect order.

use std::cmp::Ordering;
use std::fmt;

use super::{Ecosystem, VersionError};

/// A parsed Go module or toolchain version.
#[derive(Debug, Clone)]
pub struct Version {
    raw: String,
    semver: ::semver::Version,
}

impl Version {
    /// Parses `[v]X.Y.Z[-pre][+build]`, `vX`, `vX.Y`, or a `goX.Y[.Z|rcN|betaN]` toolchain name.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let invalid = |reason: &str| VersionError::invalid(Ecosystem::Go, input, reason);
        let s = input.trim();
        if s.is_empty() {
            return Err(VersionError::Empty {
                ecosystem: Ecosystem::Go,
            });
        }
        let text = match s.strip_prefix("go") {
            Some(toolchain) => toolchain_to_semver(toolchain)
                .ok_or_else(|| invalid("not a Go toolchain version"))?,
            None => expand_shorthand(s.strip_prefix('v').unwrap_or(s)),
        };
        let semver = ::semver::Version::parse(&text).map_err(|e| invalid(&e.to_string()))?;
        Ok(Version {
            raw: s.to_string(),
            semver,
        })
    }

    /// The equivalent SemVer value (without `v`).
    pub fn semver(&self) -> &::semver::Version {
        &self.semver
    }
}

/// Go accepts `v1` and `v1.2` for `v1.0.0` and `v1.2.0` (only without suffixes).
fn expand_shorthand(s: &str) -> String {
    let plain = !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.');
    match s.matches('.').count() {
        0 if plain => format!("{s}.0.0"),
        1 if plain => format!("{s}.0"),
        _ => s.to_string(),
    }
}

/// `1.21.3` → `1.21.3`, `1.21` → `1.21.0`, `1.21rc2` → `1.21.0-rc.2`, `1.9beta1` → `1.9.0-beta.1`.
fn toolchain_to_semver(s: &str) -> Option<String> {
    let cut = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, pre) = s.split_at(cut);
    let parts: Vec<&str> = num.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    let mut out = parts.join(".");
    for _ in parts.len()..3 {
        out.push_str(".0");
    }
    if !pre.is_empty() {
        let n = pre.trim_start_matches(|c: char| c.is_ascii_alphabetic());
        let word = &pre[..pre.len() - n.len()];
        if !matches!(word, "rc" | "beta") || n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit())
        {
            return None;
        }
        out.push_str(&format!("-{word}.{n}"));
    }
    Some(out)
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.semver.cmp_precedence(&other.semver)
    }
}

super::order_from_ord!(Version);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    /// The npm vectors include Go pseudo-versions and `+incompatible`; Go orders
    /// them identically, with or without the `v` prefix.
    #[test]
    fn agrees_with_semver_vectors_with_v_prefix() {
        let rows = vectors::tsv_rows("semver-compare.tsv");
        vectors::check_rows("semver-compare.tsv (as Go, v-prefixed)", &rows, |a, b| {
            Ok(Version::parse(&format!("v{a}"))?.cmp(&Version::parse(b)?))
        });
    }

    #[test]
    fn go_forms() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(v("v1"), v("1.0.0"));
        assert_eq!(v("v1.2"), v("v1.2.0"));
        assert_eq!(v("go1.21"), v("1.21.0"));
        assert!(v("go1.21rc2") < v("go1.21.0"));
        assert!(v("go1.21beta1") < v("go1.21rc1"));
        assert!(v("v0.0.0-20230101000000-abcdefabcdef") < v("v0.0.0"));
        assert!(v("v2.0.0+incompatible") == v("v2.0.0"));
        for bad in ["", "v1.2-pre", "vx", "go1.21alpha1", "go", "1.2.3.4"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
