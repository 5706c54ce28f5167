//! Digests the request path touched lately, with when: a blob when serving it starts, and a
//! manifest together with everything it references (child manifests, config, layers) when it
//! is served or recorded. GC skips what was touched within its grace period, so a client that
//! has just been handed a manifest finds the blobs it names, even those of an archived image.
//!
//! The map sits behind one mutex that GC also holds around its last check and the unlink of a
//! blob ([`Touched::lock`]): a touch either lands before that check (and the blob stays) or
//! after the unlink (and the request finds the blob missing and fills it again).

use crate::oci::manifest;
use crate::oci::Digest;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Entries are pruned when the map grows past this many (and past twice the last survivors).
const PRUNE_FLOOR: usize = 4096;
/// How long a touch is remembered until the lifecycle sets its grace period.
const DEFAULT_HORIZON: Duration = Duration::from_secs(3600);

struct Inner {
    at: HashMap<Digest, i64>,
    horizon_ms: i64,
    prune_at: usize,
    // While GC runs: touches from this time on are never pruned, however long the sweep takes.
    held_since_ms: Option<i64>,
}

/// Manifests whose references are kept parsed, so serving one again costs no JSON parse.
const REFS_CACHED: u64 = 50_000;

/// Recently served or referenced digests.
pub struct Touched {
    inner: Mutex<Inner>,
    refs: moka::sync::Cache<Digest, Arc<[Digest]>>,
}

impl Default for Touched {
    fn default() -> Self {
        Touched {
            inner: Mutex::new(Inner {
                at: HashMap::new(),
                horizon_ms: DEFAULT_HORIZON.as_millis() as i64,
                prune_at: PRUNE_FLOOR,
                held_since_ms: None,
            }),
            refs: moka::sync::Cache::new(REFS_CACHED),
        }
    }
}

/// Keeps touches from a time on while it lives (see [`Touched::hold`]).
pub struct Hold<'a>(&'a Touched);

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.0.lock().0.held_since_ms = None;
    }
}

/// The tracker held (by GC, around the check and unlink of one blob).
pub struct TouchedGuard<'a>(MutexGuard<'a, Inner>);

impl TouchedGuard<'_> {
    /// Whether `digest` was touched at or after `since_ms`.
    pub fn since(&self, digest: &Digest, since_ms: i64) -> bool {
        self.0.at.get(digest).is_some_and(|&t| t >= since_ms)
    }
}

impl Touched {
    /// Remembers touches for at least `horizon` (the GC grace period; a minute at least).
    pub fn set_horizon(&self, horizon: Duration) {
        self.lock().0.horizon_ms = horizon.max(Duration::from_secs(60)).as_millis() as i64;
    }

    /// Keeps every touch at or after `since_ms` until the returned hold is dropped (GC holds
    /// its cutoff for the whole run).
    pub fn hold(&self, since_ms: i64) -> Hold<'_> {
        self.lock().0.held_since_ms = Some(since_ms);
        Hold(self)
    }

    /// Takes the tracker's lock; touches wait until it is dropped.
    pub fn lock(&self) -> TouchedGuard<'_> {
        TouchedGuard(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Notes `digests` as touched now.
    pub fn touch<'a>(&self, digests: impl IntoIterator<Item = &'a Digest>) {
        let now = crate::now_ms();
        let mut g = self.lock();
        let inner = &mut *g.0;
        for d in digests {
            match inner.at.get_mut(d) {
                Some(t) => *t = now,
                None => {
                    inner.at.insert(d.clone(), now);
                }
            }
        }
        if inner.at.len() > inner.prune_at {
            let mut cutoff = now - inner.horizon_ms;
            if let Some(held) = inner.held_since_ms {
                cutoff = cutoff.min(held);
            }
            inner.at.retain(|_, t| *t >= cutoff);
            inner.prune_at = (inner.at.len() * 2).max(PRUNE_FLOOR);
        }
    }

    /// Notes a manifest and every digest it references as touched now.
    pub fn touch_manifest(&self, digest: &Digest, media_type: &str, bytes: &[u8]) {
        let refs = self.refs.get_with_by_ref(digest, || {
            manifest::references(media_type, bytes)
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.digest)
                .collect()
        });
        self.touch(std::iter::once(digest).chain(refs.iter()));
    }

    /// Every digest touched at or after `since_ms`.
    pub fn since(&self, since_ms: i64) -> HashSet<Digest> {
        let g = self.lock();
        g.0.at
            .iter()
            .filter(|(_, &t)| t >= since_ms)
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// When `digest` was last touched, if it is still remembered.
    pub fn last(&self, digest: &Digest) -> Option<i64> {
        self.lock().0.at.get(digest).copied()
    }

    /// Digests remembered now.
    pub fn len(&self) -> usize {
        self.lock().0.at.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touches_are_seen_and_old_ones_pruned() {
        let t = Touched::default();
        let a = Digest::sha256_of(b"a");
        let before = crate::now_ms();
        t.touch([&a]);
        assert!(t.lock().since(&a, before));
        assert!(!t.lock().since(&a, crate::now_ms() + 1));
        assert!(!t.lock().since(&Digest::sha256_of(b"b"), 0));

        // Past the prune threshold, entries older than the horizon go; recent ones stay.
        {
            let mut g = t.lock();
            g.0.at
                .insert(Digest::sha256_of(b"old"), before - 2 * 3_600_000);
        }
        let many: Vec<Digest> = (0..PRUNE_FLOOR as u32)
            .map(|i| Digest::sha256_of(&i.to_le_bytes()))
            .collect();
        t.touch(&many);
        assert_eq!(t.len(), PRUNE_FLOOR + 1, "a and the many stay, old goes");
        assert!(t.last(&Digest::sha256_of(b"old")).is_none());
        assert!(t.last(&a).is_some());

        // A hold keeps what a horizon alone would prune.
        let _h = t.hold(before - 3 * 3_600_000);
        t.lock().0.prune_at = 0;
        t.lock()
            .0
            .at
            .insert(Digest::sha256_of(b"held"), before - 2 * 3_600_000);
        t.touch([&a]);
        assert!(t.last(&Digest::sha256_of(b"held")).is_some());
    }

    #[test]
    fn a_manifest_touches_what_it_references() {
        let t = Touched::default();
        let (cfg, layer) = (Digest::sha256_of(b"c"), Digest::sha256_of(b"l"));
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{m}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{cfg}","size":1}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":1}}]}}"#,
            m = manifest::OCI_MANIFEST
        );
        let d = Digest::sha256_of(body.as_bytes());
        t.touch_manifest(&d, manifest::OCI_MANIFEST, body.as_bytes());
        for x in [&d, &cfg, &layer] {
            assert!(t.last(x).is_some(), "{x} touched");
        }
    }
}
