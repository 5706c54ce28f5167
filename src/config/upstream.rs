//! One `[upstreams.<name>]` table merged over its preset (or built from its `url`), with its
//! credentials read and every value checked.

use super::*;

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
