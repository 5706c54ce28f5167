//! Debian versions: `[epoch:]upstream[-revision]`, ordered like `dpkg --compare-versions`.
//!
//! Parsing follows `dpkg --validate-version`: anything it rejects (including an
//! upstream part that does not start with a digit) is an error, never a guess.

use std::cmp::Ordering;
use std::fmt;

use super::{Ecosystem, VersionError};

/// A parsed Debian package version.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    upstream: String,
    /// Empty when the version has no `-revision` (dpkg treats that like "0").
    revision: String,
}

fn invalid(input: &str, reason: &str) -> VersionError {
    VersionError::invalid(Ecosystem::Dpkg, input, reason)
}

impl Version {
    /// Parses and validates a Debian version string.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        // dpkg ignores surrounding whitespace but not embedded whitespace.
        let s = input.trim();
        if s.is_empty() {
            return Err(VersionError::Empty {
                ecosystem: Ecosystem::Dpkg,
            });
        }
        if s.contains(char::is_whitespace) {
            return Err(invalid(input, "version string has embedded spaces"));
        }
        let (epoch, rest) = match s.split_once(':') {
            Some((e, rest)) => {
                if e.is_empty() {
                    return Err(invalid(input, "epoch in version is empty"));
                }
                if !e.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid(input, "epoch in version is not number"));
                }
                let epoch = e
                    .parse::<u32>()
                    .ok()
                    .filter(|&n| n <= i32::MAX as u32)
                    .ok_or_else(|| invalid(input, "epoch in version is too big"))?;
                (epoch, rest)
            }
            None => (0, s),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((_, "")) => return Err(invalid(input, "revision number is empty")),
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(invalid(input, "version number is empty"));
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            return Err(invalid(input, "version number does not start with digit"));
        }
        // '-' can only remain in upstream when a revision was split off, and ':'
        // only when an epoch was; both are already guaranteed by the splits above.
        if !upstream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-+~:".contains(&b))
        {
            return Err(invalid(input, "invalid character in version number"));
        }
        if !revision
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+~".contains(&b))
        {
            return Err(invalid(input, "invalid character in revision number"));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
        })
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The upstream version part.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// The Debian revision ("" when absent).
    pub fn revision(&self) -> &str {
        &self.revision
    }
}

/// Sort weight of one non-digit character: '~' below end-of-string, letters
/// below other punctuation.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's ordering of one version fragment: alternating non-digit runs
/// (compared character-wise by [`weight`]) and digit runs (compared numerically).
fn compare_fragment(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (wa, wb) = (weight(a.get(i).copied()), weight(b.get(j).copied()));
            if wa != wb {
                return wa.cmp(&wb);
            }
            // Never step past the end, so the slices below stay in bounds.
            i = (i + 1).min(a.len());
            j = (j + 1).min(b.len());
        }
        // Numeric runs: leading zeros do not count, then the longer run wins,
        // then the first differing digit.
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let (si, sj) = (i, j);
        while digit(a, i) {
            i += 1;
        }
        while digit(b, j) {
            j += 1;
        }
        let ord = (i - si)
            .cmp(&(j - sj))
            .then_with(|| a[si..i].cmp(&b[sj..j]));
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| compare_fragment(&self.upstream, &other.upstream))
            .then_with(|| compare_fragment(&self.revision, &other.revision))
    }
}

super::order_from_ord!(Version);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.upstream)?;
        if !self.revision.is_empty() {
            write!(f, "-{}", self.revision)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn agrees_with_dpkg_compare_versions() {
        let rows = vectors::tsv_rows("dpkg-compare.tsv");
        vectors::check_rows("dpkg-compare.tsv", &rows, |a, b| {
            Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
        });
    }

    #[test]
    fn rejects_what_dpkg_rejects() {
        let bad = vectors::list("dpkg-invalid-versions.txt");
        assert!(!bad.is_empty());
        let accepted: Vec<_> = bad.iter().filter(|s| Version::parse(s).is_ok()).collect();
        assert!(
            accepted.is_empty(),
            "accepted invalid versions: {accepted:?}"
        );
        for s in [
            "",
            "1:",
            ":1.0",
            "x:1.0",
            "1.0-",
            "1.0 1",
            "1.0_1",
            "99999999999:1",
        ] {
            assert!(Version::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn error_names_the_input() {
        let e = Version::parse("a1.0").unwrap_err().to_string();
        assert!(
            e.contains("\"a1.0\"") && e.contains("does not start with digit"),
            "{e}"
        );
    }

    #[test]
    fn accessors_and_display() {
        let v = Version::parse("1:2.66-4+deb12u3+b1").unwrap();
        assert_eq!(
            (v.epoch(), v.upstream(), v.revision()),
            (1, "2.66", "4+deb12u3+b1")
        );
        assert_eq!(v.to_string(), "1:2.66-4+deb12u3+b1");
        assert_eq!(
            Version::parse("1.0-0").unwrap(),
            Version::parse("0:1.0").unwrap()
        );
    }
}
