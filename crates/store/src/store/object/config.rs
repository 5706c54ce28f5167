//! How the S3 backend reaches its bucket: the settings, the client builder, and the key layout.

use crate::oci::Digest;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use std::fmt;
use std::time::Duration;

/// A secret string (a secret access key): kept out of `Debug` output and so out of the logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Server-side encryption requested on every upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sse {
    /// SSE-S3: keys managed by the storage service (`AES256`).
    Aes256,
    /// SSE-KMS, with a key id or the bucket's default KMS key.
    Kms {
        /// The KMS key id; `None`: the default key.
        key_id: Option<String>,
    },
}

/// Where and how to reach the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// Endpoint URL of an S3-compatible server; `None`: AWS (or `AWS_ENDPOINT_URL`).
    pub endpoint: Option<String>,
    /// Region (S3-compatible servers check it in signatures too); `None`: from the environment.
    pub region: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`); empty: the bucket's root.
    pub prefix: String,
    /// Access key id; `None`: the usual AWS variables or instance credentials.
    pub access_key_id: Option<String>,
    /// Secret access key, with the access key id.
    pub secret_access_key: Option<Secret>,
    /// Virtual-hosted-style addressing (`bucket.host`); off: path style, which loopback and
    /// most self-hosted servers need.
    pub virtual_hosted_style: bool,
    /// Server-side encryption of uploads.
    pub sse: Option<Sse>,
    /// Redirect blob GETs to a presigned URL valid this long; `None`: stream through breakwater.
    pub redirect_ttl: Option<Duration>,
    /// Time allowed for one request (a part of an upload, a ranged GET).
    pub timeout: Duration,
    /// Bytes of blobs kept on local disk (`<root>/hot`) and served before the bucket;
    /// `None`: no local tier.
    pub local_cache_bytes: Option<u64>,
}

/// The object key of a digest under `prefix`.
pub fn blob_key(prefix: &str, digest: &Digest) -> String {
    join(
        prefix,
        &format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex()),
    )
}

/// The key a quarantined digest is moved to.
pub fn quarantine_key(prefix: &str, digest: &Digest) -> String {
    join(
        prefix,
        &format!(
            "quarantine/{}-{}",
            digest.algorithm().as_str(),
            digest.hex()
        ),
    )
}

pub(super) fn join(prefix: &str, rest: &str) -> String {
    if prefix.is_empty() {
        rest.to_string()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// The digest a listed key names, if it is one of ours (`…/blobs/<algorithm>/<hex>`).
pub fn digest_of_key(prefix: &str, key: &str) -> Option<Digest> {
    let rest = if prefix.is_empty() {
        key
    } else {
        key.strip_prefix(prefix)?.strip_prefix('/')?
    };
    let (algo, hex) = rest.strip_prefix("blobs/")?.split_once('/')?;
    Digest::parse(&format!("{algo}:{hex}")).ok()
}

/// The config key of the encryption type (its enum is not exported, its name is).
fn sse_key() -> AmazonS3ConfigKey {
    "aws_server_side_encryption"
        .parse()
        .expect("object_store knows aws_server_side_encryption")
}

/// The client as configured; secrets go to the builder, never to a log line.
pub(super) fn builder(cfg: &S3Config) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(&cfg.bucket)
        .with_virtual_hosted_style_request(cfg.virtual_hosted_style)
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(cfg.timeout),
        )
        // Few, quick retries: while the bucket is down a fill streams from upstream anyway, and
        // a request should not hang on storage for minutes.
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(2),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: cfg.timeout,
        });
    if let Some(endpoint) = &cfg.endpoint {
        b = b
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    if let Some(region) = &cfg.region {
        b = b.with_region(region);
    }
    if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
        b = b
            .with_access_key_id(id)
            .with_secret_access_key(secret.expose());
    }
    match &cfg.sse {
        None => {}
        Some(Sse::Aes256) => b = b.with_config(sse_key(), "AES256"),
        Some(Sse::Kms { key_id: Some(id) }) => b = b.with_sse_kms_encryption(id),
        Some(Sse::Kms { key_id: None }) => b = b.with_config(sse_key(), "aws:kms"),
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_digests_under_the_prefix_and_back() {
        let d = Digest::sha256_of(b"layer");
        let hex = d.hex();
        assert_eq!(blob_key("", &d), format!("blobs/sha256/{hex}"));
        assert_eq!(blob_key("bw/eu", &d), format!("bw/eu/blobs/sha256/{hex}"));
        assert_eq!(
            quarantine_key("bw", &d),
            format!("bw/quarantine/sha256-{hex}")
        );
        assert_eq!(
            digest_of_key("bw/eu", &blob_key("bw/eu", &d)),
            Some(d.clone())
        );
        assert_eq!(digest_of_key("", &blob_key("", &d)), Some(d.clone()));
        // Keys outside the prefix, quarantined ones and malformed names are not blobs.
        assert_eq!(digest_of_key("bw/eu", &blob_key("bw/us", &d)), None);
        assert_eq!(digest_of_key("bw", &blob_key("bwx", &d)), None);
        assert_eq!(digest_of_key("bw", &quarantine_key("bw", &d)), None);
        assert_eq!(digest_of_key("", "blobs/sha256/nothex"), None);
    }

    #[test]
    fn the_secret_stays_out_of_debug_output() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
