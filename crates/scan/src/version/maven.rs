//! Maven versions, ordered by the "Version Order Specification" of the POM
//! reference (the rules Maven's `ComparableVersion` and osv.dev follow).
//!
//! A version is lower-cased and split into tokens at `.`, at `-` and at every
//! change between digits and other characters (such a change counts as `-`);
//! an empty token is `0`. "Null" tokens (`0`, `final`, `ga`, `release`) are
//! trimmed from the end and from before every `-`. Tokens then compare one by
//! one, the shorter version padded with nulls: qualifiers (whatever their
//! separator) below `-number` below `.number`; numbers by value (any length);
//! qualifiers `alpha` = `a` < `beta` = `b` < `milestone` = `m` < `rc` = `cr`
//! < `snapshot` < null < `sp` < anything else (alphabetically), where `a`,
//! `b`, `m` are aliases only when a digit follows directly (`a1` = `alpha-1`).
//!
//! Taken literally, the specification's padding ("0 for `.`, "" for `-`",
//! chosen by the other version's separator) is not transitive: `1-1` > `1` >
//! `1.0.alpha`, yet `.0` beats `-1`. Here padding is one fixed null, so the
//! order is total; to keep `2.0.0.M1` < `2.0.0` and `1.0.1` > `1-1` at once,
//! a `0` that is not trimmed is itself null when the next non-null token after
//! it is a pre-release qualifier (`alpha` … `snapshot`), and a number
//! otherwise. The one consequence that differs from Maven is the case above:
//! `1.0.alpha` sorts below `1-1`.
//!
//! Any non-blank string is a version, as for Maven itself.

use std::cmp::Ordering;
use std::fmt;

use super::{Ecosystem, VersionError};

/// A parsed Maven version.
#[derive(Debug, Clone)]
pub struct Version {
    raw: String,
    /// Comparison keys after trimming; never ends with [`NULL`].
    items: Vec<Item>,
}

impl Version {
    /// Parses any non-blank string (surrounding whitespace is ignored).
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(VersionError::Empty {
                ecosystem: Ecosystem::Maven,
            });
        }
        Ok(Version {
            raw: s.to_string(),
            items: keys(&trim(tokenize(s))),
        })
    }
}

/// The separator before a token; the first token counts as `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sep {
    Dot,
    Hyphen,
}

/// A token as split from the string: lower-cased, `a`/`b`/`m` aliases expanded,
/// empty tokens replaced by `0`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    sep: Sep,
    text: String,
    numeric: bool,
}

impl Token {
    /// `0`, `final`, `ga` and `release` are trimmed where the spec says so.
    fn is_null(&self) -> bool {
        if self.numeric {
            self.text.bytes().all(|b| b == b'0')
        } else {
            matches!(self.text.as_str(), "final" | "ga" | "release")
        }
    }
}

/// Splits at `.`, `-` and digit/non-digit transitions (which count as `-`).
fn tokenize(s: &str) -> Vec<Token> {
    fn push(out: &mut Vec<Token>, sep: Sep, buf: &str, numeric: bool, digit_follows: bool) {
        let (text, numeric) = match buf {
            "" => ("0", true),
            "a" if digit_follows => ("alpha", false),
            "b" if digit_follows => ("beta", false),
            "m" if digit_follows => ("milestone", false),
            t => (t, numeric),
        };
        out.push(Token {
            sep,
            text: text.to_string(),
            numeric,
        });
    }
    let lower = s.to_lowercase();
    let mut out = Vec::new();
    let mut sep = Sep::Dot;
    let mut buf = String::new();
    let mut numeric = false;
    for c in lower.chars() {
        if c == '.' || c == '-' {
            push(&mut out, sep, &buf, numeric, false);
            buf.clear();
            sep = if c == '.' { Sep::Dot } else { Sep::Hyphen };
            continue;
        }
        let digit = c.is_ascii_digit();
        if !buf.is_empty() && digit != numeric {
            push(&mut out, sep, &buf, numeric, digit);
            buf.clear();
            sep = Sep::Hyphen;
        }
        numeric = digit;
        buf.push(c);
    }
    push(&mut out, sep, &buf, numeric, false);
    out
}

/// Drops null tokens at the end and directly before every `-` token.
fn trim(tokens: Vec<Token>) -> Vec<Token> {
    let mut kept = Vec::with_capacity(tokens.len());
    // Whether the next kept token starts with `-` (or there is none).
    let mut at_boundary = true;
    for t in tokens.into_iter().rev() {
        if at_boundary && t.is_null() {
            continue;
        }
        at_boundary = t.sep == Sep::Hyphen;
        kept.push(t);
    }
    kept.reverse();
    kept
}

/// Qualifiers in their order; `Release` is also the null padding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Qualifier {
    Alpha,
    Beta,
    Milestone,
    Rc,
    Snapshot,
    /// `""`, `final`, `ga`, `release` (and a `0` that leads into a pre-release).
    Release,
    Sp,
    Other(Box<str>),
}

impl Qualifier {
    fn of(text: &str) -> Self {
        match text {
            "alpha" => Qualifier::Alpha,
            "beta" => Qualifier::Beta,
            "milestone" => Qualifier::Milestone,
            "rc" | "cr" => Qualifier::Rc,
            "snapshot" => Qualifier::Snapshot,
            "" | "final" | "ga" | "release" => Qualifier::Release,
            "sp" => Qualifier::Sp,
            t => Qualifier::Other(t.into()),
        }
    }
}

/// A non-negative integer of any size: its digits without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Number(Box<str>);

impl Number {
    fn of(digits: &str) -> Self {
        Number(digits.trim_start_matches('0').into())
    }
}

impl Ord for Number {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for Number {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One comparison key; variants are in ascending order
/// (`.qualifier` = `-qualifier` < `-number` < `.number`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    Qualifier(Qualifier),
    HyphenNumber(Number),
    DotNumber(Number),
}

/// The padding of the shorter version.
const NULL: Item = Item::Qualifier(Qualifier::Release);

/// Turns trimmed tokens into keys. Walking from the end, a zero becomes
/// [`NULL`] when the first non-null key after it is below null (so
/// `2.0.0.m1` < `2.0.0`), and stays a number otherwise (so `1.0.1` > `1-1`).
fn keys(tokens: &[Token]) -> Vec<Item> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut rest_above_null = false;
    for t in tokens.iter().rev() {
        let item = if t.numeric {
            let n = Number::of(&t.text);
            if n.0.is_empty() && !rest_above_null {
                NULL
            } else {
                rest_above_null = true;
                match t.sep {
                    Sep::Dot => Item::DotNumber(n),
                    Sep::Hyphen => Item::HyphenNumber(n),
                }
            }
        } else {
            let q = Item::Qualifier(Qualifier::of(&t.text));
            if q != NULL {
                rest_above_null = q > NULL;
            }
            q
        };
        out.push(item);
    }
    out.reverse();
    out
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let len = self.items.len().max(other.items.len());
        (0..len)
            .map(|i| {
                let a = self.items.get(i).unwrap_or(&NULL);
                let b = other.items.get(i).unwrap_or(&NULL);
                a.cmp(b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
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

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    /// Tokens written back with their separators.
    fn render(tokens: &[Token]) -> String {
        let mut out = String::new();
        for (i, t) in tokens.iter().enumerate() {
            if i > 0 {
                out.push(if t.sep == Sep::Dot { '.' } else { '-' });
            }
            out.push_str(&t.text);
        }
        out
    }

    /// Asserts each string is below the next.
    fn ascending(chain: &[&str]) {
        for w in chain.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {} expected", w[0], w[1]);
            assert!(v(w[1]) > v(w[0]), "{} > {} expected", w[1], w[0]);
        }
    }

    /// Asserts all strings are equal to each other.
    fn equal(all: &[&str]) {
        for a in all {
            for b in all {
                assert_eq!(v(a), v(b), "{a} = {b} expected");
            }
        }
    }

    #[test]
    fn spec_splitting_and_trimming() {
        assert_eq!(
            render(&tokenize("1-1.foo-bar1baz-.1")),
            "1-1.foo-bar-1-baz-0.1"
        );
        let trimmed = |s: &str| render(&trim(tokenize(s)));
        for (s, want) in [
            ("1.0.0", "1"),
            ("1.ga", "1"),
            ("1.final", "1"),
            ("1.0", "1"),
            ("1.", "1"),
            ("1-", "1"),
            ("1.0.0-foo.0.0", "1-foo"),
            ("1.0.0-0.0.0", "1"),
            ("1.2.3.RELEASE", "1.2.3"),
        ] {
            assert_eq!(trimmed(s), want, "{s}");
        }
        assert_eq!(render(&tokenize("1-A1")), "1-alpha-1");
        assert_eq!(render(&tokenize("1-a.1")), "1-a.1");
        assert_eq!(render(&tokenize("2.0.0.M1")), "2.0.0.milestone-1");
    }

    #[test]
    fn spec_examples() {
        ascending(&["1", "1.1"]);
        ascending(&["1-snapshot", "1", "1-sp"]);
        ascending(&["1-foo2", "1-foo10"]);
        equal(&["1.foo", "1-foo"]);
        ascending(&["1.foo", "1-1", "1.1"]);
        ascending(&["1-foo", "1-1"]);
        equal(&["1.ga", "1-ga", "1-0", "1.0", "1"]);
        ascending(&["1-ga", "1-sp"]);
        ascending(&["1-ga.1", "1-sp.1"]);
        ascending(&["1-sp-1", "1-ga-1"]);
        equal(&["1-ga-1", "1-1"]);
        equal(&["1-a1", "1-alpha-1"]);
        ascending(&[
            "1-alpha",
            "1-beta",
            "1-milestone",
            "1-rc",
            "1-snapshot",
            "1",
            "1-sp",
            "1-abc",
            "1-xyz",
        ]);
        equal(&["1-rc", "1-cr"]);
        equal(&["1-final", "1-ga", "1-release", "1.RELEASE", "1.0.0"]);
        equal(&["1-b2", "1-beta-2", "1-beta2"]);
        equal(&["1-m3", "1-milestone-3"]);
        // Aliases only when a digit follows directly.
        ascending(&["1-sp", "1-a", "1-b"]);
        ascending(&["1-alpha.1", "1-a.1"]);
    }

    #[test]
    fn case_insensitive() {
        equal(&["1.0-RC1", "1.0-rc1", "1.0-Rc-1"]);
        equal(&["1.0.Final", "1.0.FINAL", "1"]);
        equal(&["1-SNAPSHOT", "1-snapshot"]);
    }

    #[test]
    fn realistic_versions() {
        ascending(&["2.16.0", "2.17.0"]);
        ascending(&["2.15.0-rc1", "2.15.0-rc2", "2.15.0"]);
        equal(&["1.2.3.RELEASE", "1.2.3"]);
        ascending(&["9.4.41.v20210516", "9.4.42.v20210604"]);
        ascending(&["5.3.9", "5.3.18"]);
        ascending(&["1.0-alpha-1", "1.0-alpha-2", "1.0-beta", "1.0"]);
        ascending(&["2.0.0.M1", "2.0.0.M2", "2.0.0.RC1", "2.0.0", "2.0.0.1"]);
        ascending(&["2.9.10", "2.9.10.1", "2.9.10.8", "2.10.0"]);
        ascending(&["1.0-SNAPSHOT", "1.0", "1.0.1-SNAPSHOT", "1.0.1"]);
        ascending(&["4.1.86.Final", "4.1.100.Final"]);
        ascending(&["1.0", "1.0-1", "1.0.1"]);
        ascending(&["3.0-jre", "30.1-android", "30.1-jre", "31.0.1-jre"]);
        ascending(&["1.2.17", "2.0-beta9", "2.0-rc1", "2.0", "2.14.1", "2.15.0"]);
        equal(&["2.0.0.RELEASE", "2.0.0", "2"]);
        equal(&["1.01", "1.1"]);
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        ascending(&[
            "1.18446744073709551615",
            "1.18446744073709551616",
            "1.99999999999999999999999999999",
            "1.100000000000000000000000000000",
            "2",
        ]);
        equal(&["1.000000000000000000000000000000000001", "1.1"]);
        ascending(&[
            "1-rc99999999999999999999999",
            "1-rc100000000000000000000000",
        ]);
    }

    #[test]
    fn zeros_before_pre_releases_are_null() {
        // `.0` before a pre-release is null; before anything above null it is a number.
        ascending(&["1.0.alpha", "1", "1-1", "1.0.1", "1.1"]);
        ascending(&["1", "1-0.1", "1-1"]);
        ascending(&["1-0.alpha", "1"]);
        ascending(&["1-alpha", "1-0.alpha"]);
        ascending(&["1.sp", "1.0.sp", "1.0.1"]);
        ascending(&["1-ga.1", "1.0.1"]);
    }

    #[test]
    fn blank_is_the_only_error() {
        for bad in ["", " ", "\t\n"] {
            assert_eq!(
                Version::parse(bad).unwrap_err(),
                VersionError::Empty {
                    ecosystem: Ecosystem::Maven
                }
            );
        }
        for odd in ["0", "-", ".", "final", "..-..", "ü", "1 2", "v", "\u{0}"] {
            assert!(Version::parse(odd).is_ok(), "{odd:?} rejected");
        }
        equal(&["0", "-", ".", "final", "0.0-0", "ga"]);
        assert_eq!(v(" 1.0-RC1 ").to_string(), "1.0-RC1");
    }

    /// Sorting a mixed list gives an order every pair agrees with, and no
    /// triple breaks transitivity.
    #[test]
    fn order_is_total_and_transitive() {
        let list = [
            "1",
            "1.0",
            "1-1",
            "1.1",
            "1.0.1",
            "1.0.alpha",
            "1.0.sp",
            "1-0.1",
            "1-0.alpha",
            "1-sp",
            "1-sp-1",
            "1-sp.1",
            "1-ga.1",
            "1-ga-1",
            "1-snapshot",
            "1-alpha",
            "1-a1",
            "1-alpha-2",
            "1-b",
            "1-beta",
            "1-rc1",
            "1-cr2",
            "1-foo",
            "1.foo",
            "1-foo2",
            "1-foo10",
            "1.sp",
            "2.0.0.M1",
            "2.0.0.RC1",
            "2.0.0",
            "2.0.0.1",
            "2.0-1",
            "9.4.41.v20210516",
            "9.4.42.v20210604",
            "0",
            "0.1",
            "0-1",
            "alpha",
            "sp",
            "x",
            "12345678901234567890123",
            "1.2.3.RELEASE",
            "1.2.3-SNAPSHOT",
        ];
        let mut sorted: Vec<Version> = list.iter().map(|s| v(s)).collect();
        sorted.sort();
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                let want = if a == b { Ordering::Equal } else { i.cmp(&j) };
                assert_eq!(a.cmp(b), want, "{a} vs {b} (positions {i}, {j})");
                assert_eq!(b.cmp(a), want.reverse(), "{b} vs {a}");
            }
        }
        for a in &sorted {
            for b in &sorted {
                for c in &sorted {
                    if a <= b && b <= c {
                        assert!(a <= c, "{a} <= {b} <= {c} but not {a} <= {c}");
                    }
                }
            }
        }
    }
}
