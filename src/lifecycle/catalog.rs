//! The cache as lifecycle, quota and GC see it, built from one index snapshot: repositories,
//! image rows with their tags, and *images* — a top-level manifest of a repository together with
//! the child manifests of it that clients fetched through the same repository.
//!
//! Child manifests of an index are `images` rows of their own (untagged) once a client fetched
//! them, but they are never judged on their own: they belong to every index in the repository
//! that lists them, are expired with the last of those, and their pulls count as pulls of the
//! index. Policies, quota eviction and the describe-images view therefore work on images.

use super::evaluate::CachedImage;
use super::graph::{ref_kind, FastMap, Graph, Keep, Marks, NodeId, RefKind};
use super::pattern::RepoPattern;
use super::policy::StorageClass;
use crate::cache::images::{ImageKey, ImageRow, PinRow, SnapshotSink};
use breakwater_oci::time::Timestamp;
use breakwater_oci::{Digest, RepoKey};
use std::collections::HashSet;

/// A repository, named `<upstream>/<name>` in policies and the admin API.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Index id.
    pub id: i64,
    /// Upstream name.
    pub upstream: String,
    /// Name on the upstream.
    pub name: String,
    /// `<upstream>/<name>`.
    pub full: String,
}

/// What the index records of a manifest.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    /// Media type.
    pub media_type: String,
    /// Byte length.
    pub size: u64,
}

/// One `images` row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Index into [`Catalog::repos`].
    pub repo: usize,
    /// The manifest.
    pub node: NodeId,
    /// First cached, or restored from archive (unix ms): the "pushed" time.
    pub first_cached_ms: i64,
    /// Last pulled (unix ms).
    pub last_pulled_ms: Option<i64>,
    /// Pulls recorded.
    pub pull_count: u64,
    /// In the archive storage class.
    pub archived: bool,
    /// When archived (unix ms).
    pub transitioned_at_ms: Option<i64>,
    /// Tags pointing at it in its repository.
    pub tags: Vec<String>,
}

/// An image: a top-level row and the child rows it lists.
#[derive(Debug, Clone)]
pub struct Group {
    /// Index into [`Catalog::repos`].
    pub repo: usize,
    /// The top-level row.
    pub parent: usize,
    /// Child manifest rows in the same repository.
    pub children: Vec<usize>,
    /// Tags of the parent and children, sorted.
    pub tags: Vec<String>,
    /// Latest pull of the parent or any child (unix ms).
    pub last_pulled_ms: Option<i64>,
    /// Exempt from policies and eviction.
    pub pinned: bool,
    /// Bytes of everything it references (stored or declared size), each digest once.
    pub size_bytes: u64,
    /// Bytes of what it references that is in the store now.
    pub stored_bytes: u64,
}

/// Everything lifecycle decides on, from one snapshot.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Digests and references.
    pub graph: Graph,
    /// Repositories.
    pub repos: Vec<Repo>,
    /// Manifest records by digest.
    pub manifests: FastMap<NodeId, ManifestInfo>,
    /// Image rows.
    pub rows: Vec<Row>,
    /// Images.
    pub groups: Vec<Group>,
    /// For each row, the groups it belongs to.
    pub row_groups: Vec<Vec<usize>>,
    /// For each repository, its groups.
    pub by_repo: Vec<Vec<usize>>,
    platforms: FastMap<(NodeId, NodeId), String>,
    repo_by_id: FastMap<i64, usize>,
    row_by_key: FastMap<(usize, NodeId), usize>,
    /// The manifest of the previous reference row and its id: a manifest's references are
    /// usually consecutive rows, so most rows need not intern it again.
    last_referrer: Option<(String, NodeId)>,
}

impl SnapshotSink for Catalog {
    fn repository(&mut self, id: i64, upstream: &str, name: &str) {
        self.repo_by_id.insert(id, self.repos.len());
        self.repos.push(Repo {
            id,
            upstream: upstream.to_string(),
            name: name.to_string(),
            full: RepoKey::new(upstream, name).to_string(),
        });
    }

    fn manifest(&mut self, digest: &str, media_type: &str, size: u64, _cached_at_ms: i64) {
        let n = self.graph.intern(digest);
        self.graph.declare_size(n, size);
        self.manifests.insert(
            n,
            ManifestInfo {
                media_type: media_type.to_string(),
                size,
            },
        );
    }

    fn reference(
        &mut self,
        manifest: &str,
        child: &str,
        kind: &str,
        size: Option<u64>,
        platform: Option<&str>,
    ) {
        let m = match &mut self.last_referrer {
            Some((d, id)) if d == manifest => *id,
            last => {
                let id = self.graph.intern(manifest);
                match last {
                    Some((d, last_id)) => {
                        d.clear();
                        d.push_str(manifest);
                        *last_id = id;
                    }
                    None => *last = Some((manifest.to_string(), id)),
                }
                id
            }
        };
        let c = self.graph.intern(child);
        if let Some(s) = size {
            self.graph.declare_size(c, s);
        }
        if let Some(p) = platform {
            self.platforms.insert((m, c), p.to_string());
        }
        self.graph.add_edge(m, c, ref_kind(kind));
    }

    fn blob(&mut self, digest: &str, size: u64, cached_at_ms: i64) {
        let n = self.graph.intern(digest);
        self.graph.set_stored(n, size, Some(cached_at_ms));
    }

    fn image(&mut self, r: &ImageRow<'_>) {
        let Some(&repo) = self.repo_by_id.get(&r.repo_id) else {
            return;
        };
        let node = self.graph.intern(r.digest);
        self.row_by_key.insert((repo, node), self.rows.len());
        self.rows.push(Row {
            repo,
            node,
            first_cached_ms: r.first_cached_ms,
            last_pulled_ms: r.last_pulled_ms,
            pull_count: r.pull_count,
            archived: r.storage_class == StorageClass::Archive.as_str(),
            transitioned_at_ms: r.transitioned_at_ms,
            tags: Vec::new(),
        });
    }

    fn tag(&mut self, repo_id: i64, digest: &str, tag: &str) {
        let (Some(&repo), Some(node)) = (self.repo_by_id.get(&repo_id), self.graph.id(digest))
        else {
            return;
        };
        if let Some(&row) = self.row_by_key.get(&(repo, node)) {
            self.rows[row].tags.push(tag.to_string());
        }
    }
}

impl Catalog {
    /// Groups rows into images and sizes them; call once after the snapshot is read.
    pub fn finish(&mut self, pins: &[PinRow]) {
        self.graph.finish();
        let mut is_child = vec![false; self.rows.len()];
        for row in &self.rows {
            for &(c, kind) in self.graph.children(row.node) {
                if kind == RefKind::Manifest {
                    if let Some(&child) = self.row_by_key.get(&(row.repo, c)) {
                        is_child[child] = true;
                    }
                }
            }
        }
        let patterns: Vec<RepoPattern> = pins
            .iter()
            .filter(|p| p.digest.is_none())
            .filter_map(|p| RepoPattern::new(&p.repository).ok())
            .collect();
        let image_pins: Vec<(&str, String)> = pins
            .iter()
            .filter_map(|p| Some((p.repository.as_str(), p.digest.as_ref()?.to_string())))
            .collect();
        self.row_groups = vec![Vec::new(); self.rows.len()];
        self.by_repo = vec![Vec::new(); self.repos.len()];
        let mut seen = vec![0u32; self.graph.len()];
        for (parent, _) in is_child.iter().enumerate().filter(|(_, c)| !**c) {
            let g = self.groups.len();
            let row = &self.rows[parent];
            let (repo, root) = (row.repo, row.node);
            let mut members = Vec::new();
            let (mut size, mut stored) = (0u64, 0u64);
            self.graph
                .reach(root, Keep::Full, &mut seen, g as u32 + 1, |n| {
                    size += self.graph.size(n).unwrap_or(0);
                    stored += self.graph.stored(n).unwrap_or(0);
                    if let Some(&r) = self.row_by_key.get(&(repo, n)) {
                        members.push(r);
                    }
                });
            let mut tags: Vec<String> = members
                .iter()
                .flat_map(|&r| self.rows[r].tags.iter().cloned())
                .collect();
            tags.sort();
            tags.dedup();
            let last_pulled_ms = members
                .iter()
                .filter_map(|&r| self.rows[r].last_pulled_ms)
                .max();
            let full = &self.repos[repo].full;
            let pinned = patterns.iter().any(|p| p.matches(full))
                || members.iter().any(|&r| {
                    let d = self.graph.name(self.rows[r].node);
                    image_pins.iter().any(|(pr, pd)| pr == full && *pd == d)
                });
            for &m in &members {
                self.row_groups[m].push(g);
            }
            self.by_repo[repo].push(g);
            members.retain(|&r| r != parent);
            self.groups.push(Group {
                repo,
                parent,
                children: members,
                tags,
                last_pulled_ms,
                pinned,
                size_bytes: size,
                stored_bytes: stored,
            });
        }
    }

    /// The digest of a group's top-level manifest.
    pub fn digest(&self, g: usize) -> &str {
        self.graph.name(self.rows[self.groups[g].parent].node)
    }

    /// The digest of a group's top-level manifest, parsed; `None` when the index holds it in a
    /// form that is not a valid digest (nothing the request path records).
    pub fn image_digest(&self, g: usize) -> Option<Digest> {
        Digest::parse(self.digest(g)).ok()
    }

    /// The platform an index lists `child` under, if it does.
    pub fn platform(&self, parent: NodeId, child: NodeId) -> Option<&str> {
        self.platforms.get(&(parent, child)).map(String::as_str)
    }

    /// The key of a row; `None` when the index holds its digest in a form that is not a valid
    /// digest (nothing the request path records).
    pub fn key(&self, row: usize) -> Option<ImageKey> {
        let r = &self.rows[row];
        Some(ImageKey {
            repo_id: self.repos[r.repo].id,
            digest: Digest::parse(self.graph.name(r.node)).ok()?,
        })
    }

    /// A repository by `<upstream>/<name>`.
    pub fn repo(&self, full: &str) -> Option<usize> {
        self.repos.iter().position(|r| r.full == full)
    }

    /// The group of `repo` whose top-level or child manifest is `digest`.
    pub fn find(&self, repo: usize, digest: &str) -> Option<usize> {
        let node = self.graph.id(digest)?;
        let row = *self.row_by_key.get(&(repo, node))?;
        self.row_groups[row].first().copied()
    }

    /// How a group is kept as things stand.
    pub fn keep(&self, g: usize) -> Keep {
        if self.rows[self.groups[g].parent].archived {
            Keep::ManifestsOnly
        } else {
            Keep::Full
        }
    }

    /// The group as the policy engine sees it; `None` when the index holds its digest in a
    /// form that is not a valid digest (nothing the request path records).
    pub fn cached_image(&self, g: usize) -> Option<CachedImage> {
        let grp = &self.groups[g];
        let parent = &self.rows[grp.parent];
        Some(CachedImage {
            digest: self.image_digest(g)?,
            tags: grp.tags.clone(),
            first_cached: Timestamp::from_ms(parent.first_cached_ms),
            last_pulled: grp.last_pulled_ms.map(Timestamp::from_ms),
            transitioned_at: parent.transitioned_at_ms.map(Timestamp::from_ms),
            storage_class: if parent.archived {
                StorageClass::Archive
            } else {
                StorageClass::Standard
            },
            size_bytes: grp.stored_bytes,
            pinned: grp.pinned,
        })
    }

    /// Marks what every group keeps under `fate` (`None`: the group is gone).
    pub fn mark(&self, fate: impl Fn(usize) -> Option<Keep>) -> Marks {
        self.graph.mark(
            (0..self.groups.len())
                .filter_map(|g| fate(g).map(|k| (self.rows[self.groups[g].parent].node, k))),
        )
    }

    /// Stored bytes that would become unreferenced if each group's keep changed to `fate`.
    pub fn reclaimable(&self, fate: impl Fn(usize) -> Option<Keep>) -> u64 {
        let marks = self.mark(&fate);
        let mut seen = vec![0u32; self.graph.len()];
        let mut bytes = 0u64;
        for g in 0..self.groups.len() {
            if fate(g) == Some(self.keep(g)) {
                continue;
            }
            let root = self.rows[self.groups[g].parent].node;
            self.graph.reach(root, Keep::Full, &mut seen, 1, |n| {
                if !marks.is_marked(n) {
                    bytes += self.graph.stored(n).unwrap_or(0);
                }
            });
        }
        bytes
    }

    /// Rows that leave the index when `victims` are expired: their top-level rows, and child
    /// rows no surviving image lists.
    pub fn rows_to_remove(&self, victims: &[usize]) -> Vec<usize> {
        let gone: HashSet<usize> = victims.iter().copied().collect();
        let mut taken = HashSet::new();
        let mut out = Vec::new();
        for &g in victims {
            let grp = &self.groups[g];
            for &r in std::iter::once(&grp.parent).chain(&grp.children) {
                if self.row_groups[r].iter().all(|x| gone.contains(x)) && taken.insert(r) {
                    out.push(r);
                }
            }
        }
        out
    }
}
