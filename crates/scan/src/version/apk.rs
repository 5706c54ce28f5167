//! Alpine (apk-tools) versions: `digits{.digits}[letter]{_suffix[digits]}[~hash][-rN]`.
//!
//! A version is read as a token stream. Two versions compare token by token;
//! when one stream runs out or changes kind first, the kinds decide (a
//! pre-release suffix such as `_rc` makes a version older, anything else
//! trailing makes it newer). [`Version::parse`] accepts only valid versions;
//! [`compare_str`] orders arbitrary strings the way apk-tools does, stopping at
//! the first invalid token.

use std::cmp::Ordering;
use std::fmt;

use super::{Ecosystem, VersionError};

/// Token kinds in the order apk-tools ranks them when the streams diverge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    InitialDigit,
    Digit,
    Letter,
    Suffix,
    SuffixNo,
    Hash,
    Revision,
    End,
    Invalid,
}

/// Suffix ranks: the pre-release ones sort below "no suffix", the rest above.
const SUFFIXES: [&str; 9] = ["alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p"];
/// Index in [`SUFFIXES`] of the first post-release suffix.
const FIRST_POST_SUFFIX: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    kind: Kind,
    /// The token's text without its leading separator.
    text: String,
    /// Rank of a suffix (index in [`SUFFIXES`]); 0 for other kinds.
    suffix: usize,
}

/// Splits `s` into tokens, ending with an `End` or `Invalid` token; also
/// returns the byte offset where the last token starts (for error messages).
fn tokenize(s: &str) -> (Vec<Token>, usize) {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut pos = 0;
    let take = |pos: &mut usize, pred: fn(&u8) -> bool| -> String {
        let n = b[*pos..].iter().take_while(|c| pred(c)).count();
        *pos += n;
        s[*pos - n..*pos].to_string()
    };
    let mut push = |kind, text: String, suffix| {
        out.push(Token { kind, text, suffix });
        kind
    };
    let first = take(&mut pos, u8::is_ascii_digit);
    let mut prev = if first.is_empty() {
        push(Kind::Invalid, first, 0)
    } else {
        push(Kind::InitialDigit, first, 0)
    };
    let mut start = 0;
    while prev != Kind::End && prev != Kind::Invalid {
        start = pos;
        let Some(&c) = b.get(pos) else {
            push(Kind::End, String::new(), 0);
            break;
        };
        let (kind, text, suffix) = match c {
            b'a'..=b'z' if prev <= Kind::Digit => {
                pos += 1;
                (Kind::Letter, (c as char).to_string(), 0)
            }
            b'.' if prev <= Kind::Digit => {
                pos += 1;
                let d = take(&mut pos, u8::is_ascii_digit);
                (
                    if d.is_empty() {
                        Kind::Invalid
                    } else {
                        Kind::Digit
                    },
                    d,
                    0,
                )
            }
            b'_' if prev <= Kind::SuffixNo => {
                pos += 1;
                let name = take(&mut pos, u8::is_ascii_lowercase);
                match SUFFIXES.iter().position(|&n| n == name) {
                    Some(rank) => (Kind::Suffix, name, rank),
                    None => (Kind::Invalid, name, 0),
                }
            }
            b'0'..=b'9' if prev == Kind::Suffix => {
                (Kind::SuffixNo, take(&mut pos, u8::is_ascii_digit), 0)
            }
            b'~' if prev < Kind::Hash => {
                pos += 1;
                let h = take(&mut pos, |c| {
                    c.is_ascii_digit() || (b'a'..=b'f').contains(c)
                });
                (
                    if h.is_empty() {
                        Kind::Invalid
                    } else {
                        Kind::Hash
                    },
                    h,
                    0,
                )
            }
            b'-' if prev < Kind::Revision && b.get(pos + 1) == Some(&b'r') => {
                pos += 2;
                let d = take(&mut pos, u8::is_ascii_digit);
                (
                    if d.is_empty() {
                        Kind::Invalid
                    } else {
                        Kind::Revision
                    },
                    d,
                    0,
                )
            }
            _ => (Kind::Invalid, String::new(), 0),
        };
        prev = push(kind, text, suffix);
    }
    (out, start)
}

/// Numeric order of two digit strings of any length.
fn cmp_number(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// Orders two tokens of the same kind.
fn cmp_token(a: &Token, b: &Token) -> Ordering {
    match a.kind {
        // A component with a leading zero is compared as text, as Gentoo does
        // (so 1.01 < 1.1 is false but 1.01 < 1.010 holds).
        Kind::Digit if a.text.starts_with('0') || b.text.starts_with('0') => a.text.cmp(&b.text),
        Kind::InitialDigit | Kind::Digit | Kind::SuffixNo | Kind::Revision => {
            cmp_number(&a.text, &b.text)
        }
        Kind::Suffix => a.suffix.cmp(&b.suffix),
        _ => a.text.cmp(&b.text),
    }
}

/// Compares token streams; with `fuzzy`, `a` equals any `b` it starts with.
fn cmp_tokens(a: &[Token], b: &[Token], fuzzy: bool) -> Ordering {
    for (ta, tb) in a.iter().zip(b) {
        if ta.kind != tb.kind {
            if tb.kind == Kind::End && fuzzy {
                return Ordering::Equal;
            }
            let pre = |t: &Token| t.kind == Kind::Suffix && t.suffix < FIRST_POST_SUFFIX;
            if pre(ta) {
                return Ordering::Less;
            }
            if pre(tb) {
                return Ordering::Greater;
            }
            // The stream that goes on with a "smaller" kind is the newer one.
            return tb.kind.cmp(&ta.kind);
        }
        if ta.kind >= Kind::End {
            return Ordering::Equal;
        }
        let ord = cmp_token(ta, tb);
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

/// Orders any two strings as apk-tools does, valid or not.
pub fn compare_str(a: &str, b: &str) -> Ordering {
    cmp_tokens(&tokenize(a).0, &tokenize(b).0, false)
}

/// A valid, parsed Alpine package version.
#[derive(Debug, Clone)]
pub struct Version {
    raw: String,
    tokens: Vec<Token>,
}

impl Version {
    /// Parses a version, rejecting anything apk-tools considers invalid.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        if input.is_empty() {
            return Err(VersionError::Empty {
                ecosystem: Ecosystem::Apk,
            });
        }
        let (tokens, at) = tokenize(input);
        if tokens.last().map(|t| t.kind) != Some(Kind::End) {
            let rest = input.get(at..).unwrap_or("");
            return Err(VersionError::invalid(
                Ecosystem::Apk,
                input,
                format!("unexpected {rest:?} at byte {at} (expected digits{{.digits}}[letter]{{_suffix[N]}}[~hash][-rN])"),
            ));
        }
        Ok(Version {
            raw: input.to_string(),
            tokens,
        })
    }

    /// True when `self` starts with `prefix` component-wise (apk's `~` operator: 3.6.9 ~ 3.6).
    pub fn fuzzy_matches(&self, prefix: &Version) -> bool {
        cmp_tokens(&self.tokens, &prefix.tokens, true) == Ordering::Equal
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        cmp_tokens(&self.tokens, &other.tokens, false)
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

    /// Runs every line of apk-tools' own `version.data`: `a OP b` comparisons
    /// (`~` ops are fuzzy), `v` valid and `!v` invalid versions.
    #[test]
    fn agrees_with_apk_tools_version_data() {
        let name = "apk-tools-version.data";
        let (mut checked, mut failures) = (0, Vec::new());
        for (n, line) in vectors::read(name).lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let f: Vec<&str> = line.split_whitespace().collect();
            let ok = match f.as_slice() {
                [] => continue,
                [v] => match v.strip_prefix('!') {
                    Some(bad) => Version::parse(bad).is_err(),
                    None => Version::parse(v).is_ok(),
                },
                [a, op, b] => {
                    let (pa, pb) = (Version::parse(a), Version::parse(b));
                    let plain = compare_str(a, b);
                    let fuzzy = cmp_tokens(&tokenize(a).0, &tokenize(b).0, true) == Ordering::Equal;
                    // Invalid strings must be rejected by parse, yet still order.
                    let typed_ok = match (&pa, &pb) {
                        (Ok(x), Ok(y)) => x.cmp(y) == plain && x.fuzzy_matches(y) == fuzzy,
                        _ => true,
                    };
                    typed_ok
                        && match *op {
                            "<" => plain == Ordering::Less,
                            ">" => plain == Ordering::Greater,
                            "=" => plain == Ordering::Equal,
                            "~" => fuzzy,
                            "!~" => !fuzzy,
                            "<~" => plain == Ordering::Less && !fuzzy,
                            ">~" => plain == Ordering::Greater && !fuzzy,
                            _ => false,
                        }
                }
                _ => false,
            };
            checked += 1;
            if !ok {
                failures.push(format!("{name}:{}: {line}", n + 1));
            }
        }
        assert!(checked > 700, "only {checked} lines read");
        assert!(
            failures.is_empty(),
            "{} of {checked} lines disagree:\n{}",
            failures.len(),
            failures.join("\n")
        );
        eprintln!("{name}: {checked} lines agree");
    }

    #[test]
    fn invalid_versions_are_errors_that_name_the_input() {
        let e = Version::parse("1.0bc").unwrap_err().to_string();
        assert!(
            e.contains("\"1.0bc\"") && e.contains("\"c\" at byte 4"),
            "{e}"
        );
        let e = Version::parse("1.0-x").unwrap_err().to_string();
        assert!(e.contains("\"-x\" at byte 3"), "{e}");
        assert!(Version::parse("").is_err());
        assert_eq!(Version::parse("1.2.3-r4").unwrap().to_string(), "1.2.3-r4");
    }

    #[test]
    fn huge_numbers_do_not_overflow() {
        let a = Version::parse("1.99999999999999999999999").unwrap();
        let b = Version::parse("1.100000000000000000000000").unwrap();
        assert!(a < b);
    }
}
