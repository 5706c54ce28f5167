//! Three replicas on one PostgreSQL index, as the cluster test asks: 16 clients spread
//! over the three fetch one uncached blob with one upstream GET; a tag past its TTL, asked of
//! each replica in turn, costs one upstream HEAD; skopeo pulls through each replica.

use crate::bw::{local_upstream, Breakwater};
use crate::cluster::SECRET;
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{free_port, http_client, sha256_digest, TempDir};
use breakwater_store::pg::testing::PgCluster;
use std::time::Duration;

async fn replica(db: &str, upstream: &str, node: &str) -> Breakwater {
    let peer = free_port();
    let storage =
        format!("index = \"postgres\"\n\n[storage.postgres]\nurl = \"{db}\"\npool_size = 4");
    let body = local_upstream(upstream, "2s", "")
        + &format!(
            "\n[cluster]\nnode = \"{node}\"\npeer_listen = \"127.0.0.1:{peer}\"\nsecret = \"{SECRET}\"\nlease_ttl = \"5s\"\n"
        );
    Breakwater::start_with_storage(&storage, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_sixteen_clients_one_upstream_get_one_head_per_ttl() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 3333, &[16 << 20]);
    let layer = img.layers[0].clone();
    reg.pusher().push_image("team/three", "v1", &img).await;
    let replicas = [
        replica(&db, &reg.url(), "node-a").await,
        replica(&db, &reg.url(), "node-b").await,
        replica(&db, &reg.url(), "node-c").await,
    ];

    // 16 clients at once, spread over the three replicas, for one uncached blob.
    let urls = (0..16)
        .map(|i| {
            let base = replicas[i % 3].url();
            format!("{base}/v2/local/team/three/blobs/{}", layer.digest)
        })
        .collect();
    for (status, digest) in crate::support::get_all_at_once(urls).await {
        assert_eq!((status, digest.as_str()), (200, layer.digest.as_str()));
    }
    let client = http_client();
    reg.settle().await;
    assert_eq!(
        reg.blob_gets(&layer.digest),
        1,
        "one upstream GET for 16 clients"
    );
    let mut by_source = Vec::new();
    for bw in &replicas {
        let mut row = Vec::new();
        for source in ["upstream", "peer", "takeover"] {
            let label = format!("source=\"{source}\"");
            row.push(bw.metric("breakwater_cluster_fills_total", &[&label]).await);
        }
        by_source.push(row);
    }
    let upstream_fills: f64 = by_source.iter().map(|r| r[0] + r[2]).sum();
    let peer_fills: f64 = by_source.iter().map(|r| r[1]).sum();
    assert_eq!((upstream_fills, peer_fills), (1.0, 2.0), "{by_source:?}");

    // The tag, past its TTL, asked of each replica in turn: one upstream HEAD for the cluster.
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let get_tag = |bw: &Breakwater| {
        client
            .get(format!("{}/v2/local/team/three/manifests/v1", bw.url()))
            .header("Accept", accept)
            .send()
    };
    for bw in &replicas {
        assert_eq!(get_tag(bw).await.unwrap().status(), 200);
    }
    reg.settle().await;
    let asks = || reg.count("GET", "/manifests/v1") + reg.count("HEAD", "/manifests/v1");
    let before = asks();
    tokio::time::sleep(Duration::from_millis(2300)).await;
    for bw in &replicas {
        assert_eq!(get_tag(bw).await.unwrap().status(), 200);
    }
    reg.settle().await;
    assert_eq!(asks(), before + 1, "one revalidation for three replicas");
    assert!(
        reg.count("HEAD", "/manifests/v1") >= 1,
        "revalidated with a HEAD"
    );

    // A real client through each replica.
    let tmp = TempDir::new("three");
    for (i, bw) in replicas.iter().enumerate() {
        let dest = tmp.path().join(format!("r{i}"));
        crate::support::skopeo_pull(&format!("{}/local/team/three:v1", bw.host()), &dest, &[])
            .expect("skopeo through a replica");
        let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
        assert_eq!(sha256_digest(&manifest), img.manifest.digest);
    }
    reg.settle().await;
    assert_eq!(reg.blob_gets(&layer.digest), 1, "still one upstream GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_expiring_on_three_replicas_at_once_is_revalidated_upstream_once() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 3434);
    reg.pusher().push_image("team/expiry", "v1", &img).await;
    let replicas = [
        replica(&db, &reg.url(), "node-a").await,
        replica(&db, &reg.url(), "node-b").await,
        replica(&db, &reg.url(), "node-c").await,
    ];
    let client = http_client();
    let get_tag = |bw: &Breakwater| {
        client
            .get(format!("{}/v2/local/team/expiry/manifests/v1", bw.url()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
    };
    for bw in &replicas {
        assert_eq!(get_tag(bw).await.unwrap().status(), 200);
    }
    reg.settle().await;
    let asks = || reg.count("GET", "/manifests/v1") + reg.count("HEAD", "/manifests/v1");
    let (before, heads) = (asks(), reg.count("HEAD", "/manifests/v1"));

    // Past the 2 s TTL, four clients on each replica at the same moment.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let gets = (0..12).map(|i| {
        let r = get_tag(&replicas[i % 3]);
        async move {
            let r = r.await.expect("GET tag");
            let status = r.status().as_u16();
            (
                status,
                sha256_digest(&r.bytes().await.expect("manifest body")),
            )
        }
    });
    for (status, digest) in futures_util::future::join_all(gets).await {
        assert_eq!(
            (status, digest.as_str()),
            (200, img.manifest.digest.as_str())
        );
    }
    reg.settle().await;
    assert_eq!(
        asks(),
        before + 1,
        "one upstream revalidation for twelve requests on three replicas"
    );
    assert_eq!(reg.count("HEAD", "/manifests/v1"), heads + 1, "a HEAD");
}
