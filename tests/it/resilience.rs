//! Resilience of the pull path: one upstream fetch per digest (late joiners too), fills detached
//! from clients, Range on in-flight fills, resume, fast failure with a circuit breaker, 429,
//! crash safety with scrub, disk full, and per-pattern tag policies.

use super::bw::{local_upstream, Breakwater};
use super::support::http::{Request, Response, TestServer};
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::{http_client, pseudo_random, sha256_digest, wait_until, TempDir};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// GETs `url` and hashes the body as it streams (no whole-body buffers): (digest, length), or the
/// error that cut it.
async fn fetch_digest(
    client: &reqwest::Client,
    url: &str,
    range: Option<&str>,
) -> Result<(u16, String, u64), String> {
    let mut req = client.get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let mut stream = resp.bytes_stream();
    let mut h = Sha256::new();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("body cut after {n} bytes: {e}"))?;
        n += chunk.len() as u64;
        h.update(&chunk);
    }
    Ok((status, format!("sha256:{}", hex::encode(h.finalize())), n))
}

/// A fake upstream serving one blob slowly (`bytes_per_sec`), honouring `Range: bytes=N-`
/// unless `ignore_range`, optionally cutting the first response after `cut_first_at` bytes.
struct SlowBlob {
    server: TestServer,
    data: Bytes,
    digest: String,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

async fn slow_blob(
    data: Bytes,
    bytes_per_sec: usize,
    cut_first_at: Option<usize>,
    ignore_range: bool,
) -> SlowBlob {
    let digest = sha256_digest(&data);
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let (body, seen) = (data.clone(), ranges.clone());
    let first = Arc::new(AtomicBool::new(true));
    let server = TestServer::start_raw(move |req: Request, mut stream: TcpStream| {
        let (body, seen, first) = (body.clone(), seen.clone(), first.clone());
        async move {
            if !req.path().contains("/blobs/") {
                let _ = Response::new(200)
                    .write_to(&mut stream, req.is_head())
                    .await;
                return Some(stream);
            }
            let range = req.header("range").map(str::to_string);
            seen.lock().unwrap().push(range.clone());
            let offset = if ignore_range {
                0
            } else {
                range
                    .and_then(|r| {
                        r.strip_prefix("bytes=")?
                            .strip_suffix('-')?
                            .parse::<usize>()
                            .ok()
                    })
                    .unwrap_or(0)
            };
            let rest = &body[offset..];
            let head = crate::support::open_range_head(offset, body.len());
            stream.write_all(head.as_bytes()).await.ok()?;
            let limit = if first.swap(false, Ordering::SeqCst) {
                cut_first_at
            } else {
                None
            };
            let send = limit.unwrap_or(usize::MAX).min(rest.len());
            let chunk = 64 * 1024;
            let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec as f64);
            let mut sent = 0;
            while sent < send {
                let n = chunk.min(send - sent);
                stream.write_all(&rest[sent..sent + n]).await.ok()?;
                sent += n;
                tokio::time::sleep(pause).await;
            }
            None
        }
    })
    .await;
    SlowBlob {
        server,
        data,
        digest,
        ranges,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_clients_late_joiners_too_share_one_upstream_fetch() {
    // 64 MiB at 24 MiB/s: the fill takes ~2.7 s, so the late half joins mid-fill.
    let blob = slow_blob(pseudo_random(1, 64 << 20), 24 << 20, None, false).await;
    let bw = Breakwater::start(&local_upstream(&blob.server.url(), "10m", "")).await;
    let url = format!("{}/v2/local/team/app/blobs/{}", bw.url(), blob.digest);
    let client = http_client();
    let mut tasks = Vec::new();
    for i in 0..32 {
        if i == 16 {
            tokio::time::sleep(Duration::from_millis(1300)).await;
            assert!(
                !bw.has_blob(&blob.digest),
                "fill finished before the late joiners came"
            );
        }
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(
            async move { fetch_digest(&c, &u, None).await },
        ));
    }
    for t in tasks {
        let (status, digest, n) = t.await.unwrap().expect("every client completes");
        assert_eq!(status, 200);
        assert_eq!(digest, blob.digest);
        assert_eq!(n, blob.data.len() as u64);
    }
    assert_eq!(
        blob.server.count("GET", "/blobs/"),
        1,
        "one upstream GET for 32 clients"
    );
    assert_eq!(
        bw.metric(
            "breakwater_requests_total",
            &["kind=\"blob\"", "result=\"miss\""]
        )
        .await,
        32.0
    );
    assert_eq!(
        bw.metric("breakwater_upstream_bytes_total", &[]).await,
        blob.data.len() as f64
    );
    assert!(
        super::support::wait_until(Duration::from_secs(5), || bw.has_blob(&blob.digest)).await,
        "verified blob was not committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fill_outlives_the_client_that_started_it() {
    let blob = slow_blob(pseudo_random(2, 16 << 20), 16 << 20, None, false).await;
    let bw = Breakwater::start(&local_upstream(&blob.server.url(), "10m", "")).await;
    let url = format!("{}/v2/local/team/app/blobs/{}", bw.url(), blob.digest);
    let resp = http_client().get(&url).send().await.unwrap();
    let mut stream = resp.bytes_stream();
    let mut got = 0;
    while got < (1 << 20) {
        got += stream.next().await.unwrap().unwrap().len();
    }
    drop(stream); // hang up after the first MiB
    assert!(
        wait_until(Duration::from_secs(10), || bw.has_blob(&blob.digest)).await,
        "fill was abandoned"
    );
    assert_eq!(blob.server.count("GET", "/blobs/"), 1);
    let (_, digest, _) = fetch_digest(&http_client(), &url, None).await.unwrap();
    assert_eq!(digest, blob.digest);
    assert_eq!(
        blob.server.count("GET", "/blobs/"),
        1,
        "served from the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_on_in_flight_and_cached_blobs() {
    let blob = slow_blob(pseudo_random(3, 8 << 20), 4 << 20, None, false).await;
    let bw = Breakwater::start(&local_upstream(&blob.server.url(), "10m", "")).await;
    let url = format!("{}/v2/local/team/app/blobs/{}", bw.url(), blob.digest);
    let client = http_client();
    // Start the fill, then ask for the first KiB: answered while the fill is still running.
    let full = tokio::spawn({
        let (c, u) = (client.clone(), url.clone());
        async move { fetch_digest(&c, &u, None).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client
        .get(&url)
        .header("Range", "bytes=0-1023")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 0-1023/{}", blob.data.len())
    );
    assert_eq!(r.bytes().await.unwrap(), blob.data.slice(0..1024));
    assert!(
        !bw.has_blob(&blob.digest),
        "the range was served before the fill finished"
    );
    // Unsatisfiable on an in-flight fill.
    let r = client
        .get(&url)
        .header("Range", format!("bytes={}-", blob.data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes */{}", blob.data.len())
    );
    // The last bytes come only once verified.
    let r = client
        .get(&url)
        .header("Range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.bytes().await.unwrap(),
        blob.data.slice(blob.data.len() - 100..)
    );
    assert!(
        super::support::wait_until(Duration::from_secs(5), || bw.has_blob(&blob.digest)).await,
        "verified blob was not committed"
    );
    assert_eq!(full.await.unwrap().unwrap().1, blob.digest);
    // Cached: suffix and open-ended forms, and a partial object is never stored.
    let r = client
        .get(&url)
        .header("Range", "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), blob.data.slice(100..));
    assert_eq!(blob.server.count("GET", "/blobs/"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_that_ignores_range_on_resume_restarts_cleanly() {
    let blob = slow_blob(pseudo_random(4, 3 << 20), 64 << 20, Some(1 << 20), true).await;
    let bw = Breakwater::start(&local_upstream(&blob.server.url(), "10m", "")).await;
    let url = format!("{}/v2/local/team/app/blobs/{}", bw.url(), blob.digest);
    let (status, digest, n) = fetch_digest(&http_client(), &url, None)
        .await
        .expect("no hiccup");
    assert_eq!(
        (status, digest.as_str(), n),
        (200, blob.digest.as_str(), blob.data.len() as u64)
    );
    let ranges = blob.ranges.lock().unwrap().clone();
    assert_eq!(ranges.len(), 2);
    assert!(
        ranges[1].as_deref().unwrap().starts_with("bytes="),
        "the retry asked to resume"
    );
    assert!(
        super::support::wait_until(Duration::from_secs(5), || bw.has_blob(&blob.digest)).await,
        "verified blob was not committed"
    );
}

/// Forwards a manifest request to the real registry at `upstream` (the fakes below misbehave on
/// demand and otherwise behave like it).
async fn relay(upstream: &str, req: &Request) -> Response {
    let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap();
    let resp = http_client()
        .request(method, format!("{upstream}{}", req.target))
        .header("Accept", req.header("accept").unwrap_or("*/*"))
        .send()
        .await
        .unwrap();
    let mut out = Response::new(resp.status().as_u16());
    for k in ["content-type", "docker-content-digest"] {
        if let Some(v) = resp.headers().get(k) {
            out = out.header(k, v.to_str().unwrap());
        }
    }
    out.body(resp.bytes().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_upstream_serves_cached_tags_within_a_second_and_fails_fast_after_the_breaker_opens(
) {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 61);
    reg.pusher().push_image("team/app", "v1", &img).await;
    // A fake that relays to the real registry until told to stop answering.
    let blackhole = Arc::new(AtomicBool::new(false));
    let (hole, upstream) = (blackhole.clone(), reg.url());
    let fake = TestServer::start_async(move |req: Request| {
        let (hole, upstream) = (hole.clone(), upstream.clone());
        async move {
            if hole.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            relay(&upstream, &req).await
        }
    })
    .await;
    let extra =
        "first_byte_timeout = \"1500ms\"\nbreaker_failures = 2\nbreaker_backoff = \"30s\"\n";
    let cfg =
        local_upstream(&fake.url(), "1s", "").replace("first_byte_timeout = \"3s\"\n", "") + extra;
    let bw = Breakwater::start(&cfg).await;
    let client = http_client();
    let url = format!("{}/v2/local/team/app/manifests/v1", bw.url());
    let digest = img.manifest.digest.clone();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);

    blackhole.store(true, Ordering::SeqCst);
    let mut slowest_before_open = Duration::ZERO;
    let deadline = Instant::now() + Duration::from_secs(20);
    while bw
        .metric("breakwater_upstream_breaker_open", &["upstream=\"local\""])
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "breaker never opened");
        tokio::time::sleep(Duration::from_millis(1100)).await; // let the TTL lapse
        let started = Instant::now();
        let r = client.get(&url).send().await.unwrap();
        slowest_before_open = slowest_before_open.max(started.elapsed());
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-breakwater-cache"], "stale");
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest
        );
    }
    assert!(
        slowest_before_open < Duration::from_millis(1600),
        "cached pull waited {slowest_before_open:?}"
    );
    // Breaker open: cached tags at once, uncached ones fail at once with a clear message.
    let started = Instant::now();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-breakwater-cache"], "stale");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let r = client
        .get(format!("{}/v2/local/team/app/manifests/v2", bw.url()))
        .send()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(r.status(), 503);
    let e: serde_json::Value = r.json().await.unwrap();
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("marked down"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_serves_stale_and_backs_off() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 62);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let limited = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let (lim, h, upstream) = (limited.clone(), hits.clone(), reg.url());
    let fake = TestServer::start_async(move |req: Request| {
        let (lim, h, upstream) = (lim.clone(), h.clone(), upstream.clone());
        async move {
            if lim.load(Ordering::SeqCst) {
                h.fetch_add(1, Ordering::SeqCst);
                return Response::json(429, &serde_json::json!({"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}))
                    .header("Retry-After", "30");
            }
            relay(&upstream, &req).await
        }
    })
    .await;
    let bw = Breakwater::start(&local_upstream(&fake.url(), "1s", "")).await;
    let client = http_client();
    let url = format!("{}/v2/local/team/app/manifests/v1", bw.url());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    limited.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-breakwater-cache"], "stale");
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "upstream asked again within Retry-After"
    );
    let r = client
        .get(format!("{}/v2/local/team/app/manifests/v9", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "uncached while backing off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_dash_nine_mid_fill_then_scrub_finds_nothing_bad_and_pulls_complete() {
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    let mut layers = Vec::new();
    for i in 0..20u64 {
        let img = Image::with_layer_sizes(Format::Oci, 700 + i, &[6 << 20]);
        p.push_image(&format!("team/app{i}"), "v1", &img).await;
        layers.push((i, img.layers[0].digest.clone()));
    }
    let dir = TempDir::new("crash");
    let root = dir.path().join("store");
    let cfg = local_upstream(&reg.url(), "10m", "");
    let mut bw = Breakwater::launch(&root, &cfg).await;
    let client = http_client();
    let mut tasks = Vec::new();
    for (i, d) in &layers {
        let (c, u) = (
            client.clone(),
            format!("{}/v2/local/team/app{i}/blobs/{d}", bw.url()),
        );
        tasks.push(tokio::spawn(
            async move { fetch_digest(&c, &u, None).await },
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while bw.metric("breakwater_fills_in_flight", &[]).await < 1.0 {
        assert!(Instant::now() < deadline, "no fill ever ran");
    }
    bw.kill9();
    for t in tasks {
        let _ = t.await; // cut or complete: either is fine mid-crash
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["scrub", "--json", "--config"])
        .arg(bw.config_path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scrub output {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{report}");
    assert_eq!(report["bad"], serde_json::json!([]), "{report}");
    bw.restart().await;
    assert_eq!(bw.temp_files(), 0);
    for (i, d) in &layers {
        let url = format!("{}/v2/local/team/app{i}/blobs/{d}", bw.url());
        let (status, got, _) = fetch_digest(&client, &url, None)
            .await
            .expect("retried pull completes");
        assert_eq!((status, got.as_str()), (200, d.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_still_serves_the_client_and_leaves_nothing_half_written() {
    let dir = TempDir::new("diskfull");
    let root = dir.path().join("store");
    std::fs::create_dir_all(&root).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&root)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "this test needs root to mount a small tmpfs as the store"
    );
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(root.clone());
    let blob = slow_blob(pseudo_random(5, 16 << 20), 256 << 20, None, false).await;
    let bw = Breakwater::launch(&root, &local_upstream(&blob.server.url(), "10m", "")).await;
    let url = format!("{}/v2/local/team/app/blobs/{}", bw.url(), blob.digest);
    let (status, digest, n) = fetch_digest(&http_client(), &url, None)
        .await
        .expect("client gets its bytes");
    assert_eq!(
        (status, digest.as_str(), n),
        (200, blob.digest.as_str(), blob.data.len() as u64)
    );
    assert!(
        !bw.has_blob(&blob.digest),
        "a blob that could not be written whole became visible"
    );
    assert!(wait_until(Duration::from_secs(2), || bw.temp_files() == 0).await);
    assert!(bw.metric("breakwater_store_write_errors_total", &[]).await >= 1.0);
    let log = bw.log_text();
    assert_eq!(log.matches("store write failed").count(), 1, "logged once");
    drop(bw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_policies_immutable_and_stale_while_revalidate() {
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    let (a, b) = (Image::small(Format::Oci, 71), Image::small(Format::Oci, 72));
    p.push_image("team/app", "v1.2.3", &a).await;
    p.push_image("team/app", "latest", &a).await;
    let policies = "[[upstreams.local.tag_policies]]\ntags = [\"v*.*.*\"]\nimmutable = true\n\n[[upstreams.local.tag_policies]]\ntags = [\"latest\"]\nstale_while_revalidate = true\n";
    let bw = Breakwater::start(&(local_upstream(&reg.url(), "1s", "") + policies)).await;
    let client = http_client();
    let get = |tag: &'static str| {
        let (c, u) = (
            client.clone(),
            format!("{}/v2/local/team/app/manifests/{tag}", bw.url()),
        );
        async move {
            let r = c.get(&u).send().await.unwrap();
            let status = r.headers()["x-breakwater-cache"]
                .to_str()
                .unwrap()
                .to_string();
            (
                status,
                r.headers()["docker-content-digest"]
                    .to_str()
                    .unwrap()
                    .to_string(),
            )
        }
    };
    assert_eq!(get("v1.2.3").await.1, a.manifest.digest);
    assert_eq!(get("latest").await.1, a.manifest.digest);
    // Upstream moves both tags.
    p.push_image("team/app", "v1.2.3", &b).await;
    p.push_image("team/app", "latest", &b).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reg.reset_counts().await;

    // Immutable: still the cached digest, a move is reported, never a GET upstream.
    assert_eq!(
        get("v1.2.3").await,
        ("hit".to_string(), a.manifest.digest.clone())
    );
    let moved = || async { bw.metric("breakwater_immutable_tag_moved_total", &[]).await };
    let deadline = Instant::now() + Duration::from_secs(5);
    while moved().await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the move of an immutable tag was not detected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get("v1.2.3").await.1, a.manifest.digest);
    assert!(bw.log_text().contains("immutable_tag_moved"));

    // Stale-while-revalidate: the cached digest at once, the new one after the background check.
    assert_eq!(
        get("latest").await,
        ("revalidating".to_string(), a.manifest.digest.clone())
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, d) = get("latest").await;
        if d == b.manifest.digest {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "background revalidation never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reg.settle().await;
    assert_eq!(reg.manifest_gets("v1.2.3"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_a_stale_tag_cause_one_head() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 81);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "1s", "")).await;
    let client = http_client();
    let url = format!("{}/v2/local/team/app/manifests/v1", bw.url());
    client.get(&url).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    reg.reset_counts().await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            c.get(&u).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    reg.settle().await;
    assert_eq!(
        reg.count("HEAD", "/manifests/v1"),
        1,
        "{:#?}",
        reg.requests()
    );
    assert_eq!(reg.count("GET", "/manifests/"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_fills_layers_before_the_client_asks() {
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 91, &[2 << 20, 3 << 20]);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "prefetch = true\n")).await;
    let client = http_client();
    let r = client
        .get(format!("{}/v2/local/team/app/manifests/v1", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all: Vec<String> = img.blobs().iter().map(|b| b.digest.clone()).collect();
    assert!(
        wait_until(Duration::from_secs(10), || all
            .iter()
            .all(|d| bw.has_blob(d)))
        .await,
        "config and layers were not prefetched"
    );
    for d in &all {
        let (_, got, _) = fetch_digest(
            &client,
            &format!("{}/v2/local/team/app/blobs/{d}", bw.url()),
            None,
        )
        .await
        .unwrap();
        assert_eq!(&got, d);
    }
    reg.settle().await;
    for d in &all {
        assert_eq!(reg.blob_gets(d), 1);
    }
    assert_eq!(
        bw.metric("breakwater_prefetch_fills_total", &[]).await,
        all.len() as f64
    );
}
