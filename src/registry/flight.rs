//! Single-flight: concurrent requests for the same key share one detached computation, so N
//! clients asking for one stale tag cause one upstream request, and a client hanging up does
//! not cancel work others wait for.

use crate::oci::{ErrorCode, RegistryError};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

type Outcome<V> = Result<V, RegistryError>;
type Flight<V> = Shared<BoxFuture<'static, Outcome<V>>>;
/// Flights by key, each with the id of the run that owns the entry.
type Running<K, V> = Arc<Mutex<HashMap<K, (u64, Flight<V>)>>>;

/// Computations in flight, by key.
pub struct Flights<K, V> {
    running: Running<K, V>,
    next_id: std::sync::atomic::AtomicU64,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            running: Arc::new(Mutex::new(HashMap::new())),
            next_id: Default::default(),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Joins the flight for `key`, or starts `work` as a new detached one.
    pub async fn run<F>(&self, key: K, work: impl FnOnce() -> F) -> Outcome<V>
    where
        F: Future<Output = Outcome<V>> + Send + 'static,
    {
        let flight = {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, f)) = running.get(&key) {
                f.clone()
            } else {
                let id = self
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (tx, rx) = tokio::sync::oneshot::channel();
                let fut = work();
                let map = self.running.clone();
                let k = key.clone();
                tokio::spawn(async move {
                    let v = fut.await;
                    // Remove our own entry before publishing, so a later request starts afresh.
                    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
                    if m.get(&k).is_some_and(|(i, _)| *i == id) {
                        m.remove(&k);
                    }
                    drop(m);
                    let _ = tx.send(v);
                });
                let shared = async move {
                    rx.await.unwrap_or_else(|_| {
                        Err(RegistryError::new(
                            ErrorCode::Unavailable,
                            "internal error: an upstream operation was aborted",
                        ))
                    })
                }
                .boxed()
                .shared();
                running.insert(key, (id, shared.clone()));
                shared
            }
        };
        flight.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<Flights<&'static str, usize>> = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut handles = Vec::new();
        for _ in 0..16 {
            let f = flights.clone();
            let r = runs.clone();
            handles.push(tokio::spawn(async move {
                f.run("k", || async move {
                    r.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    Ok(7)
                })
                .await
            }));
        }
        for h in handles {
            assert_eq!(h.await.unwrap().unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Once finished, the next call runs again.
        let r = runs.clone();
        flights
            .run("k", || async move {
                r.fetch_add(1, Ordering::SeqCst);
                Ok(1)
            })
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
