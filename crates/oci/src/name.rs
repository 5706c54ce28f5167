//! Repository names, tags and references, validated by the distribution grammar.

use super::digest::{Digest, DigestError};
use std::fmt;

/// Longest repository name the distribution spec allows.
const MAX_NAME_LEN: usize = 255;
/// Longest tag the distribution spec allows.
const MAX_TAG_LEN: usize = 128;

/// A repository name such as `library/nginx`: lowercase path components joined by `/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

/// Why a string is not a repository name or tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The repository name breaks the grammar.
    #[error("invalid repository name {0:?}: {1}")]
    Repo(String, &'static str),
    /// The tag breaks the grammar.
    #[error("invalid tag {0:?}: tags are 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'")]
    Tag(String),
    /// The reference looked like a digest but is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

impl RepoName {
    /// Parses a full repository name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let err = |why| NameError::Repo(s.chars().take(300).collect(), why);
        if s.is_empty() {
            return Err(err("empty"));
        }
        if s.len() > MAX_NAME_LEN {
            return Err(err("longer than 255 characters"));
        }
        for c in s.split('/') {
            if !valid_component(c) {
                return Err(err(
                    "each path component must be lowercase letters and digits, separated by '.', '_', '__' or '-'",
                ));
            }
        }
        Ok(RepoName(s.to_string()))
    }

    /// Whether `s` parses as a repository name (checked without building one); with
    /// `library_prefix`, whether `library/<s>` would still be short enough.
    pub fn is_valid(s: &str, library_prefix: bool) -> bool {
        let extra = if library_prefix && !s.contains('/') {
            "library/".len()
        } else {
            0
        };
        !s.is_empty() && s.len() + extra <= MAX_NAME_LEN && s.split('/').all(valid_component)
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when the name has a single component (`nginx`), which Docker Hub files under `library/`.
    pub fn is_single_component(&self) -> bool {
        !self.0.contains('/')
    }

    /// `library/<name>` for a single-component name; the name itself otherwise. Fails when the
    /// prefix would take the name past the 255-character limit.
    pub fn with_library_namespace(self) -> Result<Self, NameError> {
        if !self.is_single_component() {
            return Ok(self);
        }
        let full = format!("library/{}", self.0);
        if full.len() > MAX_NAME_LEN {
            return Err(NameError::Repo(
                full.chars().take(300).collect(),
                "longer than 255 characters with Docker Hub's library/ prefix",
            ));
        }
        Ok(RepoName(full))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    /// Parses `[\w][\w.-]{0,127}`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let ok = !b.is_empty()
            && b.len() <= MAX_TAG_LEN
            && word(b[0])
            && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
        if ok {
            Ok(Tag(s.to_string()))
        } else {
            Err(NameError::Tag(s.chars().take(200).collect()))
        }
    }

    /// The tag as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a moving tag or an immutable digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Reference {
    /// A tag, which upstream may move.
    Tag(Tag),
    /// A digest, which never changes meaning.
    Digest(Digest),
}

impl Reference {
    /// Parses a reference: anything with a ':' must be a digest, otherwise a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            Ok(Reference::Digest(Digest::parse(s)?))
        } else {
            Ok(Reference::Tag(Tag::parse(s)?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names() {
        for ok in [
            "nginx",
            "library/nginx",
            "a/b/c",
            "my-org/my_app",
            "a__b",
            "a---b",
            "docker.io",
            "x9/y.z",
        ] {
            assert!(RepoName::parse(ok).is_ok(), "{ok} rejected");
        }
        for bad in [
            "",
            "Nginx",
            "/nginx",
            "nginx/",
            "a//b",
            "a/../b",
            "..",
            "a___b",
            "-a",
            "a-",
            "a..b",
            "a b",
            "a:5000/b",
            &"a".repeat(256),
        ] {
            assert!(RepoName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn library_namespace() {
        let n = RepoName::parse("nginx").unwrap().with_library_namespace();
        assert_eq!(n.unwrap().as_str(), "library/nginx");
        let n = RepoName::parse("bitnami/nginx")
            .unwrap()
            .with_library_namespace();
        assert_eq!(n.unwrap().as_str(), "bitnami/nginx");
    }

    #[test]
    fn library_namespace_keeps_the_length_limit() {
        // Found by the `oci_names` fuzz target: a 255-character single-component name became a
        // 263-character RepoName, which the type promises never to hold.
        let longest = "a".repeat(MAX_NAME_LEN - "library/".len());
        let n = RepoName::parse(&longest).unwrap().with_library_namespace();
        assert_eq!(n.unwrap().as_str().len(), MAX_NAME_LEN);
        let over = RepoName::parse(&"a".repeat(MAX_NAME_LEN - 7)).unwrap();
        let e = over.with_library_namespace().unwrap_err().to_string();
        assert!(e.contains("library/ prefix"), "{e}");
        let nested = RepoName::parse(&format!("x/{}", "a".repeat(253))).unwrap();
        assert_eq!(nested.clone().with_library_namespace(), Ok(nested));
    }

    #[test]
    fn tags_and_references() {
        assert!(Tag::parse("latest").is_ok());
        assert!(Tag::parse("v1.2.3-rc_1").is_ok());
        assert!(Tag::parse("_x").is_ok());
        assert!(Tag::parse(".x").is_err());
        assert!(Tag::parse("-x").is_err());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
        assert!(Tag::parse("a/b").is_err());
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "b".repeat(64))),
            Ok(Reference::Digest(_))
        ));
        assert!(matches!(
            Reference::parse("sha256:xyz"),
            Err(NameError::Digest(_))
        ));
    }
}
