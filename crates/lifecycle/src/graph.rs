//! The reference graph GC marks over: every digest the index or the store knows, interned to a
//! small integer, with manifest → child edges in compressed-row form. Marking is an iterative
//! depth-first walk with one byte of state per digest, so a million references mark in
//! milliseconds and memory stays proportional to the index.

pub use breakwater_oci::manifest::RefKind;
use breakwater_oci::{Algorithm, Digest};
use std::collections::HashMap;

/// A hash map keyed by ids or digest bytes. SipHash was a tenth of a snapshot; foldhash is a
/// few multiplies per key, randomly seeded per map, which is enough for ids the process makes
/// and for digests that are already cryptographic hashes.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A digest's position in the graph.
pub type NodeId = u32;

/// The 32 bytes of a `sha256:<64 hex digits>` digest (either case).
#[inline]
fn sha256_bytes(digest: &str) -> Option<[u8; 32]> {
    let hex = digest.strip_prefix("sha256:")?;
    let mut raw = [0u8; 32];
    hex::decode_to_slice(hex, &mut raw).ok()?;
    Some(raw)
}

/// The role of a reference as `manifest_refs.kind` spells it; anything unknown is treated as a
/// layer (kept with its image).
pub fn ref_kind(s: &str) -> RefKind {
    match s {
        "manifest" => RefKind::Manifest,
        "config" => RefKind::Config,
        _ => RefKind::Layer,
    }
}

/// How much of what a root references is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The manifest, its child manifests, configs and layers: a pullable image.
    Full,
    /// Manifests only (the root and child manifests): an archived image's record.
    ManifestsOnly,
}

const UNMARKED: u8 = 0;
const MANIFESTS: u8 = 1;
const FULL: u8 = 2;

/// Result of a mark: which digests are kept.
#[derive(Debug, Clone)]
pub struct Marks {
    state: Vec<u8>,
}

impl Marks {
    /// True when `node`'s bytes must be kept.
    pub fn is_marked(&self, node: NodeId) -> bool {
        self.state
            .get(node as usize)
            .is_some_and(|s| *s != UNMARKED)
    }

    /// Number of digests kept.
    pub fn count(&self) -> usize {
        self.state.iter().filter(|s| **s != UNMARKED).count()
    }
}

/// Interned digests and their references.
#[derive(Debug, Default)]
pub struct Graph {
    /// Every digest's text back to back: one allocation, not one per digest.
    text: String,
    /// Where each digest's text ends in `text`.
    ends: Vec<usize>,
    /// SHA-256 digests (nearly all) by their 32 bytes, stored inline so a lookup compares
    /// without chasing a pointer.
    sha256: FastMap<[u8; 32], NodeId>,
    /// Any other digest, by its text.
    other: HashMap<Box<str>, NodeId>,
    /// Size of the stored bytes, when the node is a committed blob.
    stored: Vec<Option<u64>>,
    /// When the blob was committed (unix ms), from its index record.
    committed_ms: Vec<Option<i64>>,
    /// Size a referencing manifest declared.
    declared: Vec<Option<u64>>,
    pending: Vec<(NodeId, NodeId, RefKind)>,
    offsets: Vec<u32>,
    targets: Vec<(NodeId, RefKind)>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of `digest`, adding it if new.
    pub fn intern(&mut self, digest: &str) -> NodeId {
        let next = self.ends.len() as NodeId;
        // One probe: the entry is found or made in the same lookup.
        let id = match sha256_bytes(digest) {
            Some(raw) => *self.sha256.entry(raw).or_insert(next),
            None => match self.other.get(digest) {
                Some(&id) => id,
                None => *self.other.entry(digest.into()).or_insert(next),
            },
        };
        if id == next {
            self.text.push_str(digest);
            self.ends.push(self.text.len());
            self.stored.push(None);
            self.committed_ms.push(None);
            self.declared.push(None);
        }
        id
    }

    /// The id of `digest`, if known.
    pub fn id(&self, digest: &str) -> Option<NodeId> {
        match sha256_bytes(digest) {
            Some(raw) => self.sha256.get(&raw),
            None => self.other.get(digest),
        }
        .copied()
    }

    /// The id of a parsed digest, if known: SHA-256 digests are looked up by their bytes
    /// without building the text.
    pub fn digest_id(&self, digest: &Digest) -> Option<NodeId> {
        if digest.algorithm() == Algorithm::Sha256 {
            let mut raw = [0u8; 32];
            hex::decode_to_slice(digest.hex(), &mut raw).ok()?;
            return self.sha256.get(&raw).copied();
        }
        self.other.get(digest.to_string().as_str()).copied()
    }

    /// The digest of `node`.
    pub fn name(&self, node: NodeId) -> &str {
        let i = node as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// Number of digests.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when no digest is known.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Adds a reference; call [`Graph::finish`] before walking.
    pub fn add_edge(&mut self, from: NodeId, to: NodeId, kind: RefKind) {
        self.pending.push((from, to, kind));
    }

    /// Records a committed blob's size and commit time.
    pub fn set_stored(&mut self, node: NodeId, size: u64, committed_ms: Option<i64>) {
        self.stored[node as usize] = Some(size);
        self.committed_ms[node as usize] = committed_ms;
    }

    /// Replaces what is stored with a listing of the store itself (GC): a record without bytes
    /// no longer counts as stored, bytes without a record become stored without a commit time.
    pub fn set_store_listing(&mut self, listing: &[(String, u64)]) {
        let mut present = vec![None; self.len()];
        for (digest, size) in listing {
            let id = self.intern(digest) as usize;
            present.resize(self.len(), None);
            present[id] = Some(*size);
        }
        self.stored = present;
    }

    /// Notes a size a manifest declares for `node`, unless one is known.
    pub fn declare_size(&mut self, node: NodeId, size: u64) {
        self.declared[node as usize].get_or_insert(size);
    }

    /// Stored size of `node`, if its bytes are in the store.
    pub fn stored(&self, node: NodeId) -> Option<u64> {
        self.stored[node as usize]
    }

    /// Commit time of `node` (unix ms), if recorded.
    pub fn committed_ms(&self, node: NodeId) -> Option<i64> {
        self.committed_ms[node as usize]
    }

    /// Best known size of `node`: stored, else declared.
    pub fn size(&self, node: NodeId) -> Option<u64> {
        self.stored[node as usize].or(self.declared[node as usize])
    }

    /// Builds the compressed adjacency from the edges added so far.
    pub fn finish(&mut self) {
        let n = self.len();
        let mut pending = std::mem::take(&mut self.pending);
        // Re-finishing keeps earlier edges.
        for from in 0..self.offsets.len().saturating_sub(1) {
            for &(to, kind) in self.children(from as NodeId) {
                pending.push((from as NodeId, to, kind));
            }
        }
        pending.sort_unstable_by_key(|e| (e.0, e.1));
        pending.dedup_by_key(|e| (e.0, e.1));
        let mut offsets = vec![0u32; n + 1];
        for &(from, _, _) in &pending {
            offsets[from as usize + 1] += 1;
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        self.targets = pending.into_iter().map(|(_, to, k)| (to, k)).collect();
        self.offsets = offsets;
    }

    /// What `node` references (empty for blobs and before [`Graph::finish`]).
    pub fn children(&self, node: NodeId) -> &[(NodeId, RefKind)] {
        let i = node as usize;
        match (self.offsets.get(i), self.offsets.get(i + 1)) {
            (Some(&a), Some(&b)) => &self.targets[a as usize..b as usize],
            _ => &[],
        }
    }

    /// Marks everything the roots keep.
    pub fn mark(&self, roots: impl IntoIterator<Item = (NodeId, Keep)>) -> Marks {
        let mut state = vec![UNMARKED; self.len()];
        let mut stack: Vec<(NodeId, u8)> = Vec::new();
        for (root, keep) in roots {
            let want = match keep {
                Keep::Full => FULL,
                Keep::ManifestsOnly => MANIFESTS,
            };
            stack.push((root, want));
            while let Some((node, want)) = stack.pop() {
                let s = &mut state[node as usize];
                // Already kept at least this much: its children were (or are being) walked.
                if *s >= want {
                    continue;
                }
                *s = want;
                for &(child, kind) in self.children(node) {
                    if want == FULL || kind == RefKind::Manifest {
                        stack.push((child, want));
                    }
                }
            }
        }
        Marks { state }
    }

    /// Visits every digest `root` reaches with `keep` once, using `seen` (sized to the graph,
    /// values below `stamp` meaning unvisited) so repeated walks cost no allocation.
    pub fn reach(
        &self,
        root: NodeId,
        keep: Keep,
        seen: &mut [u32],
        stamp: u32,
        mut visit: impl FnMut(NodeId),
    ) {
        let mut stack = vec![root];
        while let Some(node) = stack.pop() {
            let s = &mut seen[node as usize];
            if *s == stamp {
                continue;
            }
            *s = stamp;
            visit(node);
            for &(child, kind) in self.children(node) {
                if keep == Keep::Full || kind == RefKind::Manifest {
                    stack.push(child);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_manifest_only_marks() {
        let mut g = Graph::new();
        let [index, child, config, layer, shared, loose] =
            ["i", "c", "cfg", "l", "s", "x"].map(|d| g.intern(d));
        let other = g.intern("o");
        g.add_edge(index, child, RefKind::Manifest);
        g.add_edge(child, config, RefKind::Config);
        g.add_edge(child, layer, RefKind::Layer);
        g.add_edge(child, shared, RefKind::Layer);
        g.add_edge(other, shared, RefKind::Layer);
        g.finish();

        let m = g.mark([(index, Keep::ManifestsOnly)]);
        assert!(m.is_marked(index) && m.is_marked(child));
        assert!(!m.is_marked(config) && !m.is_marked(layer) && !m.is_marked(shared));

        let m = g.mark([(index, Keep::ManifestsOnly), (other, Keep::Full)]);
        assert!(m.is_marked(shared) && !m.is_marked(layer));

        // A node first reached as manifest-only is upgraded when a full root reaches it.
        let m = g.mark([(index, Keep::ManifestsOnly), (index, Keep::Full)]);
        assert!(m.is_marked(layer) && m.is_marked(config));
        assert!(!m.is_marked(loose));
        assert_eq!(m.count(), 5);
    }

    #[test]
    fn sha256_digests_intern_by_their_bytes() {
        let lower = format!("sha256:{}", "ab".repeat(32));
        let upper = format!("sha256:{}", "AB".repeat(32));
        let mut g = Graph::new();
        let a = g.intern(&lower);
        // Either case names the same bytes, as with the `hex` decoder before.
        assert_eq!(g.intern(&upper), a);
        assert_eq!(g.name(a), lower);
        for odd in [
            "sha256:ab",
            &format!("sha256:{}g", "a".repeat(63)),
            "sha512:00",
        ] {
            let n = g.intern(odd);
            assert_ne!(n, a);
            assert_eq!((g.id(odd), g.name(n)), (Some(n), odd));
        }
        assert_eq!(g.len(), 4);
        assert_eq!(g.digest_id(&Digest::parse(&lower).unwrap()), Some(a));
        let long = format!("sha512:{}", "0".repeat(128));
        assert_eq!(g.digest_id(&Digest::parse(&long).unwrap()), None);
        let n = g.intern(&long);
        assert_eq!(g.digest_id(&Digest::parse(&long).unwrap()), Some(n));
        assert_eq!(sha256_bytes(&lower), Some([0xAB; 32]));
    }

    #[test]
    fn listing_replaces_records_and_finish_is_repeatable() {
        let mut g = Graph::new();
        let a = g.intern("a");
        let b = g.intern("b");
        g.set_stored(a, 10, Some(1));
        g.add_edge(a, b, RefKind::Layer);
        g.finish();
        g.set_store_listing(&[("b".into(), 5), ("new".into(), 7)]);
        assert_eq!(g.stored(a), None);
        assert_eq!(g.stored(b), Some(5));
        assert_eq!(g.stored(g.id("new").unwrap()), Some(7));
        let c = g.intern("c");
        g.add_edge(a, c, RefKind::Config);
        g.finish();
        assert_eq!(g.children(a).len(), 2);
        let mut seen = vec![0; g.len()];
        let mut got = Vec::new();
        g.reach(a, Keep::Full, &mut seen, 1, |n| got.push(n));
        got.sort();
        assert_eq!(got, vec![a, b, c]);
    }
}
