//! `<upstream>/<name>`: a repository as the cache names it, across every upstream.

/// A repository as the cache names it: upstream plus the upstream's repository name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoKey {
    /// Upstream name, e.g. `docker.io`.
    pub upstream: String,
    /// Repository on that upstream, e.g. `library/nginx`.
    pub name: String,
}
