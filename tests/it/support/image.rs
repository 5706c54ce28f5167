//! Test images built in memory (real gzip tar layers, configs, OCI/Docker manifests and indexes,
//! signed schema1) and a [`Pusher`] that uploads them the way `docker push` does.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use flate2::{write::GzEncoder, Compression};
use reqwest::{header, Method, StatusCode, Url};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{b64std, b64url, http_client, rfc3339, sha256_digest, unix_now, Es256Key};

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
const CREATED: &str = "2024-01-01T00:00:00Z";

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

/// A signed Docker schema1 manifest (libtrust "pretty JWS") with its layers.
///
/// distribution 2.8 stores only the payload and re-signs it with its own key on every GET, so the
/// served bytes differ from the pushed ones (and between GETs); the digest is the payload's.
#[derive(Debug, Clone)]
pub struct Schema1 {
    /// The signed bytes as pushed; `digest` is that of `payload`.
    pub manifest: Manifest,
    /// The manifest without its `signatures` (what libtrust signs).
    pub payload: Bytes,
    /// Layer blobs, base first (the manifest lists them newest first).
    pub layers: Vec<Blob>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Schema1Body {
    schema_version: u32,
    name: String,
    tag: String,
    architecture: String,
    fs_layers: Vec<FsLayer>,
    history: Vec<V1History>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FsLayer {
    blob_sum: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V1History {
    v1_compatibility: String,
}

impl Schema1 {
    /// A schema1 image named `name:tag` with random layers of `sizes`, signed with a fresh key.
    pub fn build(name: &str, tag: &str, seed: u64, sizes: &[u64]) -> Schema1 {
        let layers: Vec<Layer> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| Layer::random(seed * 1000 + 500 + i as u64, size))
            .collect();
        // v1 ids chain base → top; schema1 lists newest first.
        let ids: Vec<String> = (0..layers.len())
            .map(|i| hex::encode(Sha256::digest(format!("{seed}/{i}"))))
            .collect();
        let mut history = Vec::new();
        for (i, id) in ids.iter().enumerate().rev() {
            let mut v1 = json!({"id": id, "created": CREATED,
                "container_config": {"Cmd": [format!("/bin/sh -c #(nop) ADD layer {i}")]}});
            if i > 0 {
                v1["parent"] = json!(ids[i - 1]);
            }
            if i + 1 == layers.len() {
                v1["architecture"] = json!("amd64");
                v1["os"] = json!("linux");
                v1["config"] = json!({"Cmd": ["/bin/sh"]});
            }
            history.push(V1History {
                v1_compatibility: v1.to_string(),
            });
        }
        let body = Schema1Body {
            schema_version: 1,
            name: name.to_owned(),
            tag: tag.to_owned(),
            architecture: "amd64".to_owned(),
            fs_layers: layers
                .iter()
                .rev()
                .map(|l| FsLayer {
                    blob_sum: l.digest.clone(),
                })
                .collect(),
            history,
        };
        let payload = to_json_indented(&body, b"   ");
        let signed = sign_pretty_jws(&payload, &Es256Key::generate());
        Schema1 {
            manifest: Manifest {
                media_type: SCHEMA1_SIGNED.to_owned(),
                digest: sha256_digest(&payload),
                bytes: signed.into(),
            },
            payload: payload.into(),
            layers: layers
                .into_iter()
                .map(|l| Blob {
                    media_type: DOCKER_LAYER.to_owned(),
                    digest: l.digest,
                    data: l.tar_gz,
                })
                .collect(),
        }
    }
}

fn to_json_indented(value: &impl Serialize, indent: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        serde_json::ser::PrettyFormatter::with_indent(indent),
    );
    value.serialize(&mut ser).expect("serialise JSON");
    out
}

/// libtrust's JSON signature: the payload minus its closing brace, a `signatures` member, then the
/// tail again. `protected` records where the payload was cut so verifiers can rebuild it.
fn sign_pretty_jws(payload: &[u8], key: &Es256Key) -> Vec<u8> {
    let close = payload
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .expect("non-empty payload");
    assert_eq!(payload[close], b'}', "payload must be a JSON object");
    let format_length = payload[..close]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .expect("object body")
        + 1;
    let protected = json!({
        "formatLength": format_length,
        "formatTail": b64url(&payload[format_length..]),
        "time": rfc3339(unix_now()),
    });
    let protected = b64url(protected.to_string().as_bytes());
    let signature = key.sign(format!("{protected}.{}", b64url(payload)).as_bytes());
    let point = key.public_point();
    let jwk = json!({
        "crv": "P-256",
        "kid": libtrust_key_id(&key.spki_der()),
        "kty": "EC",
        "x": b64url(&point[1..33]),
        "y": b64url(&point[33..65]),
    });
    let signatures = json!([{"header": {"jwk": jwk, "alg": "ES256"}, "signature": b64url(&signature), "protected": protected}]);
    let signatures =
        String::from_utf8(to_json_indented(&signatures, b"   ")).expect("JSON is UTF-8");
    let mut out = payload[..format_length].to_vec();
    out.extend_from_slice(b",\n   \"signatures\": ");
    out.extend_from_slice(signatures.replace('\n', "\n   ").as_bytes());
    out.extend_from_slice(&payload[format_length..]);
    out
}

/// The signed payload of a libtrust pretty-JWS schema1 manifest (its first signature's
/// `formatLength` bytes plus `formatTail`): what its digest is computed over. `None` if malformed.
pub fn schema1_payload(signed: &[u8]) -> Option<Vec<u8>> {
    let doc: Value = serde_json::from_slice(signed).ok()?;
    let protected = doc["signatures"][0]["protected"].as_str()?;
    let protected: Value = serde_json::from_slice(&b64url_decode(protected)?).ok()?;
    let length = usize::try_from(protected["formatLength"].as_u64()?).ok()?;
    let mut payload = signed.get(..length)?.to_vec();
    payload.extend(b64url_decode(protected["formatTail"].as_str()?)?);
    Some(payload)
}

fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .ok()
}

/// libtrust key id: SHA-256 of the DER public key, first 240 bits, base32, in 12 groups of 4.
/// libtrust rejects a JWK whose `kid` does not match its key.
fn libtrust_key_id(spki_der: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = Sha256::digest(spki_der);
    let bits: Vec<bool> = hash[..30]
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| byte >> i & 1 == 1))
        .collect();
    let chars: Vec<u8> = bits
        .chunks(5)
        .map(|c| ALPHABET[c.iter().fold(0usize, |acc, &b| acc << 1 | usize::from(b))])
        .collect();
    chars
        .chunks(4)
        .map(|g| String::from_utf8_lossy(g).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// A fetched manifest or blob.
#[derive(Debug)]
pub struct Fetched {
    /// Status code.
    pub status: u16,
    /// Content-Type header.
    pub content_type: Option<String>,
    /// Docker-Content-Digest header.
    pub digest: Option<String>,
    /// All response headers.
    pub headers: header::HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Pushes (and reads back) images over the registry API, doing the Bearer token dance itself.
pub struct Pusher {
    client: reqwest::Client,
    base: Url,
    credentials: Option<(String, String)>,
    /// Bearer token per repository, reused until the registry refuses it.
    tokens: Mutex<HashMap<String, String>>,
}

impl Pusher {
    /// An anonymous pusher for the registry at `base_url` (`http://host:port`).
    pub fn new(base_url: &str) -> Pusher {
        Pusher {
            client: http_client(),
            base: Url::parse(base_url).expect("registry base URL"),
            credentials: None,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Sends these credentials to the token server (push scope) or as Basic auth.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Pusher {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Uploads `blob` to `repo` (POST + monolithic PUT) unless the registry already has it.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) {
        let blob_url = self.url(&format!("/v2/{repo}/blobs/{}", blob.digest));
        if self
            .send(repo, Method::HEAD, blob_url, |r| r)
            .await
            .status()
            == StatusCode::OK
        {
            return;
        }
        let start = self
            .send(
                repo,
                Method::POST,
                self.url(&format!("/v2/{repo}/blobs/uploads/")),
                |r| r,
            )
            .await;
        assert_eq!(
            start.status(),
            StatusCode::ACCEPTED,
            "starting upload of {} to {repo}",
            blob.digest
        );
        let location = start
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("upload Location");
        // Location may be relative; it usually already carries a query (`_state=…`).
        let mut put_url = self.base.join(location).expect("resolve upload Location");
        put_url
            .query_pairs_mut()
            .append_pair("digest", &blob.digest);
        let data = blob.data.clone();
        let done = self
            .send(repo, Method::PUT, put_url, move |r| {
                r.header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await;
        let status = done.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "finishing upload of {} to {repo}: {}",
            blob.digest,
            text(done).await
        );
    }

    /// PUTs `manifest` as `repo:reference` (a tag or its digest); returns Docker-Content-Digest.
    pub async fn push_manifest(&self, repo: &str, reference: &str, manifest: &Manifest) -> String {
        let bytes = manifest.bytes.clone();
        let media_type = manifest.media_type.clone();
        let resp = self
            .send(
                repo,
                Method::PUT,
                self.url(&format!("/v2/{repo}/manifests/{reference}")),
                move |r| {
                    r.header(header::CONTENT_TYPE, media_type.as_str())
                        .body(bytes.clone())
                },
            )
            .await;
        let status = resp.status();
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(
            status,
            StatusCode::CREATED,
            "pushing manifest {repo}:{reference}: {}",
            text(resp).await
        );
        digest.expect("Docker-Content-Digest on manifest PUT")
    }

    /// Pushes all blobs of `image`, then its manifest as `repo:tag`; returns the manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) -> String {
        for blob in image.blobs() {
            self.push_blob(repo, blob).await;
        }
        self.push_manifest(repo, tag, &image.manifest).await
    }

    /// Pushes every platform image by digest, then the index as `repo:tag`.
    pub async fn push_index(&self, repo: &str, tag: &str, index: &Index) -> String {
        for image in &index.images {
            self.push_image(repo, &image.manifest.digest, image).await;
        }
        self.push_manifest(repo, tag, &index.manifest).await
    }

    /// Pushes the layers and the signed manifest of a schema1 image as `repo:tag`.
    pub async fn push_schema1(&self, repo: &str, tag: &str, image: &Schema1) -> String {
        for blob in &image.layers {
            self.push_blob(repo, blob).await;
        }
        self.push_manifest(repo, tag, &image.manifest).await
    }

    /// GETs manifest `repo:reference` with the given Accept header.
    pub async fn get_manifest(&self, repo: &str, reference: &str, accept: &str) -> Fetched {
        let accept = accept.to_owned();
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        fetched(
            self.send(repo, Method::GET, url, move |r| {
                r.header(header::ACCEPT, accept.as_str())
            })
            .await,
        )
        .await
    }

    /// GETs blob `digest` from `repo`.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Fetched {
        fetched(
            self.send(
                repo,
                Method::GET,
                self.url(&format!("/v2/{repo}/blobs/{digest}")),
                |r| r,
            )
            .await,
        )
        .await
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry URL")
    }

    /// Sends a request, answering a 401 challenge once (Bearer via the token server, or Basic).
    async fn send(
        &self,
        repo: &str,
        method: Method,
        url: Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> reqwest::Response {
        let cached = self
            .tokens
            .lock()
            .expect("token cache lock")
            .get(repo)
            .cloned();
        let request = |auth: Option<String>| {
            let mut r = build(self.client.request(method.clone(), url.clone()));
            if let Some(auth) = auth {
                r = r.header(header::AUTHORIZATION, auth);
            }
            r
        };
        let resp = request(cached.map(|t| format!("Bearer {t}")))
            .send()
            .await
            .expect("registry request");
        if resp.status() != StatusCode::UNAUTHORIZED {
            return resp;
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let auth = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let token = self.fetch_token(repo, challenge).await;
            self.tokens
                .lock()
                .expect("token cache lock")
                .insert(repo.to_owned(), token.clone());
            format!("Bearer {token}")
        } else {
            let (user, pass) = self
                .credentials
                .clone()
                .expect("registry wants Basic auth but Pusher has no credentials");
            format!("Basic {}", b64std(format!("{user}:{pass}").as_bytes()))
        };
        request(Some(auth))
            .send()
            .await
            .expect("registry request (authenticated)")
    }

    async fn fetch_token(&self, repo: &str, challenge: &str) -> String {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").expect("Bearer challenge without realm");
        let actions = if self.credentials.is_some() {
            "pull,push"
        } else {
            "pull"
        };
        let mut url = Url::parse(realm).expect("token realm URL");
        if let Some(service) = params.get("service") {
            url.query_pairs_mut().append_pair("service", service);
        }
        url.query_pairs_mut()
            .append_pair("scope", &format!("repository:{repo}:{actions}"));
        let mut req = self.client.get(url);
        if let Some((user, pass)) = &self.credentials {
            req = req.basic_auth(user, Some(pass));
        }
        let resp = req.send().await.expect("token request");
        let status = resp.status();
        let body = resp.bytes().await.expect("token response body");
        assert!(
            status.is_success(),
            "token server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let json: Value = serde_json::from_slice(&body).expect("token response is JSON");
        json.get("token")
            .or_else(|| json.get("access_token"))
            .and_then(Value::as_str)
            .expect("token in response")
            .to_owned()
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"` (quoted values may contain commas).
pub fn parse_challenge(challenge: &str) -> HashMap<String, String> {
    let params = challenge.split_once(' ').map(|(_, p)| p).unwrap_or("");
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.insert(key, value.to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    out
}

async fn fetched(resp: reqwest::Response) -> Fetched {
    let header_str = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, content_type, digest) = (
        resp.status().as_u16(),
        header_str("content-type"),
        header_str("docker-content-digest"),
    );
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("read response body");
    Fetched {
        status,
        content_type,
        digest,
        headers,
        body,
    }
}

async fn text(resp: reqwest::Response) -> String {
    resp.text()
        .await
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"))
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
