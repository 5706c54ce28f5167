//! SemVer 2.0 precedence as npm and crates.io use it (build metadata ignored).
//!
//! Parsing is the `semver` crate's strict grammar plus what npm's strict mode
//! also accepts: surrounding whitespace and one leading `v` or `=`. Anything
//! else — notably the bare `0` that OSV uses as "introduced: 0" — is an error;
//! the OSV matcher treats that sentinel itself.

use std::cmp::Ordering;
use std::fmt;

use super::{Ecosystem, VersionError};

/// A parsed SemVer version.
#[derive(Debug, Clone)]
pub struct Version(::semver::Version);

impl Version {
    /// Parses `MAJOR.MINOR.PATCH[-pre][+build]`, optionally prefixed by `v` or `=`.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(VersionError::Empty {
                ecosystem: Ecosystem::Semver,
            });
        }
        let s = s.strip_prefix(['v', '=']).unwrap_or(s);
        ::semver::Version::parse(s)
            .map(Version)
            .map_err(|e| VersionError::invalid(Ecosystem::Semver, input, e.to_string()))
    }

    /// The underlying `semver` crate value.
    pub fn inner(&self) -> &::semver::Version {
        &self.0
    }
}

impl From<::semver::Version> for Version {
    fn from(v: ::semver::Version) -> Self {
        Version(v)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp_precedence(&other.0)
    }
}

super::order_from_ord!(Version);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn agrees_with_npm_semver() {
        let rows = vectors::tsv_rows("semver-compare.tsv");
        vectors::check_rows("semver-compare.tsv", &rows, |a, b| {
            Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
        });
    }

    #[test]
    fn rejects_what_npm_rejects() {
        let bad = vectors::list("semver-invalid-versions.txt");
        assert!(!bad.is_empty());
        for s in bad
            .iter()
            .map(String::as_str)
            .chain(["1.2", "01.2.3", "1.2.3-01", "x", ""])
        {
            assert!(Version::parse(s).is_err(), "{s:?} accepted");
        }
        let e = Version::parse("0").unwrap_err().to_string();
        assert!(e.contains("\"0\""), "{e}");
    }

    #[test]
    fn prefixes_and_build_metadata() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert_eq!(v(" =1.2.3 "), v("1.2.3+build.5"));
        assert!(v("1.2.3-rc.1") < v("1.2.3"));
    }
}
