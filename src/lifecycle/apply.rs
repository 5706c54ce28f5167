//! Where policies apply (API-set over config, most specific pattern over the default), and
//! preview and application of them. Expiring an image removes its rows, tags and unused
//! manifest records from the index; transitioning marks it archived. Bytes go at the next GC.

use super::catalog::Catalog;
use super::evaluate::DecisionAction;
use super::graph::{Keep, NodeId};
use super::pattern::RepoPolicies;
use super::preview::{preview, Preview};
use super::service::{find_image, image_view, repo_filter, Lifecycle, OpError};
use super::settings::LifecycleSettings;
use super::views::{
    ImageView, LifecycleReport, PolicyRef, PolicyView, RepoPreview, ResultView, RuleView,
};
use super::{LifecyclePolicy, RepoPattern, StorageClass};
use crate::cache::images::{ImageKey, StoredPolicy};
use crate::cache::{Event, EventKind, RepoKey};
use breakwater_oci::time::Timestamp;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A policy with the scope it was set for.
#[derive(Debug, Clone)]
pub struct Scoped {
    /// `default` or the repository pattern.
    pub scope: String,
    /// `config` or `api`.
    pub source: &'static str,
    /// The policy.
    pub policy: Arc<LifecyclePolicy>,
    /// When set through the API.
    pub updated_ms: Option<i64>,
}

impl Scoped {
    /// Scope and source, for reports.
    pub fn reference(&self) -> PolicyRef {
        PolicyRef {
            scope: self.scope.clone(),
            source: self.source.to_string(),
        }
    }
}

/// The policies in force.
pub struct Policies {
    default: Option<Scoped>,
    scoped: RepoPolicies<Scoped>,
    listed: Vec<(Scoped, bool)>,
}

impl Policies {
    /// Combines the config file's policies with those set through the API. For the same scope
    /// the API's wins; among patterns the most specific wins, API-set ones on a tie.
    pub fn resolve(settings: &LifecycleSettings, stored: &[StoredPolicy]) -> Self {
        let api: Vec<Scoped> = stored
            .iter()
            .filter_map(|s| match LifecyclePolicy::from_json(&s.policy) {
                Ok(p) => Some(Scoped {
                    scope: s.scope.clone(),
                    source: "api",
                    policy: Arc::new(p),
                    updated_ms: Some(s.updated_ms),
                }),
                Err(e) => {
                    tracing::error!(scope = %s.scope, "stored lifecycle policy ignored: {e}");
                    None
                }
            })
            .collect();
        let config = settings
            .default_policy
            .iter()
            .map(|p| ("default".to_string(), p))
            .chain(
                settings
                    .policies
                    .iter()
                    .map(|c| (c.repositories.as_str().to_string(), &c.policy)),
            )
            .map(|(scope, p)| Scoped {
                scope,
                source: "config",
                policy: Arc::new(p.clone()),
                updated_ms: None,
            });
        let overridden: HashSet<String> = api.iter().map(|s| s.scope.clone()).collect();
        let mut listed: Vec<(Scoped, bool)> = api.into_iter().map(|s| (s, true)).collect();
        listed.extend(config.map(|s| {
            let effective = !overridden.contains(&s.scope);
            (s, effective)
        }));
        let mut scoped = RepoPolicies::new(None);
        let mut default = None;
        for (s, _) in listed.iter().filter(|(_, effective)| *effective) {
            if s.scope == "default" {
                default.get_or_insert_with(|| s.clone());
            } else if let Ok(p) = RepoPattern::new(&s.scope) {
                scoped.insert(p, s.clone());
            }
        }
        Policies {
            default,
            scoped,
            listed,
        }
    }

    /// The policy for a repository (`<upstream>/<name>`).
    pub fn for_repo(&self, full: &str) -> Option<&Scoped> {
        self.scoped
            .most_specific(full)
            .map(|(_, s)| s)
            .or(self.default.as_ref())
    }

    /// The effective policy set for exactly `scope`.
    pub fn scope(&self, scope: &str) -> Option<&Scoped> {
        self.listed
            .iter()
            .find(|(s, effective)| *effective && s.scope == scope)
            .map(|(s, _)| s)
    }

    /// Every policy, API-set first, marking config ones the API overrides.
    pub fn views(&self) -> Vec<PolicyView> {
        self.listed
            .iter()
            .map(|(s, effective)| PolicyView {
                scope: s.scope.clone(),
                source: s.source.to_string(),
                effective: *effective,
                updated_ms: s.updated_ms,
                policy: serde_json::from_str(&s.policy.to_json()).unwrap_or_default(),
            })
            .collect()
    }
}

/// What to preview: every repository with a policy, or those `repository` matches; with the
/// stored policies, or `policy` in their place; at `at_ms` (default now).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// An exact repository or a pattern.
    pub repository: Option<String>,
    /// An ECR policy to evaluate instead of the stored ones.
    pub policy: Option<serde_json::Value>,
    /// Evaluation time (unix ms), e.g. to see what will expire next week.
    pub at_ms: Option<i64>,
}

/// One repository's evaluation.
struct RepoPlan {
    repo: usize,
    policy: PolicyRef,
    preview: Preview,
    groups: Vec<usize>,
    description: HashMap<u32, String>,
}

fn evaluate(
    c: &Catalog,
    filter: Option<&RepoPattern>,
    choose: impl Fn(&str) -> Option<(PolicyRef, Arc<LifecyclePolicy>)>,
    now_ms: i64,
) -> Vec<RepoPlan> {
    let mut plans = Vec::new();
    for (i, repo) in c.repos.iter().enumerate() {
        if c.by_repo[i].is_empty() || filter.is_some_and(|f| !f.matches(&repo.full)) {
            continue;
        }
        let Some((policy, rules)) = choose(&repo.full) else {
            continue;
        };
        let (groups, images): (Vec<usize>, Vec<_>) = c.by_repo[i]
            .iter()
            .filter_map(|&g| Some((g, c.cached_image(g)?)))
            .unzip();
        let preview = preview(&rules, &images, Timestamp::from_ms(now_ms));
        let description = rules
            .rules
            .iter()
            .filter_map(|r| Some((r.rule_priority, r.description.clone()?)))
            .collect();
        plans.push(RepoPlan {
            repo: i,
            policy,
            preview,
            groups,
            description,
        });
    }
    plans
}

impl RepoPlan {
    /// Each decision with the group it concerns.
    fn decided(&self, c: &Catalog) -> Vec<(usize, &super::Decision)> {
        let by_node: HashMap<NodeId, usize> = self
            .groups
            .iter()
            .map(|&g| (c.rows[c.groups[g].parent].node, g))
            .collect();
        self.preview
            .decisions
            .iter()
            .filter_map(|d| Some((*by_node.get(&c.graph.digest_id(&d.digest)?)?, d)))
            .collect()
    }
}

fn report(c: &Catalog, plans: &[RepoPlan], applied: bool, at_ms: i64) -> LifecycleReport {
    let mut fate: HashMap<usize, Option<Keep>> = HashMap::new();
    let mut repositories = Vec::new();
    for plan in plans {
        let mut results = Vec::new();
        for (g, d) in plan.decided(c) {
            let (action, target) = match d.action {
                DecisionAction::Expire => ("expire", None),
                DecisionAction::Transition(to) => ("transition", Some(to.as_str().to_string())),
            };
            fate.insert(
                g,
                match d.action {
                    DecisionAction::Expire => None,
                    DecisionAction::Transition(_) => Some(Keep::ManifestsOnly),
                },
            );
            let grp = &c.groups[g];
            results.push(ResultView {
                digest: d.digest.clone(),
                tags: grp.tags.clone(),
                rule_priority: d.rule_priority,
                action: action.into(),
                target_storage_class: target,
                reason: d.reason.clone(),
                stored_bytes: grp.stored_bytes,
                first_cached_ms: c.rows[grp.parent].first_cached_ms,
                last_pulled_ms: grp.last_pulled_ms,
            });
        }
        repositories.push(RepoPreview {
            repository: c.repos[plan.repo].full.clone(),
            policy: plan.policy.clone(),
            results,
            rules: plan
                .preview
                .rules
                .iter()
                .map(|r| RuleView {
                    rule_priority: r.rule_priority,
                    action: r.action.as_str().into(),
                    images: r.images,
                    bytes: r.bytes,
                })
                .collect(),
        });
    }
    LifecycleReport {
        applied,
        at_ms,
        expiring_images: plans.iter().map(|p| p.preview.expiring_images).sum(),
        transitioning_images: plans.iter().map(|p| p.preview.transitioning_images).sum(),
        reclaimable_bytes: c.reclaimable(|g| fate.get(&g).copied().unwrap_or(Some(c.keep(g)))),
        repositories,
    }
}

/// An event about a group, with its repository, digest, tags and stored bytes.
pub(super) fn group_event(c: &Catalog, g: usize, kind: EventKind, reason: String) -> Event {
    let grp = &c.groups[g];
    let repo = &c.repos[grp.repo];
    let mut e = Event::new(kind, reason);
    e.upstream = Some(repo.upstream.clone());
    e.repository = Some(repo.name.clone());
    e.digest = Some(c.digest(g).to_string());
    e.tags = grp.tags.clone();
    e.bytes = grp.stored_bytes;
    e
}

impl Lifecycle {
    /// Evaluates policies without changing anything.
    pub fn preview(&self, req: &PreviewRequest) -> Result<LifecycleReport, OpError> {
        let filter = req.repository.as_deref().map(repo_filter).transpose()?;
        let given = match &req.policy {
            Some(v) => Some(Arc::new(
                LifecyclePolicy::from_value(v).map_err(|e| OpError::BadRequest(e.to_string()))?,
            )),
            None => None,
        };
        self.flush_pulls();
        let mut c = self.catalog()?;
        // As apply would see it: archived images pulled again are back (in memory only).
        self.restore_pulled(&mut c, false)?;
        let policies = self.policies()?;
        let at_ms = req.at_ms.unwrap_or_else(|| self.now().as_ms());
        let choose = |full: &str| match &given {
            Some(p) => Some((
                PolicyRef {
                    scope: "request".into(),
                    source: "request".into(),
                },
                p.clone(),
            )),
            None => policies
                .for_repo(full)
                .map(|s| (s.reference(), s.policy.clone())),
        };
        let plans = evaluate(&c, filter.as_ref(), choose, at_ms);
        Ok(report(&c, &plans, false, at_ms))
    }

    /// Applies the policies in force now to every repository (or those `repository` matches).
    pub fn apply(&self, repository: Option<&str>) -> Result<LifecycleReport, OpError> {
        let filter = repository.map(repo_filter).transpose()?;
        let _w = self.writer();
        self.flush_pulls();
        let mut c = self.catalog()?;
        self.restore_pulled(&mut c, true)?;
        let policies = self.policies()?;
        let now = self.now().as_ms();
        let choose = |full: &str| {
            policies
                .for_repo(full)
                .map(|s| (s.reference(), s.policy.clone()))
        };
        let plans = evaluate(&c, filter.as_ref(), choose, now);
        let mut expire = Vec::new();
        let mut archive = Vec::new();
        for plan in &plans {
            let p = &plan.policy;
            for (g, d) in plan.decided(&c) {
                let mut reason = format!(
                    "lifecycle policy {} ({}) rule {}: {}",
                    p.scope, p.source, d.rule_priority, d.reason
                );
                if let Some(desc) = plan.description.get(&d.rule_priority) {
                    reason.push_str(&format!(" [{desc}]"));
                }
                match d.action {
                    DecisionAction::Expire => expire.push((g, reason)),
                    DecisionAction::Transition(_) => archive.push((g, reason)),
                }
            }
        }
        let reasons: HashMap<usize, String> = expire.iter().cloned().collect();
        let victims: Vec<usize> = expire.iter().map(|(g, _)| *g).collect();
        self.remove_groups(&c, &victims, |g| {
            group_event(&c, g, EventKind::Expire, reasons[&g].clone())
        })?;
        let keys: Vec<ImageKey> = archive
            .iter()
            .filter_map(|(g, _)| c.key(c.groups[*g].parent))
            .collect();
        self.index()
            .set_storage_class(&keys, StorageClass::Archive.as_str(), Some(now))?;
        let events: Vec<Event> = archive
            .into_iter()
            .map(|(g, reason)| group_event(&c, g, EventKind::Transition, reason))
            .collect();
        self.record(&events);
        self.note_apply(now);
        self.cache.metrics.count_lifecycle("expire", victims.len());
        self.cache.metrics.count_lifecycle("transition", keys.len());
        Ok(report(&c, &plans, true, now))
    }

    /// Removes one image now (the admin API's delete); pinned images must be unpinned first.
    pub fn delete_image(&self, reference: &str) -> Result<ImageView, OpError> {
        let _w = self.writer();
        let c = self.catalog()?;
        let g = find_image(&c, reference)?;
        if c.groups[g].pinned {
            return Err(OpError::Conflict(format!(
                "{reference} is pinned; unpin it before deleting"
            )));
        }
        let view = image_view(&c, g)?;
        self.remove_groups(&c, &[g], |g| {
            group_event(
                &c,
                g,
                EventKind::Delete,
                "deleted through the admin API".into(),
            )
        })?;
        Ok(view)
    }

    /// Removes groups from the index and from memory, recording one event per image removed.
    pub(super) fn remove_groups(
        &self,
        c: &Catalog,
        groups: &[usize],
        event: impl Fn(usize) -> Event,
    ) -> Result<usize, OpError> {
        if groups.is_empty() {
            return Ok(0);
        }
        let rows = c.rows_to_remove(groups);
        let keys: Vec<ImageKey> = rows.iter().filter_map(|&r| c.key(r)).collect();
        let removed = self.index().remove_images(&keys)?;
        let repo_of: HashMap<i64, &super::catalog::Repo> =
            c.repos.iter().map(|r| (r.id, r)).collect();
        let mut digests = Vec::new();
        let mut tags = Vec::new();
        let mut gone = HashSet::new();
        for r in &removed {
            gone.insert((r.key.repo_id, r.key.digest.clone()));
            digests.push(r.key.digest.clone());
            if let Some(repo) = repo_of.get(&r.key.repo_id) {
                let key = RepoKey::new(&repo.upstream, &repo.name);
                tags.extend(r.tags.iter().map(|t| (key.clone(), t.clone())));
            }
        }
        self.cache.forget_cached(&digests, &tags);
        let events: Vec<Event> = groups
            .iter()
            .filter(|&&g| {
                c.key(c.groups[g].parent)
                    .is_some_and(|k| gone.contains(&(k.repo_id, k.digest)))
            })
            .map(|&g| event(g))
            .collect();
        self.record(&events);
        Ok(events.len())
    }
}
