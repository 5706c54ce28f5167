//! A small blocking connection pool: at most `max` connections, opened on demand, handed back on
//! drop, dropped instead when the server closed them (so a restarted PostgreSQL is reconnected to
//! on the next operation). Waiters block on a condition variable with a deadline.
//!
//! [`Pool::run`] reruns an operation once on a new connection when its pooled one turns out to
//! be dead (PostgreSQL restarted while it sat idle), so a restart costs no failed requests.

use super::PgError;
use postgres::Client;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

/// How long the liveness check of a reused connection may take.
const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections idle and how many are open (idle or lent).
struct State {
    idle: Vec<Client>,
    open: usize,
}

/// The pool.
pub(crate) struct Pool {
    config: postgres::Config,
    tls: MakeRustlsConnect,
    max: usize,
    timeout: Duration,
    state: Mutex<State>,
    freed: Condvar,
}

/// A lent connection; returned to the pool when dropped.
pub(crate) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    /// Opened for this loan (not taken from the idle list).
    fresh: bool,
}

/// When [`Pool::run`] may run an operation a second time after its connection was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rerun {
    /// Running it twice leaves what running it once does: reads, upserts, deletes by key.
    Always,
    /// Not idempotent (counters, appended rows): only when the first run surely did not commit.
    IfNotRun,
}

/// Whether `e` is the connection failing (closed, reset, the server going away) rather than
/// the statement.
pub(crate) fn connection_lost(e: &PgError) -> bool {
    let PgError::Db(e) = e else {
        return false;
    };
    if e.is_closed() || shutdown_notice_db(e) {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        return db.code() == &postgres::error::SqlState::CRASH_SHUTDOWN;
    }
    std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
}

/// Whether `e` is the server's notice that it terminated this backend for a shutdown.
fn shutdown_notice(e: &PgError) -> bool {
    matches!(e, PgError::Db(e) if shutdown_notice_db(e))
}

fn shutdown_notice_db(e: &postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| db.code() == &postgres::error::SqlState::ADMIN_SHUTDOWN)
}

impl Pool {
    /// A pool of at most `max` connections made from `config`.
    pub(crate) fn new(
        mut config: postgres::Config,
        tls: MakeRustlsConnect,
        max: usize,
        timeout: Duration,
    ) -> Self {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("breakwater");
        }
        Pool {
            config,
            tls,
            max,
            timeout,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// Runs `f` on a connection; when it fails because the connection was lost (not because of
    /// the SQL) and `rerun` allows, drops every idle connection (opened to the same server, they
    /// are as dead) and runs `f` once more on a new one.
    ///
    /// Whether a rerun is safe depends on whether the first run may have committed, and a lost
    /// connection does not say: the client writes the statement before it notices the server
    /// is gone, and a server may also commit and die before answering. So [`Rerun::Always`]
    /// (reads, and writes that leave the same rows when applied twice: upserts, deletes by key,
    /// leases keyed by owner) reruns on any connection loss, while [`Rerun::IfNotRun`] first
    /// checks a reused connection with an empty query (a failure there is certain: nothing was
    /// sent) and afterwards reruns only on the server's shutdown notice (57P01: a backend told
    /// to terminate rolls back the transaction in progress; a commit in progress finishes and
    /// is answered first).
    pub(crate) fn run<T>(
        &self,
        rerun: Rerun,
        mut f: impl FnMut(&mut Client) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        let mut conn = self.get()?;
        if rerun == Rerun::IfNotRun && !conn.fresh && conn.is_valid(PING_TIMEOUT).is_err() {
            drop(conn);
            self.drop_idle();
            conn = self.get()?;
        }
        let e = match f(&mut conn) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let allowed = match rerun {
            Rerun::Always => connection_lost(&e),
            Rerun::IfNotRun => shutdown_notice(&e),
        };
        // A connection opened just now failing is the server going away, not a stale pool.
        if !allowed || conn.fresh {
            return Err(e);
        }
        drop(conn);
        self.drop_idle();
        tracing::info!("index connection lost ({e}); retrying on a new connection");
        let mut conn = self.get()?;
        f(&mut conn)
    }

    /// Closes every idle connection.
    fn drop_idle(&self) {
        let stale = std::mem::take(&mut self.lock().idle);
        self.forget(stale.len());
    }

    /// Accounts for `n` connections closed outside [`Conn`]'s drop.
    fn forget(&self, n: usize) {
        if n > 0 {
            self.lock().open -= n;
            self.freed.notify_all();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, a new one if fewer than `max` are open, else the next one freed.
    pub(crate) fn get(&self) -> Result<Conn<'_>, PgError> {
        let deadline = Instant::now() + self.timeout;
        let mut st = self.lock();
        loop {
            if let Some(client) = st.idle.pop() {
                if client.is_closed() {
                    st.open -= 1;
                    continue;
                }
                return Ok(Conn {
                    pool: self,
                    client: Some(client),
                    fresh: false,
                });
            }
            if st.open < self.max {
                st.open += 1;
                drop(st);
                // Connect outside the lock: others may use idle connections meanwhile.
                return match self.config.connect(self.tls.clone()) {
                    Ok(client) => Ok(Conn {
                        pool: self,
                        client: Some(client),
                        fresh: true,
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e.into())
                    }
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(PgError::PoolTimeout(self.timeout));
            }
            st = self
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let mut st = self.pool.lock();
        if client.is_closed() {
            st.open -= 1;
        } else {
            st.idle.push(client);
        }
        drop(st);
        self.pool.freed.notify_one();
    }
}

impl Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}
