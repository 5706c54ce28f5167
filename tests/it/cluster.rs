//! Two breakwater replicas sharing one PostgreSQL index (a private cluster started by the test),
//! each with its own filesystem store: a blob asked of both is fetched from upstream once (the
//! lease holder) and streamed to the other replica over the peer endpoint; the peer endpoint
//! wants the cluster secret; when the holder dies mid-fill the other replica takes the lease
//! over and resumes from upstream with Range; `breakwater cluster status` lists both members.

use crate::bw::{local_upstream, Breakwater};
use crate::lifecycle::{admin_url, cli, cli_json, ON_DEMAND};
use crate::support::http::{Request, TestServer};
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{free_port, http_client, sha256_digest};
use breakwater_store::cluster::ClusterIndex;
use breakwater_store::pg::testing::PgCluster;
use breakwater_store::PgIndex;
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

pub(crate) const SECRET: &str = "peer-s3cret-never-logged";

/// A replica named `node` on the shared database `pg_url`; returns it and its peer port.
pub(crate) async fn replica(
    pg_url: &str,
    upstream_url: &str,
    node: &str,
    ttl: &str,
) -> (Breakwater, u16) {
    let peer = free_port();
    let storage =
        format!("index = \"postgres\"\n\n[storage.postgres]\nurl = \"{pg_url}\"\npool_size = 4");
    let body = local_upstream(upstream_url, "10m", "")
        + &format!(
            "\n[cluster]\nnode = \"{node}\"\npeer_listen = \"127.0.0.1:{peer}\"\nsecret = \"{SECRET}\"\nlease_ttl = \"{ttl}\"\n"
        );
    (Breakwater::start_with_storage(&storage, &body).await, peer)
}

async fn fills(bw: &Breakwater, source: &str) -> f64 {
    let label = format!("source=\"{source}\"");
    bw.metric("breakwater_cluster_fills_total", &[&label]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fetch_a_big_blob_from_upstream_once_and_share_it_over_the_peer_endpoint() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 4242, &[48 << 20]);
    let layer = img.layers[0].clone();
    reg.pusher().push_image("team/big", "v1", &img).await;
    let (a, a_peer) = replica(&db, &reg.url(), "node-a", "3s").await;
    let (b, _) = replica(&db, &reg.url(), "node-b", "3s").await;
    let client = http_client();
    let path = format!("/v2/local/team/big/blobs/{}", layer.digest);

    // A starts streaming first; B is asked while A's response is still open.
    let t0 = std::time::Instant::now();
    let mut first = client
        .get(format!("{}{path}", a.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let head = first.chunk().await.unwrap().expect("A's first bytes");
    let second = client
        .get(format!("{}{path}", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 200);
    let (rest, from_b) = tokio::join!(
        async {
            let mut body = head.to_vec();
            while let Some(c) = first.chunk().await.unwrap() {
                body.extend_from_slice(&c);
            }
            body
        },
        async { second.bytes().await.unwrap() }
    );
    eprintln!(
        "48 MiB through A (upstream) and B (peer) at once: {:?}",
        t0.elapsed()
    );
    assert_eq!(
        sha256_digest(&rest),
        layer.digest,
        "A's client got the blob"
    );
    assert_eq!(
        sha256_digest(&from_b),
        layer.digest,
        "B's client got the blob"
    );

    reg.settle().await;
    assert_eq!(
        reg.blob_gets(&layer.digest),
        1,
        "one upstream GET for the cluster"
    );
    assert_eq!(fills(&a, "upstream").await, 1.0);
    assert_eq!(fills(&b, "peer").await, 1.0);
    assert_eq!(
        fills(&b, "upstream").await + fills(&b, "takeover").await,
        0.0
    );
    let size = layer.data.len() as f64;
    assert!(a.metric("breakwater_upstream_bytes_total", &[]).await >= size);
    let relayed = b.metric("breakwater_upstream_bytes_total", &[]).await;
    assert!(
        relayed < size,
        "peer bytes are not upstream bytes: {relayed}"
    );
    // Each replica stores what it serves.
    assert!(
        crate::support::wait_until(Duration::from_secs(5), || a.has_blob(&layer.digest)
            && b.has_blob(&layer.digest))
        .await
    );

    // The peer endpoint wants the secret.
    let peer_url = format!("http://127.0.0.1:{a_peer}/peer/v1/blobs/{}", layer.digest);
    let r = client.get(&peer_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let err: serde_json::Value = r.json().await.unwrap();
    assert_eq!(err["errors"][0]["code"], "UNAUTHORIZED");
    for wrong in [
        "Bearer nope",
        "Bearer peer-s3cret-never-logge",
        "Basic cGVlcg==",
    ] {
        let r = client
            .get(&peer_url)
            .header("Authorization", wrong)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{wrong}");
    }
    // With it: the stored blob, and a resumable range of it.
    let auth = format!("Bearer {SECRET}");
    let r = client
        .get(&peer_url)
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha256_digest(&r.bytes().await.unwrap()), layer.digest);
    let r = client
        .get(&peer_url)
        .header("Authorization", &auth)
        .header("Range", "bytes=1000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), layer.data.slice(1000..));
    // Neither filling nor holding: 404; a malformed digest: 400.
    let missing = sha256_digest(b"nobody has this");
    let r = client
        .get(format!("http://127.0.0.1:{a_peer}/peer/v1/blobs/{missing}"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client
        .get(format!("http://127.0.0.1:{a_peer}/peer/v1/blobs/sha256:zz"))
        .header("Authorization", &auth)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        reg.blob_gets(&layer.digest),
        1,
        "the peer endpoint never asks upstream"
    );

    // `cluster status` on either replica lists both members, alive.
    let status = cli_json(&["cluster", "status", "--admin", &admin_url(&b)]);
    assert_eq!(status["node"], "node-b");
    let mut members: Vec<(String, bool, bool)> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["node"].as_str().unwrap().to_string(),
                m["alive"].as_bool().unwrap(),
                m["this_node"].as_bool().unwrap(),
            )
        })
        .collect();
    members.sort();
    assert_eq!(
        members,
        vec![
            ("node-a".into(), true, false),
            ("node-b".into(), true, true)
        ]
    );
    let (ok, text, err) = cli(&["cluster", "status", "--admin", &admin_url(&a)]);
    assert!(ok, "{err}");
    assert!(
        text.contains("node-a (this)  alive") && text.contains("node-b  alive"),
        "{text}"
    );

    // The secret never reaches a log.
    for bw in [&a, &b] {
        assert!(!bw.log_text().contains(SECRET));
    }
}

/// A throttled upstream serving one blob (with Range) and recording each blob request's Range.
async fn slow_upstream(
    data: Bytes,
    bytes_per_sec: usize,
) -> (TestServer, Arc<Mutex<Vec<Option<String>>>>) {
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let server = TestServer::start_raw(move |req: Request, mut stream| {
        let (body, seen) = (data.clone(), seen.clone());
        async move {
            if !req.path().contains("/blobs/") {
                let head = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                stream.write_all(head.as_bytes()).await.ok()?;
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
            let rest = body.slice(offset..);
            let head = crate::support::open_range_head(offset, body.len());
            stream.write_all(head.as_bytes()).await.ok()?;
            let chunk = 64 * 1024;
            let pause = Duration::from_secs_f64(chunk as f64 / bytes_per_sec as f64);
            for c in rest.chunks(chunk) {
                stream.write_all(c).await.ok()?;
                tokio::time::sleep(pause).await;
            }
            None
        }
    })
    .await;
    (server, ranges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_lease_holder_dies_mid_fill_the_other_replica_takes_over_with_range() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let data: Bytes = (0..(12u32 << 20))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect::<Vec<u8>>()
        .into();
    let digest = sha256_digest(&data);
    let (up, ranges) = slow_upstream(data.clone(), 3 << 20).await;
    let url = format!("http://{}", up.host());
    let (mut a, _) = replica(&db, &url, "node-a", "2s").await;
    let (b, _) = replica(&db, &url, "node-b", "2s").await;
    let client = http_client();
    let path = format!("/v2/local/team/app/blobs/{digest}");

    // A holds the lease and streams from upstream; B streams from A.
    let mut from_a = client
        .get(format!("{}{path}", a.url()))
        .send()
        .await
        .unwrap();
    from_a.chunk().await.unwrap().expect("A started");
    let mut from_b = client
        .get(format!("{}{path}", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(from_b.status(), 200);
    let mut got = Vec::new();
    while got.len() < (1 << 20) {
        got.extend_from_slice(&from_b.chunk().await.unwrap().expect("bytes from B"));
    }
    assert_eq!(fills(&b, "peer").await, 1.0, "B streams from A");
    let status = cli_json(&["cluster", "status", "--admin", &admin_url(&b)]);
    let leases = status["fill_leases"].as_array().unwrap();
    assert!(
        leases
            .iter()
            .any(|l| l["digest"] == digest.as_str() && l["owner"] == "node-a"),
        "{status}"
    );
    assert_eq!(
        ranges.lock().unwrap().len(),
        1,
        "only A asked upstream so far"
    );

    // A dies mid-fill: B's client still gets the whole verified blob.
    a.kill9();
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(c) = from_b.chunk().await.unwrap() {
            got.extend_from_slice(&c);
        }
        got
    })
    .await
    .expect("B finished within 30 s");
    assert_eq!(sha256_digest(&rest), digest);
    assert_eq!(fills(&b, "takeover").await, 1.0);
    let seen = ranges.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "A's GET, then B's resume: {seen:?}");
    let resumed_at: usize = seen[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .expect("B resumed with Range");
    assert!(
        resumed_at >= 1 << 20,
        "resumed from what B had: {resumed_at}"
    );
    assert!(crate::support::wait_until(Duration::from_secs(5), || b.has_blob(&digest)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_is_revalidated_upstream_once_per_ttl_for_the_whole_cluster() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    reg.pusher()
        .push_image("team/app", "v1", &Image::small(Format::Oci, 777))
        .await;
    let mk = |node: &'static str| {
        let (db, url) = (db.clone(), reg.url());
        async move {
            let peer = free_port();
            let storage = format!("index = \"postgres\"\n\n[storage.postgres]\nurl = \"{db}\"");
            let body = local_upstream(&url, "2s", "")
                + &format!("\n[cluster]\nnode = \"{node}\"\npeer_listen = \"127.0.0.1:{peer}\"\nsecret = \"{SECRET}\"\n");
            Breakwater::start_with_storage(&storage, &body).await
        }
    };
    let (a, b) = (mk("node-a").await, mk("node-b").await);
    let client = http_client();
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let get = |bw: &Breakwater| {
        client
            .get(format!("{}/v2/local/team/app/manifests/v1", bw.url()))
            .header("Accept", accept)
            .send()
    };
    let upstream_asks = || reg.count("GET", "/manifests/v1") + reg.count("HEAD", "/manifests/v1");
    // Both replicas have the tag in memory (B from the shared index, without asking upstream).
    assert_eq!(get(&a).await.unwrap().status(), 200);
    assert_eq!(get(&b).await.unwrap().status(), 200);
    reg.settle().await;
    let before = upstream_asks();
    // Past the TTL, A revalidates; B then finds A's confirmation in the index.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(get(&a).await.unwrap().status(), 200);
    reg.settle().await;
    assert_eq!(upstream_asks(), before + 1, "A revalidated once");
    let r = get(&b).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-breakwater-cache"], "hit");
    reg.settle().await;
    assert_eq!(upstream_asks(), before + 1, "B did not ask upstream again");
}

/// Runs `f` on the test's own connection to the shared database (the sync client must stay off
/// the async threads).
async fn with_db<T: Send + 'static>(
    url: &str,
    f: impl FnOnce(&dyn ClusterIndex) -> T + Send + 'static,
) -> T {
    let settings = breakwater_store::PgSettings {
        url: url.to_string(),
        pool_size: 1,
        acquire_timeout: Duration::from_secs(10),
        ca_file: None,
    };
    tokio::task::spawn_blocking(move || f(&PgIndex::open(&settings).unwrap()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_runs_on_one_replica_at_a_time_and_keeps_digests_another_replica_is_filling() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 4343);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let layer = img.layers[0].clone();
    let peer = free_port();
    let storage = format!("index = \"postgres\"\n\n[storage.postgres]\nurl = \"{db}\"");
    let body = local_upstream(&reg.url(), "10m", "")
        + ON_DEMAND
        + &format!("\n[cluster]\nnode = \"node-a\"\npeer_listen = \"127.0.0.1:{peer}\"\nsecret = \"{SECRET}\"\nlease_ttl = \"1s\"\n");
    let a = Breakwater::start_with_storage(&storage, &body).await;
    let client = http_client();
    // A blob fetched alone: no manifest keeps it, so GC may delete it (once its own lease,
    // lingering one TTL after the commit, has expired).
    let r = client
        .get(format!(
            "{}/v2/local/team/app/blobs/{}",
            a.url(),
            layer.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(sha256_digest(&r.bytes().await.unwrap()), layer.digest);
    assert!(crate::support::wait_until(Duration::from_secs(5), || a.has_blob(&layer.digest)).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gc = |admin: String| async move {
        let r = http_client()
            .post(format!("{admin}/api/v1/gc"))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };

    // Another replica runs GC: this one refuses to start its own.
    with_db(&db, |ix| {
        assert!(ix
            .take_job_lease("gc", "node-b", Duration::from_secs(60))
            .unwrap())
    })
    .await;
    let (status, body) = gc(admin_url(&a)).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("another replica"),
        "{body}"
    );
    with_db(&db, |ix| ix.release_job_lease("gc", "node-b").unwrap()).await;

    // Another replica is filling the digest: GC keeps it.
    let d = breakwater_oci::Digest::parse(&layer.digest).unwrap();
    let d2 = d.clone();
    with_db(&db, move |ix| {
        let h = ix
            .take_fill_lease(&d2, "node-b", "http://127.0.0.1:9", Duration::from_secs(60))
            .unwrap();
        assert_eq!(h.owner, "node-b");
    })
    .await;
    let (status, body) = gc(admin_url(&a)).await;
    assert_eq!(status, 200, "{body}");
    assert!(a.has_blob(&layer.digest), "kept while leased: {body}");

    // Lease gone: the same GC deletes it.
    with_db(&db, move |ix| {
        ix.release_fill_lease(&d, "node-b", Duration::ZERO).unwrap()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = gc(admin_url(&a)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!a.has_blob(&layer.digest), "deleted once unleased: {body}");
}
