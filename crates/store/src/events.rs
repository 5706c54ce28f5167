//! The event stream: every expiry, eviction, GC deletion, supply-chain warning and scan change is
//! recorded as a structured event in the index (and logged), queryable through the admin API.

use super::index::{IndexError, SqliteIndex};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an event records. Its spelling ([`EventKind::as_str`]) is what the API, the index and
/// the log show, and what queries by kind name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A lifecycle rule expired an image.
    Expire,
    /// A lifecycle rule moved an image to archive.
    Transition,
    /// An image deleted through the admin API.
    Delete,
    /// The storage quota evicted an image.
    Evict,
    /// An archived image pulled again went back to standard storage.
    Restore,
    /// GC deleted an unreferenced blob.
    GcDelete,
    /// An image or repository pattern was pinned.
    Pin,
    /// A pin was removed.
    Unpin,
    /// A lifecycle policy was set through the admin API.
    PolicyPut,
    /// A lifecycle policy set through the admin API was removed.
    PolicyDelete,
    /// An upstream moved a tag configured as immutable.
    ImmutableTagMoved,
    /// A rematch found new findings in a cached image.
    ScanFindingNew,
    /// A rematch found findings resolved.
    ScanFindingResolved,
    /// A new CRITICAL finding in a cached image.
    CriticalFinding,
    /// The access rules refused a client (the audit record: who, what, from where).
    AccessDenied,
}

impl EventKind {
    /// Every kind, for parsing and listing.
    pub const ALL: [EventKind; 15] = [
        EventKind::Expire,
        EventKind::Transition,
        EventKind::Delete,
        EventKind::Evict,
        EventKind::Restore,
        EventKind::GcDelete,
        EventKind::Pin,
        EventKind::Unpin,
        EventKind::PolicyPut,
        EventKind::PolicyDelete,
        EventKind::ImmutableTagMoved,
        EventKind::ScanFindingNew,
        EventKind::ScanFindingResolved,
        EventKind::CriticalFinding,
        EventKind::AccessDenied,
    ];

    /// The kind as the API, the index and the log spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Expire => "expire",
            EventKind::Transition => "transition",
            EventKind::Delete => "delete",
            EventKind::Evict => "evict",
            EventKind::Restore => "restore",
            EventKind::GcDelete => "gc_delete",
            EventKind::Pin => "pin",
            EventKind::Unpin => "unpin",
            EventKind::PolicyPut => "policy_put",
            EventKind::PolicyDelete => "policy_delete",
            EventKind::ImmutableTagMoved => "immutable_tag_moved",
            EventKind::ScanFindingNew => "scan_finding_new",
            EventKind::ScanFindingResolved => "scan_finding_resolved",
            EventKind::CriticalFinding => "critical_finding",
            EventKind::AccessDenied => "access_denied",
        }
    }

    /// The log level: warnings for what an operator should look at (a supply-chain change, a
    /// critical vulnerability), info for the routine.
    pub fn level(self) -> tracing::Level {
        match self {
            EventKind::ImmutableTagMoved | EventKind::CriticalFinding | EventKind::AccessDenied => {
                tracing::Level::WARN
            }
            _ => tracing::Level::INFO,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no event kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.chars().take(100).collect()))
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Row id (0 before it is stored).
    #[serde(default)]
    pub id: i64,
    /// When it happened (unix ms).
    pub at_ms: i64,
    /// What happened.
    pub kind: EventKind,
    /// Why: the rule, policy or condition responsible.
    pub reason: String,
    /// Upstream name, when it concerns a repository.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Repository, when it concerns one.
    #[serde(default)]
    pub repository: Option<String>,
    /// Digest of the image or blob.
    #[serde(default)]
    pub digest: Option<String>,
    /// Tags involved.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Bytes freed or involved.
    #[serde(default)]
    pub bytes: u64,
    /// Extra detail as free text (e.g. the new digest of a moved tag).
    #[serde(default)]
    pub detail: Option<String>,
}

impl Event {
    /// A new event of `kind` for `reason`, now.
    pub fn new(kind: EventKind, reason: impl Into<String>) -> Self {
        Event {
            id: 0,
            at_ms: crate::now_ms(),
            kind,
            reason: reason.into(),
            upstream: None,
            repository: None,
            digest: None,
            tags: Vec::new(),
            bytes: 0,
            detail: None,
        }
    }

    /// Logs the event at a level fitting its kind.
    pub fn log(&self) {
        let line = serde_json::to_string(self).unwrap_or_default();
        // `tracing` macros need the level as a constant.
        match self.kind.level() {
            tracing::Level::WARN => tracing::warn!(target: "breakwater::events", "{line}"),
            _ => tracing::info!(target: "breakwater::events", "{line}"),
        }
    }
}

/// Which events to list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventQuery {
    /// Only this kind, as [`EventKind::as_str`] spells it.
    pub kind: Option<String>,
    /// Only this repository (`name` as the upstream names it).
    pub repository: Option<String>,
    /// Only events about this upstream.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Only events at or after this time (unix ms).
    pub since_ms: Option<i64>,
    /// At most this many, newest first (default 100, max 10,000).
    pub limit: Option<usize>,
}

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    upstream TEXT,
    repository TEXT,
    digest TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    bytes INTEGER NOT NULL DEFAULT 0,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS events_at ON events (at_ms);
";

fn wrap(op: &'static str) -> impl FnOnce(rusqlite::Error) -> IndexError {
    move |source| IndexError::new(op, source)
}

impl SqliteIndex {
    /// Stores (and logs) events.
    pub fn insert_events(&self, events: &[Event]) -> Result<(), IndexError> {
        for e in events {
            e.log();
        }
        self.with_conn(|c| {
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare(
                    "INSERT INTO events (at_ms, kind, reason, upstream, repository, digest, tags, bytes, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?;
                for e in events {
                    st.execute(params![
                        e.at_ms,
                        e.kind.as_str(),
                        e.reason,
                        e.upstream,
                        e.repository,
                        e.digest,
                        serde_json::to_string(&e.tags).unwrap_or_else(|_| "[]".into()),
                        e.bytes as i64,
                        e.detail
                    ])?;
                }
            }
            tx.commit()
        })
        .map_err(wrap("record events"))
    }

    /// Lists events, newest first.
    pub fn query_events(&self, q: &EventQuery) -> Result<Vec<Event>, IndexError> {
        let limit = q.limit.unwrap_or(100).min(10_000) as i64;
        self.with_conn(|c| {
            let mut st = c.prepare(
                "SELECT id, at_ms, kind, reason, upstream, repository, digest, tags, bytes, detail FROM events
                 WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR repository = ?2) AND (?3 IS NULL OR at_ms >= ?3)
                   AND (?5 IS NULL OR upstream = ?5)
                 ORDER BY id DESC LIMIT ?4",
            )?;
            let params = params![q.kind, q.repository, q.since_ms, limit, q.upstream];
            let rows = st.query_map(params, |r| {
                let tags: String = r.get(7)?;
                let kind = r.get_ref(2)?.as_str()?;
                let kind = kind.parse().map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
                })?;
                Ok(Event {
                    id: r.get(0)?,
                    at_ms: r.get(1)?,
                    kind,
                    reason: r.get(3)?,
                    upstream: r.get(4)?,
                    repository: r.get(5)?,
                    digest: r.get(6)?,
                    tags: serde_json::from_str(&tags).unwrap_or_default(),
                    bytes: r.get::<_, i64>(8)? as u64,
                    detail: r.get(9)?,
                })
            })?;
            rows.collect::<rusqlite::Result<Vec<Event>>>()
        })
        .map_err(wrap("list events"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_newest_first() {
        crate::test_backends::each_backend(events_round_trip);
    }

    fn events_round_trip(backend: &str, ix: &dyn crate::Index) {
        eprintln!("backend: {backend}");
        let mut a = Event::new(EventKind::Expire, "rule 1");
        a.repository = Some("library/nginx".into());
        a.tags = vec!["v1".into()];
        a.bytes = 42;
        let mut b = Event::new(EventKind::GcDelete, "unreferenced");
        b.upstream = Some("corp".into());
        ix.record_events(&[a.clone(), b]).unwrap();
        let all = ix.events(&EventQuery::default()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].kind, EventKind::GcDelete);
        assert_eq!(all[0].kind.as_str(), "gc_delete");
        assert!(all[0].id > all[1].id);
        let only = ix
            .events(&EventQuery {
                kind: Some("expire".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].tags, vec!["v1".to_string()]);
        assert_eq!(only[0].bytes, 42);
        assert_eq!(only[0].repository.as_deref(), Some("library/nginx"));
        let q = |f: fn(&mut EventQuery)| {
            let mut q = EventQuery::default();
            f(&mut q);
            ix.events(&q).unwrap().len()
        };
        assert_eq!(q(|q| q.upstream = Some("corp".into())), 1);
        assert_eq!(q(|q| q.repository = Some("library/redis".into())), 0);
        assert_eq!(q(|q| q.since_ms = Some(i64::MAX)), 0);
        assert_eq!(q(|q| q.limit = Some(1)), 1);
    }

    #[test]
    fn kinds_keep_their_spelling_and_level() {
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), k);
        }
        assert_eq!(EventKind::ImmutableTagMoved.as_str(), "immutable_tag_moved");
        assert_eq!(EventKind::CriticalFinding.level(), tracing::Level::WARN);
        assert_eq!(EventKind::ImmutableTagMoved.level(), tracing::Level::WARN);
        assert_eq!(EventKind::ScanFindingNew.level(), tracing::Level::INFO);
        assert!("moved".parse::<EventKind>().is_err());
    }
}
