//! Python versions: PEP 440 (via `pep440_rs`), plus a fallback for the legacy
//! strings that old PyPI releases and advisories still contain.
//!
//! Fallback ordering (used by [`Version::parse_lenient`]) for a string that is
//! not PEP 440, e.g. `0.3m1`, `2.0.1rc2-git`, `trunk`:
//! 1. Its *base* is the longest prefix that is valid PEP 440 and ends where a
//!    word ends (before a separator, or where digits and letters meet), so
//!    `2.0.1rc2-git` → `2.0.1rc2`, `0.3m1` → `0.3`, `0.1-bulbasaur` → `0.1`
//!    (not `0.1-b`, which PEP 440 would read as a beta). The rest is its *tail*.
//! 2. Strings without a base (`trunk`, `a3`) sort before every other version.
//! 3. Otherwise a legacy version sorts by its base against PEP 440 versions
//!    and, on a tie, just *after* the PEP 440 version equal to its base
//!    (`0.3 < 0.3m1 < 0.3.post1`, `2.0.0 < 2.0.0-final < 2.0.1`).
//! 4. Two legacy versions with equal bases order by tail, numbers inside the
//!    tail compared numerically (`0.3m2 < 0.3m10`), then by raw text so that
//!    distinct strings never compare equal.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::{Ecosystem, VersionError};

/// A Python version: PEP 440, or a legacy string ordered by the fallback above.
#[derive(Debug, Clone)]
pub enum Version {
    /// A valid PEP 440 version.
    Pep440(pep440_rs::Version),
    /// A non-PEP-440 string.
    Legacy(Legacy),
}

/// A non-PEP-440 version string, split for the fallback ordering.
#[derive(Debug, Clone)]
pub struct Legacy {
    raw: String,
    base: Option<pep440_rs::Version>,
    tail: String,
}

impl Version {
    /// Parses a strict PEP 440 version.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        if input.trim().is_empty() {
            return Err(VersionError::Empty {
                ecosystem: Ecosystem::Pep440,
            });
        }
        pep440_rs::Version::from_str(input)
            .map(Version::Pep440)
            .map_err(|e| VersionError::invalid(Ecosystem::Pep440, input, e.to_string()))
    }

    /// Parses PEP 440 when possible, else keeps the string as a [`Legacy`] version.
    pub fn parse_lenient(input: &str) -> Result<Self, VersionError> {
        match Self::parse(input) {
            Ok(v) => Ok(v),
            Err(VersionError::Empty { ecosystem }) => Err(VersionError::Empty { ecosystem }),
            Err(_) => Ok(Version::Legacy(Legacy::new(input.trim()))),
        }
    }

    /// True for a non-PEP-440 string kept by [`Version::parse_lenient`].
    pub fn is_legacy(&self) -> bool {
        matches!(self, Version::Legacy(_))
    }
}

impl Legacy {
    fn new(raw: &str) -> Self {
        let b = raw.as_bytes();
        // A cut at i is a word end if the next byte is a separator, or the
        // bytes on either side are one a digit and the other a letter.
        let word_end = |i: usize| match (b.get(i - 1), b.get(i)) {
            (_, None) => true,
            (Some(p), Some(n)) => {
                !n.is_ascii_alphanumeric() || p.is_ascii_digit() != n.is_ascii_digit()
            }
            (None, Some(_)) => false,
        };
        let found = (1..b.len())
            .rev()
            .filter(|&i| raw.is_char_boundary(i) && word_end(i))
            .find_map(|i| {
                pep440_rs::Version::from_str(&raw[..i])
                    .ok()
                    .map(|v| (v, &raw[i..]))
            });
        let (base, tail) = match found {
            Some((v, tail)) => (Some(v), tail),
            None => (None, raw),
        };
        Legacy {
            raw: raw.to_string(),
            base,
            tail: tail.to_ascii_lowercase(),
        }
    }

    /// The original string.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// Orders text with embedded numbers compared as numbers ("m2" < "m10").
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let digits = |s: &str| s.bytes().next().is_some_and(|c| c.is_ascii_digit());
        let run = |s: &str, d: bool| s.find(|c: char| c.is_ascii_digit() != d).unwrap_or(s.len());
        let (da, db) = (digits(a), digits(b));
        let (ra, rb) = (&a[..run(a, da)], &b[..run(b, db)]);
        let ord = match (da, db) {
            (true, true) => {
                let (x, y) = (ra.trim_start_matches('0'), rb.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            // Text before numbers, mirroring how a missing number sorts first.
            (false, true) => Ordering::Less,
            (true, false) => Ordering::Greater,
            (false, false) => ra.cmp(rb),
        };
        if ord != Ordering::Equal {
            return ord;
        }
        a = &a[ra.len()..];
        b = &b[rb.len()..];
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Version::Pep440(a), Version::Pep440(b)) => a.cmp(b),
            (Version::Legacy(a), Version::Legacy(b)) => a
                .base
                .cmp(&b.base)
                .then_with(|| natural_cmp(&a.tail, &b.tail))
                .then_with(|| a.raw.cmp(&b.raw)),
            (Version::Legacy(l), Version::Pep440(v)) => match &l.base {
                None => Ordering::Less,
                Some(base) => base.cmp(v).then(Ordering::Greater),
            },
            (Version::Pep440(_), Version::Legacy(_)) => other.cmp(self).reverse(),
        }
    }
}

super::order_from_ord!(Version);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Pep440(v) => v.fmt(f),
            Version::Legacy(l) => f.write_str(&l.raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn agrees_with_packaging() {
        let rows = vectors::tsv_rows("pep440-compare.tsv");
        vectors::check_rows("pep440-compare.tsv", &rows, |a, b| {
            Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
        });
    }

    #[test]
    fn legacy_strings_are_rejected_strictly_but_kept_leniently() {
        let list = vectors::list("pep440-invalid-versions.txt");
        assert!(list.len() > 70);
        let strict_ok: Vec<_> = list.iter().filter(|s| Version::parse(s).is_ok()).collect();
        assert!(strict_ok.is_empty(), "strict parse accepted {strict_ok:?}");
        let mut parsed: Vec<Version> = list
            .iter()
            .map(|s| Version::parse_lenient(s).expect("lenient parse keeps every non-empty string"))
            .collect();
        assert!(parsed.iter().all(Version::is_legacy));
        // A total order: sorting is stable and no two distinct strings tie.
        parsed.sort();
        for w in parsed.windows(2) {
            assert_eq!(w[0].cmp(&w[1]), Ordering::Less, "{} vs {}", w[0], w[1]);
            assert_eq!(w[1].cmp(&w[0]), Ordering::Greater, "{} vs {}", w[1], w[0]);
        }
    }

    #[test]
    fn fallback_ordering_examples() {
        let v = |s: &str| Version::parse_lenient(s).unwrap();
        let chain = [
            "trunk",
            "0.1",
            "0.1-bulbasaur",
            "0.3rc1",
            "0.3",
            "0.3m1",
            "0.3m2",
            "0.3m10",
            "0.3.post1",
            "2.0.1rc2",
            "2.0.1rc2-git",
            "2.0.1",
            "2019-09-12",
            "2019-10-01",
        ];
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {} expected", w[0], w[1]);
        }
        assert_eq!(v("1.0.0"), v("1.0"));
        assert_ne!(v("0.3m01"), v("0.3m1"));
        assert!(Version::parse_lenient("  ").is_err());
        let e = Version::parse("0.3m1").unwrap_err().to_string();
        assert!(e.contains("\"0.3m1\""), "{e}");
    }
}
