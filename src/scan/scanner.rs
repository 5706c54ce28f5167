//! The scanner: turns a cached image manifest into a stored inventory and findings.
//!
//! Each layer is analysed once per (digest, analyzer version): read from the blob store, or,
//! when the cache does not hold it yet, analysed as it streams through the normal fill path
//! (joining a fill a client started, or starting one; the fill caches it as usual). An image's
//! inventory is the merge of its layers' stored analyses, matched against the vulnerability
//! data in use. Scans of one image, and analyses of one layer, are single-flight: the on-cache
//! trigger, the pull gate and an API call arriving together share one piece of work.

use crate::cache::{Index, ScanIndex};
use crate::metrics::Metrics;
use crate::oci::manifest::{self, RefKind};
use crate::oci::{Digest, ErrorCode, Reference, RegistryError};
use crate::registry::blobs::BlobSource;
use crate::registry::flight::Flights;
use crate::registry::manifests::CachedManifest;
use crate::registry::{blocking, ImageSource, Target};
use crate::scan::fill_reader::BlockingFillReader;
use crate::scan::findings::match_inventory;
use crate::scan::inventory::merge;
use crate::scan::layer::{analyze_layer, LayerAnalysis};
use crate::scan::metrics::ScanMetrics;
use crate::scan::record::{ImageScan, ScanStatus};
use crate::scan::settings::ScanSettings;
use crate::scan::vulndb::{DbSnapshot, VulnDb};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// What started a scan (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The image was just cached.
    OnCache,
    /// The admin API or CLI asked.
    OnDemand,
    /// A gated manifest was requested.
    Gate,
    /// The stored inventory was made by an older analyzer (a breakwater upgrade).
    Upgrade,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::OnCache => "on_cache",
            Trigger::OnDemand => "on_demand",
            Trigger::Gate => "gate",
            Trigger::Upgrade => "upgrade",
        }
    }
}

/// Image config media types the scanner understands; anything else is an artifact.
const IMAGE_CONFIGS: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// The vulnerability scanner of one cache.
pub struct Scanner {
    pub(crate) settings: ScanSettings,
    pub(crate) store: Arc<dyn ScanIndex>,
    pub(crate) db: Arc<VulnDb>,
    pub(crate) metrics: Arc<ScanMetrics>,
    pub(crate) index: Arc<dyn Index>,
    /// Where manifests and layers are read: the cache (through its fills when missing).
    source: Arc<dyn ImageSource>,
    images: Flights<String, Arc<ImageScan>>,
    layers: Flights<String, Arc<LayerAnalysis>>,
    pub(crate) rematching: tokio::sync::Mutex<()>,
    /// Held by a round of upgrade rescans (one round at a time).
    pub(crate) upgrading: tokio::sync::Mutex<()>,
}

/// A scan error as the registry and API report it.
pub(crate) fn scan_error(msg: impl std::fmt::Display) -> RegistryError {
    RegistryError::new(ErrorCode::Unavailable, msg.to_string())
}

impl Scanner {
    /// A scanner keeping its results in `store`, the scan tables the index handed out; images
    /// are read from `source`.
    pub fn new(
        settings: &ScanSettings,
        store: Arc<dyn ScanIndex>,
        index: Arc<dyn Index>,
        source: Arc<dyn ImageSource>,
        metrics: &Metrics,
    ) -> Self {
        Scanner {
            settings: settings.clone(),
            store,
            db: Arc::new(VulnDb::new(settings.osv_paths.clone())),
            metrics: Arc::new(ScanMetrics::new(metrics)),
            index,
            source,
            images: Flights::default(),
            layers: Flights::default(),
            rematching: tokio::sync::Mutex::new(()),
            upgrading: tokio::sync::Mutex::new(()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ScanSettings {
        &self.settings
    }

    /// The vulnerability data.
    pub fn db(&self) -> &VulnDb {
        &self.db
    }

    /// The stored results.
    pub fn store(&self) -> &dyn ScanIndex {
        &*self.store
    }

    /// The metrics.
    pub fn metrics(&self) -> &ScanMetrics {
        &self.metrics
    }

    /// Where images are read from.
    pub fn source(&self) -> &Arc<dyn ImageSource> {
        &self.source
    }

    /// Called when a manifest was first cached: scans an image manifest in the background
    /// if its repository is configured for scan on cache. Indexes are not scanned here; each
    /// child is, when it is cached in turn (clients fetch the platform they run).
    pub fn on_cached(self: &Arc<Self>, t: &Target, m: &CachedManifest) {
        let repo = t.key().to_string();
        if manifest::is_index(&m.media_type) || !self.settings.scans_on_cache(&repo) {
            return;
        }
        let (this, t, d) = (self.clone(), t.clone(), m.digest.clone());
        tokio::spawn(async move {
            if let Err(e) = this.image(&t, &d, Trigger::OnCache, false).await {
                tracing::warn!(%repo, digest = %d, "scan on cache failed: {}", e.message);
            }
        });
    }

    /// The stored scan of an image manifest, if any, rematched first if the data changed.
    pub async fn stored(
        self: &Arc<Self>,
        digest: &Digest,
    ) -> Result<Option<Arc<ImageScan>>, RegistryError> {
        let (store, d) = (self.store.clone(), digest.clone());
        let found = blocking(move || store.image(&d))
            .await?
            .map_err(scan_error)?;
        let Some(scan) = found else { return Ok(None) };
        match self.db.current() {
            // Matched against older data: bring every stale row up to date (one rematch at a
            // time, so no change is reported twice), then read this one again.
            Some(snap) if scan.db_hash.as_deref() != Some(snap.hash.as_str()) => {
                self.rematch_all().await.map_err(scan_error)?;
                let (store, d) = (self.store.clone(), digest.clone());
                let again = blocking(move || store.image(&d))
                    .await?
                    .map_err(scan_error)?;
                Ok(again.map(Arc::new))
            }
            _ => Ok(Some(Arc::new(scan))),
        }
    }

    /// The current scan of an image manifest: stored (and up to date), or made now. `force`
    /// redoes the merge and match (layers are still reused while the analyzer is unchanged).
    pub async fn image(
        self: &Arc<Self>,
        t: &Target,
        digest: &Digest,
        trigger: Trigger,
        force: bool,
    ) -> Result<Arc<ImageScan>, RegistryError> {
        if !force {
            // A failed scan (upstream down, a layer unreadable) is retried when asked for again;
            // layers already analysed are reused.
            match self.stored(digest).await? {
                Some(s) if s.status != ScanStatus::Failed => return Ok(s),
                _ => {}
            }
        }
        let (this, t, d) = (self.clone(), t.clone(), digest.clone());
        self.images
            .run(digest.to_string(), move || async move {
                this.scan_now(&t, &d, trigger).await
            })
            .await
    }

    async fn scan_now(
        self: &Arc<Self>,
        t: &Target,
        digest: &Digest,
        trigger: Trigger,
    ) -> Result<Arc<ImageScan>, RegistryError> {
        let started = Instant::now();
        let m = self
            .source
            .manifest(t, &Reference::Digest(digest.clone()))
            .await?;
        if manifest::is_index(&m.media_type) {
            return Err(RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!("{digest} is an index: its platform images are scanned one by one"),
            ));
        }
        let plan = plan(&m)?;
        let mut status = ScanStatus::Complete;
        let mut problems = plan.skipped.clone();
        let mut analyses = Vec::new();
        if !plan.supported {
            status = ScanStatus::UnsupportedImage;
        } else {
            let results =
                futures_util::future::join_all(plan.layers.iter().map(|l| self.layer(t, l))).await;
            for (l, r) in plan.layers.iter().zip(results) {
                match r {
                    Ok(a) => analyses.push(a),
                    Err(e) => {
                        status = ScanStatus::Failed;
                        problems.push(format!("layer {l}: {}", e.message));
                    }
                }
            }
        }
        let inventory = merge(analyses.iter().map(|a| a.as_ref()));
        let snap = self.db.current();
        let now = crate::now_ms();
        let mut scan = ImageScan {
            digest: digest.clone(),
            upstream: t.upstream.name.clone(),
            repository: t.repo.to_string(),
            status,
            description: String::new(),
            layers: plan.layers.clone(),
            findings: Vec::new(),
            scanned_at_ms: now,
            matched_at_ms: now,
            db_hash: None,
            db_updated_at_ms: None,
            inventory,
        };
        if let Some(snap) = &snap {
            scan.findings = match_inventory(&snap.db, &scan.inventory);
            scan.db_hash = Some(snap.hash.clone());
            scan.db_updated_at_ms = Some(snap.updated_at_ms());
        } else if scan.status == ScanStatus::Complete {
            scan.status = ScanStatus::FindingsUnavailable;
        }
        scan.description = describe(&scan, &problems, self.db.configured());
        let this = self.clone();
        let scan2 = scan.clone();
        blocking(move || this.record_scan(scan2)).await??;
        self.metrics
            .scans
            .with_label_values(&[trigger.as_str(), scan.status.as_str()])
            .inc();
        self.metrics
            .scan_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            repo = %t.repo, %digest, status = scan.status.as_str(),
            packages = scan.inventory.packages.len(), findings = scan.findings.len(),
            elapsed_ms = started.elapsed().as_millis() as u64, "image scanned"
        );
        // Data swapped in while this scan matched against the old one: match again now.
        match self.db.current() {
            Some(now_snap) if snap.as_ref().map(|s| &s.hash) != Some(&now_snap.hash) => self
                .stored(digest)
                .await?
                .ok_or_else(|| scan_error("the image's scan was removed while it ran")),
            _ => Ok(Arc::new(scan)),
        }
    }

    /// Stores a fresh scan, records events against any previous one, refreshes the gauge.
    fn record_scan(&self, scan: ImageScan) -> Result<(), RegistryError> {
        let previous = self.store.image(&scan.digest).map_err(scan_error)?;
        self.store.put_image(&scan).map_err(scan_error)?;
        let prev = previous
            .as_ref()
            .filter(|p| p.db_hash.is_some())
            .map(|p| p.findings.as_slice());
        let (events, _, _) = self.change_events(prev, &scan);
        if !events.is_empty() {
            self.index.record_events(&events).map_err(scan_error)?;
        }
        self.refresh_gauge();
        Ok(())
    }

    /// The layer's analysis: stored, or made now from the store (fetching it through the
    /// cache first when missing).
    async fn layer(
        self: &Arc<Self>,
        t: &Target,
        digest: &Digest,
    ) -> Result<Arc<LayerAnalysis>, RegistryError> {
        let (store, d) = (self.store.clone(), digest.clone());
        if let Some(a) = blocking(move || store.layer(&d))
            .await?
            .map_err(scan_error)?
        {
            return Ok(Arc::new(a));
        }
        let (this, t, d) = (self.clone(), t.clone(), digest.clone());
        self.layers
            .run(digest.to_string(), move || async move {
                let (store, key) = (this.store.clone(), d.clone());
                // Another flight may have finished between the lookup and this one starting.
                if let Some(a) = blocking(move || store.layer(&key))
                    .await?
                    .map_err(scan_error)?
                {
                    return Ok(Arc::new(a));
                }
                let source = layer_source(this.source.as_ref(), &t, &d).await?;
                let (store, metrics, key) = (this.store.clone(), this.metrics.clone(), d.clone());
                let handle = tokio::runtime::Handle::current();
                let a = blocking(move || -> Result<LayerAnalysis, String> {
                    metrics.layer_reads.inc();
                    let a = analyze_source(source, handle)
                        .map_err(|e| format!("analysing the layer failed: {e}"))?;
                    store
                        .put_layer(&key, &a, crate::now_ms())
                        .map_err(|e| e.to_string())?;
                    Ok(a)
                })
                .await?
                .map_err(scan_error)?;
                Ok(Arc::new(a))
            })
            .await
    }

    /// Findings per severity over every stored image, into the gauge.
    pub(crate) fn refresh_gauge(&self) {
        if let Ok(totals) = self.store.totals() {
            for (sev, n) in totals {
                self.metrics
                    .findings
                    .with_label_values(&[sev.as_str()])
                    .set(n);
            }
        }
    }

    /// Updates the gauges that describe the data in use.
    pub fn refresh_db_gauges(&self) {
        if let Some(s) = self.db.current() {
            self.metrics.show_db(&s, crate::now_ms());
        }
    }

    /// Installs a snapshot directly (tests, benchmarks): no file watching involved.
    pub fn install_db(&self, snap: Arc<DbSnapshot>) {
        self.db.install(snap);
    }
}

/// Where a layer's bytes come from: the store, or the fill fetching them now.
enum LayerSource {
    Stored(crate::cache::store::StoredBlob),
    Filling(Arc<crate::registry::fill::Fill>),
}

/// The layer's bytes: from the store, else through the cache's fill (joined or started).
async fn layer_source(
    source: &dyn ImageSource,
    t: &Target,
    digest: &Digest,
) -> Result<LayerSource, RegistryError> {
    Ok(match source.blob(t, digest).await? {
        BlobSource::Stored(b) => LayerSource::Stored(b),
        BlobSource::Filling(f) => LayerSource::Filling(f),
    })
}

/// Analyses a layer in one pass (blocking). A fill is analysed as it streams, then read to
/// its end so that only bytes that verified against the digest are trusted.
fn analyze_source(
    source: LayerSource,
    handle: tokio::runtime::Handle,
) -> Result<LayerAnalysis, String> {
    const BUF: usize = 256 << 10;
    match source {
        LayerSource::Stored(blob) => {
            analyze_layer(std::io::BufReader::with_capacity(BUF, blob.into_read()))
                .map_err(|e| e.to_string())
        }
        LayerSource::Filling(fill) => {
            let mut reader = BlockingFillReader::new(fill, handle);
            let a = analyze_layer(std::io::BufReader::with_capacity(BUF, &mut reader))
                .map_err(|e| e.to_string())?;
            reader.finish().map_err(|e| e.to_string())?;
            Ok(a)
        }
    }
}

/// Which layers an image manifest has, and whether it is an image at all.
struct Plan {
    layers: Vec<Digest>,
    supported: bool,
    skipped: Vec<String>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
}

#[derive(Deserialize)]
struct RawImage {
    #[serde(default)]
    config: Option<RawDescriptor>,
    #[serde(default)]
    layers: Vec<RawDescriptor>,
}

fn plan(m: &CachedManifest) -> Result<Plan, RegistryError> {
    let invalid = |e: String| RegistryError::new(ErrorCode::ManifestInvalid, e);
    let refs = manifest::references(&m.media_type, &m.bytes).map_err(|e| invalid(e.to_string()))?;
    // Schema1 has no config or layer media types; its references are already base first.
    let raw: RawImage = serde_json::from_slice(&m.bytes).map_err(|e| invalid(e.to_string()))?;
    let supported = match raw.config.as_ref().and_then(|c| c.media_type.as_deref()) {
        Some(t) => IMAGE_CONFIGS.contains(&t),
        None => raw.config.is_none(),
    };
    let types: HashMap<&str, &str> = raw
        .layers
        .iter()
        .filter_map(|l| Some((l.digest.as_str(), l.media_type.as_deref()?)))
        .collect();
    let mut layers = Vec::new();
    let mut skipped = Vec::new();
    for r in refs.into_iter().filter(|r| r.kind == RefKind::Layer) {
        match types.get(r.digest.to_string().as_str()) {
            // Foreign (Windows base) and non-distributable layers are not served by registries.
            Some(t) if t.contains("foreign") || t.contains("nondistributable") => {
                skipped.push(format!("layer {} ({t}) not scanned", r.digest))
            }
            _ => layers.push(r.digest),
        }
    }
    Ok(Plan {
        layers,
        supported,
        skipped,
    })
}

/// The status description ECR would give, with what breakwater knows about gaps.
fn describe(scan: &ImageScan, problems: &[String], db_configured: bool) -> String {
    let mut d = match scan.status {
        ScanStatus::Complete => format!(
            "The scan was completed successfully: {} packages in {} layers.",
            scan.inventory.packages.len(),
            scan.layers.len()
        ),
        ScanStatus::Failed => {
            "The scan could not read every layer; findings cover the others.".into()
        }
        ScanStatus::UnsupportedImage => {
            "Not a container image (its config is not an image config); nothing to scan.".into()
        }
        ScanStatus::FindingsUnavailable if db_configured => format!(
            "{} packages inventoried; the vulnerability data is not loaded yet.",
            scan.inventory.packages.len()
        ),
        ScanStatus::FindingsUnavailable => format!(
            "{} packages inventoried; no vulnerability data is configured (scan.osv_paths).",
            scan.inventory.packages.len()
        ),
    };
    let has_os_packages = scan.inventory.packages.iter().any(|p| p.kind.is_os());
    if has_os_packages && scan.inventory.os.is_none() {
        d.push_str(" No os-release found: OS packages cannot be matched.");
    }
    for p in problems.iter().chain(&scan.inventory.problems).take(5) {
        d.push(' ');
        d.push_str(p);
        d.push('.');
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(config_type: &str, layer_types: &[&str]) -> CachedManifest {
        let layers: Vec<serde_json::Value> = layer_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({"mediaType": t, "size": 1,
                    "digest": Digest::sha256_of(&[i as u8]).to_string()})
            })
            .collect();
        let body = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": config_type, "size": 1,
                       "digest": Digest::sha256_of(b"c").to_string()},
            "layers": layers,
        });
        CachedManifest::new(
            Digest::sha256_of(b"m"),
            "application/vnd.oci.image.manifest.v1+json".into(),
            serde_json::to_vec(&body).unwrap().into(),
        )
    }

    #[test]
    fn plans_image_layers_and_recognises_artifacts() {
        let p = plan(&manifest(
            "application/vnd.oci.image.config.v1+json",
            &[
                "application/vnd.oci.image.layer.v1.tar+gzip",
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ],
        ))
        .unwrap();
        assert!(p.supported);
        assert_eq!(p.layers.len(), 2, "the foreign layer is skipped");
        assert_eq!(p.layers[1], Digest::sha256_of(&[2]));
        assert!(p.skipped[0].contains("foreign"));
        let sig = plan(&manifest(
            "application/vnd.dev.cosign.artifact.sig.v1+json",
            &["application/vnd.dev.cosign.simplesigning.v1+json"],
        ))
        .unwrap();
        assert!(!sig.supported);
        let bad = CachedManifest {
            bytes: bytes::Bytes::from_static(b"not json"),
            ..manifest("x", &[])
        };
        assert!(plan(&bad).is_err());
    }
}
