//! The index on PostgreSQL, for several breakwater replicas sharing one cache (SQLite stays the
//! embedded single-node default). Same traits, same semantics: [`PgIndex`] implements
//! [`Index`](crate::Index), [`LifecycleIndex`](crate::images::LifecycleIndex),
//! [`ReferrersIndex`](crate::ReferrersIndex), the readiness reads and
//! [`ScanIndex`](crate::ScanIndex).
//!
//! The traits are synchronous and called on the blocking pool, so this uses the synchronous
//! `postgres` client over a small pool of connections, with TLS by the URL's `sslmode` and the
//! server's certificate always verified (`tls.rs`).

mod cluster;
mod index;
mod lifecycle;
mod pool;
mod scans;
mod schema;
#[cfg(any(test, feature = "test-postgres"))]
pub mod testing;
mod tls;

use crate::index::IndexError;
use pool::Pool;
use std::sync::Arc;
use std::time::Duration;

/// How to reach the PostgreSQL index.
#[derive(Clone)]
pub struct PgSettings {
    /// A libpq connection string: a URL (`postgres://user:pass@host:port/db`) or `key=value` pairs.
    pub url: String,
    /// Most connections this process opens.
    pub pool_size: usize,
    /// How long an operation waits for a free connection before it fails.
    pub acquire_timeout: Duration,
    /// Extra CA certificates (PEM) the server's certificate may chain to, besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for PgSettings {
    // The URL may hold a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &redact(&self.url))
            .field("pool_size", &self.pool_size)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Why a PostgreSQL index operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The server or the connection failed.
    #[error("{}", describe(.0))]
    Db(#[from] postgres::Error),
    /// Every pooled connection stayed busy.
    #[error("no free database connection within {0:?}")]
    PoolTimeout(Duration),
    /// A stored value is not what the index writes, or the schema is not one this version reads.
    #[error("{0}")]
    Data(String),
}

/// A server error with its SQLSTATE and message (the crate's own `Display` says only "db error").
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        // The crate's message alone hides the cause ("error performing TLS handshake"): add
        // the chain of sources (e.g. "invalid peer certificate: UnknownIssuer").
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let more = s.to_string();
                if !text.contains(&more) {
                    text = format!("{text}: {more}");
                }
                source = s.source();
            }
            text
        }
    }
}

/// The connection string with any password replaced by `***`, for messages and logs.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        // URL form: the password sits between the first ':' and the last '@' of the authority.
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if let Some(at) = authority.rfind('@') {
            let (userinfo, host) = authority.split_at(at);
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***{host}{tail}");
            }
        }
        // A password may also come as a query parameter.
        return redact_pairs(url, '&');
    }
    redact_pairs(url, ' ')
}

fn redact_pairs(s: &str, sep: char) -> String {
    s.split(sep)
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.trim_start_matches('?').ends_with("password") => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(&sep.to_string())
}

/// The PostgreSQL index.
pub struct PgIndex {
    pool: Arc<Pool>,
}

impl PgIndex {
    /// Connects, and applies the schema migrations this database lacks.
    pub fn open(settings: &PgSettings) -> Result<Self, IndexError> {
        let config: postgres::Config = settings.url.parse().map_err(|e: postgres::Error| {
            IndexError::new(
                "open",
                PgError::Data(format!(
                    "invalid connection string {}: {e}",
                    redact(&settings.url)
                )),
            )
        })?;
        let tls =
            tls::connector(settings.ca_file.as_deref()).map_err(|e| IndexError::new("open", e))?;
        let pool = Arc::new(Pool::new(
            config,
            tls,
            settings.pool_size.max(1),
            settings.acquire_timeout,
        ));
        let ix = PgIndex { pool };
        let applied = ix.db("migrate schema", |c| schema::migrate(c, crate::now_ms()))?;
        if !applied.is_empty() {
            tracing::info!(versions = ?applied, "applied index schema migrations");
        }
        Ok(ix)
    }

    /// Runs `f` on a pooled connection; its error is reported as operation `op`. `f` must be
    /// safe to run twice (a read, or a write that leaves the same rows when repeated): it is
    /// rerun once when its connection turns out dead (see [`Pool::run`]).
    pub(crate) fn db<T>(
        &self,
        op: &'static str,
        f: impl FnMut(&mut postgres::Client) -> Result<T, PgError>,
    ) -> Result<T, IndexError> {
        self.pool
            .run(pool::Rerun::Always, f)
            .map_err(|e| IndexError::new(op, e))
    }

    /// As [`Self::db`] for a write that must not be applied twice (a counter, appended rows):
    /// rerun only when the first run surely did not commit.
    pub(crate) fn db_once<T>(
        &self,
        op: &'static str,
        f: impl FnMut(&mut postgres::Client) -> Result<T, PgError>,
    ) -> Result<T, IndexError> {
        self.pool
            .run(pool::Rerun::IfNotRun, f)
            .map_err(|e| IndexError::new(op, e))
    }
}

/// A stored digest, parsed; a malformed one is a data error (the index never writes one).
pub(crate) fn digest(s: &str) -> Result<crate::oci::Digest, PgError> {
    crate::oci::Digest::parse(s).map_err(|e| PgError::Data(format!("stored digest {s:?}: {e}")))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cluster_tests;

#[cfg(test)]
mod reconnect_tests;
