//! An upstream that attacks the cache (a fake: a real registry will not do this): manifests
//! with endless chunked bodies, a manifest above the limit or dripping forever, headers that
//! never end. Each must end in a clear OCI error, with breakwater's memory bounded and nothing
//! stored, while other repositories keep being served.

use super::bw::{local_upstream, Breakwater};
use super::support::http::{Request, Response, TestServer};
use super::support::{http_client, proc_kib};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

/// A small valid manifest, for the repository that behaves.
fn good_manifest() -> String {
    let empty = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{ACCEPT}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{empty}","size":2}},"layers":[]}}"#
    )
}

/// Writes `chunk` as HTTP chunks every `every` until the peer goes away or `max` bytes went.
async fn drip_chunked(stream: &mut TcpStream, chunk: &[u8], every: Duration, max: usize) {
    let mut sent = 0;
    while sent < max {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            return;
        }
        sent += chunk.len();
        tokio::time::sleep(every).await;
    }
}

/// The fake: `/endless/` streams a chunked manifest without end, `/huge/` announces 64 MiB,
/// `/drip/` sends a few bytes a second, `/headers/` sends header lines forever; `/good/` is fine.
async fn hostile() -> TestServer {
    TestServer::start_raw(|req: Request, mut stream: TcpStream| async move {
        let path = req.path().to_string();
        let head = |extra: &str| {
            format!("HTTP/1.1 200 OK\r\nContent-Type: {ACCEPT}\r\nDocker-Content-Digest: sha256:{}\r\n{extra}\r\n", "0".repeat(64))
        };
        if path == "/v2/" || path.contains("/good/") {
            let r = if path == "/v2/" {
                Response::new(200)
            } else {
                let body = good_manifest();
                Response::new(200)
                    .header("Content-Type", ACCEPT)
                    .body(body)
            };
            let _ = r.write_to(&mut stream, req.is_head()).await;
            return Some(stream);
        }
        if path.contains("/endless/") {
            let _ = stream
                .write_all(head("Transfer-Encoding: chunked\r\n").as_bytes())
                .await;
            drip_chunked(&mut stream, &[b' '; 64 * 1024], Duration::from_millis(1), 256 << 20).await;
        } else if path.contains("/huge/") {
            let _ = stream
                .write_all(head(&format!("Content-Length: {}\r\n", 64 << 20)).as_bytes())
                .await;
            drip_chunked(&mut stream, b"{", Duration::from_millis(50), 64 << 20).await;
        } else if path.contains("/drip/") {
            let _ = stream
                .write_all(head("Transfer-Encoding: chunked\r\n").as_bytes())
                .await;
            drip_chunked(&mut stream, b"  ", Duration::from_millis(500), usize::MAX).await;
        } else if path.contains("/headers/") {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n").await;
            for i in 0.. {
                let line = format!("X-Junk-{i}: {}\r\n", "j".repeat(1000));
                if stream.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
                if i % 64 == 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_manifests_end_in_clear_errors_with_bounded_memory_and_nothing_stored() {
    let fake = hostile().await;
    let bw = Breakwater::start(&local_upstream(
        &fake.url(),
        "1h",
        "manifest_timeout = \"4s\"",
    ))
    .await;
    let client = http_client();
    let get = |repo: &str| {
        client
            .get(format!("{}/v2/local/{repo}/manifests/v1", bw.url()))
            .header("Accept", ACCEPT)
            .timeout(Duration::from_secs(120))
            .send()
    };
    let good = get("team/good").await.unwrap();
    assert_eq!(good.status(), 200);

    for (repo, cause) in [
        ("team/endless", "exceeds 4 MiB"),
        ("team/huge", "exceeds 4 MiB"),
        ("team/drip", "within 4s"),
        ("team/headers", ""),
    ] {
        // While the hostile answer runs, the good repository is still served.
        let (hostile, good) = tokio::join!(get(repo), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            get("team/good").await
        });
        assert_eq!(
            good.unwrap().status(),
            200,
            "{repo}: others are served meanwhile"
        );
        let r = hostile.unwrap_or_else(|e| panic!("{repo}: breakwater answered: {e}"));
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.expect("an OCI error body");
        let code = body["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        eprintln!("{repo}: {status} {code}: {message}");
        // 400 MANIFEST_INVALID for a manifest over the limit, 503 UNAVAILABLE when no usable
        // answer came at all.
        assert!(status == 400 || status == 503, "{repo}: {status} {body}");
        assert!(!code.is_empty(), "{repo}: {body}");
        assert!(
            message.contains(cause),
            "{repo}: the message names the cause: {message}"
        );
        // Nothing was stored: the next request goes upstream again and fails the same way.
        let again = get(repo).await.unwrap();
        assert_eq!(again.status().as_u16(), status, "{repo}: nothing cached");
    }
    let peak = proc_kib(bw.pid(), "VmHWM") * 1024;
    assert!(
        peak < 160 << 20,
        "peak RSS {} MiB: hostile bodies are not buffered",
        peak >> 20
    );
}
