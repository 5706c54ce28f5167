//! RPM versions: `[epoch:]version[-release]` (EVR), ordered like rpm 4.18.
//!
//! rpm accepts any string as a version, so only empty strings, strings with
//! whitespace and epochs that overflow are rejected here.

use std::cmp::Ordering;
use std::fmt;

use super::{Ecosystem, VersionError};

/// A parsed RPM epoch-version-release.
#[derive(Debug, Clone)]
pub struct Version {
    epoch: u32,
    version: String,
    /// Empty when absent; rpm then orders it below any release.
    release: String,
}

impl Version {
    /// Parses an EVR string; a missing epoch is 0.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let invalid = |reason: &str| VersionError::invalid(Ecosystem::Rpm, input, reason);
        let s = input.trim();
        if s.is_empty() {
            return Err(VersionError::Empty {
                ecosystem: Ecosystem::Rpm,
            });
        }
        if s.contains(char::is_whitespace) {
            return Err(invalid("embedded whitespace"));
        }
        // The epoch is a run of leading digits ended by ':'; otherwise the whole
        // string is version[-release] (rpm does the same).
        let digits = s.bytes().take_while(u8::is_ascii_digit).count();
        let (epoch, rest) = if s.as_bytes().get(digits) == Some(&b':') {
            let epoch = if digits == 0 {
                0
            } else {
                s[..digits]
                    .parse()
                    .map_err(|_| invalid("epoch does not fit in 32 bits"))?
            };
            (epoch, &s[digits + 1..])
        } else {
            (0, s)
        };
        let (version, release) = rest.rsplit_once('-').unwrap_or((rest, ""));
        Ok(Version {
            epoch,
            version: version.to_string(),
            release: release.to_string(),
        })
    }

    /// The epoch (0 when absent).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The version part.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The release part ("" when absent).
    pub fn release(&self) -> &str {
        &self.release
    }
}

/// rpm's `rpmvercmp`: compares alternating alphabetic and numeric segments,
/// ignoring other separators; `~` sorts before anything (even the end), `^`
/// after the end but before anything else.
pub fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let is_sep = |c: u8| !c.is_ascii_alphanumeric() && c != b'~' && c != b'^';
    loop {
        while i < a.len() && is_sep(a[i]) {
            i += 1;
        }
        while j < b.len() && is_sep(b[j]) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca.is_none() && cb.is_none() {
            return Ordering::Equal;
        }
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            match (ca, cb) {
                (None, _) => return Ordering::Less,
                (_, None) => return Ordering::Greater,
                (Some(x), _) if x != b'^' => return Ordering::Greater,
                (_, Some(y)) if y != b'^' => return Ordering::Less,
                _ => {}
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            // Whichever still has characters left wins.
            return if ca.is_none() {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        };
        let numeric = ca.is_ascii_digit();
        let in_segment = |c: &u8| {
            if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphabetic()
            }
        };
        let seg_a = &a[i..i + a[i..].iter().take_while(|c| in_segment(c)).count()];
        let seg_b = &b[j..j + b[j..].iter().take_while(|c| in_segment(c)).count()];
        i += seg_a.len();
        j += seg_b.len();
        if seg_b.is_empty() {
            // Segments of different kinds: a number is newer than letters.
            return if numeric {
                Ordering::Greater
            } else {
                Ordering::Less
            };
        }
        let ord = if numeric {
            let strip = |s: &[u8]| -> usize { s.iter().take_while(|&&c| c == b'0').count() };
            let (na, nb) = (&seg_a[strip(seg_a)..], &seg_b[strip(seg_b)..]);
            na.len().cmp(&nb.len()).then_with(|| na.cmp(nb))
        } else {
            seg_a.cmp(seg_b)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| rpmvercmp(&self.version, &other.version))
            .then_with(|| rpmvercmp(&self.release, &other.release))
    }
}

super::order_from_ord!(Version);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.epoch != 0 {
            write!(f, "{}:", self.epoch)?;
        }
        f.write_str(&self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::version::vectors;

    #[test]
    fn agrees_with_rpmvercmp_test_suite() {
        let rows = vectors::tsv_rows("rpmvercmp.tsv");
        vectors::check_rows("rpmvercmp.tsv", &rows, |a, b| Ok(rpmvercmp(a, b)));
    }

    #[test]
    fn agrees_with_rpm_evr_compare() {
        let rows = vectors::tsv_rows("rpm-evr-compare.tsv");
        vectors::check_rows("rpm-evr-compare.tsv", &rows, |a, b| {
            Ok(Version::parse(a)?.cmp(&Version::parse(b)?))
        });
    }

    #[test]
    fn parts_and_errors() {
        let v = Version::parse("2:1.1.1k-7.cm2").unwrap();
        assert_eq!(
            (v.epoch(), v.version(), v.release()),
            (2, "1.1.1k", "7.cm2")
        );
        assert_eq!(v.to_string(), "2:1.1.1k-7.cm2");
        assert!(Version::parse("").is_err());
        assert!(Version::parse("1.0 -1").is_err());
        assert!(Version::parse("99999999999:1.0").is_err());
    }
}
