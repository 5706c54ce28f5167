//! Hostile and careless clients on the registry port: thousands of idle connections, a
//! connection cap, a client dripping its request head, a reader that stalls mid-blob and one
//! that stops for good (`send_timeout`), and one address flooding requests. Each time breakwater
//! must keep serving everyone else, in bounded
//! memory, and close what breaks the limits of `[server]`.

use super::bw::{local_upstream, Breakwater};
use super::support::image::{Blob, Format, Image};
use super::support::registry::Registry;
use super::support::{
    http_client, proc_kib, pseudo_random, sha256_digest, skopeo_pull, wait_until, TempDir,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Open file descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

/// Raises this test process's soft open-file limit to the hard one; returns it.
fn raise_own_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard
}

/// A connection from `source` (a loopback address) to `to`.
async fn connect_from(source: &str, to: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(source.parse().unwrap(), 0))
        .unwrap();
    socket.connect(to.parse().unwrap()).await.unwrap()
}

/// Whether the peer closed `conn`: the next read gives EOF (or a reset) within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // an answer's bytes; keep reading to the end
            Err(_) => return false,
        }
    }
}

/// Sends `GET path` on a kept-alive `conn` and reads the status and the whole (small) answer.
async fn get_on(conn: &mut TcpStream, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: breakwater\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before a whole answer");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return head.split(' ').nth(1).unwrap().parse().unwrap();
            }
        }
    }
}

/// Opens idle connections (sending nothing) until `conns` holds `n`.
async fn open_idle(host: &str, conns: &mut Vec<TcpStream>, n: usize) {
    while conns.len() < n {
        conns.push(TcpStream::connect(host).await.expect("connect"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_cost_little_and_are_closed_after_header_timeout() {
    let hard = raise_own_nofile();
    // Each connection takes one descriptor here and one in breakwater (same hard limit).
    let want: usize = 10_000;
    let n = want.min(hard.saturating_sub(500) as usize);
    if n < want {
        println!("RLIMIT_NOFILE hard limit is {hard}: testing {n} idle connections, not {want}");
    }
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 4242);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let body = local_upstream(&reg.url(), "10m", "");
    let cap = format!("max_connections = {}", n + 100);

    // A long head timeout first: the connections stay while memory is measured and a pull runs.
    let bw = Breakwater::start_with(&format!("header_timeout = \"5m\"\n{cap}"), &body).await;
    let pid = bw.pid();
    assert_eq!(
        get_on(&mut TcpStream::connect(bw.host()).await.unwrap(), "/v2/").await,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss0, fds0) = (proc_kib(pid, "VmRSS"), fd_count(pid));
    let mut conns = Vec::new();
    let mut steps = Vec::new();
    for step in [n / 10, n] {
        open_idle(&bw.host(), &mut conns, step).await;
        assert!(
            wait_until(Duration::from_secs(30), || fd_count(pid) >= fds0 + step).await,
            "breakwater accepted {step} connections (has {} fds)",
            fd_count(pid)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = proc_kib(pid, "VmRSS");
        let per_conn = (rss.saturating_sub(rss0) * 1024) / step as u64;
        println!(
            "idle connections: {step:>6}  VmRSS {rss} KiB (+{} KiB, {per_conn} B each)",
            rss - rss0.min(rss)
        );
        steps.push(per_conn);
    }
    println!("idle connections: {:>6}  VmRSS {rss0} KiB", 0);
    assert!(
        steps.iter().all(|b| *b < 64 * 1024),
        "RSS per idle connection {steps:?} bytes, not under 64 KiB"
    );
    // Meanwhile a real client pulls a whole image.
    let dest = TempDir::new("idle-pull");
    let image = format!("{}/local/team/app:v1", bw.host());
    let out = dest.path().join("img");
    let pulled = tokio::task::spawn_blocking(move || skopeo_pull(&image, &out, &[]))
        .await
        .unwrap();
    pulled.expect("skopeo pulls while 10,000 connections sit idle");
    drop(conns);
    assert!(
        wait_until(Duration::from_secs(30), || fd_count(pid) <= fds0 + 20).await,
        "descriptors came back after the clients left ({} now, {fds0} before)",
        fd_count(pid)
    );
    drop(bw);

    // A 2 s head timeout: breakwater closes every silent connection itself.
    let bw = Breakwater::start_with(&format!("header_timeout = \"2s\"\n{cap}"), &body).await;
    let pid = bw.pid();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let fds0 = fd_count(pid);
    let mut conns = Vec::new();
    open_idle(&bw.host(), &mut conns, n).await;
    let opened = Instant::now();
    let mut checks = tokio::task::JoinSet::new();
    for mut c in conns {
        checks.spawn(async move { closed_within(&mut c, Duration::from_secs(30)).await });
    }
    let mut closed = 0;
    while let Some(r) = checks.join_next().await {
        closed += usize::from(r.unwrap());
    }
    let took = opened.elapsed();
    assert_eq!(closed, n, "every idle connection was closed by breakwater");
    println!("{n} idle connections closed by breakwater within {took:?} of the last connect");
    assert!(took < Duration::from_secs(20), "closed after {took:?}");
    assert!(
        wait_until(Duration::from_secs(10), || fd_count(pid) <= fds0 + 20).await,
        "fds fell back ({} now, {fds0} before)",
        fd_count(pid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_connections_new_ones_are_closed_and_existing_ones_served() {
    let reg = Registry::start_plain().await;
    let bw = Breakwater::start_with(
        "max_connections = 3\nheader_timeout = \"5m\"",
        &local_upstream(&reg.url(), "10m", ""),
    )
    .await;
    // wait_for_port's probe connection must be gone before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(bw.host()).await.unwrap();
        assert_eq!(get_on(&mut c, "/v2/").await, 200);
        held.push(c);
    }
    let mut over = TcpStream::connect(bw.host()).await.unwrap();
    let _ = over
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let got = tokio::time::timeout(Duration::from_secs(5), over.read(&mut buf)).await;
    assert!(
        matches!(got, Ok(Ok(0)) | Ok(Err(_))),
        "the fourth connection is closed unanswered: {got:?}"
    );
    for c in &mut held {
        assert_eq!(
            get_on(c, "/v2/").await,
            200,
            "existing clients keep being served"
        );
    }
    assert!(
        bw.metric(
            "breakwater_client_limit_refusals_total",
            &[r#"limit="connections""#]
        )
        .await
            >= 1.0
    );
    held.pop();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = TcpStream::connect(bw.host()).await.unwrap();
        let req = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n";
        let answered = c.write_all(req).await.is_ok()
            && matches!(
                tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await,
                Ok(Ok(n)) if n > 0
            );
        if answered {
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a new connection is served once one left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_head_and_an_idle_keepalive_connection_are_closed() {
    let reg = Registry::start_plain().await;
    let bw = Breakwater::start_with(
        "header_timeout = \"2s\"\nkeepalive_timeout = \"2s\"",
        &local_upstream(&reg.url(), "10m", ""),
    )
    .await;
    // Slow loris: a header line every 300 ms, never the blank line that ends the head. Each
    // read gets bytes well within any per-read timeout; only a deadline on the whole head ends it.
    let mut loris = TcpStream::connect(bw.host()).await.unwrap();
    let started = Instant::now();
    loris.write_all(b"GET /v2/ HTTP/1.1\r\n").await.unwrap();
    let mut closed_after = None;
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let line = format!("X-Drip-{i}: x\r\n");
        if loris.write_all(line.as_bytes()).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), loris.read(&mut buf)).await {
            assert!(
                !matches!(r, Ok(n) if n > 0),
                "no answer to an unfinished head"
            );
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let took = closed_after.expect("the dripping client was closed");
    println!("slow-loris client closed after {took:?}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "closed after {took:?}, expected about header_timeout (2 s)"
    );

    // Keep-alive: one answered request, then silence, is closed after about keepalive_timeout.
    let mut kept = TcpStream::connect(bw.host()).await.unwrap();
    assert_eq!(get_on(&mut kept, "/v2/").await, 200);
    let idle_from = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(10)).await);
    let idle = idle_from.elapsed();
    println!("idle keep-alive connection closed after {idle:?}");
    assert!(
        idle >= Duration::from_millis(1900) && idle < Duration::from_secs(5),
        "{idle:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_holds_back_neither_the_fill_nor_another_client() {
    let reg = Registry::start_plain().await;
    let blob = Blob::new("application/octet-stream", pseudo_random(77, 64 << 20));
    reg.pusher().push_blob("team/big", &blob).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let pid = bw.pid();
    let path = format!("/v2/local/team/big/blobs/{}", blob.digest);
    let rss0 = proc_kib(pid, "VmRSS");

    // The stalled reader starts the cold fill, takes 64 KiB and stops reading.
    let mut stalled = TcpStream::connect(bw.host()).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: breakwater\r\n\r\n");
    stalled.write_all(req.as_bytes()).await.unwrap();
    let mut taken = 0;
    let mut buf = vec![0u8; 64 << 10];
    while taken < 64 << 10 {
        let n = stalled.read(&mut buf[taken..]).await.unwrap();
        assert!(n > 0);
        taken += n;
    }
    assert!(buf.starts_with(b"HTTP/1.1 200"));

    let started = Instant::now();
    let full = http_client()
        .get(format!("{}{path}", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(60), full.bytes())
        .await
        .expect("the second client is not held back by the stalled one")
        .unwrap();
    let took = started.elapsed();
    assert_eq!(sha256_digest(&body), blob.digest);
    println!("64 MiB cold blob to a second client in {took:?} while the first one stalls");
    assert!(
        wait_until(Duration::from_secs(30), || bw.has_blob(&blob.digest)).await,
        "the fill stored the blob though a reader stalls"
    );
    let rss = proc_kib(pid, "VmRSS");
    println!("breakwater VmRSS {rss0} KiB before, {rss} KiB with the stalled reader");
    assert!(
        rss < rss0 + 32 * 1024,
        "a stalled reader cost {} KiB",
        rss - rss0
    );
    // The stalled connection is still open, its answer unfinished: it costs a socket buffer.
    let mut one = [0u8; 1];
    assert!(matches!(
        tokio::time::timeout(Duration::from_millis(100), stalled.read(&mut one)).await,
        Ok(Ok(1))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_address_gets_429_while_another_is_served() {
    let reg = Registry::start_plain().await;
    let blob = Blob::new("application/octet-stream", pseudo_random(91, 32 << 20));
    reg.pusher().push_blob("team/flood", &blob).await;
    let bw = Breakwater::start_with(
        "max_requests_per_client = 4",
        &local_upstream(&reg.url(), "10m", ""),
    )
    .await;
    let path = format!("/v2/local/team/flood/blobs/{}", blob.digest);
    let url = format!("{}{path}", bw.url());
    let warm = http_client().get(&url).send().await.unwrap();
    assert_eq!(sha256_digest(&warm.bytes().await.unwrap()), blob.digest);

    // Four requests from 127.0.0.1 that never read their 32 MiB answers keep running.
    let mut flood = Vec::new();
    for _ in 0..4 {
        let mut c = connect_from("127.0.0.1", &bw.host()).await;
        let req = format!("GET {path} HTTP/1.1\r\nHost: breakwater\r\n\r\n");
        c.write_all(req.as_bytes()).await.unwrap();
        flood.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut fifth = connect_from("127.0.0.1", &bw.host()).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: breakwater\r\n\r\n");
    fifth.write_all(req.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), fifth.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 429"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("retry-after: 1"),
        "{text}"
    );
    assert!(text.contains("TOOMANYREQUESTS"), "{text}");
    assert!(text.contains("max_requests_per_client"), "{text}");

    // Another address is served meanwhile, in full.
    let other = reqwest::Client::builder()
        .no_proxy()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let r = other.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_digest(&r.bytes().await.unwrap()), blob.digest);
    assert!(
        bw.metric(
            "breakwater_client_limit_refusals_total",
            &[r#"limit="requests_per_client""#]
        )
        .await
            >= 1.0
    );

    // Once the flood ends, the address is served again.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_client().head(&url).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 429);
        assert!(
            Instant::now() < deadline,
            "127.0.0.1 served again after its flood"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `GET path` on a connection from 127.0.0.1, takes the head and 64 KiB, then stops reading.
async fn stop_reading_after_64k(host: &str, path: &str) -> TcpStream {
    let mut c = connect_from("127.0.0.1", host).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: breakwater\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut taken = 0;
    while taken < buf.len() {
        let n = c.read(&mut buf[taken..]).await.unwrap();
        assert!(n > 0, "closed before 64 KiB");
        taken += n;
    }
    assert!(buf.starts_with(b"HTTP/1.1 200"));
    c
}

/// Reads what `conn` still has until EOF; `None` if it stays open for `within`.
async fn rest_until_closed(conn: &mut TcpStream, within: Duration) -> Option<usize> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match tokio::time::timeout(within, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(total),
            Ok(Ok(n)) => total += n,
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_after_send_timeout_and_frees_its_slot() {
    let reg = Registry::start_plain().await;
    let blob = Blob::new("application/octet-stream", pseudo_random(93, 48 << 20));
    reg.pusher().push_blob("team/stuck", &blob).await;
    let bw = Breakwater::start_with(
        "send_timeout = \"2s\"\nmax_requests_per_client = 1",
        &local_upstream(&reg.url(), "10m", ""),
    )
    .await;
    let path = format!("/v2/local/team/stuck/blobs/{}", blob.digest);
    let url = format!("{}{path}", bw.url());

    for (round, how) in ["cold: streamed from the fill", "warm: sent from the store"]
        .iter()
        .enumerate()
    {
        let mut stuck = stop_reading_after_64k(&bw.host(), &path).await;
        // Its one request slot is taken while its answer waits on a full socket.
        let other = http_client().get(&url).send().await.unwrap();
        assert_eq!(other.status(), 429, "{how}: the slot was not held");
        drop(other);
        // Past send_timeout without reading, then take whatever was sent before the cut.
        tokio::time::sleep(Duration::from_secs(4)).await;
        let started = Instant::now();
        let rest = rest_until_closed(&mut stuck, Duration::from_secs(20)).await;
        let rest = rest.unwrap_or_else(|| panic!("{how}: the stalled connection stays open"));
        println!(
            "{how}: {rest} more bytes, EOF after {:?}",
            started.elapsed()
        );
        // Socket buffers hold a few MiB at most: most of the blob was never sent.
        assert!(
            (64 << 10) + rest < blob.data.len(),
            "{how}: the whole blob went out ({rest} more bytes)"
        );
        if round == 0 {
            // The fill does not depend on its readers: the blob is stored all the same.
            assert!(
                wait_until(Duration::from_secs(30), || bw.has_blob(&blob.digest)).await,
                "the fill stored the blob though its only reader stalled"
            );
        }
        // The slot is free again: the same address is served whole.
        let again = http_client().get(&url).send().await.unwrap();
        assert_eq!(again.status(), 200, "{how}: the slot stayed taken");
        assert_eq!(sha256_digest(&again.bytes().await.unwrap()), blob.digest);
    }
}
