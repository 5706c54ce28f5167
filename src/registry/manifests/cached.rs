//! A manifest as the cache holds it in memory: the exact bytes, plus the header values that
//! identify it, built once when it is cached so serving it again formats nothing.

use crate::oci::Digest;
use bytes::Bytes;
use http::HeaderValue;

/// A manifest ready to serve.
#[derive(Debug)]
pub struct CachedManifest {
    /// Its digest.
    pub digest: Digest,
    /// The upstream's media type.
    pub media_type: String,
    /// The exact bytes.
    pub bytes: Bytes,
    /// Header values for answering with it (shared: cloning one copies no bytes).
    pub headers: ManifestHeaders,
}

/// The values of the headers that describe a manifest.
#[derive(Debug, Clone)]
pub struct ManifestHeaders {
    /// `Content-Type`; `None` when the upstream's media type cannot be a header value.
    pub content_type: Option<HeaderValue>,
    /// `Docker-Content-Digest`.
    pub digest: HeaderValue,
    /// `ETag`: the digest, quoted.
    pub etag: HeaderValue,
    /// `Content-Length` of the whole manifest.
    pub content_length: HeaderValue,
}

impl CachedManifest {
    /// A manifest with its header values.
    pub fn new(digest: Digest, media_type: String, bytes: Bytes) -> Self {
        let headers = ManifestHeaders {
            content_type: HeaderValue::from_str(&media_type).ok(),
            // A digest is `algorithm:hex`: always a valid header value.
            digest: shared(digest.to_string()),
            etag: shared(format!("\"{digest}\"")),
            content_length: HeaderValue::from(bytes.len()),
        };
        CachedManifest {
            digest,
            media_type,
            bytes,
            headers,
        }
    }
}

fn shared(s: String) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from(s)).expect("a digest is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_describe_the_manifest() {
        let body = Bytes::from_static(br#"{"schemaVersion":2}"#);
        let d = Digest::sha256_of(&body);
        let m = CachedManifest::new(
            d.clone(),
            "application/vnd.oci.image.manifest.v1+json".into(),
            body.clone(),
        );
        assert_eq!(m.headers.digest, d.to_string().as_str());
        assert_eq!(m.headers.etag, format!("\"{d}\"").as_str());
        assert_eq!(m.headers.content_length, body.len().to_string().as_str());
        assert_eq!(
            m.headers.content_type.as_ref().unwrap(),
            "application/vnd.oci.image.manifest.v1+json"
        );
        // A media type that cannot be a header is left out, as before, not a panic.
        let odd = CachedManifest::new(d, "application/x\nbad".into(), body);
        assert!(odd.headers.content_type.is_none());
    }
}
