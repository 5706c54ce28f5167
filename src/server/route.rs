//! Request routing: which registry operation a path names, and which upstream serves it —
//! containerd's `?ns=<registry>`, a path prefix alias (`/v2/<alias>/<repo>/…`), or the default.

pub use crate::oci::endpoint::{parse_path, Endpoint};
use crate::oci::{ErrorCode, RegistryError, RepoName};
use crate::registry::Target;
use crate::upstream::Upstream;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Chooses the upstream for a request.
pub struct Router {
    upstreams: BTreeMap<String, Arc<Upstream>>,
    by_alias: HashMap<String, String>,
    by_host: HashMap<String, String>,
    default: String,
}

impl Router {
    /// Builds the routing tables from the configured upstreams.
    pub fn new(upstreams: &BTreeMap<String, Arc<Upstream>>, default: &str) -> Self {
        let mut by_alias = HashMap::new();
        let mut by_host = HashMap::new();
        for (name, u) in upstreams {
            for a in &u.settings.aliases {
                by_alias.insert(a.clone(), name.clone());
            }
            for h in &u.settings.hosts {
                by_host.insert(h.to_ascii_lowercase(), name.clone());
            }
        }
        Router {
            upstreams: upstreams.clone(),
            by_alias,
            by_host,
            default: default.to_string(),
        }
    }

    /// Resolves a requested repository path (and optional `ns`) to an upstream and repository.
    pub fn resolve(&self, name: &str, ns: Option<&str>) -> Result<Target, RegistryError> {
        let (upstream, repo) = self.pick(name, ns)?;
        let upstream = upstream.clone();
        let mut repo = RepoName::parse(repo)
            .map_err(|e| RegistryError::new(ErrorCode::NameInvalid, e.to_string()))?;
        if upstream.settings.library_namespace {
            repo = repo
                .with_library_namespace()
                .map_err(|e| RegistryError::new(ErrorCode::NameInvalid, e.to_string()))?;
        }
        Ok(Target {
            upstream,
            repo,
            may_fill: true,
            client: None,
            internal: false,
        })
    }

    /// The upstream [`Self::resolve`] would pick, when it would succeed; builds no target (the
    /// access log asks this for every request).
    pub fn upstream_of(&self, name: &str, ns: Option<&str>) -> Option<&Arc<Upstream>> {
        let (upstream, repo) = self.pick(name, ns).ok()?;
        RepoName::is_valid(repo, upstream.settings.library_namespace).then_some(upstream)
    }

    /// The upstream for a request and the repository name left for it.
    fn pick<'a>(
        &self,
        name: &'a str,
        ns: Option<&str>,
    ) -> Result<(&Arc<Upstream>, &'a str), RegistryError> {
        let (upstream, repo) = if let Some(ns) = ns {
            let host = ns.to_ascii_lowercase();
            let u = self.by_host.get(&host).ok_or_else(|| {
                RegistryError::new(
                    ErrorCode::NameUnknown,
                    format!("no upstream is configured for registry {ns:?} (ns parameter)"),
                )
            })?;
            (u.as_str(), name)
        } else {
            match name.split_once('/') {
                Some((first, rest)) if self.by_alias.contains_key(first) => {
                    (self.by_alias[first].as_str(), rest)
                }
                _ => (self.default.as_str(), name),
            }
        };
        Ok((&self.upstreams[upstream], repo))
    }
}

impl Router {
    /// Every `<upstream>/<name>` a client's repository name can route to: its prefix alias or
    /// the default, and any upstream through containerd's `ns` (which a token request does not
    /// carry). The token service grants by these; each request is checked on its exact target.
    pub fn possible_keys(&self, name: &str) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        let mut add = |t: Result<Target, RegistryError>| {
            if let Ok(t) = t {
                let k = t.key().to_string();
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        };
        add(self.resolve(name, None));
        for u in self.upstreams.values() {
            if let Some(host) = u.settings.hosts.first() {
                add(self.resolve(name, Some(host)));
            }
        }
        keys
    }
}

/// The value of query parameter `key`, percent-decoded.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::metrics::Metrics;

    fn router() -> Router {
        let s = Settings::parse(
            r#"
            [upstreams.local]
            url = "http://127.0.0.1:5999"
            aliases = ["mine"]
            "#,
        )
        .unwrap();
        let m = Arc::new(Metrics::new());
        let ups = s
            .upstreams
            .iter()
            .map(|(n, u)| (n.clone(), Arc::new(Upstream::new(n, u.clone(), m.clone()))))
            .collect();
        Router::new(&ups, &s.default_upstream)
    }

    #[test]
    fn three_routing_modes() {
        let r = router();
        // Default upstream (Docker Hub) with the implicit library/ namespace.
        let t = r.resolve("nginx", None).unwrap();
        assert_eq!(
            (t.upstream.name.as_str(), t.repo.as_str()),
            ("docker.io", "library/nginx")
        );
        // Prefix alias.
        let t = r.resolve("mine/team/app", None).unwrap();
        assert_eq!(
            (t.upstream.name.as_str(), t.repo.as_str()),
            ("local", "team/app")
        );
        let t = r.resolve("quay.io/coreos/etcd", None).unwrap();
        assert_eq!(
            (t.upstream.name.as_str(), t.repo.as_str()),
            ("quay.io", "coreos/etcd")
        );
        let t = r.resolve("docker.io/redis", None).unwrap();
        assert_eq!(t.repo.as_str(), "library/redis");
        // containerd's ns wins over any prefix.
        let t = r.resolve("team/app", Some("127.0.0.1:5999")).unwrap();
        assert_eq!(
            (t.upstream.name.as_str(), t.repo.as_str()),
            ("local", "team/app")
        );
        let t = r.resolve("library/alpine", Some("docker.io")).unwrap();
        assert_eq!(t.repo.as_str(), "library/alpine");
        let e = r.resolve("x", Some("evil.example")).err().unwrap();
        assert_eq!(e.code, ErrorCode::NameUnknown);
        assert!(e.message.contains("evil.example"));
        let e = r.resolve("Bad/Name", None).err().unwrap();
        assert_eq!(e.code, ErrorCode::NameInvalid);
        let e = r.resolve("a/../../etc", None).err().unwrap();
        assert_eq!(e.code, ErrorCode::NameInvalid);
        // upstream_of agrees with resolve, without building a target.
        for (name, ns) in [
            ("nginx", None),
            ("mine/team/app", None),
            ("team/app", Some("127.0.0.1:5999")),
            ("x", Some("evil.example")),
            ("Bad/Name", None),
            ("a/../../etc", None),
        ] {
            assert_eq!(
                r.upstream_of(name, ns).map(|u| u.name.clone()),
                r.resolve(name, ns).ok().map(|t| t.upstream.name.clone()),
                "{name} {ns:?}"
            );
        }
        // Docker Hub's library/ prefix can take a name past the limit.
        let long = "a".repeat(250);
        assert!(r.resolve(&long, None).is_err() && r.upstream_of(&long, None).is_none());
        assert!(r.upstream_of(&format!("mine/{long}"), None).is_some());
    }

    #[test]
    fn query_params() {
        assert_eq!(
            query_param("ns=127.0.0.1%3A5000&x=1", "ns").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(query_param("n=10&last=a", "last").as_deref(), Some("a"));
        assert_eq!(query_param("n=10", "ns"), None);
    }
}
