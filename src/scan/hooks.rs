//! The scanner plugged into the registry: scan on cache and the pull gate, as the registry's
//! [`ManifestHooks`] (main installs them once the scanner is built).

use crate::registry::manifests::CachedManifest;
use crate::registry::{ManifestHooks, Target, Verdict};
use crate::scan::scanner::Scanner;
use async_trait::async_trait;
use std::sync::Arc;

/// The scanner's manifest hooks.
pub struct ScanHooks(pub Arc<Scanner>);

#[async_trait]
impl ManifestHooks for ScanHooks {
    fn on_cached(&self, t: &Target, m: &Arc<CachedManifest>) {
        self.0.on_cached(t, m);
    }

    async fn gate(&self, t: &Target, m: &CachedManifest) -> Verdict {
        self.0.gate(t, m).await
    }
}
