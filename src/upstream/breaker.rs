//! A per-upstream circuit breaker. After repeated connection failures, timeouts or 5xx answers the
//! upstream is marked down for a backoff period (doubling up to a cap): requests fail at once, so
//! cached tags are served without waiting on a timeout each. When the period ends one probe is let
//! through; its success closes the breaker. A 429 opens it until `Retry-After` so we don't hammer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whether a request may go upstream now.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead (possibly as the probe after a backoff).
    Allowed,
    /// The upstream is marked down; the next probe is this far away.
    Open(Duration),
}

#[derive(Debug)]
struct State {
    failures: u32,
    open_until: Option<Instant>,
    backoff: Duration,
    probing: bool,
}

/// The breaker for one upstream.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    base: Duration,
    max: Duration,
}

impl Breaker {
    /// Opens after `threshold` consecutive failures, first for `base`, doubling up to `max`.
    pub fn new(threshold: u32, base: Duration, max: Duration) -> Self {
        Breaker {
            state: Mutex::new(State {
                failures: 0,
                open_until: None,
                backoff: base,
                probing: false,
            }),
            threshold: threshold.max(1),
            base,
            max,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to send a request now.
    pub fn admit(&self) -> Admission {
        let mut s = self.lock();
        let Some(until) = s.open_until else {
            return Admission::Allowed;
        };
        let now = Instant::now();
        if now < until {
            return Admission::Open(until - now);
        }
        if s.probing {
            // One probe at a time; the rest keep failing fast until it answers.
            return Admission::Open(Duration::ZERO);
        }
        s.probing = true;
        Admission::Allowed
    }

    /// The upstream answered normally.
    pub fn success(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.open_until = None;
        s.backoff = self.base;
        s.probing = false;
    }

    /// The upstream failed (connect error, timeout, 5xx). Returns true if this opened the breaker.
    pub fn failure(&self) -> bool {
        let mut s = self.lock();
        s.failures += 1;
        let was_probe = s.probing;
        s.probing = false;
        if was_probe || s.failures >= self.threshold {
            let backoff = if was_probe {
                (s.backoff * 2).min(self.max)
            } else {
                s.backoff
            };
            s.backoff = backoff;
            s.open_until = Some(Instant::now() + backoff);
            return true;
        }
        false
    }

    /// The upstream said 429: stay away for `retry_after`.
    pub fn rate_limited(&self, retry_after: Duration) {
        let mut s = self.lock();
        s.probing = false;
        s.open_until =
            Some(Instant::now() + retry_after.min(self.max.max(Duration::from_secs(60))));
    }

    /// True while requests are being refused.
    pub fn is_open(&self) -> bool {
        self.lock().open_until.is_some_and(|u| Instant::now() < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_probes_and_closes() {
        let b = Breaker::new(2, Duration::from_millis(40), Duration::from_millis(200));
        assert_eq!(b.admit(), Admission::Allowed);
        assert!(!b.failure());
        assert!(b.failure(), "second consecutive failure opens");
        assert!(matches!(b.admit(), Admission::Open(_)));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(b.admit(), Admission::Allowed, "one probe after the backoff");
        assert!(
            matches!(b.admit(), Admission::Open(_)),
            "only one probe at a time"
        );
        assert!(b.failure(), "failed probe reopens");
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            matches!(b.admit(), Admission::Open(_)),
            "backoff doubled to 80 ms"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.admit(), Admission::Allowed);
        b.success();
        assert!(!b.is_open());
        assert_eq!(b.admit(), Admission::Allowed);
        assert!(!b.failure(), "counting starts over after a success");
    }

    #[test]
    fn retry_after_keeps_it_open() {
        let b = Breaker::new(5, Duration::from_millis(10), Duration::from_secs(1));
        b.rate_limited(Duration::from_millis(60));
        assert!(b.is_open());
        std::thread::sleep(Duration::from_millis(70));
        assert_eq!(b.admit(), Admission::Allowed);
    }
}
