//! Wildcard patterns: ECR-style tag patterns (`prod*`) and repository
//! patterns (`docker.io/library/*`, `ghcr.io/myorg/**`) that decide which
//! lifecycle policy applies to a cached repository.

use serde::{Serialize, Serializer};
use std::cmp::Reverse;
use std::fmt;

/// ECR allows at most this many `*` wildcards in one `tagPatternList` entry.
pub const MAX_TAG_WILDCARDS: usize = 4;

/// Why a tag or repository pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is the empty string.
    #[error("must not be empty")]
    Empty,
    /// More wildcards than ECR accepts in a tag pattern.
    #[error("has {found} wildcards; at most {MAX_TAG_WILDCARDS} are allowed")]
    TooManyWildcards {
        /// Number of `*` found.
        found: usize,
    },
    /// A character that can never occur in an image tag.
    #[error("contains {0:?}, which cannot appear in an image tag")]
    InvalidTagChar(char),
    /// A repository pattern with an empty path segment (`a//b`, `/a`, `a/`).
    #[error("has an empty path segment")]
    EmptySegment,
    /// `**` mixed with other text inside one repository path segment.
    #[error("uses \"**\" inside segment {0:?}; \"**\" must be a whole segment")]
    MisplacedDoubleStar(String),
}

/// True for characters allowed in an OCI/Docker tag (`[A-Za-z0-9_.-]`).
pub fn is_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

/// Matches `text` against a glob already split on `*`; the whole text must match.
fn glob_match(parts: &[String], text: &str) -> bool {
    match parts {
        [] => text.is_empty(),
        [only] => text == only,
        [first, middle @ .., last] => {
            if text.len() < first.len() + last.len()
                || !text.starts_with(first.as_str())
                || !text.ends_with(last.as_str())
            {
                return false;
            }
            // Both cut points are char boundaries: they end/start a matched literal.
            let mut rest = &text[first.len()..text.len() - last.len()];
            // Leftmost matching of each literal is optimal for `*`-only globs.
            for piece in middle.iter().filter(|p| !p.is_empty()) {
                match rest.find(piece.as_str()) {
                    Some(at) => rest = &rest[at + piece.len()..],
                    None => return false,
                }
            }
            true
        }
    }
}

fn split_glob(pattern: &str) -> Vec<String> {
    pattern.split('*').map(str::to_owned).collect()
}

/// One `tagPatternList` entry: `*` matches any run of characters and the
/// pattern must match the whole tag (`prod*` matches `prod`, `production`).
#[derive(Debug, Clone)]
pub struct TagPattern {
    source: String,
    parts: Vec<String>,
}

impl TagPattern {
    /// Parses a tag pattern, enforcing ECR's wildcard limit.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        if let Some(bad) = pattern.chars().find(|&c| c != '*' && !is_tag_char(c)) {
            return Err(PatternError::InvalidTagChar(bad));
        }
        let found = pattern.matches('*').count();
        if found > MAX_TAG_WILDCARDS {
            return Err(PatternError::TooManyWildcards { found });
        }
        Ok(Self {
            source: pattern.to_owned(),
            parts: split_glob(pattern),
        })
    }

    /// The pattern as written in the policy.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the whole `tag` matches the pattern.
    pub fn matches(&self, tag: &str) -> bool {
        glob_match(&self.parts, tag)
    }
}

impl PartialEq for TagPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for TagPattern {}

impl fmt::Display for TagPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for TagPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(String),
    Glob(Vec<String>),
    AnyDepth,
}

impl Segment {
    fn matches(&self, segment: &str) -> bool {
        match self {
            Segment::Literal(lit) => lit == segment,
            Segment::Glob(parts) => glob_match(parts, segment),
            Segment::AnyDepth => true,
        }
    }
}

/// Ordering key for "more specific" repository patterns; larger wins.
type Specificity = (usize, bool, usize, Reverse<usize>);

/// A repository pattern: `/`-separated segments where `*` matches within one
/// segment and a `**` segment matches any number of segments (at least one
/// when it ends the pattern, so `ghcr.io/myorg/**` covers repositories
/// *inside* `ghcr.io/myorg` but not a repository named exactly that).
#[derive(Debug, Clone)]
pub struct RepoPattern {
    source: String,
    segments: Vec<Segment>,
}

impl RepoPattern {
    /// Parses a repository pattern such as `docker.io/library/*`.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        if pattern.is_empty() {
            return Err(PatternError::Empty);
        }
        let mut segments = Vec::new();
        for seg in pattern.split('/') {
            if seg.is_empty() {
                return Err(PatternError::EmptySegment);
            }
            segments.push(if seg == "**" {
                Segment::AnyDepth
            } else if seg.contains("**") {
                return Err(PatternError::MisplacedDoubleStar(seg.to_owned()));
            } else if seg.contains('*') {
                Segment::Glob(split_glob(seg))
            } else {
                Segment::Literal(seg.to_owned())
            });
        }
        Ok(Self {
            source: pattern.to_owned(),
            segments,
        })
    }

    /// The pattern as written in configuration.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the repository name (e.g. `docker.io/library/redis`) matches.
    pub fn matches(&self, repository: &str) -> bool {
        let path: Vec<&str> = repository.split('/').collect();
        let n = path.len();
        // Dynamic programming over suffixes keeps several `**` segments linear-ish
        // instead of exponential backtracking. `next[j]`: rest of pattern matches path[j..].
        let mut next = vec![false; n + 1];
        next[n] = true;
        for (i, seg) in self.segments.iter().enumerate().rev() {
            let is_last = i + 1 == self.segments.len();
            let mut cur = vec![false; n + 1];
            for j in (0..=n).rev() {
                cur[j] = match seg {
                    Segment::AnyDepth if is_last => j < n,
                    Segment::AnyDepth => next[j] || (j < n && cur[j + 1]),
                    other => j < n && other.matches(path[j]) && next[j + 1],
                };
            }
            next = cur;
        }
        next[0]
    }

    /// Literal segments first, then fixed depth (no `**`), then literal
    /// characters, then fewer wildcards: exact names beat `*`, which beats `**`.
    fn specificity(&self) -> Specificity {
        let mut literal_segments = 0;
        let mut literal_chars = 0;
        let mut wildcards = 0;
        let mut fixed_depth = true;
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => {
                    literal_segments += 1;
                    literal_chars += s.len();
                }
                Segment::Glob(parts) => {
                    literal_chars += parts.iter().map(String::len).sum::<usize>();
                    wildcards += parts.len() - 1;
                }
                Segment::AnyDepth => {
                    fixed_depth = false;
                    wildcards += 1;
                }
            }
        }
        (
            literal_segments,
            fixed_depth,
            literal_chars,
            Reverse(wildcards),
        )
    }
}

impl PartialEq for RepoPattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for RepoPattern {}

impl fmt::Display for RepoPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Values (typically lifecycle policies) scoped by repository pattern, with a
/// registry-wide default for repositories no pattern matches.
#[derive(Debug, Clone)]
pub struct RepoPolicies<T> {
    default: Option<T>,
    scoped: Vec<(RepoPattern, T)>,
}

impl<T> Default for RepoPolicies<T> {
    fn default() -> Self {
        Self {
            default: None,
            scoped: Vec::new(),
        }
    }
}

impl<T> RepoPolicies<T> {
    /// Creates a set with an optional registry-wide default.
    pub fn new(default: Option<T>) -> Self {
        Self {
            default,
            scoped: Vec::new(),
        }
    }

    /// Adds a value for repositories matching `pattern`.
    pub fn insert(&mut self, pattern: RepoPattern, value: T) {
        self.scoped.push((pattern, value));
    }

    /// The registry-wide default, if any.
    pub fn default_value(&self) -> Option<&T> {
        self.default.as_ref()
    }

    /// The most specific matching scoped entry; on equal specificity the one
    /// inserted first wins, so results never depend on hash order.
    pub fn most_specific(&self, repository: &str) -> Option<(&RepoPattern, &T)> {
        let mut best: Option<(Specificity, &(RepoPattern, T))> = None;
        for entry in self.scoped.iter().filter(|(p, _)| p.matches(repository)) {
            let key = entry.0.specificity();
            if best.as_ref().is_none_or(|(k, _)| key > *k) {
                best = Some((key, entry));
            }
        }
        best.map(|(_, (p, v))| (p, v))
    }

    /// The value for `repository`: the most specific match, else the default.
    pub fn select(&self, repository: &str) -> Option<&T> {
        self.most_specific(repository)
            .map(|(_, v)| v)
            .or(self.default.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: &str) -> TagPattern {
        TagPattern::new(p).expect("valid pattern")
    }

    #[test]
    fn tag_patterns_match_whole_tag() {
        assert!(tp("prod*").matches("prod"));
        assert!(tp("prod*").matches("production-team1"));
        assert!(!tp("prod*").matches("preprod"));
        assert!(tp("*prod*").matches("repo-production"));
        assert!(tp("latest").matches("latest"));
        assert!(!tp("latest").matches("latest2"));
        assert!(tp("v*.*.*").matches("v1.2.3"));
        assert!(!tp("v*.*.*").matches("v1.2"));
        assert!(tp("*-sha-*").matches("main-sha-abc"));
        // The suffix literal must not overlap the prefix literal.
        assert!(!tp("ab*ba").matches("aba"));
        assert!(tp("*").matches("anything"));
    }

    #[test]
    fn tag_pattern_limits_follow_ecr() {
        assert!(TagPattern::new("*test*1*2*3").is_ok());
        assert!(TagPattern::new("test*1*2*3*").is_ok());
        assert_eq!(
            TagPattern::new("test*1*2*3*4*5*6").unwrap_err(),
            PatternError::TooManyWildcards { found: 6 }
        );
        assert_eq!(TagPattern::new("").unwrap_err(), PatternError::Empty);
        assert_eq!(
            TagPattern::new("feat/x*").unwrap_err(),
            PatternError::InvalidTagChar('/')
        );
    }

    fn rp(p: &str) -> RepoPattern {
        RepoPattern::new(p).expect("valid repo pattern")
    }

    #[test]
    fn single_star_stays_within_a_segment() {
        let p = rp("docker.io/library/*");
        assert!(p.matches("docker.io/library/redis"));
        assert!(!p.matches("docker.io/library/redis/extra"));
        assert!(!p.matches("docker.io/library"));
        assert!(rp("docker.io/*/redis*").matches("docker.io/bitnami/redis-cluster"));
    }

    #[test]
    fn double_star_spans_any_depth() {
        let p = rp("ghcr.io/myorg/**");
        assert!(p.matches("ghcr.io/myorg/app"));
        assert!(p.matches("ghcr.io/myorg/team/app/sub"));
        assert!(!p.matches("ghcr.io/myorg"));
        assert!(!p.matches("ghcr.io/other/app"));
        let mid = rp("ghcr.io/**/cache");
        assert!(mid.matches("ghcr.io/cache"));
        assert!(mid.matches("ghcr.io/a/b/cache"));
        assert!(!mid.matches("ghcr.io/a/b/cache/x"));
    }

    #[test]
    fn bad_repo_patterns_are_rejected() {
        assert_eq!(
            RepoPattern::new("a//b").unwrap_err(),
            PatternError::EmptySegment
        );
        assert_eq!(
            RepoPattern::new("/a").unwrap_err(),
            PatternError::EmptySegment
        );
        assert!(matches!(
            RepoPattern::new("a/b**"),
            Err(PatternError::MisplacedDoubleStar(_))
        ));
    }

    #[test]
    fn most_specific_policy_wins_else_default() {
        let mut set = RepoPolicies::new(Some("default"));
        set.insert(rp("**"), "everything");
        set.insert(rp("docker.io/**"), "docker-any");
        set.insert(rp("docker.io/library/*"), "library");
        set.insert(rp("docker.io/library/redis"), "redis");
        set.insert(rp("ghcr.io/myorg/**"), "myorg");
        set.insert(rp("ghcr.io/*/app"), "any-org-app");
        assert_eq!(set.select("docker.io/library/redis"), Some(&"redis"));
        assert_eq!(set.select("docker.io/library/nginx"), Some(&"library"));
        assert_eq!(set.select("docker.io/bitnami/nginx"), Some(&"docker-any"));
        assert_eq!(set.select("ghcr.io/myorg/tool"), Some(&"myorg"));
        // Same literal segment count; the fixed-depth pattern is more specific.
        assert_eq!(set.select("ghcr.io/myorg/app"), Some(&"any-org-app"));
        assert_eq!(set.select("quay.io/x"), Some(&"everything"));

        let only_default: RepoPolicies<&str> = RepoPolicies::new(Some("default"));
        assert_eq!(only_default.select("quay.io/x"), Some(&"default"));
        assert_eq!(RepoPolicies::<&str>::default().select("quay.io/x"), None);
    }

    #[test]
    fn ties_go_to_the_first_inserted() {
        let mut set = RepoPolicies::new(None);
        set.insert(rp("docker.io/*/redis"), "first");
        set.insert(rp("docker.io/library/*"), "second");
        // Both: 2 literal segments, fixed depth; "redis" (5) < "library" (7) chars.
        assert_eq!(set.select("docker.io/library/redis"), Some(&"second"));
        let mut tie = RepoPolicies::new(None);
        tie.insert(rp("a/*"), "first");
        tie.insert(rp("a/*"), "second");
        assert_eq!(tie.select("a/b"), Some(&"first"));
    }
}
