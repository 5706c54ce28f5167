//! One upstream registry: its settings, the presets every installation knows, and one
//! `[upstreams.<name>]` table merged over its preset (or built from its `url`), with its
//! credentials read and every value checked.

use super::*;

/// One upstream registry.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Base URL, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// Path prefixes that route here (`/v2/<alias>/<repo>/…`).
    pub aliases: Vec<String>,
    /// Registry host names containerd may send as `?ns=`.
    pub hosts: Vec<String>,
    /// Whether single-component names get `library/` (Docker Hub).
    pub library_namespace: bool,
    /// How long a tag is served without asking upstream.
    pub tag_ttl: Duration,
    /// Credentials, if any.
    pub credentials: Option<Credentials>,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Time allowed until response headers arrive.
    pub first_byte_timeout: Duration,
    /// Longest silence allowed while a body streams.
    pub idle_timeout: Duration,
    /// Longest a small answer (manifest, tag list, referrers, error body) may take in whole,
    /// so an upstream dripping bytes cannot hold a request forever.
    pub manifest_timeout: Duration,
    /// Per repository/tag pattern freshness rules; the first match wins.
    pub tag_policies: Vec<TagPolicy>,
    /// How long a request holding a cached tag waits for revalidation before it is answered stale.
    pub revalidate_grace: Duration,
    /// Consecutive failures (connect, timeout, 5xx) that mark the upstream down.
    pub breaker_failures: u32,
    /// First down period; it doubles while probes fail, up to a minute.
    pub breaker_backoff: Duration,
    /// Start fills for an image's config and layers when its manifest is served.
    pub prefetch: bool,
    /// For an index, the platforms (`os/arch[/variant]`) whose images are prefetched.
    pub prefetch_platforms: Vec<String>,
    /// Private content: breakwater refuses to start if a rule lets anonymous clients pull it.
    pub private: bool,
    /// Use each client's own Basic credentials upstream (`credentials = "client"`) instead of
    /// the configured ones; cached content is served only to clients upstream accepted.
    pub client_credentials: bool,
    /// The registry this upstream is asked for, sent as `?ns=` on every request: set when the
    /// upstream is another breakwater (node cache → office cache), so it routes to the original
    /// registry.
    pub ns: Option<String>,
}

/// Freshness rules for the tags matching a repository and tag pattern.
#[derive(Debug, Clone)]
pub struct TagPolicy {
    /// Repositories (as the upstream names them) this applies to, e.g. `library/*`.
    pub repositories: RepoPattern,
    /// Tags this applies to (`*` wildcards); empty = every tag.
    pub tags: Vec<TagPattern>,
    /// TTL for these tags (else the upstream's `tag_ttl`).
    pub ttl: Option<Duration>,
    /// Answer with the cached digest at once and revalidate in the background.
    pub stale_while_revalidate: bool,
    /// How long past the TTL a cached tag may still be served when upstream fails.
    pub max_stale: Option<Duration>,
    /// Once cached, never revalidated on the request path (moves are detected and reported).
    pub immutable: bool,
}

/// The rules in force for one tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRules {
    /// Served without asking upstream for this long.
    pub ttl: Duration,
    /// Serve cached at once after the TTL and revalidate in the background.
    pub stale_while_revalidate: bool,
    /// Limit on serving stale past the TTL; `None` = no limit.
    pub max_stale: Option<Duration>,
    /// Never revalidated on the request path.
    pub immutable: bool,
}

impl UpstreamSettings {
    /// The rules for `tag` of `repo` (upstream's naming): first matching policy, else defaults.
    pub fn tag_rules(&self, repo: &str, tag: &str) -> TagRules {
        let policy = self.tag_policies.iter().find(|p| {
            p.repositories.matches(repo)
                && (p.tags.is_empty() || p.tags.iter().any(|t| t.matches(tag)))
        });
        match policy {
            Some(p) => TagRules {
                ttl: p.ttl.unwrap_or(self.tag_ttl),
                stale_while_revalidate: p.stale_while_revalidate,
                max_stale: p.max_stale,
                immutable: p.immutable,
            },
            None => TagRules {
                ttl: self.tag_ttl,
                stale_while_revalidate: false,
                max_stale: None,
                immutable: false,
            },
        }
    }
}

/// Upstream credentials. Never logged: `Debug` hides the secret.
#[derive(Clone)]
pub enum Credentials {
    /// Username and password (or personal access token as password).
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// A ready-made bearer token.
    Bearer(String),
}

impl Credentials {
    /// A short hash naming these credentials (token cache keys, acceptance decisions) without
    /// holding the secret in the clear.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        match self {
            Credentials::Basic { username, password } => {
                h.update(b"basic\0");
                h.update(username.as_bytes());
                h.update(b"\0");
                h.update(password.as_bytes());
            }
            Credentials::Bearer(t) => {
                h.update(b"bearer\0");
                h.update(t.as_bytes());
            }
        }
        hex::encode(&h.finalize()[..16])
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <hidden>)"),
            Credentials::Bearer(_) => write!(f, "Bearer(<hidden>)"),
        }
    }
}

/// Default tag TTL: long enough to absorb pull storms, short enough that `latest` moves soon.
const DEFAULT_TAG_TTL: Duration = Duration::from_secs(300);

fn preset(url: &str, aliases: &[&str], hosts: &[&str], library: bool) -> UpstreamSettings {
    UpstreamSettings {
        url: url.to_string(),
        aliases: aliases.iter().map(|s| s.to_string()).collect(),
        hosts: hosts.iter().map(|s| s.to_string()).collect(),
        library_namespace: library,
        tag_ttl: DEFAULT_TAG_TTL,
        credentials: None,
        connect_timeout: Duration::from_secs(3),
        first_byte_timeout: Duration::from_secs(15),
        idle_timeout: Duration::from_secs(30),
        manifest_timeout: Duration::from_secs(60),
        tag_policies: Vec::new(),
        revalidate_grace: Duration::from_secs(1),
        breaker_failures: 3,
        breaker_backoff: Duration::from_secs(2),
        prefetch: false,
        prefetch_platforms: Vec::new(),
        private: false,
        client_credentials: false,
        ns: None,
    }
}

/// The four public registries every installation knows by name.
pub fn presets() -> BTreeMap<String, UpstreamSettings> {
    let mut m = BTreeMap::new();
    m.insert(
        "docker.io".into(),
        preset(
            "https://registry-1.docker.io",
            &["docker.io"],
            &["docker.io", "registry-1.docker.io", "index.docker.io"],
            true,
        ),
    );
    m.insert(
        "quay.io".into(),
        preset("https://quay.io", &["quay.io"], &["quay.io"], false),
    );
    m.insert(
        "ghcr.io".into(),
        preset("https://ghcr.io", &["ghcr.io"], &["ghcr.io"], false),
    );
    m.insert(
        "public.ecr.aws".into(),
        preset(
            "https://public.ecr.aws",
            &["public.ecr.aws"],
            &["public.ecr.aws"],
            false,
        ),
    );
    m
}

pub(super) fn merge_upstream(
    name: &str,
    base: Option<UpstreamSettings>,
    ru: RawUpstream,
) -> Result<UpstreamSettings, ConfigError> {
    let invalid = |what: String| ConfigError::Invalid(format!("upstreams.{name:?}: {what}"));
    let mut u = match (base, &ru.url) {
        (Some(b), _) => b,
        (None, Some(url)) => preset(url, &[name], &[], false),
        (None, None) => return Err(invalid("url is required".into())),
    };
    if let Some(url) = ru.url {
        let parsed = reqwest::Url::parse(&url).map_err(|e| invalid(format!("url {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(format!(
                "url {url:?} must be http(s)://host[:port]"
            )));
        }
        if u.hosts.is_empty() {
            let host = match parsed.port() {
                Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or_default()),
                None => parsed.host_str().unwrap_or_default().to_string(),
            };
            u.hosts.push(host);
        }
        u.url = url.trim_end_matches('/').to_string();
    }
    if let Some(a) = ru.aliases {
        u.aliases = a;
    }
    if let Some(h) = ru.hosts {
        u.hosts = h;
    }
    if let Some(ns) = ru.ns {
        // A registry host name (with an optional port): it goes into query strings unescaped.
        let valid = !ns.is_empty()
            && ns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if !valid {
            return Err(invalid(format!(
                "ns {ns:?} must be a registry host name such as \"docker.io\""
            )));
        }
        u.ns = Some(ns);
    }
    if let Some(p) = ru.private {
        u.private = p;
    }
    match ru.credentials.as_deref() {
        None | Some("config") => {}
        Some("client") => u.client_credentials = true,
        Some(other) => {
            return Err(invalid(format!(
                "credentials = {other:?}: expected \"client\" (the client's own credentials) or \"config\""
            )))
        }
    }
    if let Some(l) = ru.library_namespace {
        u.library_namespace = l;
    }
    if let Some(t) = ru.tag_ttl {
        u.tag_ttl = t;
    }
    if let Some(t) = ru.connect_timeout {
        u.connect_timeout = t;
    }
    if let Some(t) = ru.first_byte_timeout {
        u.first_byte_timeout = t;
    }
    if let Some(t) = ru.idle_timeout {
        u.idle_timeout = t;
    }
    if let Some(t) = ru.manifest_timeout {
        u.manifest_timeout = t;
    }
    if let Some(t) = ru.revalidate_grace {
        u.revalidate_grace = t;
    }
    if let Some(n) = ru.breaker_failures {
        u.breaker_failures = n.max(1);
    }
    if let Some(t) = ru.breaker_backoff {
        u.breaker_backoff = t;
    }
    if let Some(p) = ru.prefetch {
        u.prefetch = p;
    }
    if let Some(p) = ru.prefetch_platforms {
        u.prefetch_platforms = p;
    }
    if let Some(policies) = ru.tag_policies {
        u.tag_policies = policies
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let at = |what: String| invalid(format!("tag_policies[{i}]: {what}"));
                let repositories = RepoPattern::new(p.repositories.as_deref().unwrap_or("**"))
                    .map_err(|e| at(format!("repositories: {e}")))?;
                let tags = p
                    .tags
                    .unwrap_or_default()
                    .iter()
                    .map(|t| TagPattern::new(t).map_err(|e| at(format!("tags {t:?}: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(TagPolicy {
                    repositories,
                    tags,
                    ttl: p.ttl,
                    stale_while_revalidate: p.stale_while_revalidate.unwrap_or(false),
                    max_stale: p.max_stale,
                    immutable: p.immutable.unwrap_or(false),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
    }
    let secret =
        |inline: Option<String>, env: Option<String>, file: Option<PathBuf>, what: &str| {
            if let Some(s) = inline {
                return Ok(Some(s));
            }
            if let Some(var) = env {
                return std::env::var(&var).map(Some).map_err(|_| {
                    invalid(format!("{what}_env: environment variable {var} is not set"))
                });
            }
            if let Some(path) = file {
                return std::fs::read_to_string(&path)
                    .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
                    .map_err(|e| invalid(format!("{what}_file {}: {e}", path.display())));
            }
            Ok(None)
        };
    let password = secret(ru.password, ru.password_env, ru.password_file, "password")?;
    let token = secret(ru.token, ru.token_env, ru.token_file, "token")?;
    u.credentials = match (ru.username, password, token) {
        (Some(username), Some(password), None) => Some(Credentials::Basic { username, password }),
        (None, None, Some(t)) => Some(Credentials::Bearer(t)),
        (None, None, None) => u.credentials,
        _ => {
            return Err(invalid(
                "give either username + password (or password_env / password_file) or a token"
                    .into(),
            ))
        }
    };
    if u.client_credentials && u.credentials.is_some() {
        return Err(invalid(
            "credentials = \"client\" uses each client's own credentials: remove username, password and token"
                .into(),
        ));
    }
    Ok(u)
}
