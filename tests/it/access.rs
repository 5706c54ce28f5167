//! Access control and repository scoping through the real binary: content cached for one
//! repository is never served for another on the strength of its digest alone.

use super::bw::{local_upstream, Breakwater};
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::http_client;

const OCI_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

async fn get(url: &str) -> (u16, serde_json::Value) {
    let r = http_client()
        .get(url)
        .header("Accept", OCI_ACCEPT)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn code(body: &serde_json::Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_content_is_scoped_to_its_repository_and_upstream() {
    let reg = Registry::start_plain().await;
    let other = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 41);
    let digest = reg.pusher().push_image("team/app", "v1", &img).await;
    let layer = img.blobs()[0].digest.clone();
    let body = format!(
        "{}\n[upstreams.other]\nurl = \"{}\"\naliases = [\"other\"]\n",
        local_upstream(&reg.url(), "10m", ""),
        other.url()
    );
    let bw = Breakwater::start(&body).await;
    let base = bw.url();

    // Cached through its own repository.
    let (s, _) = get(&format!("{base}/v2/local/team/app/manifests/v1")).await;
    assert_eq!(s, 200);
    let (s, _) = get(&format!("{base}/v2/local/team/app/blobs/{layer}")).await;
    assert_eq!(s, 200);
    assert!(bw.has_blob(&layer));

    // Another repository of the same upstream, which does not exist there: 404 with the right
    // code, after upstream said no (a HEAD for that repository).
    reg.reset_counts().await;
    let (s, b) = get(&format!("{base}/v2/local/team/ghost/blobs/{layer}")).await;
    assert_eq!((s, code(&b)), (404, "BLOB_UNKNOWN"), "{b}");
    let (s, b) = get(&format!("{base}/v2/local/team/ghost/manifests/{digest}")).await;
    assert_eq!((s, code(&b)), (404, "MANIFEST_UNKNOWN"), "{b}");
    let r = http_client()
        .head(format!("{base}/v2/local/team/ghost/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    reg.settle().await;
    assert!(reg.count("HEAD", "/v2/team/ghost/blobs/") >= 1, "upstream was asked");
    assert_eq!(reg.blob_gets(&layer), 0);

    // Another upstream's prefix: that upstream does not hold it either.
    let (s, b) = get(&format!("{base}/v2/other/team/app/blobs/{layer}")).await;
    assert_eq!((s, code(&b)), (404, "BLOB_UNKNOWN"), "{b}");
    let (s, b) = get(&format!("{base}/v2/other/team/app/manifests/{digest}")).await;
    assert_eq!((s, code(&b)), (404, "MANIFEST_UNKNOWN"), "{b}");

    // A repository upstream really holds it in: confirmed by a HEAD, served from the store
    // (no upstream GET), and linked from then on (no second HEAD).
    reg.pusher().push_image("team/copy", "v1", &img).await;
    reg.reset_counts().await;
    for _ in 0..2 {
        let (s, _) = get(&format!("{base}/v2/local/team/copy/blobs/{layer}")).await;
        assert_eq!(s, 200);
    }
    reg.settle().await;
    assert_eq!(reg.blob_gets(&layer), 0, "served from the store");
    assert_eq!(reg.count("HEAD", &format!("/v2/team/copy/blobs/{layer}")), 1);
}
