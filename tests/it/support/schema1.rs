//! Signed Docker schema1 manifests (`application/vnd.docker.distribution.manifest.v1+prettyjws`):
//! libtrust's "pretty JWS" with an ES256 `jwk` in the signature header, which distribution 2.8
//! verifies on push.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::image::{Blob, Layer, Manifest, CREATED, DOCKER_LAYER, SCHEMA1_SIGNED};
use super::{b64url, rfc3339, sha256_digest, unix_now, Es256Key};

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
