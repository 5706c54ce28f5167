//! Version parsing and ordering for the package ecosystems the scanner matches.
//!
//! Each ecosystem has its own parsed type (parse once, compare many times, since
//! matching compares one installed version against many advisory range events),
//! and [`Version`] wraps them so callers can hold any of them.
//!
//! Invalid input: dpkg, apk, SemVer and Go strings that their tools reject are
//! errors (never guesses); rpm and Maven, like their tools, accept any
//! non-blank string.
//! PEP 440 strings that `packaging` rejects are kept as legacy versions with a
//! documented fallback order (see [`pep440`]), because real PyPI advisories
//! list such versions. The OSV sentinel `introduced: "0"` is not a version in
//! any scheme here; the OSV matcher handles it.

use std::cmp::Ordering;
use std::fmt;

/// `PartialOrd`, `PartialEq` and `Eq` from a version type's `Ord`: two versions are equal when
/// their scheme orders them equal (`1.0` and `1.0.0` in some schemes), not when their text is.
macro_rules! order_from_ord {
    ($t:ty) => {
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.cmp(other) == std::cmp::Ordering::Equal
            }
        }

        impl Eq for $t {}
    };
}
pub(crate) use order_from_ord;

pub mod apk;
pub mod dpkg;
pub mod go;
pub mod maven;
pub mod pep440;
pub mod rpm;
pub mod semver;

#[cfg(test)]
pub(crate) mod vectors;

/// A version-ordering scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    /// Debian and Ubuntu packages (`dpkg --compare-versions`).
    Dpkg,
    /// RPM distributions, `[epoch:]version[-release]` compared as rpm 4.18 does.
    Rpm,
    /// Alpine packages (apk-tools).
    Apk,
    /// Python packages (PEP 440, with a fallback for legacy strings).
    Pep440,
    /// SemVer 2.0 precedence as npm and crates.io use it.
    Semver,
    /// Go modules: SemVer with an optional `v` prefix, pseudo-versions, `go1.x` toolchains.
    Go,
    /// Maven artifacts (the POM reference's version order specification).
    Maven,
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ecosystem::Dpkg => "dpkg",
            Ecosystem::Rpm => "rpm",
            Ecosystem::Apk => "apk",
            Ecosystem::Pep440 => "PEP 440",
            Ecosystem::Semver => "semver",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
        })
    }
}

/// Why a version string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// The string was empty (or only whitespace).
    #[error("empty {ecosystem} version")]
    Empty {
        /// Scheme the string was parsed for.
        ecosystem: Ecosystem,
    },
    /// The string is not a valid version of the scheme.
    #[error("invalid {ecosystem} version {input:?}: {reason}")]
    Invalid {
        /// Scheme the string was parsed for.
        ecosystem: Ecosystem,
        /// The rejected string.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl VersionError {
    /// Builds an [`VersionError::Invalid`] for `input`.
    pub(crate) fn invalid(ecosystem: Ecosystem, input: &str, reason: impl Into<String>) -> Self {
        VersionError::Invalid {
            ecosystem,
            input: input.to_string(),
            reason: reason.into(),
        }
    }
}

/// A parsed version of any supported ecosystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    /// A Debian version.
    Dpkg(dpkg::Version),
    /// An RPM EVR.
    Rpm(rpm::Version),
    /// An Alpine version.
    Apk(apk::Version),
    /// A Python version (possibly a legacy, non-PEP-440 one).
    Pep440(pep440::Version),
    /// A SemVer version.
    Semver(semver::Version),
    /// A Go module version.
    Go(go::Version),
    /// A Maven version.
    Maven(maven::Version),
}

impl Version {
    /// Parses `s` with the rules of `eco`.
    ///
    /// PEP 440 uses [`pep440::Version::parse_lenient`] so that the legacy strings
    /// real advisories contain still order; every other scheme rejects invalid input.
    pub fn parse(eco: Ecosystem, s: &str) -> Result<Self, VersionError> {
        Ok(match eco {
            Ecosystem::Dpkg => Version::Dpkg(dpkg::Version::parse(s)?),
            Ecosystem::Rpm => Version::Rpm(rpm::Version::parse(s)?),
            Ecosystem::Apk => Version::Apk(apk::Version::parse(s)?),
            Ecosystem::Pep440 => Version::Pep440(pep440::Version::parse_lenient(s)?),
            Ecosystem::Semver => Version::Semver(semver::Version::parse(s)?),
            Ecosystem::Go => Version::Go(go::Version::parse(s)?),
            Ecosystem::Maven => Version::Maven(maven::Version::parse(s)?),
        })
    }

    /// The scheme this version belongs to.
    pub fn ecosystem(&self) -> Ecosystem {
        match self {
            Version::Dpkg(_) => Ecosystem::Dpkg,
            Version::Rpm(_) => Ecosystem::Rpm,
            Version::Apk(_) => Ecosystem::Apk,
            Version::Pep440(_) => Ecosystem::Pep440,
            Version::Semver(_) => Ecosystem::Semver,
            Version::Go(_) => Ecosystem::Go,
            Version::Maven(_) => Ecosystem::Maven,
        }
    }
}

impl PartialOrd for Version {
    /// Orders two versions of the same scheme; `None` across schemes.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (self, other) {
            (Version::Dpkg(a), Version::Dpkg(b)) => Some(a.cmp(b)),
            (Version::Rpm(a), Version::Rpm(b)) => Some(a.cmp(b)),
            (Version::Apk(a), Version::Apk(b)) => Some(a.cmp(b)),
            (Version::Pep440(a), Version::Pep440(b)) => Some(a.cmp(b)),
            (Version::Semver(a), Version::Semver(b)) => Some(a.cmp(b)),
            (Version::Go(a), Version::Go(b)) => Some(a.cmp(b)),
            (Version::Maven(a), Version::Maven(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Dpkg(v) => v.fmt(f),
            Version::Rpm(v) => v.fmt(f),
            Version::Apk(v) => v.fmt(f),
            Version::Pep440(v) => v.fmt(f),
            Version::Semver(v) => v.fmt(f),
            Version::Go(v) => v.fmt(f),
            Version::Maven(v) => v.fmt(f),
        }
    }
}

/// Compares two version strings of one ecosystem (see [`Version::parse`] for what is accepted).
pub fn compare(eco: Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = Version::parse(eco, a)?;
    let b = Version::parse(eco, b)?;
    // Same ecosystem on both sides, so partial_cmp always answers.
    Ok(a.partial_cmp(&b).unwrap_or(Ordering::Equal))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_dispatches_per_ecosystem() {
        let c = |e, a, b| compare(e, a, b).unwrap();
        assert_eq!(c(Ecosystem::Dpkg, "1:1.0", "2.0"), Ordering::Greater);
        assert_eq!(c(Ecosystem::Rpm, "1.0-1", "1.0-1.el8"), Ordering::Less);
        assert_eq!(c(Ecosystem::Apk, "1.2.3_rc1", "1.2.3"), Ordering::Less);
        assert_eq!(c(Ecosystem::Pep440, "1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(c(Ecosystem::Pep440, "trunk", "0.0.1"), Ordering::Less);
        assert_eq!(c(Ecosystem::Semver, "1.0.0-alpha", "1.0.0"), Ordering::Less);
        assert_eq!(
            c(Ecosystem::Go, "v1.2.3", "1.2.3+incompatible"),
            Ordering::Equal
        );
        assert_eq!(c(Ecosystem::Maven, "2.0.0.M1", "2.0.0"), Ordering::Less);
        assert_eq!(
            c(Ecosystem::Maven, "1.2.3.RELEASE", "1.2.3"),
            Ordering::Equal
        );
    }

    #[test]
    fn errors_name_ecosystem_and_input() {
        let e = compare(Ecosystem::Semver, "1.0.0", "0").unwrap_err();
        assert!(matches!(
            e,
            VersionError::Invalid {
                ecosystem: Ecosystem::Semver,
                ..
            }
        ));
        assert!(e.to_string().contains("\"0\""), "{e}");
        let e = compare(Ecosystem::Dpkg, "", "1").unwrap_err();
        assert_eq!(e.to_string(), "empty dpkg version");
    }

    #[test]
    fn versions_of_different_schemes_do_not_order() {
        let a = Version::parse(Ecosystem::Dpkg, "1.0").unwrap();
        let b = Version::parse(Ecosystem::Rpm, "1.0").unwrap();
        assert_eq!(a.partial_cmp(&b), None);
        assert_ne!(a, b);
        assert_eq!(a.ecosystem(), Ecosystem::Dpkg);
        assert_eq!(b.to_string(), "1.0");
    }

    #[test]
    fn odd_input_never_panics() {
        let odd = [
            "",
            " ",
            "~",
            "^",
            ":",
            "-",
            "1:",
            ":1",
            "1-",
            "-r1",
            "ü",
            "1.ü",
            "1.0~ü",
            "go",
            "v",
            "1.0.0-ü",
            "9999999999999999999999.1",
            "1..2",
            "1__2",
            "0.1_pre~",
            "1.0-r99999999999999999999",
            "\u{0}",
        ];
        let all = [
            Ecosystem::Dpkg,
            Ecosystem::Rpm,
            Ecosystem::Apk,
            Ecosystem::Pep440,
            Ecosystem::Semver,
            Ecosystem::Go,
            Ecosystem::Maven,
        ];
        for eco in all {
            for a in odd {
                for b in odd {
                    let _ = compare(eco, a, b);
                }
            }
        }
        for a in odd {
            for b in odd {
                let _ = apk::compare_str(a, b);
                let _ = rpm::rpmvercmp(a, b);
            }
        }
    }
}
