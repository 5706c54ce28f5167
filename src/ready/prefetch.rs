//! Prefetch: fills an image into the cache ahead of need through the registry's own operations
//! (the ones a client pull takes), so it verifies digests, joins fills already running for
//! clients, records manifests in the index, and counts as a pull of every manifest it fetched
//! (readiness and `sinceImagePulled` policies then see the image as wanted).

use crate::cache::Index;
use crate::oci::manifest::{self, RefKind};
use crate::oci::{Digest, Reference, RegistryError};
use crate::registry::blobs::BlobSource;
use crate::registry::fill::{Fill, FillReader};
use crate::registry::{ImageSource, Target};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Blobs of one image fetched at once.
const PARALLEL: usize = 4;
/// How long a verified fill may take to land in the store before it is called lost.
const COMMIT_WAIT: Duration = Duration::from_secs(10);

/// Which platforms of an index to fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    /// Every platform (attestation manifests, `unknown/unknown`, included: they are small and
    /// some clients read them).
    All,
    /// These `os/arch[/variant]` values.
    Only(Vec<String>),
}

impl Platforms {
    /// The request's choice, or else the upstream's `prefetch_platforms`, or else all.
    pub fn choose(asked: Option<Platforms>, t: &Target) -> Platforms {
        match asked {
            Some(p) => p,
            None if t.upstream.settings.prefetch_platforms.is_empty() => Platforms::All,
            None => Platforms::Only(t.upstream.settings.prefetch_platforms.clone()),
        }
    }

    fn wants(&self, platform: Option<&str>) -> bool {
        match self {
            Platforms::All => true,
            Platforms::Only(list) => platform.is_some_and(|p| list.iter().any(|w| w == p)),
        }
    }
}

/// What happened to one manifest or blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Fetched from upstream now (or joined a fill running for a client).
    Fetched,
    /// Already in the store.
    Cached,
    /// Could not be filled.
    Failed,
}

/// One manifest or blob of a prefetched image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// Its digest.
    pub digest: Digest,
    /// `manifest`, `config` or `layer`.
    pub kind: String,
    /// The platform it belongs to (an index's child and its blobs).
    pub platform: Option<String>,
    /// Its size, when known.
    pub size: Option<u64>,
    /// Fetched, cached or failed.
    pub outcome: Outcome,
    /// Why it failed.
    pub error: Option<String>,
}

/// The result of prefetching one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchReport {
    /// The image as asked for.
    pub image: String,
    /// The manifest digest it resolved to.
    pub digest: Option<Digest>,
    /// Platforms filled (for an index).
    pub platforms: Vec<String>,
    /// Manifests and blobs fetched now, and their bytes.
    pub fetched: usize,
    /// Bytes fetched now (manifests included).
    pub fetched_bytes: u64,
    /// Manifests and blobs that were already cached.
    pub cached: usize,
    /// Their bytes.
    pub cached_bytes: u64,
    /// Every manifest and blob.
    pub items: Vec<Item>,
    /// What failed.
    pub errors: Vec<String>,
    /// Everything is in the cache now.
    pub ok: bool,
}

impl PrefetchReport {
    /// The report of `image` before anything was fetched.
    pub fn nothing_yet(image: &str) -> Self {
        PrefetchReport {
            image: image.to_string(),
            digest: None,
            platforms: Vec::new(),
            fetched: 0,
            fetched_bytes: 0,
            cached: 0,
            cached_bytes: 0,
            items: Vec::new(),
            errors: Vec::new(),
            ok: false,
        }
    }
}

/// Prefetches `reference` of `t`: its manifest, the chosen platforms of an index, and every
/// config and layer. Failures are reported per item; nothing is left half-recorded (a fill
/// either verifies and commits, or leaves nothing).
pub async fn prefetch(
    source: &Arc<dyn ImageSource>,
    index: &Arc<dyn Index>,
    t: &Target,
    reference: &Reference,
    image: &str,
    platforms: &Platforms,
) -> PrefetchReport {
    let mut r = PrefetchReport::nothing_yet(image);
    // What the reference named before, to tell a fetch from a hit.
    let before = match reference {
        Reference::Digest(d) => Some(d.clone()),
        Reference::Tag(tag) => {
            let (ix, key, tag) = (index.clone(), t.key(), tag.to_string());
            crate::registry::blocking(move || ix.tag(&key, &tag))
                .await
                .ok()
                .and_then(Result::ok)
                .flatten()
                .map(|rec| rec.digest)
        }
    };
    let was_stored = match &before {
        Some(d) => stored(source, d).await,
        None => false,
    };
    let top = match source.manifest(t, reference).await {
        Ok(m) => m,
        Err(e) => {
            r.errors.push(format!("{image}: {}", e.message));
            return r;
        }
    };
    r.digest = Some(top.digest.clone());
    let hit = was_stored && before.as_ref() == Some(&top.digest);
    source.record_pull(t, &top.digest);
    r.push(item(
        &top.digest,
        "manifest",
        None,
        Some(top.bytes.len() as u64),
        hit,
    ));
    let mut images = Vec::new();
    if manifest::is_index(&top.media_type) {
        let refs = manifest::references(&top.media_type, &top.bytes).unwrap_or_default();
        let chosen: Vec<_> = refs
            .iter()
            .filter(|c| c.kind == RefKind::Manifest && platforms.wants(c.platform.as_deref()))
            .collect();
        if chosen.is_empty() {
            let offered: Vec<&str> = refs.iter().filter_map(|c| c.platform.as_deref()).collect();
            r.errors.push(format!(
                "{image}: no platform of the index matches {platforms:?}; it offers {}",
                offered.join(", ")
            ));
        }
        for c in chosen {
            let hit = stored(source, &c.digest).await;
            match source
                .manifest(t, &Reference::Digest(c.digest.clone()))
                .await
            {
                Ok(m) => {
                    source.record_pull(t, &m.digest);
                    r.platforms.extend(c.platform.clone());
                    r.push(item(
                        &m.digest,
                        "manifest",
                        c.platform.as_ref(),
                        c.size,
                        hit,
                    ));
                    images.push((m, c.platform.clone()));
                }
                Err(e) => r.fail(&c.digest, "manifest", c.platform.as_ref(), c.size, &e),
            }
        }
    } else {
        images.push((top, None));
    }
    let mut blobs = Vec::new();
    for (m, platform) in &images {
        let refs = match manifest::references(&m.media_type, &m.bytes) {
            Ok(refs) => refs,
            Err(e) => {
                r.errors.push(format!("manifest {}: {e}", m.digest));
                continue;
            }
        };
        for b in refs.into_iter().filter(|b| b.kind != RefKind::Manifest) {
            if !blobs
                .iter()
                .any(|(x, _): &(crate::oci::manifest::Reference, _)| x.digest == b.digest)
            {
                blobs.push((b, platform.clone()));
            }
        }
    }
    let mut results: Vec<_> = futures_util::stream::iter(blobs.into_iter().enumerate())
        .map(|(i, (b, platform))| async move {
            let got = fill_blob(source, t, &b.digest).await;
            (i, b, platform, got)
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    // Reported in manifest order (config, then layers), however the fills finished.
    results.sort_by_key(|(i, ..)| *i);
    for (_, b, platform, got) in results {
        let kind = b.kind.as_str();
        match got {
            Ok((hit, size)) => r.push(item(&b.digest, kind, platform.as_ref(), Some(size), hit)),
            Err(e) => r.fail(&b.digest, kind, platform.as_ref(), b.size, &e),
        }
    }
    r.ok = r.errors.is_empty();
    r
}

fn item(d: &Digest, kind: &str, platform: Option<&String>, size: Option<u64>, hit: bool) -> Item {
    Item {
        digest: d.clone(),
        kind: kind.into(),
        platform: platform.cloned(),
        size,
        outcome: if hit {
            Outcome::Cached
        } else {
            Outcome::Fetched
        },
        error: None,
    }
}

impl PrefetchReport {
    fn push(&mut self, i: Item) {
        let size = i.size.unwrap_or(0);
        match i.outcome {
            Outcome::Fetched => {
                self.fetched += 1;
                self.fetched_bytes += size;
            }
            Outcome::Cached => {
                self.cached += 1;
                self.cached_bytes += size;
            }
            Outcome::Failed => {}
        }
        self.items.push(i);
    }

    fn fail(
        &mut self,
        d: &Digest,
        kind: &str,
        platform: Option<&String>,
        size: Option<u64>,
        e: &RegistryError,
    ) {
        self.errors.push(format!("{kind} {d}: {}", e.message));
        self.items.push(Item {
            digest: d.clone(),
            kind: kind.into(),
            platform: platform.cloned(),
            size,
            outcome: Outcome::Failed,
            error: Some(e.message.clone()),
        });
    }
}

async fn stored(source: &Arc<dyn ImageSource>, d: &Digest) -> bool {
    let (s, d) = (source.clone(), d.clone());
    crate::registry::blocking(move || s.is_stored(&d))
        .await
        .unwrap_or(false)
}

/// Brings one blob into the store: `(already cached, size)`.
async fn fill_blob(
    source: &Arc<dyn ImageSource>,
    t: &Target,
    d: &Digest,
) -> Result<(bool, u64), RegistryError> {
    let fill = match source.blob(t, d).await? {
        BlobSource::Stored(b) => return Ok((true, b.size)),
        BlobSource::Filling(f) => f,
    };
    let size = wait_verified(fill).await.map_err(|e| {
        RegistryError::new(
            crate::oci::ErrorCode::Unavailable,
            format!("fill failed: {e}"),
        )
    })?;
    // The commit to the store follows verification; a store that refused the bytes (disk
    // full) served them to readers without keeping them.
    let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
    while !stored(source, d).await {
        if tokio::time::Instant::now() >= deadline {
            return Err(RegistryError::new(
                crate::oci::ErrorCode::Unavailable,
                "verified, but the store did not keep it (is the disk full?)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((false, size))
}

/// Waits for a fill to verify, reading only its last byte (held back until the digest checked).
async fn wait_verified(fill: Arc<Fill>) -> Result<u64, String> {
    let total = fill.started().await.total;
    let start = total.map_or(0, |n| n.saturating_sub(1));
    let mut reader = FillReader::new(fill, start, None);
    let mut read = 0u64;
    while let Some(chunk) = reader.next_chunk().await.map_err(|e| e.to_string())? {
        read += chunk.len() as u64;
    }
    Ok(total.unwrap_or(read))
}
