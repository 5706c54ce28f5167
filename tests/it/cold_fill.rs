//! The pipelined cold path: readers tail the bytes just received (a partial batch too, when
//! upstream pauses), the final byte waits for the digest, and a client that stops reading
//! neither holds back the others nor makes the fill buffer the blob: it falls out of the
//! in-memory window and reads the staging file.

use super::bw::{local_upstream, Breakwater};
use super::support::http::{Request, Response, TestServer};
use super::support::image::Blob;
use super::support::registry::Registry;
use super::support::{http_client, proc_kib, pseudo_random, sha256_digest, wait_until};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// A raw HTTP/1.1 GET whose body the caller reads at its own pace; returns the stream with
/// the header consumed, and whatever body bytes came with it.
async fn raw_get(host: &str, path: &str) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(host).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the response header");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i]).to_string();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            return (s, got.split_off(i + 4));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_holds_back_no_one_and_the_fill_does_not_buffer_for_it() {
    const SIZE: usize = 64 * 1024 * 1024;
    let reg = Registry::start_plain().await;
    let blob = Blob::new("application/octet-stream", pseudo_random(7, SIZE));
    reg.pusher().push_blob("team/big", &blob).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let rss_before = proc_kib(bw.pid(), "VmRSS");
    let path = format!("/v2/local/team/big/blobs/{}", blob.digest);

    // The stalled client starts the fill, takes a little, then stops reading.
    let (mut slow, mut slow_body) = raw_get(&bw.host(), &path).await;
    while slow_body.len() < 64 * 1024 {
        let mut buf = vec![0u8; 64 * 1024];
        let n = slow.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stalled client's response ended early");
        slow_body.extend_from_slice(&buf[..n]);
    }

    // A second client gets the whole blob meanwhile.
    let fast = tokio::time::timeout(Duration::from_secs(120), async {
        http_client()
            .get(format!("{}{path}", bw.url()))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
    })
    .await
    .expect("a stalled client held back another one");
    assert_eq!(sha256_digest(&fast), blob.digest);
    assert!(
        wait_until(Duration::from_secs(20), || bw.has_blob(&blob.digest)).await,
        "the verified blob was not committed while a client stalled"
    );
    assert_eq!(
        reg.blob_gets(&blob.digest),
        1,
        "both clients share one fill"
    );

    // The fill did not keep the blob in memory for the stalled client.
    let grew = proc_kib(bw.pid(), "VmHWM").saturating_sub(rss_before);
    assert!(
        grew < (SIZE / 2 / 1024) as u64,
        "breakwater's peak RSS grew by {grew} KiB during a {} MiB fill",
        SIZE >> 20
    );

    // The stalled client resumes and gets every byte, partly from the staging file.
    slow.read_to_end(&mut slow_body).await.unwrap();
    assert_eq!(slow_body.len(), SIZE);
    assert_eq!(sha256_digest(&slow_body), blob.digest);
    let file_reads = bw
        .metric("breakwater_fill_reads_total", &["from=\"file\""])
        .await;
    let memory_reads = bw
        .metric("breakwater_fill_reads_total", &["from=\"memory\""])
        .await;
    assert!(
        file_reads > 0.0,
        "the stalled client never fell back to the staging file"
    );
    // How many depends on how well the other client keeps pace on a loaded machine.
    assert!(
        memory_reads > 0.0,
        "no reader was served the chunks just received ({file_reads} file reads)"
    );
}

/// An upstream that sends all but the final byte of `data` for any blob GET, then waits for
/// `release` before sending it.
async fn upstream_pausing_before_the_last_byte(data: Bytes, release: Arc<Notify>) -> TestServer {
    TestServer::start_raw(move |req: Request, mut stream: TcpStream| {
        let (data, release) = (data.clone(), release.clone());
        async move {
            if !req.path().contains("/blobs/") {
                let _ = Response::new(200)
                    .write_to(&mut stream, req.is_head())
                    .await;
                return Some(stream);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                data.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            // A moment's pause a few bytes before the end lets readers catch up first: the
            // next bytes then reach them as a tiny chunk of their own.
            let _ = stream.write_all(&data[..data.len() - 5]).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = stream.write_all(&data[data.len() - 5..data.len() - 1]).await;
            release.notified().await;
            let _ = stream.write_all(&data[data.len() - 1..]).await;
            None
        }
    })
    .await
}

/// Streams a blob from an upstream that pauses before its final byte; returns what the client
/// holds during the pause and the response's end (`Ok(total bytes)` or the cut).
async fn pause_before_the_last_byte(
    data: Bytes,
    digest: &str,
) -> (Breakwater, usize, Result<usize, String>) {
    let release = Arc::new(Notify::new());
    let fake = upstream_pausing_before_the_last_byte(data.clone(), release.clone()).await;
    // The pause lasts as long as the client takes to read (long on a loaded machine): past the
    // usual 3 s idle timeout breakwater would rightly give up on this upstream and resume.
    let config = local_upstream(&fake.url(), "10m", "")
        .replace("idle_timeout = \"3s\"", "idle_timeout = \"60s\"");
    assert!(config.contains("idle_timeout = \"60s\""));
    let bw = Breakwater::start(&config).await;
    let mut resp = http_client()
        .get(format!("{}/v2/local/team/app/blobs/{digest}", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = 0;
    // Everything received but the one byte held for verification arrives without the rest
    // of a batch: readers are handed partial chunks when upstream pauses.
    let paused = tokio::time::timeout(Duration::from_secs(30), async {
        while got < data.len() - 2 {
            got += resp.chunk().await.unwrap().expect("body ended early").len();
        }
    })
    .await;
    assert!(
        paused.is_ok(),
        "only {got} of {} bytes reached the client while upstream paused",
        data.len() - 2
    );
    // Nothing more comes until upstream sends the final byte.
    let more = tokio::time::timeout(Duration::from_millis(500), resp.chunk()).await;
    assert!(
        more.is_err(),
        "a byte past the held one was released before verification: {more:?}"
    );
    let during_pause = got;
    release.notify_one();
    let end = loop {
        match resp.chunk().await {
            Ok(Some(c)) => got += c.len(),
            Ok(None) => break Ok(got),
            Err(e) => break Err(format!("{e} after {got} bytes")),
        }
    };
    let _keep = fake;
    (bw, during_pause, end)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_blob_streams_up_to_the_held_byte_then_completes_once_verified() {
    let data = pseudo_random(11, 3 * 1024 * 1024 + 5);
    let digest = sha256_digest(&data);
    let (bw, during_pause, end) = pause_before_the_last_byte(data.clone(), &digest).await;
    assert_eq!(during_pause, data.len() - 2);
    assert_eq!(end, Ok(data.len()));
    assert!(
        wait_until(Duration::from_secs(10), || bw.has_blob(&digest)).await,
        "the verified blob was not committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_never_delivers_its_final_byte() {
    let data = pseudo_random(12, 3 * 1024 * 1024 + 5);
    // The digest promised a different final byte: every other byte is right.
    let mut promised = data.to_vec();
    *promised.last_mut().unwrap() ^= 0xff;
    let digest = sha256_digest(&promised);
    let (bw, during_pause, end) = pause_before_the_last_byte(data.clone(), &digest).await;
    assert_eq!(during_pause, data.len() - 2);
    let cut = end.expect_err("a response with bad bytes completed");
    assert!(
        cut.contains(&format!("after {} bytes", data.len() - 2))
            || cut.contains(&format!("after {} bytes", data.len() - 1)),
        "{cut}"
    );
    assert_eq!(
        bw.metric("breakwater_verification_failures_total", &[])
            .await,
        1.0
    );
    assert!(
        !bw.has_blob(&digest),
        "a blob that failed verification was stored"
    );
    assert!(
        wait_until(Duration::from_secs(5), || bw.temp_files() == 0).await,
        "staging file left behind"
    );
}

/// Clients that join a running fill for the same upstream and repository ask upstream nothing
/// more: the fill's success links the blob there, its failure fails them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_clients_joining_one_fill_send_one_upstream_get_and_no_head() {
    const CLIENTS: usize = 8;
    let reg = Registry::start_plain().await;
    let blob = Blob::new("application/octet-stream", pseudo_random(11, 32 << 20));
    reg.pusher().push_blob("team/joined", &blob).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    reg.reset_counts().await;
    let url = format!("{}/v2/local/team/joined/blobs/{}", bw.url(), blob.digest);
    let client = http_client();
    let gets = (0..CLIENTS).map(|_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client.get(url).send().await.expect("GET");
            let cache = r
                .headers()
                .get("X-Breakwater-Cache")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            let status = r.status().as_u16();
            (
                status,
                cache,
                sha256_digest(&r.bytes().await.expect("body")),
            )
        }
    });
    for (status, cache, digest) in futures_util::future::join_all(gets).await {
        assert_eq!(status, 200);
        assert_eq!(digest, blob.digest);
        // Each was served by the fill, none from the store after it: all of them joined it.
        assert_eq!(cache.as_deref(), Some("miss"));
    }
    reg.settle().await;
    let path = format!("/blobs/{}", blob.digest);
    assert_eq!(reg.count("GET", &path), 1, "one upstream GET for all");
    assert_eq!(
        reg.count("HEAD", &path),
        0,
        "no confirmation per joining client"
    );
    assert!(
        wait_until(Duration::from_secs(20), || bw.has_blob(&blob.digest)).await,
        "the fill committed the blob"
    );
}
