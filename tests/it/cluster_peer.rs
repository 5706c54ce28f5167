//! A peer replica serving bytes that do not match the digest (its stored copy rotted): the
//! replica filling from it discards them, takes the lease over and fetches from upstream, so
//! its client still gets the verified blob.

use crate::cluster::replica;
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{http_client, sha256_digest};
use breakwater_store::pg::testing::PgCluster;
use std::path::PathBuf;
use std::time::Duration;

/// Where a filesystem store keeps the blob `digest`.
fn blob_path(root: &std::path::Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_from_a_peer_that_fail_verification_are_refetched_from_upstream() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 5150, &[200 << 10]);
    let layer = img.layers[0].clone();
    reg.pusher().push_image("team/rot", "v1", &img).await;
    // A long lease TTL: A's lease lingers that long after its commit, pointing B at A's copy.
    let (a, _) = replica(&db, &reg.url(), "node-a", "30s").await;
    let (b, _) = replica(&db, &reg.url(), "node-b", "30s").await;
    let client = http_client();
    let path = format!("/v2/local/team/rot/blobs/{}", layer.digest);
    let body = client
        .get(format!("{}{path}", a.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_digest(&body), layer.digest);
    assert!(crate::support::wait_until(Duration::from_secs(5), || a.has_blob(&layer.digest)).await);
    reg.settle().await;
    let upstream_gets = reg.blob_gets(&layer.digest);

    // A's stored copy rots: same length, flipped bytes.
    let on_a = blob_path(a.root(), &layer.digest);
    let mut rotten = std::fs::read(&on_a).unwrap();
    for b in rotten.iter_mut().step_by(4096) {
        *b ^= 0xff;
    }
    let mut perms = std::fs::metadata(&on_a).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&on_a, perms).unwrap();
    std::fs::write(&on_a, &rotten).unwrap();

    // B streams from A (the lease holder), finds the mismatch, and refetches from upstream.
    let r = client
        .get(format!("{}{path}", b.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let from_b = r.bytes().await.unwrap();
    assert_eq!(
        sha256_digest(&from_b),
        layer.digest,
        "B's client got the blob"
    );
    assert_eq!(from_b.len(), layer.data.len());
    reg.settle().await;
    assert_eq!(
        reg.blob_gets(&layer.digest),
        upstream_gets + 1,
        "one more upstream GET, by B"
    );
    let failures = b
        .metric(
            "breakwater_cluster_peer_failures_total",
            &["reason=\"digest_mismatch\""],
        )
        .await;
    assert_eq!(failures, 1.0);
    let fills = |source: &'static str| {
        let label = format!("source=\"{source}\"");
        let b = &b;
        async move { b.metric("breakwater_cluster_fills_total", &[&label]).await }
    };
    assert_eq!((fills("peer").await, fills("takeover").await), (1.0, 1.0));
    let log = b.log_text();
    let said: Vec<_> = log
        .lines()
        .filter(|l| l.contains("did not match the digest"))
        .collect();
    assert_eq!(said.len(), 1, "logged once: {said:?}");
    assert!(said[0].contains("node-a"), "names the peer: {}", said[0]);
    // B stored the right bytes; nothing else of the peer's was kept.
    assert!(crate::support::wait_until(Duration::from_secs(5), || b.has_blob(&layer.digest)).await);
    let on_b = std::fs::read(blob_path(b.root(), &layer.digest)).unwrap();
    assert_eq!(sha256_digest(&on_b), layer.digest);
    assert!(crate::support::wait_until(Duration::from_secs(5), || b.temp_files() == 0).await);
    // Asked again, B serves its own verified copy.
    let again = client
        .get(format!("{}{path}", b.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_digest(&again), layer.digest);
    reg.settle().await;
    assert_eq!(reg.blob_gets(&layer.digest), upstream_gets + 1);
}

/// A replica with a store of its own that lacks a manifest the shared index knows copies it
/// from another replica instead of asking upstream (Docker Hub counts manifest GETs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_another_replica_stored_is_copied_from_it_not_fetched_again() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 5151);
    reg.pusher().push_image("team/shared", "v1", &img).await;
    let (a, _) = replica(&db, &reg.url(), "node-a", "5s").await;
    let (b, _) = replica(&db, &reg.url(), "node-b", "5s").await;
    let client = http_client();
    let get = |bw: &crate::bw::Breakwater| {
        client
            .get(format!("{}/v2/local/team/shared/manifests/v1", bw.url()))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
    };
    let first = get(&a).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_digest(&first), img.manifest.digest);
    reg.settle().await;
    let asked = || reg.count("GET", "/manifests/") + reg.count("HEAD", "/manifests/");
    let upstream_before = asked();
    assert!(!b.has_blob(&img.manifest.digest));

    let second = get(&b).await.unwrap().bytes().await.unwrap();
    assert_eq!(
        sha256_digest(&second),
        img.manifest.digest,
        "B answers the same bytes"
    );
    reg.settle().await;
    assert_eq!(asked(), upstream_before, "B did not ask upstream");
    assert!(b.has_blob(&img.manifest.digest), "B stored its copy");
    assert_eq!(
        b.metric("breakwater_cluster_fills_total", &["source=\"peer\""])
            .await,
        1.0
    );
}
