//! Hierarchical caches: a node breakwater whose upstream is an office breakwater, whose upstream
//! is the registry. The node names the original registry with `ns`, digests stay the same along
//! the chain, the registry sees one fetch per blob, and cached tags keep pulling when the top of
//! the chain, then the office too, is cut off.

use super::bw::Breakwater;
use super::support::image::{Format, Image, ACCEPT_ALL};
use super::support::registry::Registry;
use super::support::{http_client, sha256_digest, TempDir};
use std::time::Duration;

fn skopeo_pull(image: &str, dest: &std::path::Path) -> Result<(), String> {
    crate::support::skopeo_pull(image, dest, &[])
}

/// GETs the manifest by tag: (status, `X-Breakwater-Cache`, digest of the body).
async fn manifest(bw: &Breakwater, path: &str) -> (u16, String, String) {
    let r = http_client()
        .get(format!("{}/v2/{path}", bw.url()))
        .header("Accept", ACCEPT_ALL)
        .send()
        .await
        .expect("GET manifest");
    let status = r.status().as_u16();
    let cache = r
        .headers()
        .get("x-breakwater-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    let body = r.bytes().await.expect("manifest body");
    (status, cache, sha256_digest(&body))
}

#[tokio::test(flavor = "multi_thread")]
async fn node_cache_through_office_cache_keeps_digests_and_serves_stale_along_the_chain() {
    let mut reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 71);
    reg.pusher().push_image("team/app", "v1", &img).await;

    // The office cache knows the registry as host corp.example; its default route is a decoy
    // that refuses connections, so a node request that lost its `ns` would fail.
    let office = Breakwater::start(&format!(
        "[routing]\ndefault_upstream = \"decoy\"\npresets = false\n\n\
         [upstreams.decoy]\nurl = \"http://127.0.0.1:9\"\nconnect_timeout = \"1s\"\n\n\
         [upstreams.corp]\nurl = \"{}\"\nhosts = [\"corp.example\"]\naliases = [\"corp\"]\n\
         tag_ttl = \"1s\"\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"3s\"\nrevalidate_grace = \"1s\"\n",
        reg.url()
    ))
    .await;
    // The node cache: its upstream is the office, asked for corp.example.
    let node = Breakwater::start(&format!(
        "[routing]\ndefault_upstream = \"corp\"\npresets = false\n\n\
         [upstreams.corp]\nurl = \"{}\"\nns = \"corp.example\"\naliases = [\"corp\"]\n\
         tag_ttl = \"1s\"\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"3s\"\nrevalidate_grace = \"1s\"\n",
        office.url()
    ))
    .await;

    // A real client pulls through both caches and gets the registry's exact manifest.
    let tmp = TempDir::new("chain");
    skopeo_pull(
        &format!("{}/corp/team/app:v1", node.host()),
        &tmp.path().join("a"),
    )
    .expect("skopeo through node and office");
    let pulled = std::fs::read(tmp.path().join("a/manifest.json")).expect("pulled manifest");
    assert_eq!(sha256_digest(&pulled), img.manifest.digest, "digest kept");
    // Each blob came from the registry once, and both caches hold it under the same digest.
    reg.settle().await;
    for blob in img.layers.iter().chain([&img.config]) {
        assert_eq!(reg.blob_gets(&blob.digest), 1, "{}", blob.digest);
        assert!(
            office.has_blob(&blob.digest),
            "office holds {}",
            blob.digest
        );
        assert!(node.has_blob(&blob.digest), "node holds {}", blob.digest);
    }
    // The node's requests reached the office's corp upstream (by ns), never its default route.
    let upstream = "breakwater_upstream_requests_total";
    assert!(office.metric(upstream, &["upstream=\"corp\""]).await >= 4.0);
    assert_eq!(office.metric(upstream, &["upstream=\"decoy\""]).await, 0.0);

    // The top is cut off: the registry stops. Once the tag's TTL has passed, the node asks the
    // office, which answers from its cache, stale; the client still gets the same manifest.
    reg.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _, digest) = manifest(&node, "corp/team/app/manifests/v1").await;
    assert_eq!(
        (status, digest.as_str()),
        (200, img.manifest.digest.as_str())
    );
    let (status, cache, digest) = manifest(&office, "corp/team/app/manifests/v1").await;
    assert_eq!(
        (status, cache.as_str(), digest.as_str()),
        (200, "stale", img.manifest.digest.as_str()),
        "the office serves stale with the registry down"
    );
    skopeo_pull(
        &format!("{}/corp/team/app:v1", node.host()),
        &tmp.path().join("b"),
    )
    .expect("skopeo with the registry down");

    // The office is cut off too: the node serves its own copy, stale.
    drop(office);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, cache, digest) = manifest(&node, "corp/team/app/manifests/v1").await;
    assert_eq!(
        (status, cache.as_str(), digest.as_str()),
        (200, "stale", img.manifest.digest.as_str()),
        "the node serves stale with the office down"
    );
    skopeo_pull(
        &format!("{}/corp/team/app:v1", node.host()),
        &tmp.path().join("c"),
    )
    .expect("skopeo with the office down");
}
