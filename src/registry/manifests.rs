//! Manifests: exact upstream bytes stored by digest, tags kept fresh by TTL with HEAD-only
//! revalidation, and the cached answer served when upstream is down (stale-if-error).

use super::flight::Flights;
use super::links::Content;
use super::{blocking, fill_denied, internal, upstream_error, CacheStatus, Registry, Target};
use crate::cache::store::{put_bytes, read_bytes};
use crate::cache::Event;
use crate::cache::{ManifestRecord, TagRecord};
use crate::config::TagRules;
use crate::oci::manifest::{self, Accept};
use crate::oci::{Digest, ErrorCode, Reference, RegistryError, Tag};
use bytes::Bytes;
use std::sync::Arc;

mod cached;
mod shared_tag;
mod tag_key;

pub use cached::{CachedManifest, ManifestHeaders};

/// A manifest answer and how it was obtained.
pub struct ManifestAnswer {
    /// The manifest.
    pub manifest: Arc<CachedManifest>,
    /// Hit, miss, revalidated or stale.
    pub status: CacheStatus,
}

use tag_key::TagKey;
pub(super) type Resolved = (Arc<CachedManifest>, CacheStatus);

/// In-memory manifest and tag caches in front of the index, plus the in-flight upstream work.
pub struct ManifestCache {
    by_digest: moka::sync::Cache<Digest, Arc<CachedManifest>>,
    tags: moka::sync::Cache<TagKey, TagRecord>,
    flights: Flights<TagKey, Resolved>,
    checks: Flights<TagKey, ()>,
}

impl ManifestCache {
    /// Caches sized for a busy office: 64 MiB of manifests, 100k tags.
    pub fn new() -> Self {
        ManifestCache {
            by_digest: moka::sync::Cache::builder()
                .weigher(|_, m: &Arc<CachedManifest>| m.bytes.len().min(u32::MAX as usize) as u32)
                .max_capacity(64 * 1024 * 1024)
                .build(),
            tags: moka::sync::Cache::new(100_000),
            flights: Flights::default(),
            checks: Flights::default(),
        }
    }
}

impl Default for ManifestCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ManifestCache {
    /// Drops manifests and tags the lifecycle removed from the index, so they are answered
    /// from the index (or upstream) again instead of from memory.
    pub(super) fn forget(&self, digests: &[Digest], tags: &[(String, String, String)]) {
        for d in digests {
            self.by_digest.invalidate(d);
        }
        for (upstream, repo, tag) in tags {
            self.tags.invalidate(&TagKey::new(upstream, repo, tag));
        }
    }
}

impl Registry {
    /// Answers a manifest request by tag or digest, for a client with `accept`.
    pub async fn manifest(
        self: &Arc<Self>,
        t: &Target,
        reference: &Reference,
        accept: &Accept,
    ) -> Result<ManifestAnswer, RegistryError> {
        self.ensure_accepted(t).await?;
        let (manifest, status) = match reference {
            Reference::Digest(d) => self.manifest_by_digest(t, d).await?,
            Reference::Tag(tag) => self.manifest_by_tag(t, tag).await?,
        };
        // The client fetches what it names next: GC must not take those from under it.
        self.touched
            .touch_manifest(&manifest.digest, &manifest.media_type, &manifest.bytes);
        // A digest names exact content, so it is served whatever the Accept; a tag is answered
        // only in a form the client said it can read, as distribution does.
        if matches!(reference, Reference::Tag(_)) && !accept.allows(&manifest.media_type) {
            return Err(RegistryError::new(
                ErrorCode::ManifestUnknown,
                format!(
                    "{reference} of {} is a {}, which the request's Accept header does not include",
                    t.repo, manifest.media_type
                ),
            ));
        }
        Ok(ManifestAnswer { manifest, status })
    }

    pub(super) async fn manifest_by_digest(
        self: &Arc<Self>,
        t: &Target,
        d: &Digest,
    ) -> Result<Resolved, RegistryError> {
        if let Some(m) = self.local_manifest(d).await? {
            self.ensure_linked(t, d, Content::Manifest).await?;
            return Ok((m, CacheStatus::Hit));
        }
        if !t.may_fill {
            return Err(fill_denied(t, format_args!("manifest {d}")));
        }
        let key = TagKey::new(&t.upstream.name, t.repo.as_str(), &d.to_string());
        let this = self.clone();
        let (t2, d2) = (t.clone(), d.clone());
        self.manifests
            .flights
            .run(key, move || async move {
                let m = this
                    .fetch_manifest(&t2, &Reference::Digest(d2), None)
                    .await?;
                Ok((m, CacheStatus::Miss))
            })
            .await
    }

    async fn manifest_by_tag(
        self: &Arc<Self>,
        t: &Target,
        tag: &Tag,
    ) -> Result<Resolved, RegistryError> {
        let rules = t.upstream.settings.tag_rules(t.repo.as_str(), tag.as_str());
        let ttl_ms = rules.ttl.as_millis() as i64;
        let now = crate::now_ms();
        // The hit path: a tag confirmed within its TTL whose manifest is in memory, found without
        // building the owned key. Anything else takes the full path below.
        let (upstream, repo) = (t.upstream.name.as_str(), t.repo.as_str());
        if let Some(rec) =
            TagKey::with(upstream, repo, tag.as_str(), |k| self.manifests.tags.get(k))
        {
            if now - rec.confirmed_at_ms < ttl_ms {
                if let Some(m) = self.manifests.by_digest.get(&rec.digest) {
                    return Ok((m, CacheStatus::Hit));
                }
            }
        }
        let key = TagKey::new(upstream, repo, tag.as_str());
        let cached = match self.manifests.tags.get(&key) {
            // In a cluster another replica may have revalidated the tag since this one cached
            // it: the shared index's record decides, so upstream is asked once per TTL in all.
            Some(r) if self.cluster.is_some() && now - r.confirmed_at_ms >= ttl_ms => {
                let (index, k, tg) = (self.index.clone(), t.key(), tag.to_string());
                match blocking(move || index.tag(&k, &tg))
                    .await?
                    .map_err(internal)?
                {
                    Some(shared) if shared.confirmed_at_ms > r.confirmed_at_ms => {
                        self.manifests.tags.insert(key.clone(), shared.clone());
                        Some(shared)
                    }
                    _ => Some(r),
                }
            }
            Some(r) => Some(r),
            None => {
                let (index, k, tg) = (self.index.clone(), t.key(), tag.to_string());
                let r = blocking(move || index.tag(&k, &tg))
                    .await?
                    .map_err(internal)?;
                if let Some(r) = &r {
                    self.manifests.tags.insert(key.clone(), r.clone());
                }
                r
            }
        };
        if let Some(rec) = &cached {
            let age = now - rec.confirmed_at_ms;
            if age < ttl_ms || rules.immutable {
                if let Some(m) = self.local_manifest(&rec.digest).await? {
                    if age >= ttl_ms {
                        // Immutable: never revalidated on the request path, only checked aside.
                        self.check_immutable(t, tag, rec, key);
                    }
                    return Ok((m, CacheStatus::Hit));
                }
            } else if rules.stale_while_revalidate && within_max_stale(&rules, age) {
                if let Some(m) = self.local_manifest(&rec.digest).await? {
                    let this = self.clone();
                    let (t2, tag2, rec2) = (t.clone(), tag.clone(), rec.clone());
                    tokio::spawn(async move {
                        let _ = this.revalidate(&t2, &tag2, Some(rec2), key).await;
                    });
                    return Ok((m, CacheStatus::Revalidating));
                }
            }
        }
        if !t.may_fill {
            // Only what is cached: an expired tag is served as it is, a missing one refused.
            if let Some(rec) = &cached {
                if let Some(m) = self.local_manifest(&rec.digest).await? {
                    return Ok((m, CacheStatus::Hit));
                }
            }
            return Err(fill_denied(t, format_args!("tag {tag}")));
        }
        let grace = t.upstream.settings.revalidate_grace;
        match &cached {
            // Holding a servable answer: wait for upstream only briefly. The revalidation keeps
            // running detached, so a slow upstream still gets its answer recorded.
            Some(rec) if within_max_stale(&rules, now - rec.confirmed_at_ms) => {
                let flight = self.revalidate(t, tag, cached.clone(), key);
                match tokio::time::timeout(grace, flight).await {
                    Ok(r) => r,
                    Err(_) => {
                        let why = format!("no answer from upstream within {grace:?}");
                        self.serve_stale(t, rec, &why).await
                    }
                }
            }
            _ => self.revalidate(t, tag, cached, key).await,
        }
    }

    /// Joins or starts the single revalidation (or first fetch) of a tag.
    async fn revalidate(
        self: &Arc<Self>,
        t: &Target,
        tag: &Tag,
        cached: Option<TagRecord>,
        key: TagKey,
    ) -> Result<Resolved, RegistryError> {
        let this = self.clone();
        let (t2, tag2, k2) = (t.clone(), tag.clone(), key.clone());
        self.manifests
            .flights
            .run(key, move || async move {
                this.refresh_tag(&t2, &tag2, cached, k2).await
            })
            .await
    }

    /// Checks an immutable tag upstream in the background; a move is a supply-chain warning:
    /// recorded as an event and a metric, while the cached digest keeps being served.
    fn check_immutable(self: &Arc<Self>, t: &Target, tag: &Tag, rec: &TagRecord, key: TagKey) {
        let this = self.clone();
        let (t, tag, rec) = (t.clone(), tag.clone(), rec.clone());
        let k2 = key.clone();
        tokio::spawn(async move {
            let registry = this.clone();
            let _ = this
                .manifests
                .checks
                .run(key, move || async move {
                    let reference = Reference::Tag(tag.clone());
                    if let Ok(head) = t.upstream.manifest(&t.repo, &reference, true, t.client_credentials()).await {
                        if let Some(d) = head.digest.filter(|d| d != &rec.digest) {
                            registry
                                .metrics
                                .immutable_tag_moved
                                .with_label_values(&[&t.upstream.name])
                                .inc();
                            let mut e = Event::new(
                                crate::cache::EventKind::ImmutableTagMoved,
                                "upstream moved a tag declared immutable; the cached digest is still served",
                            );
                            e.upstream = Some(t.upstream.name.clone());
                            e.repository = Some(t.repo.to_string());
                            e.digest = Some(rec.digest.to_string());
                            e.tags = vec![tag.to_string()];
                            e.detail = Some(format!("upstream now points {tag} at {d}"));
                            let index = registry.index.clone();
                            let _ = blocking(move || index.record_events(&[e])).await;
                        }
                    }
                    // Checked (whatever the outcome): next check after another TTL.
                    let now = crate::now_ms();
                    let (index, k, tg) = (registry.index.clone(), t.key(), tag.to_string());
                    let _ = blocking(move || index.confirm_tag(&k, &tg, now)).await;
                    registry.manifests.tags.insert(
                        k2,
                        TagRecord {
                            digest: rec.digest.clone(),
                            confirmed_at_ms: now,
                        },
                    );
                    Ok(())
                })
                .await;
        });
    }

    /// Revalidates (HEAD) or fetches a tag; serves the cached answer when upstream is down.
    async fn refresh_tag(
        self: &Arc<Self>,
        t: &Target,
        tag: &Tag,
        cached: Option<TagRecord>,
        key: TagKey,
    ) -> Result<Resolved, RegistryError> {
        let reference = Reference::Tag(tag.clone());
        let Some(rec) = cached else {
            let m = self.fetch_manifest(t, &reference, Some(tag)).await?;
            return Ok((m, CacheStatus::Miss));
        };
        // Held until this function returns, after the record is written.
        let _lease = match self.shared_revalidation(t, tag, &rec, &key).await? {
            shared_tag::SharedTag::Answered(r) => return Ok(r),
            shared_tag::SharedTag::AskUpstream(lease) => lease,
        };
        match t
            .upstream
            .manifest(&t.repo, &reference, true, t.client_credentials())
            .await
        {
            Ok(head) if head.digest.as_ref() == Some(&rec.digest) => {
                let now = crate::now_ms();
                let (index, k, tg) = (self.index.clone(), t.key(), tag.to_string());
                blocking(move || index.confirm_tag(&k, &tg, now))
                    .await?
                    .map_err(internal)?;
                self.manifests.tags.insert(
                    key,
                    TagRecord {
                        digest: rec.digest.clone(),
                        confirmed_at_ms: now,
                    },
                );
                match self.local_manifest(&rec.digest).await? {
                    Some(m) => Ok((m, CacheStatus::Revalidated)),
                    None => Ok((
                        self.fetch_manifest(t, &reference, Some(tag)).await?,
                        CacheStatus::Miss,
                    )),
                }
            }
            Ok(head) => {
                // Moved (or upstream gave no digest on HEAD): fetch it, by digest when known.
                let by = head.digest.map(Reference::Digest).unwrap_or(reference);
                let m = self.fetch_manifest(t, &by, Some(tag)).await?;
                Ok((m, CacheStatus::Miss))
            }
            Err(e) if e.is_outage() => {
                let rules = t.upstream.settings.tag_rules(t.repo.as_str(), tag.as_str());
                if within_max_stale(&rules, crate::now_ms() - rec.confirmed_at_ms) {
                    self.serve_stale(t, &rec, &e).await
                } else {
                    Err(upstream_error(&e, ErrorCode::ManifestUnknown))
                }
            }
            Err(e) if e.status() == Some(404) => {
                let (index, k, tg) = (self.index.clone(), t.key(), tag.to_string());
                blocking(move || index.remove_tag(&k, &tg))
                    .await?
                    .map_err(internal)?;
                self.manifests.tags.invalidate(&key);
                Err(upstream_error(&e, ErrorCode::ManifestUnknown))
            }
            Err(e) => Err(upstream_error(&e, ErrorCode::ManifestUnknown)),
        }
    }

    async fn serve_stale(
        &self,
        t: &Target,
        rec: &TagRecord,
        why: &(dyn std::fmt::Display + Sync),
    ) -> Result<Resolved, RegistryError> {
        match self.local_manifest(&rec.digest).await? {
            Some(m) => {
                tracing::warn!(upstream = %t.upstream.name, repo = %t.repo, "serving stale tag: {why}");
                self.metrics
                    .stale_served
                    .with_label_values(&[&t.upstream.name])
                    .inc();
                Ok((m, CacheStatus::Stale))
            }
            None => Err(RegistryError::new(
                ErrorCode::Unavailable,
                format!(
                    "upstream {}: {why}; the cached manifest is gone",
                    t.upstream.name
                ),
            )),
        }
    }

    /// The manifest from memory, or the index and store.
    async fn local_manifest(
        &self,
        d: &Digest,
    ) -> Result<Option<Arc<CachedManifest>>, RegistryError> {
        if let Some(m) = self.manifests.by_digest.get(d) {
            return Ok(Some(m));
        }
        let (index, store, d2) = (self.index.clone(), self.store.clone(), d.clone());
        let found = blocking(move || -> Result<Option<RecordAndBytes>, String> {
            let Some(rec) = index.manifest(&d2).map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            let bytes = read_bytes(store.as_ref(), &d2).map_err(|e| e.to_string())?;
            Ok(Some((rec, bytes)))
        })
        .await?
        .map_err(internal)?;
        let Some((rec, bytes)) = found else {
            return Ok(None);
        };
        let bytes = match bytes {
            Some(b) => Bytes::from(b),
            None => match self.manifest_from_peer(&rec).await? {
                Some(b) => b,
                None => return Ok(None),
            },
        };
        let m = Arc::new(CachedManifest::new(rec.digest, rec.media_type, bytes));
        self.manifests.by_digest.insert(d.clone(), m.clone());
        Ok(Some(m))
    }

    /// A manifest the shared index knows but this replica's store lacks, copied from another
    /// replica (verified, then stored here); `None` outside a cluster or when no peer has it.
    async fn manifest_from_peer(
        &self,
        rec: &ManifestRecord,
    ) -> Result<Option<Bytes>, RegistryError> {
        let Some(cluster) = &self.cluster else {
            return Ok(None);
        };
        let (d, media_type) = (rec.digest.clone(), rec.media_type.clone());
        let verify =
            |b: &[u8]| Digest::of(d.algorithm(), &manifest::digest_payload(&media_type, b)) == d;
        let Some(bytes) = cluster.peer_manifest(&d, verify).await else {
            return Ok(None);
        };
        let (index, store, b2, now) = (
            self.index.clone(),
            self.store.clone(),
            bytes.clone(),
            crate::now_ms(),
        );
        let stored = blocking(move || -> Result<(), String> {
            put_bytes(store.as_ref(), &d, &b2).map_err(|e| e.to_string())?;
            index
                .record_blob(&d, b2.len() as u64, now)
                .map_err(|e| e.to_string())
        })
        .await?;
        if let Err(e) = stored {
            // Served anyway: the next request copies it again.
            tracing::warn!(digest = %rec.digest, "storing a manifest copied from a peer failed: {e}");
        }
        Ok(Some(bytes))
    }

    /// GETs a manifest from upstream, verifies it, stores it and records it (and the tag).
    async fn fetch_manifest(
        self: &Arc<Self>,
        t: &Target,
        reference: &Reference,
        tag: Option<&Tag>,
    ) -> Result<Arc<CachedManifest>, RegistryError> {
        let fetched = match t
            .upstream
            .manifest(&t.repo, reference, false, t.client_credentials())
            .await
        {
            Ok(f) => f,
            Err(e) => return Err(upstream_error(&e, ErrorCode::ManifestUnknown)),
        };
        let invalid = |why: String| {
            RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "upstream {} sent manifest {reference} of {}: {why}",
                    t.upstream.name, t.repo
                ),
            )
        };
        let media_type = match fetched.media_type.as_deref() {
            Some(mt)
                if manifest::ALL_MANIFEST_TYPES.contains(&mt)
                    || mt.starts_with("application/vnd.") =>
            {
                mt.to_string()
            }
            _ => manifest::sniff_media_type(&fetched.bytes)
                .ok_or_else(|| invalid("no recognisable media type".into()))?,
        };
        let payload = manifest::digest_payload(&media_type, &fetched.bytes);
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => fetched.digest.clone(),
        };
        let digest = match expected {
            Some(d) => {
                let got = Digest::of(d.algorithm(), &payload);
                if got != d {
                    self.metrics.verification_failures.inc();
                    return Err(invalid(format!(
                        "content digest is {got}, expected {d}; not cached"
                    )));
                }
                d
            }
            None => Digest::sha256_of(&payload),
        };
        let refs = manifest::references(&media_type, &fetched.bytes).unwrap_or_default();
        let record = ManifestRecord {
            digest: digest.clone(),
            media_type: media_type.clone(),
            size: fetched.bytes.len() as u64,
        };
        // Recorded manifests are referenced from now on, even before the index says so.
        self.touched
            .touch(std::iter::once(&digest).chain(refs.iter().map(|r| &r.digest)));
        let (index, store, key, bytes) = (
            self.index.clone(),
            self.store.clone(),
            t.key(),
            fetched.bytes.clone(),
        );
        let tag_s = tag.map(|t| t.to_string());
        let now = crate::now_ms();
        let rec2 = record.clone();
        blocking(move || -> Result<(), String> {
            // Committed to the store like a fill, so its usage (and the quota watch) counts it.
            put_bytes(store.as_ref(), &rec2.digest, &bytes).map_err(|e| e.to_string())?;
            index
                .record_blob(&rec2.digest, rec2.size, now)
                .map_err(|e| e.to_string())?;
            index
                .record_manifest(&key, &rec2, &refs, tag_s.as_deref(), now)
                .map_err(|e| e.to_string())
        })
        .await?
        .map_err(internal)?;
        if let Some(tag) = tag {
            self.manifests.tags.insert(
                TagKey::new(&t.upstream.name, t.repo.as_str(), tag.as_str()),
                TagRecord {
                    digest: digest.clone(),
                    confirmed_at_ms: now,
                },
            );
        }
        let m = Arc::new(CachedManifest::new(
            digest.clone(),
            media_type,
            fetched.bytes,
        ));
        self.manifests.by_digest.insert(digest, m.clone());
        // Scan on cache (the scan-on-push equivalent), in the background when configured.
        self.cached(t, &m);
        Ok(m)
    }
}

/// A manifest's index record, and its bytes when this replica's store has them.
type RecordAndBytes = (ManifestRecord, Option<Vec<u8>>);

/// Whether a tag confirmed `age_ms` ago may still be served when upstream cannot confirm it.
pub(super) fn within_max_stale(rules: &TagRules, age_ms: i64) -> bool {
    match rules.max_stale {
        Some(max) => age_ms <= (rules.ttl + max).as_millis() as i64,
        None => true,
    }
}
