//! `[storage] index` and `[storage.postgres]`: which index backend holds what the cache knows.

use super::admin_token::read_secret;
use super::ConfigError;
use breakwater_store::PgSettings;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Where the index lives.
#[derive(Debug, Clone)]
pub enum IndexBackend {
    /// `index.sqlite` under the storage root (the embedded single-node default).
    Sqlite,
    /// A PostgreSQL database shared by several replicas.
    Postgres(PgSettings),
}

/// `[storage.postgres]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPostgres {
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<PathBuf>,
    pool_size: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    acquire_timeout: Option<Duration>,
    ca_file: Option<PathBuf>,
}

/// The backend named by `[storage] index`, with its settings.
pub(super) fn index_backend(
    kind: Option<String>,
    pg: Option<RawPostgres>,
) -> Result<IndexBackend, ConfigError> {
    match kind.as_deref().unwrap_or("sqlite") {
        "sqlite" => Ok(IndexBackend::Sqlite),
        "postgres" => {
            let pg = pg.unwrap_or_default();
            let secret = read_secret(pg.url_file, pg.url_env, "storage.postgres.url")?;
            let url = match (pg.url, secret) {
                (Some(u), None) | (None, Some(u)) => u,
                (Some(_), Some(_)) => {
                    return Err(ConfigError::Invalid(
                        "storage.postgres: set one of url, url_env, url_file".into(),
                    ))
                }
                (None, None) => {
                    return Err(ConfigError::Invalid(
                        "storage.index = \"postgres\" needs storage.postgres.url (or url_env, url_file)"
                            .into(),
                    ))
                }
            };
            let pool_size = pg.pool_size.unwrap_or(8);
            if pool_size == 0 {
                return Err(ConfigError::Invalid(
                    "storage.postgres.pool_size must be at least 1".into(),
                ));
            }
            Ok(IndexBackend::Postgres(PgSettings {
                url,
                pool_size,
                acquire_timeout: pg.acquire_timeout.unwrap_or(Duration::from_secs(30)),
                ca_file: pg.ca_file,
            }))
        }
        other => Err(ConfigError::Invalid(format!(
            "storage.index must be \"sqlite\" or \"postgres\", not {:?}",
            other.chars().take(40).collect::<String>()
        ))),
    }
}
