//! Which registry operation a request path names (`/v2/<name>/manifests/<reference>`, …), the
//! name and reference left unparsed: the first thing the server does with a request's path.

/// The registry operation a request path names (the name and reference still unparsed).
#[derive(Debug, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        /// Repository path as requested.
        name: &'a str,
        /// Tag or digest.
        reference: &'a str,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob {
        /// Repository path as requested.
        name: &'a str,
        /// Digest.
        digest: &'a str,
    },
    /// `/v2/<name>/tags/list`
    Tags {
        /// Repository path as requested.
        name: &'a str,
    },
    /// `/v2/<name>/referrers/<digest>`
    Referrers {
        /// Repository path as requested.
        name: &'a str,
        /// The subject digest.
        digest: &'a str,
    },
    /// A push or delete endpoint: the cache is read-only.
    Write,
    /// Anything else.
    Unknown,
}

/// Splits a request path into an endpoint.
pub fn parse_path(path: &str) -> Endpoint<'_> {
    let Some(rest) = path.strip_prefix("/v2/") else {
        return if path == "/v2" {
            Endpoint::Base
        } else {
            Endpoint::Unknown
        };
    };
    if rest.is_empty() {
        return Endpoint::Base;
    }
    if rest == "_catalog" {
        return Endpoint::Catalog;
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Endpoint::Tags { name };
    }
    if rest.contains("/blobs/uploads") {
        return Endpoint::Write;
    }
    if let Some((name, tail)) = rest.rsplit_once("/manifests/") {
        if !tail.contains('/') {
            return Endpoint::Manifest {
                name,
                reference: tail,
            };
        }
    }
    if let Some((name, tail)) = rest.rsplit_once("/blobs/") {
        if !tail.contains('/') {
            return Endpoint::Blob { name, digest: tail };
        }
    }
    if let Some((name, tail)) = rest.rsplit_once("/referrers/") {
        if !tail.contains('/') {
            return Endpoint::Referrers { name, digest: tail };
        }
    }
    Endpoint::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/v2/"), Endpoint::Base);
        assert_eq!(parse_path("/v2"), Endpoint::Base);
        assert_eq!(parse_path("/v2/_catalog"), Endpoint::Catalog);
        assert_eq!(
            parse_path("/v2/a/b/manifests/latest"),
            Endpoint::Manifest {
                name: "a/b",
                reference: "latest"
            }
        );
        assert_eq!(
            parse_path("/v2/manifests/manifests/x"),
            Endpoint::Manifest {
                name: "manifests",
                reference: "x"
            }
        );
        assert_eq!(
            parse_path("/v2/a/blobs/sha256:1"),
            Endpoint::Blob {
                name: "a",
                digest: "sha256:1"
            }
        );
        assert_eq!(parse_path("/v2/a/tags/list"), Endpoint::Tags { name: "a" });
        assert_eq!(parse_path("/v2/a/blobs/uploads/"), Endpoint::Write);
        assert_eq!(
            parse_path("/v2/a/b/referrers/sha256:1"),
            Endpoint::Referrers {
                name: "a/b",
                digest: "sha256:1"
            }
        );
        assert_eq!(parse_path("/v2/a/referrers/sha256:1/x"), Endpoint::Unknown);
        assert_eq!(parse_path("/v2/a/manifests/x/y"), Endpoint::Unknown);
        assert_eq!(parse_path("/other"), Endpoint::Unknown);
    }
}
