//! A real cache for lifecycle tests: a registry over a temporary store and SQLite index, with
//! helpers that cache blobs, images and indexes at chosen times, as the request path would.

use crate::cache::index::Pull;
use crate::cache::store::put_bytes;
use crate::cache::{ManifestRecord, RepoKey};
use crate::config::Settings;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::oci::manifest::{references, OCI_INDEX, OCI_MANIFEST};
use crate::oci::Digest;
use crate::registry::Registry;
use std::sync::Arc;

/// One day in milliseconds, the unit index times are in.
pub const DAY: i64 = breakwater_oci::time::DAY_MS;

/// A cache to run lifecycle operations on.
pub struct Fx {
    _dir: tempfile::TempDir,
    /// The registry.
    pub reg: Arc<Registry>,
    /// Its lifecycle.
    pub lc: Arc<Lifecycle>,
    /// "Now" for the times tests choose.
    pub now: i64,
}

/// The index key of `local/<name>`.
pub fn key(full: &str) -> RepoKey {
    full.parse().expect("<upstream>/<name>")
}

impl Fx {
    /// A cache with one upstream `local` at `url` and the extra config `toml` (sections after
    /// `[storage]`'s root, e.g. quota keys then `[gc]`).
    pub fn with(url: &str, storage_extra: &str, toml: &str) -> Fx {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = format!(
            "[storage]\nroot = \"{}\"\n{storage_extra}\n[routing]\ndefault_upstream = \"local\"\npresets = false\n\n[upstreams.local]\nurl = \"{url}\"\nfirst_byte_timeout = \"60s\"\n\n{toml}",
            dir.path().display()
        );
        let settings = Settings::parse(&text).expect("test config parses");
        let reg = Arc::new(Registry::open(&settings, Arc::new(Metrics::new())).expect("open"));
        let lc = Arc::new(Lifecycle::new(
            reg.cache_handle(),
            settings.lifecycle.clone(),
            settings.storage.quota.clone(),
        ));
        Fx {
            _dir: dir,
            reg,
            lc,
            now: crate::now_ms(),
        }
    }

    /// A cache with no reachable upstream, grace period 0 and the extra `[gc]`-and-after text.
    pub fn new(storage_extra: &str) -> Fx {
        Fx::with(
            "http://127.0.0.1:9",
            storage_extra,
            "[gc]\ngrace = \"0s\"\n",
        )
    }

    /// Stores and records a blob committed at `at`.
    pub fn blob(&self, data: &[u8], at: i64) -> Digest {
        let d = Digest::sha256_of(data);
        put_bytes(self.lc.cache.store.as_ref(), &d, data).expect("store blob");
        self.lc
            .cache
            .index
            .record_blob(&d, data.len() as u64, at)
            .expect("record blob");
        d
    }

    fn manifest(
        &self,
        repo: &str,
        tags: &[&str],
        media_type: &str,
        body: String,
        at: i64,
    ) -> Digest {
        let bytes = body.into_bytes();
        let d = self.blob(&bytes, at);
        let refs = references(media_type, &bytes).expect("manifest parses");
        let rec = ManifestRecord {
            digest: d.clone(),
            media_type: media_type.into(),
            size: bytes.len() as u64,
        };
        let k = key(repo);
        self.lc
            .cache
            .index
            .record_manifest(&k, &rec, &refs, tags.first().copied(), at)
            .expect("record manifest");
        for t in tags.iter().skip(1) {
            self.lc
                .cache
                .index
                .record_manifest(&k, &rec, &refs, Some(t), at)
                .expect("tag manifest");
        }
        d
    }

    /// Caches an image manifest (with a config unique to it) over `layers`, tagged `tags`.
    pub fn image(&self, repo: &str, tags: &[&str], layers: &[&Digest], at: i64) -> Digest {
        let config = self.blob(
            format!("config {repo} {tags:?} {at} {layers:?}").as_bytes(),
            at,
        );
        let desc = |d: &Digest, mt: &str| {
            let size = self.lc.cache.store.stat(d).unwrap().unwrap_or(0);
            format!(r#"{{"mediaType":"{mt}","digest":"{d}","size":{size}}}"#)
        };
        let layers: Vec<String> = layers
            .iter()
            .map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar+gzip"))
            .collect();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{},"layers":[{}]}}"#,
            desc(&config, "application/vnd.oci.image.config.v1+json"),
            layers.join(",")
        );
        self.manifest(repo, tags, OCI_MANIFEST, body, at)
    }

    /// Caches an index listing `children` (already cached image manifests) for amd64, arm64, ….
    pub fn index(&self, repo: &str, tags: &[&str], children: &[&Digest], at: i64) -> Digest {
        let arch = ["amd64", "arm64", "s390x", "ppc64le"];
        let entries: Vec<String> = children
            .iter()
            .zip(arch)
            .map(|(c, a)| {
                let size = self.lc.cache.store.stat(c).unwrap().unwrap_or(0);
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{c}","size":{size},"platform":{{"os":"linux","architecture":"{a}"}}}}"#
                )
            })
            .collect();
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{}]}}"#,
            entries.join(",")
        );
        self.manifest(repo, tags, OCI_INDEX, body, at)
    }

    /// Caches the manifest `d` (already cached elsewhere) in `repo` too, tagged `tag`, at `at`.
    pub fn alias(&self, repo: &str, tag: &str, d: &Digest, at: i64) {
        let rec = self
            .lc
            .cache
            .index
            .manifest(d)
            .unwrap()
            .expect("manifest cached");
        let bytes = crate::cache::store::read_bytes(self.lc.cache.store.as_ref(), d)
            .unwrap()
            .expect("manifest stored");
        let refs = references(&rec.media_type, &bytes).expect("manifest parses");
        self.lc
            .cache
            .index
            .record_manifest(&key(repo), &rec, &refs, Some(tag), at)
            .expect("record manifest");
    }

    /// Records a pull of `d` from `repo` at `at`.
    pub fn pull(&self, repo: &str, d: &Digest, at: i64) {
        self.lc
            .cache
            .index
            .record_pulls(&[Pull {
                repo: key(repo),
                digest: d.clone(),
                count: 1,
                at_ms: at,
            }])
            .expect("record pull");
    }

    /// Whether the store holds `d`.
    pub fn stored(&self, d: &Digest) -> bool {
        self.lc.cache.store.stat(d).unwrap().is_some()
    }

    /// Events of `kind`, oldest first.
    pub fn events(&self, kind: &str) -> Vec<crate::cache::Event> {
        let mut e = self
            .lc
            .cache
            .index
            .events(&crate::cache::EventQuery {
                kind: Some(kind.into()),
                limit: Some(10_000),
                ..Default::default()
            })
            .unwrap();
        e.reverse();
        e
    }
}
