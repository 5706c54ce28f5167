//! An upstream (a fake: a real registry will not do this) that sends a blob bigger than the
//! manifest's descriptor says, announced (`Content-Length`) or not (chunked), and one bigger
//! than `storage.max_blob_bytes` for a blob no manifest declares. Each ends in a clear error
//! naming the limit, with nothing stored, no staging file left, the chunked body cut soon after
//! the limit (not read to its end), and breakwater's memory bounded.

use super::bw::{local_upstream, Breakwater};
use super::support::http::{Request, Response, TestServer};
use super::support::{http_client, proc_kib, sha256_digest, wait_until};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// What the manifests declare for their layer.
const DECLARED: usize = 1 << 20;
/// What the chunked answer would send in all, were it read to the end.
const ENDLESS: usize = 512 << 20;

/// The manifest of one layer: `digest`, declared `size`.
fn manifest(digest: &str, size: usize) -> String {
    let empty = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{size}}}]}}"#
    )
}

/// Whether the bytes' first `DECLARED` are the blob (its digest is theirs) and the rest extra.
struct Fake {
    server: TestServer,
    /// The blob's digest (of its first `DECLARED` bytes).
    digest: String,
    /// A blob no manifest declares (the digest of its first KiB: any digest would do).
    undeclared: String,
    /// Bytes of chunked body the fake got out before breakwater hung up (most recent answer).
    chunked_sent: Arc<AtomicU64>,
}

/// `/team/length/` announces `DECLARED + 4096` bytes and sends them; `/team/chunked/` sends
/// chunks without end; `/team/nodecl/` has no manifest and announces 4 × `DECLARED`.
async fn fake() -> Fake {
    let body: Bytes = (0..DECLARED + 4096).map(|i| (i * 7 % 251) as u8).collect();
    let digest = sha256_digest(&body[..DECLARED]);
    let sent = Arc::new(AtomicU64::new(0));
    let (d, b, s) = (digest.clone(), body.clone(), sent.clone());
    let server = TestServer::start_raw(move |req: Request, mut stream: TcpStream| {
        let (d, b, s) = (d.clone(), b.clone(), s.clone());
        async move {
            let path = req.path().to_string();
            if path.contains("/manifests/") {
                let m = manifest(&d, DECLARED);
                let r = Response::new(200)
                    .header("Content-Type", MANIFEST)
                    .header("Docker-Content-Digest", &sha256_digest(m.as_bytes()))
                    .body(m);
                r.write_to(&mut stream, req.is_head()).await.ok()?;
                return Some(stream);
            }
            if !path.contains("/blobs/") {
                Response::new(200).write_to(&mut stream, false).await.ok()?;
                return Some(stream);
            }
            let head = |extra: String| {
                format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nDocker-Content-Digest: {d}\r\nConnection: close\r\n{extra}\r\n")
            };
            if path.contains("/team/chunked/") {
                s.store(0, Ordering::SeqCst);
                let _ = stream
                    .write_all(head("Transfer-Encoding: chunked\r\n".into()).as_bytes())
                    .await;
                let chunk = &b[..64 * 1024];
                let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
                let mut n = 0;
                while n < ENDLESS && stream.write_all(&frame).await.is_ok() {
                    n += chunk.len();
                    s.store(n as u64, Ordering::SeqCst);
                }
                return None;
            }
            let len = if path.contains("/team/nodecl/") {
                4 * DECLARED
            } else {
                b.len()
            };
            let _ = stream
                .write_all(head(format!("Content-Length: {len}\r\n")).as_bytes())
                .await;
            let mut left = len;
            while left > 0 {
                let n = left.min(b.len());
                if stream.write_all(&b[..n]).await.is_err() {
                    break;
                }
                left -= n;
            }
            None
        }
    })
    .await;
    Fake {
        server,
        undeclared: sha256_digest(&body[..1024]),
        digest,
        chunked_sent: sent,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_bigger_than_declared_or_allowed_is_refused_and_nothing_is_stored() {
    let fake = fake().await;
    let bw = Breakwater::start_with_storage(
        "max_blob_bytes = \"2MiB\"",
        &local_upstream(&fake.server.url(), "1h", ""),
    )
    .await;
    let client = http_client();
    let url = |repo: &str, d: &str| format!("{}/v2/local/team/{repo}/blobs/{d}", bw.url());
    let blob_url = |repo: &str| url(repo, &fake.digest);

    // Announced: refused before a byte is read, with an OCI error naming the declared size.
    let declared = format!("upstream sent more than the {DECLARED} bytes the manifest declares");
    let m = client
        .get(format!("{}/v2/local/team/length/manifests/v1", bw.url()))
        .header("Accept", MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(
        m.status(),
        200,
        "the manifest is cached, with its descriptor"
    );
    for attempt in 0..2 {
        let r = client.get(blob_url("length")).send().await.unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.expect("an OCI error body");
        assert_eq!(status, 404, "attempt {attempt}: {body}");
        assert_eq!(body["errors"][0]["code"], "BLOB_UNKNOWN", "{body}");
        let message = body["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&declared) && message.contains(&format!("{}", DECLARED + 4096)),
            "attempt {attempt}: the message names the limit and the announced size: {message}"
        );
        // Nothing was stored: the next request asks upstream again and fails the same way.
        assert!(!bw.has_blob(&fake.digest));
    }
    assert_eq!(fake.server.count("GET", "/team/length/blobs/"), 2);

    // Chunked, without end: the response is cut soon after the limit, never completed.
    let m = client
        .get(format!("{}/v2/local/team/chunked/manifests/v1", bw.url()))
        .header("Accept", MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    for attempt in 0..2 {
        // The fill fails once it has the answer's headers, so the response has usually begun
        // (then it is cut); when the failure came first, it is an OCI error naming the limit.
        match client.get(blob_url("chunked")).send().await {
            Ok(r) if r.status() == 404 => {
                let body = r.text().await.unwrap();
                assert!(body.contains(&declared), "attempt {attempt}: {body}");
            }
            Ok(r) => {
                let outcome = r.bytes().await.map(|b| b.len());
                assert!(
                    outcome.is_err(),
                    "attempt {attempt}: the response never completes: {outcome:?}"
                );
            }
            Err(_) => {}
        }
        assert!(!bw.has_blob(&fake.digest));
        let sent = fake.chunked_sent.load(Ordering::SeqCst) as usize;
        // Socket buffers on both sides hold a few MiB at most; the body is 512 MiB.
        assert!(
            sent < 64 << 20,
            "attempt {attempt}: breakwater stopped reading early, after {} MiB",
            sent >> 20
        );
    }
    assert!(
        wait_until(Duration::from_secs(5), || bw.log_text().contains(&declared)).await,
        "the log names the cause"
    );

    // No manifest declares it: storage.max_blob_bytes applies.
    let r = client
        .get(url("nodecl", &fake.undeclared))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.expect("an OCI error body");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("more than the 2097152 bytes storage.max_blob_bytes allows"),
        "{message}"
    );

    assert!(!bw.has_blob(&fake.digest) && !bw.has_blob(&fake.undeclared));
    assert!(
        wait_until(Duration::from_secs(5), || bw.temp_files() == 0).await,
        "no staging file is left"
    );
    let peak = proc_kib(bw.pid(), "VmHWM") * 1024;
    assert!(
        peak < 160 << 20,
        "peak RSS {} MiB: oversized bodies are not buffered",
        peak >> 20
    );
}
