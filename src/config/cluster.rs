//! `[cluster]`: several replicas sharing one PostgreSQL index, one upstream fetch per digest.

use super::admin_token::read_secret;
use super::{AdminToken, ConfigError, IndexBackend};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// This replica's place in a cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// This replica's id, unique in the cluster.
    pub node: String,
    /// Where the peer endpoint listens (apart from the registry and admin ports).
    pub peer_listen: SocketAddr,
    /// How other replicas reach the peer endpoint (`http://host:port`).
    pub peer_url: String,
    /// The secret peers present; `Debug` hides it.
    pub secret: AdminToken,
    /// How long a lease lives unless renewed (renewed every third of it).
    pub lease_ttl: Duration,
}

/// `[cluster]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    enabled: Option<bool>,
    node: Option<String>,
    peer_listen: Option<SocketAddr>,
    peer_url: Option<String>,
    peer_url_env: Option<String>,
    secret: Option<String>,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    lease_ttl: Option<Duration>,
}

/// The machine's host name, for default node ids and peer URLs.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The cluster settings, or `None` when `[cluster]` is absent or not enabled.
pub(super) fn cluster(
    raw: Option<RawCluster>,
    index: &IndexBackend,
    taken: &[SocketAddr],
) -> Result<Option<ClusterSettings>, ConfigError> {
    let Some(raw) = raw.filter(|r| r.enabled.unwrap_or(true)) else {
        return Ok(None);
    };
    let invalid = |m: &str| Err(ConfigError::Invalid(format!("cluster: {m}")));
    if !matches!(index, IndexBackend::Postgres(_)) {
        return invalid(
            "replicas share leases and membership through the index: set \
             [storage] index = \"postgres\" (a cluster cannot run on the SQLite index)",
        );
    }
    let from_file = read_secret(raw.secret_file, raw.secret_env, "cluster.secret")?;
    let secret = match (raw.secret, from_file) {
        (Some(s), None) | (None, Some(s)) => s,
        (Some(_), Some(_)) => return invalid("set one of secret, secret_env, secret_file"),
        (None, None) => {
            return invalid("a shared secret is required (secret_file, secret_env or secret)")
        }
    };
    let Some(secret) = AdminToken::new(&secret) else {
        return invalid("the secret is empty");
    };
    let Some(peer_listen) = raw.peer_listen else {
        return invalid("peer_listen (the address of the peer endpoint) is required");
    };
    if taken.contains(&peer_listen) {
        return invalid("peer_listen must differ from server.listen and server.admin_listen");
    }
    // In a Kubernetes Deployment each pod learns its own address only at start (the downward
    // API's status.podIP), so the URL may come from the environment.
    let peer_url = match (raw.peer_url, raw.peer_url_env) {
        (Some(_), Some(_)) => return invalid("set one of peer_url, peer_url_env"),
        (None, Some(var)) => match std::env::var(&var) {
            Ok(v) if !v.trim().is_empty() => Some(v.trim().to_string()),
            _ => return invalid(&format!("peer_url_env: ${var} is not set")),
        },
        (url, None) => url,
    };
    let peer_url = match peer_url {
        Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
            u.trim_end_matches('/').to_string()
        }
        Some(u) => {
            return invalid(&format!(
                "peer_url must be an http:// or https:// URL, not {u:?}"
            ))
        }
        None if peer_listen.ip().is_unspecified() => {
            format!("http://{}:{}", hostname(), peer_listen.port())
        }
        None => format!("http://{peer_listen}"),
    };
    let node = raw
        .node
        .unwrap_or_else(|| format!("{}-{}", hostname(), std::process::id()));
    if node.is_empty() || node.len() > 200 || node.chars().any(char::is_control) {
        return invalid("node must be 1 to 200 printable characters");
    }
    let lease_ttl = raw.lease_ttl.unwrap_or(Duration::from_secs(10));
    if lease_ttl < Duration::from_secs(1) {
        return invalid("lease_ttl must be at least 1s");
    }
    Ok(Some(ClusterSettings {
        node,
        peer_listen,
        peer_url,
        secret,
        lease_ttl,
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Settings};

    const PG: &str =
        "[storage]\nindex = \"postgres\"\n[storage.postgres]\nurl = \"postgres://db/bw\"\n";

    fn err(text: &str) -> String {
        match Settings::parse(text) {
            Err(ConfigError::Invalid(m)) => m,
            other => panic!("expected an invalid config, got {other:?}"),
        }
    }

    #[test]
    fn a_cluster_needs_postgres_a_secret_and_its_own_address() {
        let sqlite = "[cluster]\npeer_listen = \"127.0.0.1:5002\"\nsecret = \"s\"\n";
        assert!(err(sqlite).contains("index = \"postgres\""));
        let no_secret = format!("{PG}[cluster]\npeer_listen = \"127.0.0.1:5002\"\n");
        assert!(err(&no_secret).contains("secret"));
        let clash = format!(
            "[server]\nadmin_listen = \"127.0.0.1:5002\"\n{PG}[cluster]\npeer_listen = \"127.0.0.1:5002\"\nsecret = \"s\"\n"
        );
        assert!(err(&clash).contains("must differ"));
        let off = "[cluster]\nenabled = false\n";
        assert!(Settings::parse(off).unwrap().cluster.is_none());
    }

    #[test]
    fn defaults_and_a_hidden_secret() {
        let text = format!(
            "{PG}[cluster]\npeer_listen = \"127.0.0.1:5002\"\nsecret = \"cluster-s3cret\"\n"
        );
        let c = Settings::parse(&text).unwrap().cluster.unwrap();
        assert_eq!(c.peer_url, "http://127.0.0.1:5002");
        assert_eq!(c.lease_ttl, std::time::Duration::from_secs(10));
        assert!(c.node.ends_with(&format!("-{}", std::process::id())));
        assert!(c.secret.matches("cluster-s3cret"));
        assert!(!format!("{c:?}").contains("cluster-s3cret"));
        let text = format!(
            "{PG}[cluster]\nnode = \"a\"\npeer_listen = \"0.0.0.0:5002\"\npeer_url = \"http://bw-a:5002/\"\nsecret = \"x\"\nlease_ttl = \"3s\"\n"
        );
        let c = Settings::parse(&text).unwrap().cluster.unwrap();
        assert_eq!(
            (c.node.as_str(), c.peer_url.as_str()),
            ("a", "http://bw-a:5002")
        );
    }

    #[test]
    fn the_peer_url_can_come_from_the_environment() {
        let text = |var: &str| {
            format!(
                "{PG}[cluster]\npeer_listen = \"0.0.0.0:5002\"\npeer_url_env = \"{var}\"\nsecret = \"x\"\n"
            )
        };
        std::env::set_var("BW_TEST_PEER_URL_SET", "http://10.1.2.3:5002");
        let c = Settings::parse(&text("BW_TEST_PEER_URL_SET"))
            .unwrap()
            .cluster;
        assert_eq!(c.unwrap().peer_url, "http://10.1.2.3:5002");
        assert!(err(&text("BW_TEST_PEER_URL_UNSET")).contains("$BW_TEST_PEER_URL_UNSET is not set"));
        std::env::set_var("BW_TEST_PEER_URL_BAD", "10.1.2.3:5002");
        assert!(err(&text("BW_TEST_PEER_URL_BAD")).contains("http:// or https://"));
        let both =
            text("BW_TEST_PEER_URL_SET").replace("secret", "peer_url = \"http://a:1\"\nsecret");
        assert!(err(&both).contains("one of peer_url, peer_url_env"));
    }
}
