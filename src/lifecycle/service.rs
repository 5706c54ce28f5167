//! The running lifecycle: policies from the config file and the admin API, pins, the
//! describe-images view, and the serialisation of everything that removes images or bytes.
//! Every method is blocking (index and store work); async callers use `registry::blocking`.

use super::apply::Policies;
use super::catalog::Catalog;
use super::settings::{LifecycleSettings, Quota};
use super::views::{ChildView, GcReport, ImageView, PinView, PolicyView, RepositoryView};
use super::{LifecyclePolicy, RepoPattern};
use crate::cache::images::{LifecycleIndex, PinRow};
use crate::cache::index::IndexError;
use crate::cache::{Event, EventKind};
use crate::registry::CacheHandle;
use breakwater_oci::time::{SharedClock, SystemClock, Timestamp};
use breakwater_oci::Digest;
use std::sync::{Mutex, MutexGuard};

/// Why an operation failed; the admin API maps each kind to an HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The request is malformed or names something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// What it names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// It conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// Storage failed (500).
    #[error("{0}")]
    Internal(String),
}

impl OpError {
    /// The HTTP status for this error.
    pub fn status(&self) -> u16 {
        match self {
            OpError::BadRequest(_) => 400,
            OpError::NotFound(_) => 404,
            OpError::Conflict(_) => 409,
            OpError::Internal(_) => 500,
        }
    }
}

impl From<IndexError> for OpError {
    fn from(e: IndexError) -> Self {
        OpError::Internal(e.to_string())
    }
}

/// An image named by `<repository>@<digest>` or `<repository>:<tag>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `<upstream>/<name>`.
    pub repository: String,
    /// Digest, when given.
    pub digest: Option<String>,
    /// Tag, when given.
    pub tag: Option<String>,
}

impl ImageRef {
    /// Parses an image reference; `None` when it names no single image (e.g. a pattern, or a
    /// name without its upstream).
    pub fn parse(s: &str) -> Option<Self> {
        if let Some((repo, digest)) = s.rsplit_once('@') {
            if !repo.contains('/') {
                return None;
            }
            return Some(ImageRef {
                repository: repo.to_string(),
                digest: Some(digest.to_string()),
                tag: None,
            });
        }
        let (head, last) = s.rsplit_once('/')?;
        let (name, tag) = last.split_once(':')?;
        Some(ImageRef {
            repository: format!("{head}/{name}"),
            digest: None,
            tag: Some(tag.to_string()),
        })
    }
}

#[derive(Default)]
struct Status {
    last_gc: Option<GcReport>,
    last_apply_ms: Option<i64>,
}

/// Lifecycle policies, pins, quota and GC over one cache.
pub struct Lifecycle {
    /// The parts of the live cache lifecycle work maintains.
    pub cache: CacheHandle,
    /// Intervals, grace period and the config file's policies.
    pub settings: LifecycleSettings,
    /// The byte quota, if configured.
    pub quota: Option<Quota>,
    // Applying policies, evicting, deleting and GC change what is retained: one at a time, so a
    // GC mark never races an expiry decided on an older snapshot.
    write: Mutex<()>,
    status: Mutex<Status>,
    /// Where "now" comes from for evaluation, grace periods and the quota.
    clock: SharedClock,
}

impl Lifecycle {
    /// Lifecycle over the cache behind `cache`.
    pub fn new(cache: CacheHandle, settings: LifecycleSettings, quota: Option<Quota>) -> Self {
        cache.touched.set_horizon(settings.gc_grace);
        Lifecycle {
            cache,
            settings,
            quota,
            write: Mutex::new(()),
            status: Mutex::new(Status::default()),
            clock: SystemClock::shared(),
        }
    }

    /// The same lifecycle reading the time from `clock` (tests move it).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The time now, by this lifecycle's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The index's lifecycle operations.
    pub fn index(&self) -> &dyn LifecycleIndex {
        self.cache.index.lifecycle()
    }

    /// Takes the writer lock (blocking).
    pub(super) fn writer(&self) -> MutexGuard<'_, ()> {
        self.write.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes pull statistics still gathered in memory, so "last pulled" is current.
    pub fn flush_pulls(&self) {
        self.cache.flush_pulls();
    }

    /// A fresh snapshot of the index, grouped into images, with pins applied.
    pub fn catalog(&self) -> Result<Catalog, OpError> {
        let pins = self.index().pins()?;
        let mut c = Catalog::default();
        self.index().snapshot(&mut c)?;
        c.finish(&pins);
        Ok(c)
    }

    /// The policies in force: API-set ones over the config file's.
    pub fn policies(&self) -> Result<Policies, OpError> {
        Ok(Policies::resolve(&self.settings, &self.index().policies()?))
    }

    /// Records events (also logged); a failure to record is logged, never fatal.
    pub fn record(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        if let Err(e) = self.cache.index.record_events(events) {
            tracing::error!("could not record {} lifecycle events: {e}", events.len());
        }
    }

    pub(super) fn note_gc(&self, report: &GcReport) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_gc = Some(report.clone());
    }

    pub(super) fn note_apply(&self, at_ms: i64) {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_apply_ms = Some(at_ms);
    }

    /// The last GC report and policy application time since start-up.
    pub fn last_runs(&self) -> (Option<GcReport>, Option<i64>) {
        let s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        (s.last_gc.clone(), s.last_apply_ms)
    }

    /// The describe-images view of every image, or of the repositories `filter` matches
    /// (an exact `<upstream>/<name>` or a pattern).
    pub fn images(&self, filter: Option<&str>) -> Result<Vec<ImageView>, OpError> {
        let c = self.catalog()?;
        let pattern = filter.map(repo_filter).transpose()?;
        let mut out: Vec<ImageView> = (0..c.groups.len())
            .filter(|&g| {
                pattern
                    .as_ref()
                    .is_none_or(|p| p.matches(&c.repos[c.groups[g].repo].full))
            })
            .filter_map(|g| image_view(&c, g).ok())
            .collect();
        out.sort_by(|a, b| {
            (&a.repository, b.first_cached_ms, &a.digest).cmp(&(
                &b.repository,
                a.first_cached_ms,
                &b.digest,
            ))
        });
        Ok(out)
    }

    /// One image by reference.
    pub fn image(&self, reference: &str) -> Result<ImageView, OpError> {
        let c = self.catalog()?;
        let g = find_image(&c, reference)?;
        image_view(&c, g)
    }

    /// Every cached repository with its image count, stored bytes and policy.
    pub fn repositories(&self) -> Result<Vec<RepositoryView>, OpError> {
        let c = self.catalog()?;
        let policies = self.policies()?;
        let mut seen = vec![0u32; c.graph.len()];
        let mut out = Vec::new();
        for (i, repo) in c.repos.iter().enumerate() {
            let groups = &c.by_repo[i];
            if groups.is_empty() {
                continue;
            }
            let mut stored = 0u64;
            for &g in groups {
                let root = c.rows[c.groups[g].parent].node;
                c.graph.reach(
                    root,
                    super::graph::Keep::Full,
                    &mut seen,
                    i as u32 + 1,
                    |n| stored += c.graph.stored(n).unwrap_or(0),
                );
            }
            out.push(RepositoryView {
                repository: repo.full.clone(),
                upstream: repo.upstream.clone(),
                images: groups.len(),
                tags: groups.iter().map(|&g| c.groups[g].tags.len()).sum(),
                stored_bytes: stored,
                policy: policies.for_repo(&repo.full).map(|s| s.reference()),
            });
        }
        out.sort_by(|a, b| a.repository.cmp(&b.repository));
        Ok(out)
    }

    /// Every pin.
    pub fn pins(&self) -> Result<Vec<PinView>, OpError> {
        Ok(self.index().pins()?.into_iter().map(pin_view).collect())
    }

    /// Pins an image (a tag is resolved to its digest now) or a repository pattern.
    pub fn pin(&self, target: &str, note: Option<String>) -> Result<PinView, OpError> {
        // Without a '/', a target names no repository breakwater caches (those are
        // `<upstream>/<name>`): `nginx:latest` would be stored as a pattern matching nothing.
        if !target.contains('/') {
            return Err(OpError::BadRequest(format!(
                "{target:?} is not a pin target: use <upstream>/<repository>:<tag> or \
                 <upstream>/<repository>@<digest> (e.g. docker.io/library/nginx:latest), or a \
                 repository pattern containing '/' (e.g. docker.io/library/*)"
            )));
        }
        let c = self.catalog()?;
        let mut warning = None;
        let (repository, digest) = match ImageRef::parse(target) {
            Some(r) => {
                let g = find_image(&c, target)?;
                (r.repository, Some(image_digest(&c, g)?))
            }
            None => {
                let p = repo_filter(target)?;
                let matched = (0..c.repos.len())
                    .any(|i| !c.by_repo[i].is_empty() && p.matches(&c.repos[i].full));
                if !matched {
                    warning = Some(format!(
                        "no cached repository matches {target}; the pin protects repositories \
                         cached later under it (repositories are named <upstream>/<name>)"
                    ));
                }
                (target.to_string(), None)
            }
        };
        let row = PinRow {
            target: match &digest {
                Some(d) => format!("{repository}@{d}"),
                None => repository.clone(),
            },
            repository,
            digest,
            created_ms: self.now().as_ms(),
            note,
        };
        self.index().put_pin(&row)?;
        let mut e = Event::new(
            EventKind::Pin,
            format!("pinned {} through the admin API", row.target),
        );
        e.digest = row.digest.as_ref().map(Digest::to_string);
        e.detail = row.note.clone();
        self.record(&[e]);
        Ok(PinView {
            warning,
            ..pin_view(row)
        })
    }

    /// Removes a pin by its target.
    pub fn unpin(&self, target: &str) -> Result<(), OpError> {
        if !self.index().remove_pin(target)? {
            return Err(OpError::NotFound(format!(
                "no pin {target:?}; list pins to see their targets"
            )));
        }
        self.record(&[Event::new(
            EventKind::Unpin,
            format!("unpinned {target} through the admin API"),
        )]);
        Ok(())
    }

    /// Every configured policy, API-set ones first.
    pub fn policy_list(&self) -> Result<Vec<PolicyView>, OpError> {
        Ok(self.policies()?.views())
    }

    /// Sets the policy of a scope (`default` or a repository pattern) from ECR JSON.
    pub fn put_policy(&self, scope: &str, json: &str) -> Result<PolicyView, OpError> {
        check_scope(scope)?;
        let policy =
            LifecyclePolicy::from_json(json).map_err(|e| OpError::BadRequest(e.to_string()))?;
        let now = self.now().as_ms();
        self.index().put_policy(scope, &policy.to_json(), now)?;
        let mut e = Event::new(
            EventKind::PolicyPut,
            format!("lifecycle policy for {scope} set through the admin API"),
        );
        e.detail = Some(policy.to_json());
        self.record(&[e]);
        Ok(PolicyView {
            scope: scope.to_string(),
            source: "api".into(),
            effective: true,
            updated_ms: Some(now),
            policy: serde_json::from_str(&policy.to_json()).unwrap_or_default(),
        })
    }

    /// Removes the API-set policy of a scope.
    pub fn delete_policy(&self, scope: &str) -> Result<(), OpError> {
        check_scope(scope)?;
        if !self.index().remove_policy(scope)? {
            let from_file = self.policies()?.views().iter().any(|p| p.scope == scope);
            return Err(if from_file {
                OpError::Conflict(format!(
                    "the policy for {scope} comes from the config file; change it there"
                ))
            } else {
                OpError::NotFound(format!("no lifecycle policy for {scope}"))
            });
        }
        self.record(&[Event::new(
            EventKind::PolicyDelete,
            format!("lifecycle policy for {scope} removed through the admin API"),
        )]);
        Ok(())
    }
}

/// A repository filter: an exact name or a pattern.
pub fn repo_filter(s: &str) -> Result<RepoPattern, OpError> {
    RepoPattern::new(s).map_err(|e| OpError::BadRequest(format!("repository pattern {s:?} {e}")))
}

fn check_scope(scope: &str) -> Result<(), OpError> {
    if scope != "default" {
        repo_filter(scope)?;
    }
    Ok(())
}

/// The group a reference names.
pub fn find_image(c: &Catalog, reference: &str) -> Result<usize, OpError> {
    let r = ImageRef::parse(reference).ok_or_else(|| {
        OpError::BadRequest(format!(
            "{reference:?} names no image; use <upstream>/<repository>@<digest> or <upstream>/<repository>:<tag>"
        ))
    })?;
    let repo = c
        .repo(&r.repository)
        .ok_or_else(|| OpError::NotFound(format!("no cached repository {}", r.repository)))?;
    let found = match (&r.digest, &r.tag) {
        (Some(d), _) => c.find(repo, d),
        (None, Some(t)) => c.by_repo[repo]
            .iter()
            .copied()
            .find(|&g| c.groups[g].tags.iter().any(|x| x == t)),
        (None, None) => None,
    };
    found.ok_or_else(|| OpError::NotFound(format!("no cached image {reference}")))
}

fn pin_view(p: PinRow) -> PinView {
    PinView {
        target: p.target,
        digest: p.digest,
        created_ms: p.created_ms,
        note: p.note,
        warning: None,
    }
}

/// The digest of a group, or the error naming the invalid text the index holds.
fn image_digest(c: &Catalog, g: usize) -> Result<Digest, OpError> {
    c.image_digest(g).ok_or_else(|| {
        OpError::Internal(format!(
            "the index records an invalid digest {:?}",
            c.digest(g)
        ))
    })
}

/// The describe-images view of a group; an error when the index holds its digest in a form
/// that is not a valid digest (nothing the request path records).
pub fn image_view(c: &Catalog, g: usize) -> Result<ImageView, OpError> {
    let grp = &c.groups[g];
    let parent = &c.rows[grp.parent];
    let repo = &c.repos[grp.repo];
    let media = |n| {
        c.manifests
            .get(&n)
            .map(|m| m.media_type.clone())
            .unwrap_or_default()
    };
    let digest = image_digest(c, g)?;
    Ok(ImageView {
        repository: repo.full.clone(),
        upstream: repo.upstream.clone(),
        digest,
        tags: grp.tags.clone(),
        media_type: media(parent.node),
        size_bytes: grp.size_bytes,
        stored_bytes: grp.stored_bytes,
        first_cached_ms: parent.first_cached_ms,
        last_pulled_ms: grp.last_pulled_ms,
        pull_count: parent.pull_count,
        storage_class: if parent.archived {
            "archive"
        } else {
            "standard"
        }
        .into(),
        transitioned_at_ms: parent.transitioned_at_ms,
        pinned: grp.pinned,
        children: grp
            .children
            .iter()
            .filter_map(|&r| {
                let row = &c.rows[r];
                Some(ChildView {
                    digest: Digest::parse(c.graph.name(row.node)).ok()?,
                    platform: c.platform(parent.node, row.node).map(str::to_string),
                    media_type: media(row.node),
                    pull_count: row.pull_count,
                    last_pulled_ms: row.last_pulled_ms,
                })
            })
            .collect(),
    })
}
