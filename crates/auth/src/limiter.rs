//! Slows down password and token guessing per client: a few failures are free, then each
//! failure answer is delayed (exponentially, capped), and past a maximum the client is refused
//! outright (429) until a window passes. Time is passed in, so behaviour is deterministic.

use crate::rules::canonical_ip;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limiter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures within the window that cost nothing.
    pub free: u32,
    /// Failures within the window after which the client is refused.
    pub max: u32,
    /// How long failures are remembered, and how long a refusal lasts.
    pub window: Duration,
    /// Delay after the first failure beyond `free`; doubles with each further one.
    pub delay_base: Duration,
    /// Longest delay.
    pub delay_cap: Duration,
    /// Most clients tracked at once; the least recently failing is forgotten first.
    pub max_tracked: usize,
}

impl Default for LimiterConfig {
    fn default() -> Self {
        LimiterConfig {
            free: 5,
            max: 20,
            window: Duration::from_secs(300),
            delay_base: Duration::from_millis(100),
            delay_cap: Duration::from_secs(5),
            max_tracked: 10_000,
        }
    }
}

/// What to do with a client's request or failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Go ahead / answer at once.
    Allow,
    /// Wait this long before answering the failure.
    Delay(Duration),
    /// Refuse without checking credentials (HTTP 429 with `Retry-After`).
    Reject {
        /// Time until the client may try again.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    window_start: Instant,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// Per-client failure counts, safe to share between threads.
#[derive(Debug)]
pub struct FailureLimiter {
    config: LimiterConfig,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// The key a client is tracked under: IPv4 as is, IPv6 by its /64, since one host usually
/// controls a whole /64 and could otherwise rotate addresses to dodge the limit.
pub fn client_key(addr: IpAddr) -> IpAddr {
    match canonical_ip(addr) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

impl FailureLimiter {
    /// A limiter with `config`.
    pub fn new(config: LimiterConfig) -> Self {
        FailureLimiter {
            config,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &LimiterConfig {
        &self.config
    }

    /// Before checking credentials: `Reject` while the client is blocked, otherwise `Allow`.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Allowance {
        let entries = self.lock();
        match entries.get(&client_key(addr)).and_then(|e| e.blocked_until) {
            Some(until) if now < until => Allowance::Reject {
                retry_after: until - now,
            },
            _ => Allowance::Allow,
        }
    }

    /// Records a failed attempt and says how to answer it.
    pub fn record_failure(&self, addr: IpAddr, now: Instant) -> Allowance {
        let c = self.config;
        let key = client_key(addr);
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= c.max_tracked {
            evict(&mut entries, &c, now);
        }
        let fresh = Entry {
            failures: 0,
            window_start: now,
            last_failure: now,
            blocked_until: None,
        };
        let entry = entries.entry(key).or_insert(fresh);
        if let Some(until) = entry.blocked_until {
            if now < until {
                return Allowance::Reject {
                    retry_after: until - now,
                };
            }
            *entry = fresh;
        }
        if now.saturating_duration_since(entry.window_start) >= c.window {
            *entry = fresh;
        }
        entry.failures += 1;
        entry.last_failure = now;
        if entry.failures >= c.max {
            entry.blocked_until = Some(now + c.window);
            return Allowance::Reject {
                retry_after: c.window,
            };
        }
        match entry.failures.checked_sub(c.free + 1) {
            None => Allowance::Allow,
            Some(extra) => {
                let factor = 1u32.checked_shl(extra.min(31)).unwrap_or(u32::MAX);
                let delay = c.delay_base.saturating_mul(factor).min(c.delay_cap);
                Allowance::Delay(delay)
            }
        }
    }

    /// A successful authentication: the client's failures are forgotten.
    pub fn record_success(&self, addr: IpAddr) {
        self.lock().remove(&client_key(addr));
    }

    /// Number of clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent; keep going.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Makes room for one more client: drops everything stale, else the least recently failing.
/// Linear, but it only runs when the table is full, and each call is far cheaper than the
/// password check that caused it.
fn evict(entries: &mut HashMap<IpAddr, Entry>, c: &LimiterConfig, now: Instant) {
    entries.retain(|_, e| {
        let blocked = e.blocked_until.is_some_and(|u| now < u);
        blocked || now.saturating_duration_since(e.window_start) < c.window
    });
    if entries.len() >= c.max_tracked {
        if let Some(oldest) = entries
            .iter()
            .min_by_key(|(_, e)| e.last_failure)
            .map(|(k, _)| *k)
        {
            entries.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn progression_free_then_delay_then_reject() {
        let lim = FailureLimiter::new(LimiterConfig::default());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        let got: Vec<Allowance> = (0..20).map(|i| lim.record_failure(a, t0 + ms(i))).collect();
        assert!(got[..5].iter().all(|x| *x == Allowance::Allow));
        assert_eq!(got[5], Allowance::Delay(ms(100)));
        assert_eq!(got[6], Allowance::Delay(ms(200)));
        assert_eq!(got[7], Allowance::Delay(ms(400)));
        assert_eq!(got[10], Allowance::Delay(ms(3200)));
        assert_eq!(got[11], Allowance::Delay(ms(5000)));
        assert_eq!(got[18], Allowance::Delay(ms(5000)));
        assert_eq!(
            got[19],
            Allowance::Reject {
                retry_after: Duration::from_secs(300)
            }
        );
        let later = t0 + Duration::from_secs(100);
        assert!(
            matches!(lim.check(a, later), Allowance::Reject { retry_after } if retry_after < Duration::from_secs(201))
        );
        assert!(matches!(
            lim.record_failure(a, later),
            Allowance::Reject { .. }
        ));
        // Another client is unaffected.
        assert_eq!(lim.check(ip("192.0.2.2"), later), Allowance::Allow);
        // After the block the slate is clean.
        let after = t0 + Duration::from_secs(301);
        assert_eq!(lim.check(a, after), Allowance::Allow);
        assert_eq!(lim.record_failure(a, after), Allowance::Allow);
    }

    #[test]
    fn window_expiry_and_success_reset() {
        let lim = FailureLimiter::new(LimiterConfig::default());
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..6 {
            lim.record_failure(a, t0 + ms(i));
        }
        assert_eq!(
            lim.record_failure(a, t0 + ms(10)),
            Allowance::Delay(ms(200))
        );
        assert_eq!(
            lim.record_failure(a, t0 + Duration::from_secs(300)),
            Allowance::Allow
        );
        for i in 0..6 {
            lim.record_failure(a, t0 + Duration::from_secs(301) + ms(i));
        }
        lim.record_success(a);
        assert_eq!(lim.tracked(), 0);
        assert_eq!(
            lim.record_failure(a, t0 + Duration::from_secs(302)),
            Allowance::Allow
        );
    }

    #[test]
    fn ipv6_is_tracked_per_64_and_mapped_v4_as_v4() {
        let lim = FailureLimiter::new(LimiterConfig {
            free: 1,
            ..LimiterConfig::default()
        });
        let t0 = Instant::now();
        assert_eq!(
            lim.record_failure(ip("2001:db8:1:2::1"), t0),
            Allowance::Allow
        );
        assert!(matches!(
            lim.record_failure(ip("2001:db8:1:2::ffff"), t0),
            Allowance::Delay(_)
        ));
        assert_eq!(
            lim.record_failure(ip("2001:db8:1:3::1"), t0),
            Allowance::Allow
        );
        assert_eq!(
            lim.record_failure(ip("::ffff:192.0.2.1"), t0),
            Allowance::Allow
        );
        assert!(matches!(
            lim.record_failure(ip("192.0.2.1"), t0),
            Allowance::Delay(_)
        ));
    }

    #[test]
    fn memory_is_bounded_evicting_the_oldest() {
        let lim = FailureLimiter::new(LimiterConfig {
            max_tracked: 3,
            free: 0,
            ..LimiterConfig::default()
        });
        let t0 = Instant::now();
        for (i, a) in ["10.0.0.1", "10.0.0.2", "10.0.0.3"].iter().enumerate() {
            lim.record_failure(ip(a), t0 + ms(i as u64));
        }
        // 10.0.0.1 failed again most recently, so 10.0.0.2 is now the oldest.
        lim.record_failure(ip("10.0.0.1"), t0 + ms(10));
        lim.record_failure(ip("10.0.0.4"), t0 + ms(20));
        assert_eq!(lim.tracked(), 3);
        assert_eq!(
            lim.record_failure(ip("10.0.0.2"), t0 + ms(30)),
            Allowance::Delay(ms(100))
        );
        // 10.0.0.1 kept its two failures through both evictions.
        assert_eq!(
            lim.record_failure(ip("10.0.0.1"), t0 + ms(40)),
            Allowance::Delay(ms(400))
        );
        // Stale entries go first, however recent the others are.
        let later = t0 + Duration::from_secs(400);
        lim.record_failure(ip("10.0.0.9"), later);
        assert_eq!(lim.tracked(), 1);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let lim = FailureLimiter::new(LimiterConfig {
            max: u32::MAX,
            ..LimiterConfig::default()
        });
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..100 {
            lim.record_failure(a, t0 + ms(i));
        }
        assert_eq!(
            lim.record_failure(a, t0 + ms(200)),
            Allowance::Delay(ms(5000))
        );
    }
}
