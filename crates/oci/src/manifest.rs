//! Manifest media types, client Accept negotiation, and the references a manifest holds.
//!
//! Manifests are always kept and served as the exact upstream bytes; this module only reads
//! them to learn what they point at (for prefetch, GC and scanning).

use super::digest::Digest;
use serde::Deserialize;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 1, signed (legacy).
pub const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// Docker schema 1, unsigned (legacy).
pub const DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";

/// Every manifest type, most preferred first: what the cache sends upstream as `Accept`.
pub const ALL_MANIFEST_TYPES: [&str; 6] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_V2,
    DOCKER_V1_SIGNED,
    DOCKER_V1,
];

/// The `Accept` header value sent upstream.
pub fn upstream_accept() -> String {
    ALL_MANIFEST_TYPES.join(", ")
}

/// Largest manifest the cache accepts (what real registries allow in practice).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// Media types a client names often enough to be kept as bits rather than strings: parsing
/// the usual Accept lists then allocates nothing (a manifest GET runs this per request).
const KNOWN_ACCEPTS: [&str; 9] = [
    OCI_INDEX,
    OCI_MANIFEST,
    DOCKER_LIST,
    DOCKER_V2,
    DOCKER_V1_SIGNED,
    DOCKER_V1,
    "application/json",
    "*/*",
    "application/*",
];
const JSON_BIT: u16 = 1 << 6;
const ANY_BITS: u16 = (1 << 7) | (1 << 8);
const SCHEMA1_BITS: u16 = (1 << 4) | (1 << 5);

fn known_bit(t: &str) -> Option<u16> {
    KNOWN_ACCEPTS
        .iter()
        .position(|k| k.eq_ignore_ascii_case(t))
        .map(|i| 1 << i)
}

/// What a client said it accepts.
#[derive(Debug, Clone, Default)]
pub struct Accept {
    known: u16,
    // Types outside KNOWN_ACCEPTS, lowercased.
    other: Vec<String>,
}

impl Accept {
    /// Parses every `Accept` header value a client sent (comma lists, q-parameters ignored).
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut a = Accept::default();
        for v in values {
            for part in v.split(',') {
                let t = part.split(';').next().unwrap_or("").trim();
                if t.is_empty() {
                    continue;
                }
                match known_bit(t) {
                    Some(bit) => a.known |= bit,
                    None => a.other.push(t.to_ascii_lowercase()),
                }
            }
        }
        a
    }

    /// Whether a manifest of `media_type` may be served. No Accept, `*/*` or `application/*`
    /// means anything; a client listing only schema1 gets schema1 only, like distribution.
    pub fn allows(&self, media_type: &str) -> bool {
        if self.known == 0 && self.other.is_empty() {
            return true;
        }
        if self.known & ANY_BITS != 0 {
            return true;
        }
        match known_bit(media_type) {
            Some(bit) if self.known & bit != 0 => true,
            // Schema1 has two spellings; a client naming either can read both, and a plain
            // JSON accept is how old clients ask for schema1.
            Some(bit) if bit & SCHEMA1_BITS != 0 => self.known & (SCHEMA1_BITS | JSON_BIT) != 0,
            _ => self
                .other
                .iter()
                .any(|t| t.eq_ignore_ascii_case(media_type)),
        }
    }
}

/// One thing a manifest points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The target's digest.
    pub digest: Digest,
    /// What kind of target it is.
    pub kind: RefKind,
    /// The size the manifest claims, when it says.
    pub size: Option<u64>,
    /// Platform of an index entry, as `os/arch[/variant]`.
    pub platform: Option<String>,
}

/// The role of a referenced object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefKind {
    /// A child manifest of an index or list.
    Manifest,
    /// An image config blob.
    Config,
    /// A filesystem layer blob.
    Layer,
}

impl RefKind {
    /// Stable name for the index.
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Manifest => "manifest",
            RefKind::Config => "config",
            RefKind::Layer => "layer",
        }
    }
}

/// Why manifest bytes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not the shape its media type requires.
    #[error("manifest is not valid {media_type}: {source}")]
    Malformed {
        /// The media type it claimed.
        media_type: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A digest inside it is invalid.
    #[error("manifest references an invalid digest {0:?}")]
    BadDigest(String),
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Deserialize)]
struct AnyManifest {
    #[serde(rename = "schemaVersion", default)]
    schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(rename = "fsLayers", default)]
    fs_layers: Option<Vec<FsLayer>>,
}

#[derive(Deserialize)]
struct FsLayer {
    #[serde(rename = "blobSum")]
    blob_sum: String,
}

/// The media type of manifest bytes when upstream sent none (or a generic JSON type).
pub fn sniff_media_type(bytes: &[u8]) -> Option<String> {
    let m: AnyManifest = serde_json::from_slice(bytes).ok()?;
    if let Some(mt) = m.media_type {
        return Some(mt);
    }
    if m.schema_version == Some(1) {
        return Some(DOCKER_V1_SIGNED.to_string());
    }
    if m.manifests.is_some() {
        return Some(OCI_INDEX.to_string());
    }
    if m.config.is_some() {
        return Some(OCI_MANIFEST.to_string());
    }
    None
}

/// The bytes a manifest's digest covers: the whole body, except for signed schema1, whose digest
/// is over the JWS payload (the body without its `signatures`), rebuilt from `formatLength` and
/// `formatTail` in the protected header.
pub fn digest_payload<'a>(media_type: &str, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
    use std::borrow::Cow;
    if media_type != DOCKER_V1_SIGNED && media_type != DOCKER_V1 {
        return Cow::Borrowed(bytes);
    }
    schema1_payload(bytes).map_or(Cow::Borrowed(bytes), Cow::Owned)
}

fn schema1_payload(bytes: &[u8]) -> Option<Vec<u8>> {
    use base64::engine::{
        general_purpose::GeneralPurpose, DecodePaddingMode, GeneralPurposeConfig,
    };
    use base64::{alphabet, Engine as _};
    const B64URL: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    #[derive(Deserialize)]
    struct Signed {
        signatures: Vec<Signature>,
    }
    #[derive(Deserialize)]
    struct Signature {
        protected: String,
    }
    #[derive(Deserialize)]
    struct Protected {
        #[serde(rename = "formatLength")]
        format_length: usize,
        #[serde(rename = "formatTail")]
        format_tail: String,
    }
    let signed: Signed = serde_json::from_slice(bytes).ok()?;
    let protected = B64URL.decode(&signed.signatures.first()?.protected).ok()?;
    let p: Protected = serde_json::from_slice(&protected).ok()?;
    let tail = B64URL.decode(&p.format_tail).ok()?;
    let mut out = bytes.get(..p.format_length)?.to_vec();
    out.extend_from_slice(&tail);
    Some(out)
}

/// True for index-like media types (OCI index, Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Everything the manifest points at, in manifest order.
pub fn references(media_type: &str, bytes: &[u8]) -> Result<Vec<Reference>, ManifestError> {
    let m: AnyManifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed {
        media_type: media_type.to_string(),
        source: e,
    })?;
    let parse = |s: &str| Digest::parse(s).map_err(|_| ManifestError::BadDigest(s.to_string()));
    let mut out = Vec::new();
    for d in m.manifests.unwrap_or_default() {
        let platform = d.platform.map(|p| match p.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{}", p.os, p.architecture, v),
            _ => format!("{}/{}", p.os, p.architecture),
        });
        // Index entries may be artifacts or attestations; they are still manifests by digest.
        let _ = d.media_type;
        out.push(Reference {
            digest: parse(&d.digest)?,
            kind: RefKind::Manifest,
            size: d.size,
            platform,
        });
    }
    if let Some(c) = m.config {
        out.push(Reference {
            digest: parse(&c.digest)?,
            kind: RefKind::Config,
            size: c.size,
            platform: None,
        });
    }
    for l in m.layers.unwrap_or_default() {
        out.push(Reference {
            digest: parse(&l.digest)?,
            kind: RefKind::Layer,
            size: l.size,
            platform: None,
        });
    }
    // Schema1 lists layers newest first and may repeat empty layers.
    let mut seen = std::collections::HashSet::new();
    for l in m.fs_layers.unwrap_or_default().into_iter().rev() {
        let d = parse(&l.blob_sum)?;
        if seen.insert(d.clone()) {
            out.push(Reference {
                digest: d,
                kind: RefKind::Layer,
                size: None,
                platform: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema1_payload_drops_signatures() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let payload = "{\n   \"schemaVersion\": 1,\n   \"name\": \"x\"\n}";
        let format_length = payload.len() - 2; // up to (not including) the final "\n}"
        let protected = format!(
            r#"{{"formatLength":{format_length},"formatTail":"{}","time":"2026-01-01T00:00:00Z"}}"#,
            b64("\n}")
        );
        let signed = format!(
            "{},\n   \"signatures\": [{{\"header\": {{}}, \"signature\": \"x\", \"protected\": \"{}\"}}]\n}}",
            &payload[..format_length],
            b64(&protected)
        );
        assert_eq!(
            &*digest_payload(DOCKER_V1_SIGNED, signed.as_bytes()),
            payload.as_bytes()
        );
        assert_eq!(
            &*digest_payload(OCI_MANIFEST, signed.as_bytes()),
            signed.as_bytes()
        );
    }

    #[test]
    fn accept_negotiation() {
        let a = Accept::parse(["application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json;q=0.9"]);
        assert!(a.allows(OCI_INDEX));
        assert!(a.allows(DOCKER_V2));
        assert!(!a.allows(DOCKER_LIST));
        assert!(!a.allows(DOCKER_V1_SIGNED));
        assert!(Accept::parse([]).allows(DOCKER_LIST));
        assert!(Accept::parse(["*/*"]).allows(OCI_MANIFEST));
        let s1 = Accept::parse([DOCKER_V1]);
        assert!(s1.allows(DOCKER_V1_SIGNED));
        assert!(!s1.allows(DOCKER_V2));
        let two = Accept::parse([OCI_MANIFEST, DOCKER_LIST]);
        assert!(two.allows(DOCKER_LIST) && two.allows(OCI_MANIFEST));
        // Media types compare case-insensitively, known or not.
        let mixed =
            Accept::parse(["Application/VND.OCI.Image.Manifest.v1+JSON, application/vnd.Acme.x"]);
        assert!(mixed.allows(OCI_MANIFEST) && mixed.allows("application/vnd.acme.X"));
        assert!(!mixed.allows(OCI_INDEX) && !mixed.allows("application/vnd.acme.y"));
        let json = Accept::parse(["application/json"]);
        assert!(json.allows(DOCKER_V1_SIGNED) && !json.allows(OCI_MANIFEST));
        assert!(Accept::parse(["application/*;q=0.5"]).allows(DOCKER_V2));
    }

    #[test]
    fn references_of_each_kind() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#,
            d('a')
        );
        let r = references(OCI_INDEX, index.as_bytes()).unwrap();
        assert_eq!(r[0].kind, RefKind::Manifest);
        assert_eq!(r[0].platform.as_deref(), Some("linux/arm64/v8"));
        let image = format!(
            r#"{{"schemaVersion":2,"config":{{"digest":"{}","size":1}},"layers":[{{"digest":"{}","size":2}}]}}"#,
            d('b'),
            d('c')
        );
        let r = references(OCI_MANIFEST, image.as_bytes()).unwrap();
        assert_eq!(
            r.iter().map(|x| x.kind).collect::<Vec<_>>(),
            vec![RefKind::Config, RefKind::Layer]
        );
        let s1 = format!(
            r#"{{"schemaVersion":1,"fsLayers":[{{"blobSum":"{0}"}},{{"blobSum":"{1}"}},{{"blobSum":"{0}"}}]}}"#,
            d('d'),
            d('e')
        );
        let r = references(DOCKER_V1_SIGNED, s1.as_bytes()).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(
            sniff_media_type(s1.as_bytes()).as_deref(),
            Some(DOCKER_V1_SIGNED)
        );
        assert!(references(OCI_MANIFEST, b"{not json").is_err());
        // Without signatures the payload is the body itself.
        assert_eq!(
            &*digest_payload(DOCKER_V1_SIGNED, s1.as_bytes()),
            s1.as_bytes()
        );
        let bad = r#"{"schemaVersion":2,"config":{"digest":"sha256:zz"}}"#;
        assert!(matches!(
            references(OCI_MANIFEST, bad.as_bytes()),
            Err(ManifestError::BadDigest(_))
        ));
    }
}
