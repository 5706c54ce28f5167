//! Integration-test harness: real `docker-registry` processes (`registry`), a Docker token server
//! (`token_server`), in-memory test images (`image`, `schema1`) with an uploader (`pusher`), and a
//! tiny HTTP server for fake upstreams (`http`).
//!
//! Not every test binary uses every helper, hence the module-wide `dead_code` allowance.
#![allow(dead_code)]

pub mod garage;
pub mod http;
pub mod image;
pub mod pusher;
pub mod registry;
pub mod schema1;
pub mod token_server;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use sha2::{Digest as _, Sha256};

/// A port on 127.0.0.1 that was free a moment ago (the OS picks it; callers retry on a rare clash).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of probe listener")
        .port()
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; false on timeout.
pub async fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Polls `check` every 20 ms until it returns true; false on timeout.
pub async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A temporary directory removed on drop, unless `BREAKWATER_KEEP_TEMP` is set (for post-mortems).
pub struct TempDir {
    inner: Option<tempfile::TempDir>,
}

impl TempDir {
    /// Creates a fresh directory under the system temp dir whose name starts with `prefix`.
    pub fn new(prefix: &str) -> TempDir {
        let inner = tempfile::Builder::new()
            .prefix(&format!("bw-{prefix}-"))
            .tempdir()
            .expect("create temporary directory");
        TempDir { inner: Some(inner) }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        self.inner.as_ref().expect("TempDir used after drop").path()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("BREAKWATER_KEEP_TEMP").is_some() {
            if let Some(dir) = self.inner.take() {
                eprintln!("keeping {}", dir.keep().display());
            }
        }
    }
}

/// A reqwest client for loopback tests: never goes through an environment proxy.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .user_agent("breakwater-test-harness")
        .timeout(Duration::from_secs(120))
        .build()
        .expect("build reqwest client")
}

/// GETs every URL at once; each answer's status and the digest of its body, in order.
pub async fn get_all_at_once(urls: Vec<String>) -> Vec<(u16, String)> {
    let client = http_client();
    let gets = urls.into_iter().map(|url| {
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.expect("GET");
            let status = r.status().as_u16();
            (status, sha256_digest(&r.bytes().await.expect("body")))
        }
    });
    futures_util::future::join_all(gets).await
}

/// `sha256:<hex>` of `data`, the OCI digest form.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Formats Unix seconds as RFC 3339 UTC (`2026-11-23T17:19:29Z`), as token servers and libtrust do.
pub fn rfc3339(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let secs = unix_secs % 86_400;
    // Civil-from-days over 400-year eras (proleptic Gregorian), so no date crate is needed.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3_600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unpadded base64url, the JOSE encoding.
pub fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Standard padded base64 (x5c certificates, Basic credentials).
pub fn b64std(data: &[u8]) -> String {
    STANDARD.encode(data)
}

/// An ECDSA P-256 key that rcgen can certify and ring can sign ES256 with.
pub struct Es256Key {
    /// The same key in rcgen's form, for certificates and the SPKI encoding.
    pub rcgen: rcgen::KeyPair,
    ring: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256Key {
    /// A fresh random key.
    pub fn generate() -> Es256Key {
        let rcgen = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate P-256 key");
        let rng = SystemRandom::new();
        let ring = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &rcgen.serialize_der(),
            &rng,
        )
        .expect("load rcgen P-256 key into ring");
        Es256Key { rcgen, ring, rng }
    }

    /// ES256 signature of `message`: r || s, 64 bytes, as JWS wants.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.ring
            .sign(&self.rng, message)
            .expect("ECDSA P-256 signing")
            .as_ref()
            .to_vec()
    }

    /// Uncompressed public point (0x04 || x || y).
    pub fn public_point(&self) -> &[u8] {
        self.ring.public_key().as_ref()
    }

    /// DER SubjectPublicKeyInfo of the public key.
    pub fn spki_der(&self) -> Vec<u8> {
        self.rcgen.public_key_der()
    }

    /// A compact JWS (`header.payload.signature`) over the given JSON header and payload.
    pub fn compact_jws(&self, header: &serde_json::Value, payload: &serde_json::Value) -> String {
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(payload.to_string().as_bytes())
        );
        let signature = self.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64url(&signature))
    }
}

/// `skopeo copy docker://<image> dir:<dest>` over plain HTTP, with `extra` flags (credentials,
/// certificates); skopeo's stderr when it fails.
pub fn skopeo_pull(image: &str, dest: &Path, extra: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("run skopeo");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The raw HTTP/1.1 response head a fake upstream sends for `Range: bytes=<offset>-` of a body of
/// `total` bytes: 200 for the whole body, else 206 with its `Content-Range`.
pub fn open_range_head(offset: usize, total: usize) -> String {
    let len = total - offset;
    if offset == 0 {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
    } else {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {offset}-{}/{total}\r\nContent-Length: {len}\r\n\r\n",
            total - 1
        )
    }
}

/// `len` pseudo-random bytes from `seed` (xorshift: incompressible enough for a blob, the same
/// bytes for the same seed).
pub fn pseudo_random(seed: u64, len: usize) -> bytes::Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, or `VmHWM` for the peak).
pub fn proc_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_454_369), "2026-11-23T17:19:29Z");
    }
}
