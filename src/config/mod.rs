//! Settings: the TOML file (or the embedded default) turned into one typed model that the rest of
//! breakwater reads. Raw TOML never leaks past this module.

pub mod access;
mod admin_token;
mod clients;
mod cluster;
mod index;
pub mod log;
pub mod storage;
mod upstream;

use breakwater_oci::pattern::{RepoPattern, TagPattern};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use admin_token::admin_token;
pub use admin_token::AdminToken;
pub use clients::{ClientLimits, SEND_PIECE};
pub use cluster::ClusterSettings;
pub use index::IndexBackend;
use upstream::merge_upstream;
pub use upstream::{presets, Credentials, TagPolicy, TagRules, UpstreamSettings};

/// Everything breakwater runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listeners and worker threads.
    pub server: ServerSettings,
    /// Where blobs and the index live.
    pub storage: StorageSettings,
    /// Upstream registries by name, presets included.
    pub upstreams: BTreeMap<String, UpstreamSettings>,
    /// Name of the upstream for requests with neither `ns` nor a known prefix.
    pub default_upstream: String,
    /// Lifecycle policies from the file, their schedule, and GC.
    pub lifecycle: breakwater_lifecycle::settings::LifecycleSettings,
    /// Vulnerability scanning: data sources, scan on cache, pull gates.
    pub scan: breakwater_scan::settings::ScanSettings,
    /// Client access control; `None`: the registry port is open.
    pub access: Option<access::AccessSettings>,
    /// The diagnostic log's level and the access log.
    pub log: log::LogSettings,
    /// Several replicas sharing one index (`[cluster]`); `None`: a single node.
    pub cluster: Option<ClusterSettings>,
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Plain HTTP registry listener.
    pub listen: SocketAddr,
    /// Optional TLS registry listener (HTTP/1.1 and HTTP/2 by ALPN).
    pub tls: Option<TlsSettings>,
    /// Admin listener (metrics, admin API), kept apart from the registry port.
    pub admin_listen: SocketAddr,
    /// Worker threads of the registry listener.
    pub threads: usize,
    /// Bearer token the admin API (`/api/...`) requires; `None`: no authentication.
    pub admin_token: Option<AdminToken>,
    /// How long running requests and fills may go on after SIGTERM.
    pub shutdown_grace: Duration,
    /// Timeouts and caps on registry clients (connections, request heads, floods).
    pub clients: ClientLimits,
}

/// TLS listener settings.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// Storage settings.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Root directory: `blobs/`, `tmp/` and `index.sqlite` live under it.
    pub root: PathBuf,
    /// Byte quota with its high/low water marks; `None`: unlimited.
    pub quota: Option<breakwater_lifecycle::settings::Quota>,
    /// Where the index lives (`[storage] index`).
    pub index: IndexBackend,
    /// Where blobs live: files under `root`, or a bucket.
    pub backend: storage::StorageBackend,
    /// The largest blob a fill accepts (`None`: no limit beyond a manifest's declared size).
    pub max_blob_bytes: Option<u64>,
}

/// A configuration problem, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML error.
        source: toml::de::Error,
    },
    /// A value is wrong.
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    lifecycle: breakwater_lifecycle::settings::RawLifecycle,
    #[serde(default)]
    gc: breakwater_lifecycle::settings::RawGc,
    #[serde(default)]
    scan: breakwater_scan::settings::RawScan,
    access: Option<access::RawAccess>,
    #[serde(default)]
    log: log::RawLog,
    cluster: Option<cluster::RawCluster>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    threads: Option<usize>,
    tls_listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    admin_token_file: Option<PathBuf>,
    admin_token_env: Option<String>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    keepalive_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    send_timeout: Option<Duration>,
    max_connections: Option<usize>,
    max_requests_per_client: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    root: Option<PathBuf>,
    max_bytes: Option<breakwater_lifecycle::settings::ByteSize>,
    max_blob_bytes: Option<breakwater_lifecycle::settings::ByteSize>,
    high_water: Option<f64>,
    low_water: Option<f64>,
    index: Option<String>,
    postgres: Option<index::RawPostgres>,
    backend: Option<String>,
    s3: Option<storage::RawS3>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    default_upstream: Option<String>,
    presets: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    url: Option<String>,
    aliases: Option<Vec<String>>,
    hosts: Option<Vec<String>>,
    library_namespace: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    tag_ttl: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    first_byte_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    manifest_timeout: Option<Duration>,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    tag_policies: Option<Vec<RawTagPolicy>>,
    #[serde(default, with = "humantime_serde")]
    revalidate_grace: Option<Duration>,
    breaker_failures: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    breaker_backoff: Option<Duration>,
    prefetch: Option<bool>,
    prefetch_platforms: Option<Vec<String>>,
    private: Option<bool>,
    credentials: Option<String>,
    ns: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTagPolicy {
    repositories: Option<String>,
    tags: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    ttl: Option<Duration>,
    stale_while_revalidate: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    max_stale: Option<Duration>,
    immutable: Option<bool>,
}

impl Settings {
    /// The embedded default: store under `./data`, the four public upstreams, Docker Hub default.
    pub fn embedded_default() -> Self {
        Self::from_raw(RawFile::default()).expect("embedded default is valid")
    }

    /// Loads the file if given, else the embedded default.
    pub fn load_or_default(path: Option<&Path>) -> Result<Self, String> {
        match path {
            Some(p) => Self::load(p).map_err(|e| e.to_string()),
            None => Ok(Self::embedded_default()),
        }
    }

    /// Loads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            source,
        })?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: RawFile) -> Result<Self, ConfigError> {
        let mut upstreams = if raw.routing.presets.unwrap_or(true) {
            presets()
        } else {
            BTreeMap::new()
        };
        for (name, ru) in raw.upstreams {
            let base = upstreams.remove(&name);
            let u = merge_upstream(&name, base, ru)?;
            upstreams.insert(name, u);
        }
        let default_upstream = raw
            .routing
            .default_upstream
            .unwrap_or_else(|| "docker.io".to_string());
        if !upstreams.contains_key(&default_upstream) {
            return Err(ConfigError::Invalid(format!(
                "routing.default_upstream = {default_upstream:?} names no configured upstream"
            )));
        }
        let mut seen = BTreeMap::new();
        for (name, u) in &upstreams {
            for a in &u.aliases {
                if let Some(other) = seen.insert(a.clone(), name.clone()) {
                    return Err(ConfigError::Invalid(format!(
                        "alias {a:?} is claimed by both upstreams {other:?} and {name:?}"
                    )));
                }
            }
        }
        if raw.server.listen.is_some() && raw.server.listen == raw.server.admin_listen {
            // Pingora binds with SO_REUSEPORT: both would listen, sharing connections at random.
            return Err(ConfigError::Invalid(
                "server.listen and server.admin_listen are the same address".into(),
            ));
        }
        let tls = match (
            raw.server.tls_listen,
            raw.server.tls_cert,
            raw.server.tls_key,
        ) {
            (None, None, None) => None,
            (Some(listen), Some(cert), Some(key)) => Some(TlsSettings { listen, cert, key }),
            _ => {
                return Err(ConfigError::Invalid(
                    "server.tls_listen, server.tls_cert and server.tls_key go together".into(),
                ))
            }
        };
        let index = index::index_backend(raw.storage.index, raw.storage.postgres)?;
        let mut taken = vec![];
        taken.extend(raw.server.listen);
        taken.extend(raw.server.admin_listen);
        let cluster = cluster::cluster(raw.cluster, &index, &taken)?;
        Ok(Settings {
            cluster,
            server: ServerSettings {
                listen: raw
                    .server
                    .listen
                    .unwrap_or_else(|| "0.0.0.0:5000".parse().unwrap()),
                tls,
                admin_listen: raw
                    .server
                    .admin_listen
                    .unwrap_or_else(|| "127.0.0.1:5001".parse().unwrap()),
                threads: raw.server.threads.unwrap_or(2).max(1),
                admin_token: admin_token(raw.server.admin_token_file, raw.server.admin_token_env)?,
                // Inside Kubernetes' default 30 s termination grace period.
                shutdown_grace: raw.server.shutdown_grace.unwrap_or(Duration::from_secs(25)),
                clients: clients::client_limits(clients::RawClientLimits {
                    header_timeout: raw.server.header_timeout,
                    keepalive_timeout: raw.server.keepalive_timeout,
                    send_timeout: raw.server.send_timeout,
                    max_connections: raw.server.max_connections,
                    max_requests_per_client: raw.server.max_requests_per_client,
                })?,
            },
            storage: StorageSettings {
                root: raw.storage.root.unwrap_or_else(|| PathBuf::from("./data")),
                quota: breakwater_lifecycle::settings::quota(
                    raw.storage.max_bytes,
                    raw.storage.high_water,
                    raw.storage.low_water,
                )
                .map_err(ConfigError::Invalid)?,
                index,
                backend: storage::backend(raw.storage.backend.as_deref(), raw.storage.s3, |v| {
                    std::env::var(v).ok()
                })?,
                max_blob_bytes: raw.storage.max_blob_bytes.map(|b| b.0),
            },
            lifecycle: breakwater_lifecycle::settings::LifecycleSettings::from_raw(
                raw.lifecycle,
                raw.gc,
            )
            .map_err(ConfigError::Invalid)?,
            scan: breakwater_scan::settings::ScanSettings::from_raw(raw.scan)
                .map_err(ConfigError::Invalid)?,
            log: raw.log.resolve()?,
            access: match raw.access {
                Some(a) => Some(a.resolve()?),
                None => {
                    if let Some((name, _)) = upstreams.iter().find(|(_, u)| u.client_credentials) {
                        return Err(ConfigError::Invalid(format!(
                            "upstreams.{name:?}: credentials = \"client\" needs an [access] section: \
                             clients send credentials only to a registry that challenges them"
                        )));
                    }
                    None
                }
            },
            upstreams,
            default_upstream,
        })
    }
}

#[cfg(test)]
mod tests;
