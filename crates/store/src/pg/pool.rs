//! A small blocking connection pool: at most `max` connections, opened on demand, handed back on
//! drop, dropped instead when the server closed them (so a restarted PostgreSQL is reconnected to
//! on the next operation). Waiters block on a condition variable with a deadline.

use super::PgError;
use postgres::Client;
use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

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
