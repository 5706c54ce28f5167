//! Hierarchical caches: a node breakwater whose upstream is an office breakwater, whose upstream
//! is the registry. The node names the original registry with `ns`, digests stay the same along
//! the chain, the registry sees one fetch per blob, and cached tags keep pulling when the top of
//! the chain, then the office too, is cut off. containerd pulls through the same chain with a
//! hosts.toml naming the node cache.

use super::bw::Breakwater;
use super::clients::Containerd;
use super::support::image::{Format, Image, ACCEPT_ALL};
use super::support::registry::Registry;
use super::support::{free_port, http_client, sha256_digest, TempDir};
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

/// The office cache knows the registry as host corp.example; its default route is a decoy that
/// refuses connections, so a node request that lost its `ns` would fail. The node cache's
/// upstream is the office, asked for corp.example; it also answers clients naming corp.example.
async fn office_and_node(reg: &Registry) -> (Breakwater, Breakwater) {
    let office = Breakwater::start(&format!(
        "[routing]\ndefault_upstream = \"decoy\"\npresets = false\n\n\
         [upstreams.decoy]\nurl = \"http://127.0.0.1:9\"\nconnect_timeout = \"1s\"\n\n\
         [upstreams.corp]\nurl = \"{}\"\nhosts = [\"corp.example\"]\naliases = [\"corp\"]\n\
         tag_ttl = \"1s\"\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"3s\"\nrevalidate_grace = \"1s\"\n",
        reg.url()
    ))
    .await;
    let node = Breakwater::start(&format!(
        "[routing]\ndefault_upstream = \"corp\"\npresets = false\n\n\
         [upstreams.corp]\nurl = \"{}\"\nns = \"corp.example\"\nhosts = [\"corp.example\"]\n\
         aliases = [\"corp\"]\ntag_ttl = \"1s\"\nconnect_timeout = \"1s\"\n\
         first_byte_timeout = \"3s\"\nrevalidate_grace = \"1s\"\n",
        office.url()
    ))
    .await;
    (office, node)
}

#[tokio::test(flavor = "multi_thread")]
async fn node_cache_through_office_cache_keeps_digests_and_serves_stale_along_the_chain() {
    let mut reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 71);
    reg.pusher().push_image("team/app", "v1", &img).await;

    let (office, node) = office_and_node(&reg).await;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_through_node_and_office_caches_with_a_hosts_toml() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 72);
    reg.pusher().push_image("team/app", "v2", &img).await;
    let (office, node) = office_and_node(&reg).await;

    // containerd knows only the node cache, for corp.example; the registry host itself is a
    // refusing loopback port, so the pull can only succeed through the chain.
    let tmp = TempDir::new("chain-containerd");
    let hosts_dir = tmp.path().join("certs.d");
    std::fs::create_dir_all(hosts_dir.join("corp.example")).unwrap();
    std::fs::write(
        hosts_dir.join("corp.example/hosts.toml"),
        format!(
            "server = \"http://127.0.0.1:{}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            free_port(),
            node.url()
        ),
    )
    .unwrap();
    let ctrd = Containerd::start(tmp.path()).await;
    let out = ctrd.ctr(&[
        "content",
        "fetch",
        "--hosts-dir",
        hosts_dir.to_str().unwrap(),
        "corp.example/team/app:v2",
    ]);
    assert!(
        out.status.success(),
        "ctr content fetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // containerd holds the registry's exact content, digest for digest.
    let listed = String::from_utf8_lossy(&ctrd.ctr(&["content", "ls"]).stdout).to_string();
    for d in img
        .blobs()
        .iter()
        .map(|b| &b.digest)
        .chain([&img.manifest.digest])
    {
        assert!(
            listed.contains(d.as_str()),
            "{d} missing from containerd:\n{listed}"
        );
    }
    // One registry fetch per blob; both caches hold each under the same digest.
    reg.settle().await;
    for b in img.blobs() {
        assert_eq!(reg.blob_gets(&b.digest), 1, "{}", b.digest);
        assert!(
            office.has_blob(&b.digest) && node.has_blob(&b.digest),
            "{}",
            b.digest
        );
    }
    // containerd's ?ns=corp.example reached the node's corp upstream, and the node's own ns
    // reached the office's: never the office's default route.
    let upstream = "breakwater_upstream_requests_total";
    assert!(node.metric(upstream, &["upstream=\"corp\""]).await >= 3.0);
    assert!(office.metric(upstream, &["upstream=\"corp\""]).await >= 3.0);
    assert_eq!(office.metric(upstream, &["upstream=\"decoy\""]).await, 0.0);
}
