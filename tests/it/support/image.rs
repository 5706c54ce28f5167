//! Test images built in memory: real gzip tar layers, configs, OCI/Docker manifests and indexes.
//! Signed schema1 images live in `schema1.rs` and the uploader in `pusher.rs`; both are re-exported
//! here so tests find every image tool under `image::`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use flate2::{write::GzEncoder, Compression};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::sha256_digest;
// Re-exports for convenience; a test binary that does not use them must not warn.
#[allow(unused_imports)]
pub use super::pusher::{parse_challenge, Fetched, Pusher};
#[allow(unused_imports)]
pub use super::schema1::{schema1_payload, Schema1};

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI gzip layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker schema2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Signed Docker schema1 manifest.
pub const SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Every manifest type, as a client that understands them all sends in Accept.
pub const ACCEPT_ALL: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Fixed timestamp inside images, so the same seed always gives the same digests.
pub(super) const CREATED: &str = "2024-01-01T00:00:00Z";

/// Which manifest family an image or index uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI media types.
    Oci,
    /// Docker schema2 media types.
    Docker,
}

/// An image platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`.
    pub os: &'static str,
    /// e.g. `amd64`.
    pub architecture: &'static str,
    /// e.g. `v8` for arm64.
    pub variant: Option<&'static str>,
}

/// linux/amd64.
pub const LINUX_AMD64: Platform = Platform {
    os: "linux",
    architecture: "amd64",
    variant: None,
};
/// linux/arm64/v8.
pub const LINUX_ARM64: Platform = Platform {
    os: "linux",
    architecture: "arm64",
    variant: Some("v8"),
};

impl Platform {
    fn to_json(self) -> Value {
        let mut v = json!({"os": self.os, "architecture": self.architecture});
        if let Some(variant) = self.variant {
            v["variant"] = json!(variant);
        }
        v
    }
}

/// Content-addressed bytes with their media type (a layer, config or manifest).
#[derive(Debug, Clone)]
pub struct Blob {
    /// Media type used in descriptors and Content-Type.
    pub media_type: String,
    /// `sha256:<hex>` of `data`.
    pub digest: String,
    /// The exact bytes (cheap to clone).
    pub data: Bytes,
}

impl Blob {
    /// Wraps `data`, computing its digest.
    pub fn new(media_type: &str, data: impl Into<Bytes>) -> Blob {
        let data = data.into();
        Blob {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&data),
            data,
        }
    }

    /// An OCI descriptor for this blob.
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.data.len()})
    }
}

/// A gzip-compressed tar layer.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The compressed blob bytes.
    pub tar_gz: Bytes,
    /// Digest of `tar_gz` (what registries store).
    pub digest: String,
    /// Digest of the uncompressed tar (what image configs list).
    pub diff_id: String,
}

impl Layer {
    /// A layer holding `payload_len` incompressible pseudo-random bytes derived from `seed`.
    /// Built in one streaming pass (generator → tar → hash → gzip), so only the result is held.
    /// Layers of 1 MiB and more are memoised for the life of the test process: several tests share
    /// the same big layers and building one takes seconds in a debug build.
    pub fn random(seed: u64, payload_len: u64) -> Layer {
        static BIG: OnceLock<Mutex<HashMap<(u64, u64), Layer>>> = OnceLock::new();
        if payload_len < 1 << 20 {
            return Layer::build_random(seed, payload_len);
        }
        // Held while building, so concurrent tests wanting the same layer build it once.
        let mut big = BIG
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        big.entry((seed, payload_len))
            .or_insert_with(|| Layer::build_random(seed, payload_len))
            .clone()
    }

    fn build_random(seed: u64, payload_len: u64) -> Layer {
        let label = format!("breakwater test layer, seed {seed}, {payload_len} random bytes\n");
        let mut tar = LayerWriter::new(payload_len as usize, Compression::none());
        tar.append(
            &format!("breakwater/seed-{seed}.txt"),
            label.len() as u64,
            label.as_bytes(),
        );
        let random = SeededBytes {
            seed,
            position: 0,
            remaining: payload_len,
        };
        tar.append(&format!("breakwater/seed-{seed}.bin"), payload_len, random);
        tar.finish()
    }

    /// A small layer with the given files (compressed at the default level).
    pub fn from_files(files: &[(&str, &[u8])]) -> Layer {
        let mut tar = LayerWriter::new(
            files.iter().map(|(_, c)| c.len()).sum(),
            Compression::default(),
        );
        for (path, content) in files {
            tar.append(path, content.len() as u64, *content);
        }
        tar.finish()
    }
}

/// Counter-based generator (splitmix64 finaliser of seed + index): output does not depend on how
/// the tar writer sizes its reads, and random bytes defeat gzip as real binaries partly do.
struct SeededBytes {
    seed: u64,
    position: u64,
    remaining: u64,
}

impl SeededBytes {
    fn word(&self, index: u64) -> [u8; 8] {
        mix64(
            self.seed
                .wrapping_add(index.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
        .to_le_bytes()
    }
}

impl Read for SeededBytes {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let mut out = &mut buf[..n];
        // Byte-wise until word-aligned, then whole words: fast enough even in debug builds.
        while !out.is_empty() && (!self.position.is_multiple_of(8) || out.len() < 8) {
            out[0] = self.word(self.position / 8)[(self.position % 8) as usize];
            out = &mut out[1..];
            self.position += 1;
        }
        let mut words = out.chunks_exact_mut(8);
        for chunk in &mut words {
            chunk.copy_from_slice(&self.word(self.position / 8));
            self.position += 8;
        }
        for byte in words.into_remainder() {
            *byte = self.word(self.position / 8)[(self.position % 8) as usize];
            self.position += 1;
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Tar bytes are hashed (diff_id) on their way into the gzip encoder.
struct HashingWriter {
    hasher: Sha256,
    gzip: GzEncoder<Vec<u8>>,
}

impl Write for HashingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.gzip.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.gzip.flush()
    }
}

struct LayerWriter(tar::Builder<HashingWriter>);

impl LayerWriter {
    fn new(expected_len: usize, level: Compression) -> LayerWriter {
        // Reserve enough up front that a 64 MiB layer is never copied by Vec growth.
        let out = Vec::with_capacity(expected_len + expected_len / 64 + 64 * 1024);
        LayerWriter(tar::Builder::new(HashingWriter {
            hasher: Sha256::new(),
            gzip: GzEncoder::new(out, level),
        }))
    }

    fn append(&mut self, path: &str, size: u64, content: impl Read) {
        let mut header = tar::Header::new_ustar();
        header.set_path(path).expect("tar path");
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(1_704_067_200); // CREATED, for reproducible digests
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        self.0.append(&header, content).expect("write tar entry");
    }

    fn finish(self) -> Layer {
        let writer = self.0.into_inner().expect("finish tar");
        let diff_id = format!("sha256:{}", hex::encode(writer.hasher.finalize()));
        let tar_gz = Bytes::from(writer.gzip.finish().expect("finish gzip"));
        Layer {
            digest: sha256_digest(&tar_gz),
            tar_gz,
            diff_id,
        }
    }
}

/// A manifest's exact bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Media type (Content-Type on PUT/GET).
    pub media_type: String,
    /// The exact bytes pushed.
    pub bytes: Bytes,
    /// Content digest: `sha256:<hex>` of `bytes`, except for schema1 where registries digest the
    /// payload without signatures (see [`schema1_payload`]).
    pub digest: String,
}

impl Manifest {
    fn from_json(media_type: &str, value: &Value) -> Manifest {
        let bytes = Bytes::from(serde_json::to_vec_pretty(value).expect("serialise manifest"));
        Manifest {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    /// A descriptor for this manifest (as listed in an index).
    pub fn descriptor(&self) -> Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// A single-platform image: config, layers and its manifest.
#[derive(Debug, Clone)]
pub struct Image {
    /// OCI or Docker media types.
    pub format: Format,
    /// The platform in the config (and in an index entry).
    pub platform: Platform,
    /// The config blob.
    pub config: Blob,
    /// Layer blobs, base first.
    pub layers: Vec<Blob>,
    /// The image manifest.
    pub manifest: Manifest,
}

impl Image {
    /// Assembles config and manifest around `layers`.
    pub fn build(format: Format, platform: Platform, layers: Vec<Layer>) -> Image {
        let (config_type, layer_type, manifest_type) = match format {
            Format::Oci => (OCI_CONFIG, OCI_LAYER, OCI_MANIFEST),
            Format::Docker => (DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST),
        };
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "created": CREATED,
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
            "history": layers.iter().enumerate()
                .map(|(i, _)| json!({"created": CREATED, "created_by": format!("breakwater test layer {i}")}))
                .collect::<Vec<_>>(),
        });
        if let Some(variant) = platform.variant {
            config["variant"] = json!(variant);
        }
        let config = Blob::new(
            config_type,
            serde_json::to_vec(&config).expect("serialise config"),
        );
        let layers: Vec<Blob> = layers
            .into_iter()
            .map(|l| Blob {
                media_type: layer_type.to_owned(),
                digest: l.digest,
                data: l.tar_gz,
            })
            .collect();
        let manifest = Manifest::from_json(
            manifest_type,
            &json!({
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": config.descriptor(),
                "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            }),
        );
        Image {
            format,
            platform,
            config,
            layers,
            manifest,
        }
    }

    /// A linux/amd64 image of random layers with these payload sizes, seeded from `seed`.
    pub fn with_layer_sizes(format: Format, seed: u64, sizes: &[u64]) -> Image {
        Image::for_platform(format, LINUX_AMD64, seed, sizes)
    }

    /// A small two-layer (1 KiB + 32 KiB) linux/amd64 image.
    pub fn small(format: Format, seed: u64) -> Image {
        Image::with_layer_sizes(format, seed, &[1024, 32 * 1024])
    }

    fn for_platform(format: Format, platform: Platform, seed: u64, sizes: &[u64]) -> Image {
        let layers = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Layer::random(seed * 1000 + i as u64, size))
            .collect();
        Image::build(format, platform, layers)
    }

    /// Config first, then layers.
    pub fn blobs(&self) -> Vec<&Blob> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }
}

/// A multi-platform index (OCI index or Docker manifest list) and its images.
#[derive(Debug, Clone)]
pub struct Index {
    /// The index manifest.
    pub manifest: Manifest,
    /// The per-platform images, in index order.
    pub images: Vec<Image>,
}

impl Index {
    /// Lists `images` (their own platforms) in an index of `format`.
    pub fn build(format: Format, images: Vec<Image>) -> Index {
        let media_type = match format {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        };
        let entries: Vec<Value> = images
            .iter()
            .map(|image| {
                let mut entry = image.manifest.descriptor();
                entry["platform"] = image.platform.to_json();
                entry
            })
            .collect();
        let manifest = Manifest::from_json(
            media_type,
            &json!({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}),
        );
        Index { manifest, images }
    }

    /// linux/amd64 + linux/arm64 small images of `format`.
    pub fn multi_arch(format: Format, seed: u64) -> Index {
        let sizes = [2048, 16 * 1024];
        Index::build(
            format,
            vec![
                Image::for_platform(format, LINUX_AMD64, seed, &sizes),
                Image::for_platform(format, LINUX_ARM64, seed + 1, &sizes),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::SeededBytes;
    use std::io::Read;

    #[test]
    fn seeded_bytes_do_not_depend_on_read_sizes() {
        let read_all = |chunk: usize| {
            let mut source = SeededBytes {
                seed: 9,
                position: 0,
                remaining: 1000,
            };
            let mut out = Vec::new();
            let mut buf = vec![0u8; chunk];
            loop {
                let n = source.read(&mut buf).expect("read");
                if n == 0 {
                    return out;
                }
                out.extend_from_slice(&buf[..n]);
            }
        };
        let whole = read_all(4096);
        assert_eq!(whole.len(), 1000);
        assert_eq!(read_all(7), whole);
        assert_eq!(read_all(13), whole);
    }
}
