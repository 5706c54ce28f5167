//! Faults a real registry will not produce, from a small fake upstream: corrupt bytes, a redirect
//! to another host that rejects `Authorization` (like S3), a connection cut mid-blob, and an
//! upstream that refuses connections.

use super::bw::{local_upstream, Breakwater};
use super::support::http::{Request, Response, TestServer};
use super::support::pseudo_random;
use super::support::{http_client, sha256_digest};
use bytes::Bytes;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `body` as a 200 (or 206 from `offset`) with the full length announced, but only the
/// first `send` bytes of it, then closes.
async fn send_partial(stream: &mut TcpStream, body: &Bytes, offset: usize, send: usize) {
    let rest = &body[offset..];
    let head = if offset == 0 {
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", rest.len())
    } else {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {offset}-{}/{}\r\nContent-Length: {}\r\n\r\n",
            body.len() - 1,
            body.len(),
            rest.len()
        )
    };
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&rest[..send.min(rest.len())]).await;
    let _ = stream.flush().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_upstream_bytes_are_never_stored_and_every_client_is_cut() {
    let data = pseudo_random(1, 3 * 1024 * 1024);
    // The digest of different bytes: upstream serves content that does not match its name.
    let digest = sha256_digest(b"what the manifest promised");
    let served = data.clone();
    let fake = TestServer::start(move |req: Request| {
        if req.path().contains("/blobs/") {
            Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(served.clone())
        } else {
            Response::new(200)
        }
    })
    .await;
    let bw = Breakwater::start(&local_upstream(&fake.url(), "10m", "")).await;
    let client = http_client();
    let url = format!("{}/v2/local/team/app/blobs/{digest}", bw.url());

    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let r = c.get(&u).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await
        }));
    }
    for t in tasks {
        let body = t.await.unwrap();
        assert!(
            body.is_err(),
            "a client received a complete response with bad bytes"
        );
    }
    assert!(
        !bw.has_blob(&digest),
        "a blob that failed verification was stored"
    );
    assert!(
        super::support::wait_until(Duration::from_secs(2), || bw.temp_files() == 0).await,
        "staging file left behind"
    );
    assert_eq!(
        bw.metric("breakwater_verification_failures_total", &[])
            .await,
        1.0
    );
    assert_eq!(
        fake.count("GET", "/blobs/"),
        1,
        "concurrent clients must share one fill"
    );

    // The next request starts a fresh fill (and fails the same way).
    let r = client.get(&url).send().await.unwrap();
    assert!(r.bytes().await.is_err());
    assert_eq!(fake.count("GET", "/blobs/"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_to_another_host_drops_authorization() {
    let data = pseudo_random(2, 2 * 1024 * 1024 + 17);
    let digest = sha256_digest(&data);

    // The "CDN": a second loopback host that, like S3, rejects any Authorization header.
    let cdn = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let cdn_addr = cdn.local_addr().unwrap();
    let cdn_hits = Arc::new(AtomicUsize::new(0));
    let cdn_auth = Arc::new(AtomicUsize::new(0));
    let (hits, auths, body) = (cdn_hits.clone(), cdn_auth.clone(), data.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = cdn.accept().await {
            let (hits, auths, body) = (hits.clone(), auths.clone(), body.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                hits.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                if text.contains("\r\nauthorization:") {
                    auths.fetch_add(1, Ordering::SeqCst);
                    let msg = b"Only one auth mechanism allowed";
                    let _ = s.write_all(format!("HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", msg.len()).as_bytes()).await;
                    let _ = s.write_all(msg).await;
                } else {
                    let _ = s.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes()).await;
                    let _ = s.write_all(&body).await;
                }
            });
        }
    });

    // The registry: token-protected, redirecting blob GETs to the CDN.
    let realm = Arc::new(std::sync::Mutex::new(String::new()));
    let realm_in = realm.clone();
    let d = digest.clone();
    let fake = TestServer::start(move |req: Request| {
        let authed = req.header("authorization") == Some("Bearer good-token");
        if req.path() == "/token" {
            return Response::json(
                200,
                &serde_json::json!({"token": "good-token", "expires_in": 300}),
            );
        }
        if !authed {
            let challenge = format!(
                "Bearer realm=\"{}\",service=\"fake\",scope=\"repository:cdn/app:pull\"",
                realm_in.lock().unwrap()
            );
            return Response::json(
                401,
                &serde_json::json!({"errors":[{"code":"UNAUTHORIZED","message":"auth required"}]}),
            )
            .header("WWW-Authenticate", &challenge);
        }
        if req.path().ends_with(&format!("/blobs/{d}")) {
            return Response::new(307).header(
                "Location",
                &format!("http://{cdn_addr}/cdn/blob?X-Amz-Signature=abc"),
            );
        }
        Response::new(404)
    })
    .await;
    *realm.lock().unwrap() = format!("{}/token", fake.url());

    let bw = Breakwater::start(&local_upstream(&fake.url(), "10m", "")).await;
    let r = http_client()
        .get(format!("{}/v2/local/cdn/app/blobs/{digest}", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.expect("complete body");
    assert_eq!(sha256_digest(&body), digest);
    assert_eq!(
        cdn_auth.load(Ordering::SeqCst),
        0,
        "Authorization was sent to the CDN host"
    );
    assert_eq!(cdn_hits.load(Ordering::SeqCst), 1);
    assert!(
        super::support::wait_until(Duration::from_secs(5), || bw.has_blob(&digest)).await,
        "verified blob was not committed"
    );
    // The redirect itself is not cached: the registry saw the authenticated request.
    assert!(fake.count("GET", "/token") >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_blob_is_resumed_with_range() {
    let data = pseudo_random(3, 4 * 1024 * 1024 + 123);
    let digest = sha256_digest(&data);
    let ranges = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (body, seen) = (data.clone(), ranges.clone());
    let fake = TestServer::start_raw(move |req: Request, mut stream: TcpStream| {
        let (body, seen) = (body.clone(), seen.clone());
        async move {
            if !req.path().contains("/blobs/") {
                let _ = Response::new(200)
                    .write_to(&mut stream, req.is_head())
                    .await;
                return Some(stream);
            }
            let range = req.header("range").map(str::to_string);
            seen.lock().unwrap().push(range.clone());
            let offset = range
                .and_then(|r| {
                    r.strip_prefix("bytes=")?
                        .strip_suffix('-')?
                        .parse::<usize>()
                        .ok()
                })
                .unwrap_or(0);
            // First attempt: cut after 1.5 MiB. The resume gets the rest.
            let send = if offset == 0 {
                3 * 512 * 1024
            } else {
                usize::MAX
            };
            send_partial(&mut stream, &body, offset, send).await;
            None
        }
    })
    .await;
    let bw = Breakwater::start(&local_upstream(&fake.url(), "10m", "")).await;
    let r = http_client()
        .get(format!("{}/v2/local/team/app/blobs/{digest}", bw.url()))
        .send()
        .await
        .unwrap();
    let body = r.bytes().await.expect("the client sees no hiccup");
    assert_eq!(sha256_digest(&body), digest);
    let seen = ranges.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], None);
    assert_eq!(seen[1].as_deref(), Some("bytes=1572864-"));
    assert!(
        super::support::wait_until(Duration::from_secs(5), || bw.has_blob(&digest)).await,
        "verified blob was not committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_connections_gives_a_fast_clear_error() {
    // A port nothing listens on.
    let port = super::support::free_port();
    let bw = Breakwater::start(&local_upstream(
        &format!("http://127.0.0.1:{port}"),
        "10m",
        "",
    ))
    .await;
    let client = http_client();
    for path in [
        "/v2/local/team/app/manifests/v1".to_string(),
        format!("/v2/local/team/app/blobs/sha256:{}", "1".repeat(64)),
    ] {
        let started = Instant::now();
        let r = client
            .get(format!("{}{path}", bw.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let e: serde_json::Value = r.json().await.unwrap();
        assert_eq!(e["errors"][0]["code"], "UNAVAILABLE");
        let msg = e["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains("upstream local unreachable"), "{msg}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
    // The failed fill discards its staging file just after answering.
    assert!(
        super::support::wait_until(Duration::from_secs(5), || bw.temp_files() == 0).await,
        "a staging file was left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_hub_rate_limit_headers_become_a_metric() {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
    let digest = sha256_digest(manifest);
    let fake = TestServer::start(move |req: Request| {
        if req.path().contains("/manifests/") {
            Response::new(200)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", &digest)
                .header("ratelimit-limit", "100;w=21600")
                .header("ratelimit-remaining", "76;w=21600")
                .body(Bytes::from_static(manifest))
        } else {
            Response::new(200)
        }
    })
    .await;
    let bw = Breakwater::start(&local_upstream(&fake.url(), "10m", "")).await;
    let r = http_client()
        .get(format!(
            "{}/v2/local/library/nginx/manifests/latest",
            bw.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        bw.metric(
            "breakwater_upstream_ratelimit_remaining",
            &["upstream=\"local\""]
        )
        .await,
        76.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaginated_tag_list_is_sorted_lexically() {
    // An upstream that lists tags in its own order (the specification wants lexical order).
    let fake = TestServer::start(|req: Request| {
        if req.path().ends_with("/tags/list") {
            Response::json(
                200,
                &serde_json::json!({"name": "team/app", "tags": ["v2", "latest", "v10", "1.0", "v2"]}),
            )
        } else {
            Response::new(404)
        }
    })
    .await;
    let bw = Breakwater::start(&local_upstream(&fake.url(), "10m", "")).await;
    let r = http_client()
        .get(format!("{}/v2/local/team/app/tags/list", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["1.0", "latest", "v10", "v2"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_pull_in_flight_finish_then_exits_leaving_nothing_half_written() {
    // A slow upstream: 4 MiB at about 4 MiB/s, so the pull is mid-way when SIGTERM arrives.
    let data = pseudo_random(7, 4 * 1024 * 1024);
    let digest = sha256_digest(&data);
    let body = data.clone();
    let fake = TestServer::start_raw(move |req: Request, mut stream: TcpStream| {
        let body = body.clone();
        async move {
            if !req.path().contains("/blobs/") {
                let _ = Response::new(200)
                    .write_to(&mut stream, req.is_head())
                    .await;
                return Some(stream);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            for chunk in body.chunks(256 * 1024) {
                if stream.write_all(chunk).await.is_err() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
            let _ = stream.flush().await;
            None
        }
    })
    .await;
    let mut bw = Breakwater::start_with(
        "shutdown_grace = \"20s\"",
        &local_upstream(&fake.url(), "10m", ""),
    )
    .await;
    let url = format!("{}/v2/local/team/app/blobs/{digest}", bw.url());
    let client = tokio::spawn(async move {
        let r = http_client().get(url).send().await.expect("response");
        assert_eq!(r.status(), 200);
        r.bytes().await.expect("the whole body")
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = bw.pid();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    // New connections are refused while the running pull goes on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        TcpStream::connect(bw.host()).await.is_err(),
        "still accepting after SIGTERM"
    );
    let got = client.await.unwrap();
    assert_eq!(
        sha256_digest(&got),
        digest,
        "the pull in flight completed intact"
    );
    // The process ends once nothing is in flight (well before the 20 s grace), with the blob
    // committed and no staging file left.
    let status = bw
        .wait_exit(Duration::from_secs(15))
        .expect("exited within the grace period");
    assert!(status.success(), "{status:?}");
    assert!(bw.has_blob(&digest));
    assert_eq!(bw.temp_files(), 0);
    assert!(
        bw.log_text().contains("shutdown complete"),
        "{}",
        bw.log_text()
    );
}
