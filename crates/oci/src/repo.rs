//! `<upstream>/<name>`: a repository as the cache names it, across every upstream.

use super::name::{NameError, RepoName};
use std::fmt;
use std::str::FromStr;

/// A repository as the cache names it: upstream plus the upstream's repository name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey {
    /// Upstream name, e.g. `docker.io`.
    pub upstream: String,
    /// Repository on that upstream, e.g. `library/nginx`.
    pub name: String,
}

/// Why a string is not `<upstream>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoKeyError {
    /// No `/`, or nothing before it.
    #[error("invalid repository {0:?}: expected <upstream>/<name>")]
    Shape(String),
    /// The part after the upstream is not a repository name.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl RepoKey {
    /// The key of `name` on `upstream` (taken as given: both come from the index or the config).
    pub fn new(upstream: impl Into<String>, name: impl Into<String>) -> Self {
        RepoKey {
            upstream: upstream.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.upstream, self.name)
    }
}

impl FromStr for RepoKey {
    type Err = RepoKeyError;

    /// Splits at the first `/`: upstream names never contain one, repository names may.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (upstream, name) = s
            .split_once('/')
            .filter(|(u, _)| !u.is_empty())
            .ok_or_else(|| RepoKeyError::Shape(s.chars().take(300).collect()))?;
        let name = RepoName::parse(name)?;
        Ok(RepoKey::new(upstream, name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let k = RepoKey::new("docker.io", "library/nginx");
        assert_eq!(k.to_string(), "docker.io/library/nginx");
        assert_eq!("docker.io/library/nginx".parse::<RepoKey>(), Ok(k));
        for bad in [
            "",
            "nginx",
            "/library/nginx",
            "docker.io/",
            "docker.io/Nginx",
        ] {
            assert!(bad.parse::<RepoKey>().is_err(), "{bad:?} accepted");
        }
    }
}
