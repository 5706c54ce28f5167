//! Referrers (OCI 1.1): which manifests name a subject digest. Asked of upstream's referrers API,
//! or, where upstream has none (404), read from the `<alg>-<hex>` tag's index (the tag scheme);
//! an absent tag is an empty list. The unfiltered answer is cached per (repository, subject)
//! and served for the TTL of the tag rules matching `<alg>-<hex>`, then refetched; when upstream
//! fails it is served stale within their `max_stale`. `artifactType` filtering is done here.

use super::flight::Flights;
use super::manifests::within_max_stale;
use super::{blocking, fill_denied, internal, upstream_error, CacheStatus, Registry, Target};
use crate::cache::ReferrersRecord;
use crate::oci::referrers::{referrers_tag, Referrers};
use crate::oci::{Digest, ErrorCode, Reference, RegistryError};
use crate::upstream::UpstreamError;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// A referrers answer.
pub struct ReferrersAnswer {
    /// An OCI image index of the referrers (filtered when asked).
    pub body: Bytes,
    /// Hit, miss, revalidated or stale.
    pub status: CacheStatus,
    /// Whether an `artifactType` filter was applied (the `OCI-Filters-Applied` header).
    pub filtered: bool,
}

type Key = (String, String, Digest);

/// How long an upstream found without the referrers API is read through the tag scheme alone.
const WITHOUT_API_FOR: Duration = Duration::from_secs(600);

/// Referrers work shared by requests.
pub struct ReferrersState {
    /// Refreshes in flight: concurrent misses for one subject ask upstream once.
    flights: Flights<Key, (Bytes, CacheStatus)>,
    /// Upstreams whose referrers endpoint does not exist, so each refresh asks only for the tag.
    without_api: moka::sync::Cache<String, ()>,
}

impl Default for ReferrersState {
    fn default() -> Self {
        ReferrersState {
            flights: Flights::default(),
            without_api: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_live(WITHOUT_API_FOR)
                .build(),
        }
    }
}

impl Registry {
    /// The referrers of `subject` in the target repository, only those of `artifact_type` when
    /// given.
    pub async fn referrers(
        self: &Arc<Self>,
        t: &Target,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<ReferrersAnswer, RegistryError> {
        self.ensure_accepted(t).await?;
        let (body, status) = self.referrers_list(t, subject).await?;
        let Some(at) = artifact_type else {
            return Ok(ReferrersAnswer {
                body,
                status,
                filtered: false,
            });
        };
        // What is cached was checked when fetched; unreadable now means the index is damaged.
        let all = Referrers::parse(&body).map_err(internal)?;
        Ok(ReferrersAnswer {
            body: Bytes::from(all.filtered(at).to_bytes()),
            status,
            filtered: true,
        })
    }

    /// The unfiltered list: cached while fresh, else from upstream (stale if it fails).
    async fn referrers_list(
        self: &Arc<Self>,
        t: &Target,
        subject: &Digest,
    ) -> Result<(Bytes, CacheStatus), RegistryError> {
        let (index, key, s) = (self.index.clone(), t.key(), subject.clone());
        let cached = blocking(move || index.referrers().referrers_of(&key, &s))
            .await?
            .map_err(internal)?;
        let rules = t
            .upstream
            .settings
            .tag_rules(t.repo.as_str(), referrers_tag(subject).as_str());
        let age = |r: &ReferrersRecord| crate::now_ms() - r.fetched_at_ms;
        if let Some(rec) = &cached {
            if age(rec) < rules.ttl.as_millis() as i64 || !t.may_fill {
                // Fresh, or all a client that may not fill can have.
                return Ok((Bytes::from(rec.body.clone()), CacheStatus::Hit));
            }
        }
        if !t.may_fill {
            return Err(fill_denied(t, format_args!("the referrers of {subject}")));
        }
        let this = self.clone();
        let (t2, s2, c2) = (t.clone(), subject.clone(), cached.clone());
        let key = (t.upstream.name.clone(), t.repo.to_string(), subject.clone());
        let flight = self.referrers_state.flights.run(key, move || async move {
            this.refresh_referrers(&t2, &s2, c2).await
        });
        match cached {
            // Holding a servable answer: wait for upstream only briefly, as for tags.
            Some(rec) if within_max_stale(&rules, age(&rec)) => {
                let grace = t.upstream.settings.revalidate_grace;
                match tokio::time::timeout(grace, flight).await {
                    Ok(r) => r,
                    Err(_) => {
                        let why = format!("no answer from upstream within {grace:?}");
                        Ok(self.stale_referrers(t, subject, rec, &why))
                    }
                }
            }
            _ => flight.await,
        }
    }

    /// Fetches the list from upstream and records it; the cached one when upstream is down.
    async fn refresh_referrers(
        self: &Arc<Self>,
        t: &Target,
        subject: &Digest,
        cached: Option<ReferrersRecord>,
    ) -> Result<(Bytes, CacheStatus), RegistryError> {
        match self.fetch_referrers(t, subject).await {
            Ok(list) => {
                let rec = ReferrersRecord {
                    body: list.to_bytes(),
                    fetched_at_ms: crate::now_ms(),
                };
                let same = cached.is_some_and(|c| c.body == rec.body);
                let body = Bytes::from(rec.body.clone());
                let (index, key, s) = (self.index.clone(), t.key(), subject.clone());
                blocking(move || index.referrers().record_referrers(&key, &s, &rec))
                    .await?
                    .map_err(internal)?;
                let status = if same {
                    CacheStatus::Revalidated
                } else {
                    CacheStatus::Miss
                };
                Ok((body, status))
            }
            Err(e) if e.is_outage() => {
                let rules = t
                    .upstream
                    .settings
                    .tag_rules(t.repo.as_str(), referrers_tag(subject).as_str());
                match cached {
                    Some(rec) if within_max_stale(&rules, crate::now_ms() - rec.fetched_at_ms) => {
                        Ok(self.stale_referrers(t, subject, rec, &e))
                    }
                    _ => Err(upstream_error(&e, ErrorCode::NameUnknown)),
                }
            }
            Err(e) => Err(upstream_error(&e, ErrorCode::NameUnknown)),
        }
    }

    /// Upstream's referrers API answer, or the referrers tag's index where it has no such API.
    async fn fetch_referrers(
        &self,
        t: &Target,
        subject: &Digest,
    ) -> Result<Referrers, UpstreamError> {
        let credentials = t.client_credentials();
        let name = &t.upstream.name;
        if !self.referrers_state.without_api.contains_key(name) {
            match t.upstream.referrers(&t.repo, subject, credentials).await {
                Ok(list) => return Ok(list),
                // 404 means no referrers API (the specification forbids it from one that has
                // it); a bare 404 without an OCI error code means no such endpoint at all
                // (distribution 2.8), which is remembered for a while.
                Err(UpstreamError::Status {
                    status: 404, code, ..
                }) => {
                    if code.is_none() {
                        self.referrers_state.without_api.insert(name.clone(), ());
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let tag = Reference::Tag(referrers_tag(subject));
        match t.upstream.manifest(&t.repo, &tag, false, credentials).await {
            Ok(m) => Referrers::parse(&m.bytes).map_err(|e| UpstreamError::Invalid {
                upstream: t.upstream.name.clone(),
                reason: format!("referrers tag {tag} of {}: {e}", t.repo),
            }),
            // No tag: nothing refers to the subject (yet).
            Err(e) if e.status() == Some(404) => Ok(Referrers::default()),
            Err(e) => Err(e),
        }
    }

    fn stale_referrers(
        &self,
        t: &Target,
        subject: &Digest,
        rec: ReferrersRecord,
        why: &(dyn std::fmt::Display + Sync),
    ) -> (Bytes, CacheStatus) {
        tracing::warn!(upstream = %t.upstream.name, repo = %t.repo, %subject, "serving stale referrers: {why}");
        self.metrics
            .stale_served
            .with_label_values(&[&t.upstream.name])
            .inc();
        (Bytes::from(rec.body), CacheStatus::Stale)
    }
}
