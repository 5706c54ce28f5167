//! Time as the cache records it: milliseconds since the Unix epoch ([`Timestamp`]), spans in
//! milliseconds ([`Millis`]), and an injectable [`Clock`] so services can be tested at any time.

use std::fmt;
use std::ops::{Add, Mul, Sub};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds in one day, the unit of lifecycle policies' `countUnit: days`.
pub const DAY_MS: i64 = 86_400_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A point in time: milliseconds since the Unix epoch (negative before it).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The time `ms` milliseconds after the epoch.
    pub const fn from_ms(ms: i64) -> Self {
        Timestamp(ms)
    }

    /// The time `secs` seconds after the epoch.
    pub const fn from_secs(secs: i64) -> Self {
        Timestamp(secs.saturating_mul(1000))
    }

    /// The system's time now.
    pub fn now() -> Self {
        Timestamp(now_ms())
    }

    /// Milliseconds since the epoch.
    pub const fn as_ms(self) -> i64 {
        self.0
    }

    /// This time truncated to its second (towards the past).
    pub const fn floor_secs(self) -> Self {
        Timestamp(self.0.div_euclid(1000) * 1000)
    }

    /// How long after `earlier` this is (negative when before it).
    pub fn since(self, earlier: Timestamp) -> Millis {
        Millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 to the second, UTC; times before the epoch show as the epoch.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.0.max(0) as u64);
        write!(f, "{}", humantime::format_rfc3339_seconds(t))
    }
}

impl Add<Millis> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Millis) -> Timestamp {
        Timestamp(self.0.saturating_add(d.0))
    }
}

impl Sub<Millis> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Millis) -> Timestamp {
        Timestamp(self.0.saturating_sub(d.0))
    }
}

/// A span of time in milliseconds (negative for "before").
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Millis(i64);

impl Millis {
    /// `ms` milliseconds.
    pub const fn from_ms(ms: i64) -> Self {
        Millis(ms)
    }

    /// `n` seconds.
    pub const fn secs(n: i64) -> Self {
        Millis(n.saturating_mul(1000))
    }

    /// `n` hours.
    pub const fn hours(n: i64) -> Self {
        Millis(n.saturating_mul(3_600_000))
    }

    /// `n` days of 86,400 seconds.
    pub const fn days(n: i64) -> Self {
        Millis(n.saturating_mul(DAY_MS))
    }

    /// The span of a [`std::time::Duration`] (saturating).
    pub fn from_duration(d: std::time::Duration) -> Self {
        Millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// The span in milliseconds.
    pub const fn as_ms(self) -> i64 {
        self.0
    }
}

impl Add for Millis {
    type Output = Millis;
    fn add(self, d: Millis) -> Millis {
        Millis(self.0.saturating_add(d.0))
    }
}

impl Sub for Millis {
    type Output = Millis;
    fn sub(self, d: Millis) -> Millis {
        Millis(self.0.saturating_sub(d.0))
    }
}

impl Mul<i64> for Millis {
    type Output = Millis;
    fn mul(self, n: i64) -> Millis {
        Millis(self.0.saturating_mul(n))
    }
}

impl Mul<Millis> for i64 {
    type Output = Millis;
    fn mul(self, d: Millis) -> Millis {
        d * self
    }
}

/// Where services read the time, so tests can move it.
pub trait Clock: Send + Sync {
    /// The time now.
    fn now(&self) -> Timestamp;
}

/// A shared clock, as services hold one.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

impl SystemClock {
    /// The system clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock)
    }
}

/// A clock that says what it is told: fixed until set or advanced (for tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock standing at `t`.
    pub fn new(t: Timestamp) -> Self {
        ManualClock(AtomicI64::new(t.as_ms()))
    }

    /// Moves the clock to `t`.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_ms(), Ordering::SeqCst);
    }

    /// Moves the clock on by `d`.
    pub fn advance(&self, d: Millis) {
        self.0.fetch_add(d.as_ms(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_display() {
        let t = Timestamp::from_secs(86_400);
        assert_eq!(t.as_ms(), DAY_MS);
        assert_eq!(t - Millis::days(1), Timestamp::EPOCH);
        assert_eq!((t + Millis::hours(2)).since(t), Millis::secs(7200));
        assert_eq!(t.to_string(), "1970-01-02T00:00:00Z");
        assert_eq!(
            Timestamp::from_ms(1_999).floor_secs(),
            Timestamp::from_secs(1)
        );
        assert_eq!(
            Timestamp::from_ms(-1).floor_secs(),
            Timestamp::from_secs(-1)
        );
        assert_eq!(3 * Millis::days(1) - Millis::hours(72), Millis::from_ms(0));
        assert_eq!(serde_json::to_string(&t).unwrap(), "86400000");
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_ms(5));
        assert_eq!(c.now(), Timestamp::from_ms(5));
        c.advance(Millis::days(2));
        assert_eq!(c.now().as_ms(), 5 + 2 * DAY_MS);
        c.set(Timestamp::EPOCH);
        let shared: SharedClock = Arc::new(c);
        assert_eq!(shared.now(), Timestamp::EPOCH);
    }
}
