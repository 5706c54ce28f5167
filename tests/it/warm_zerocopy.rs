//! Warm blobs over plain HTTP/1.1 leave with `sendfile`: several requests on one kept-alive
//! connection (whole, ranges, HEAD) get exactly the stored bytes, a client that goes away
//! mid-body costs nothing to the next one, the access log and metrics count the bytes; over TLS
//! the same blob takes the copying path.

use super::bw::{local_upstream, Breakwater};
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::{http_client, sha256_digest, wait_until, TempDir};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One HTTP/1.1 answer read off a raw connection.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a status line and headers off `conn`.
async fn read_head(conn: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    conn.read_line(&mut line).await.expect("status line");
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        conn.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            return (status, headers);
        }
        let (n, v) = l.split_once(':').expect("a header");
        headers.push((n.trim().to_string(), v.trim().to_string()));
    }
}

/// Sends one request on the kept-alive `conn` and reads its whole answer (bodies are
/// `Content-Length` framed; a HEAD answer has none).
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    extra: &str,
) -> Answer {
    let req = format!("{method} {path} HTTP/1.1\r\nHost: breakwater\r\n{extra}\r\n");
    conn.get_mut().write_all(req.as_bytes()).await.unwrap();
    let (status, headers) = read_head(conn).await;
    let mut a = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    if method != "HEAD" {
        let len: usize = a
            .header("content-length")
            .expect("a Content-Length")
            .parse()
            .unwrap();
        a.body.resize(len, 0);
        conn.read_exact(&mut a.body).await.expect("the whole body");
    }
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_blobs_are_sent_with_sendfile_over_kept_alive_connections() {
    let reg = Registry::start_plain().await;
    // 9 MiB: more than two of the 4 MiB body writes the zero-copy path makes.
    let img = Image::with_layer_sizes(Format::Oci, 1313, &[9 << 20]);
    reg.pusher().push_image("team/big", "v1", &img).await;
    let tmp = TempDir::new("zerocopy");
    let log = tmp.path().join("access.log");
    let bw = Breakwater::start(&format!(
        "{}\n[log]\naccess = \"{}\"\nformat = \"json\"\n",
        local_upstream(&reg.url(), "10m", ""),
        log.display()
    ))
    .await;
    let layer = &img.layers[0];
    let data = &layer.data;
    let size = data.len();
    let path = format!("/v2/local/team/big/blobs/{}", layer.digest);

    // The cold GET fills the store (through the fill path, not sendfile).
    let cold = http_client()
        .get(format!("{}{path}", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(cold.status(), 200);
    assert_eq!(sha256_digest(&cold.bytes().await.unwrap()), layer.digest);
    assert!(
        wait_until(Duration::from_secs(10), || bw.has_blob(&layer.digest)).await,
        "the fill committed"
    );
    let sendfile = r#"path="sendfile""#;
    let copy = r#"path="copy""#;
    assert_eq!(
        bw.metric("breakwater_blob_bodies_total", &[sendfile]).await,
        0.0
    );

    // One connection, many requests: whole, ranges, HEAD, whole again.
    let mut conn = BufReader::new(TcpStream::connect(bw.host()).await.unwrap());
    let whole = exchange(&mut conn, "GET", &path, "").await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("x-breakwater-cache"), Some("hit"));
    assert_eq!(whole.body.len(), size);
    assert!(whole.body == data[..], "the whole blob, byte for byte");

    let mid = exchange(&mut conn, "GET", &path, "Range: bytes=4194000-8388999\r\n").await;
    assert_eq!(mid.status, 206);
    assert_eq!(
        mid.header("content-range"),
        Some(format!("bytes 4194000-8388999/{size}").as_str())
    );
    assert!(
        mid.body == data[4194000..8389000],
        "a range across body writes"
    );

    let tail = exchange(&mut conn, "GET", &path, "Range: bytes=-10\r\n").await;
    assert_eq!(tail.status, 206);
    assert!(tail.body == data[size - 10..]);

    let head = exchange(&mut conn, "HEAD", &path, "").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );

    let again = exchange(&mut conn, "GET", &path, "").await;
    assert!(again.status == 200 && again.body == data[..]);
    assert_eq!(
        bw.metric("breakwater_blob_bodies_total", &[sendfile]).await,
        4.0,
        "every warm GET on the plain listener used sendfile"
    );
    assert_eq!(
        bw.metric("breakwater_blob_bodies_total", &[copy]).await,
        0.0
    );

    // A client that goes away after a few bytes: the server cuts that connection only.
    for _ in 0..3 {
        let mut gone = BufReader::new(TcpStream::connect(bw.host()).await.unwrap());
        let req = format!("GET {path} HTTP/1.1\r\nHost: breakwater\r\n\r\n");
        gone.get_mut().write_all(req.as_bytes()).await.unwrap();
        let (status, _) = read_head(&mut gone).await;
        assert_eq!(status, 200);
        let mut some = vec![0; 64 * 1024];
        gone.read_exact(&mut some).await.unwrap();
        assert!(some == data[..some.len()]);
        drop(gone);
    }
    // The first connection is still good after them.
    let after = exchange(&mut conn, "GET", &path, "Range: bytes=0-99\r\n").await;
    assert!(after.status == 206 && after.body == data[..100]);

    // The access log counts body bytes as sent (the zero-copy bytes included).
    let entries = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|e: &serde_json::Value| e["path"].as_str() == Some(path.as_str()))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(5), || entries().len() >= 10).await,
        "one line per request: {:?}",
        entries()
    );
    let lines = entries();
    let bytes: Vec<u64> = lines
        .iter()
        .filter(|e| e["status"] == 200 || e["status"] == 206)
        .map(|e| e["bytes"].as_u64().unwrap())
        .collect();
    let s = size as u64;
    for want in [s, 4195000, 10, 0, s, 100] {
        assert!(bytes.contains(&want), "a line with {want} bytes: {bytes:?}");
    }
    // The cut answers log what was handed to the socket before the cut: less than the blob.
    let cut = lines
        .iter()
        .filter(|e| e["method"] == "GET" && e["status"] == 200)
        .filter(|e| e["bytes"].as_u64().unwrap() < s)
        .count();
    assert_eq!(cut, 3, "the three cut answers: {bytes:?}");

    // Still no upstream traffic for the warm blob.
    reg.settle().await;
    assert_eq!(reg.blob_gets(&layer.digest), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_blobs_over_tls_take_the_copying_path() {
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 1314, &[3 << 20]);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let tmp = TempDir::new("zerocopy-tls");
    let (bw, tls_port) =
        Breakwater::start_tls(tmp.path(), &local_upstream(&reg.url(), "10m", "")).await;
    let layer = &img.layers[0];
    let path = format!("/v2/local/team/app/blobs/{}", layer.digest);
    let plain = http_client()
        .get(format!("{}{path}", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256_digest(&plain.bytes().await.unwrap()), layer.digest);
    assert!(wait_until(Duration::from_secs(10), || bw.has_blob(&layer.digest)).await);

    for http1 in [true, false] {
        let mut b = reqwest::Client::builder().danger_accept_invalid_certs(true);
        if http1 {
            b = b.http1_only();
        }
        let r = b
            .build()
            .unwrap()
            .get(format!("https://127.0.0.1:{tls_port}{path}"))
            .header("Range", "bytes=1000-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert!(
            r.bytes().await.unwrap() == layer.data[1000..],
            "http1 {http1}"
        );
    }
    let copies = bw
        .metric("breakwater_blob_bodies_total", &[r#"path="copy""#])
        .await;
    assert_eq!(copies, 2.0, "TLS (h1 and h2) copies");
    let sent = bw
        .metric("breakwater_blob_bodies_total", &[r#"path="sendfile""#])
        .await;
    assert_eq!(sent, 0.0);
}
