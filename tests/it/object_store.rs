//! The blob store on object storage: breakwater with `backend = "s3"` against a real Garage and
//! the real docker-registry upstream. Blobs land in the bucket under their digest keys, a second
//! node serves them from the bucket (and again with the upstream down), Range and presigned
//! redirects work, and an object-storage outage during a fill costs caching, never bytes.

use super::bw::{local_upstream, Breakwater};
use super::support::garage::Garage;
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::{http_client, sha256_digest, TempDir};
use futures_util::TryStreamExt as _;
use object_store::ObjectStore as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// The object key breakwater stores `digest` under (`prefix/blobs/sha256/<hex>`).
fn key(prefix: &str, digest: &str) -> object_store::path::Path {
    let hex = digest.trim_start_matches("sha256:");
    format!("{prefix}/blobs/sha256/{hex}").into()
}

/// The object's bytes, or `None` when absent.
async fn object(g: &Garage, prefix: &str, digest: &str) -> Option<bytes::Bytes> {
    match g.client().get(&key(prefix, digest)).await {
        Ok(r) => Some(r.bytes().await.expect("object body")),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("reading {digest} from garage: {e}"),
    }
}

/// Waits until every blob is in the bucket (commits upload after clients got their bytes).
async fn wait_for_objects(g: &Garage, prefix: &str, digests: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for d in digests {
        while object(g, prefix, d).await.is_none() {
            assert!(Instant::now() < deadline, "{d} never reached the bucket");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn skopeo_pull(image: &str, dest: &Path) -> Result<(), String> {
    crate::support::skopeo_pull(image, dest, &[])
}

fn config(g: &Garage, reg: &Registry, prefix: &str, s3_extra: &str) -> String {
    // The [storage] keys come first: the harness writes `[storage]\nroot = …` right before.
    format!(
        "{}\n{}",
        g.storage_config(prefix, s3_extra),
        local_upstream(&reg.url(), "1h", "")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_go_to_the_bucket_and_other_nodes_serve_them_from_it() {
    let Some(mut g) = Garage::start().await else {
        return;
    };
    let mut reg = Registry::start_plain().await;
    // A 12 MiB layer goes up as a multipart upload; the small one as a single PUT.
    let img = Image::with_layer_sizes(Format::Oci, 4101, &[1024, 12 << 20]);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let digests: Vec<String> = img.blobs().iter().map(|b| b.digest.clone()).collect();
    let big = img.layers.last().expect("two layers");

    let first = Breakwater::start(&config(&g, &reg, "bw/one", "")).await;
    let tmp = TempDir::new("objstore-pull");
    skopeo_pull(
        &format!("{}/team/app:v1", first.host()),
        &tmp.path().join("a"),
    )
    .expect("cold pull through the s3 backend");
    wait_for_objects(&g, "bw/one", &digests).await;
    for b in img.blobs() {
        let stored = object(&g, "bw/one", &b.digest).await.expect("stored");
        assert_eq!(
            sha256_digest(&stored),
            b.digest,
            "the object holds the verified bytes"
        );
        assert!(!first.has_blob(&b.digest), "no blob on the node's disk");
    }
    assert!(
        crate::support::wait_until(Duration::from_secs(5), || first.temp_files() == 0).await,
        "staging files are gone after the upload"
    );
    assert_eq!(
        first.metric("breakwater_store_blobs", &[]).await as usize,
        digests.len() + 1,
        "layers, config and the manifest are counted"
    );
    // Ranged reads: inside the first read window and across its 4 MiB boundary.
    let http = http_client();
    let url = format!("{}/v2/team/app/blobs/{}", first.url(), big.digest);
    for (start, end) in [(100u64, 199u64), ((4 << 20) - 10, (4 << 20) + 9)] {
        let r = http
            .get(&url)
            .header("Range", format!("bytes={start}-{end}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 206);
        assert_eq!(
            &r.bytes().await.unwrap()[..],
            &big.data[start as usize..=end as usize]
        );
    }

    let t = Instant::now();
    let whole = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_digest(&whole), big.digest);
    eprintln!(
        "measured: {} bytes streamed from the bucket in {:?}",
        whole.len(),
        t.elapsed()
    );
    drop(first);

    // A second node with an empty local dir shares the bucket: no blob comes from upstream.
    // It keeps a local disk tier, filled in the background from what it reads.
    reg.reset_counts().await;
    let mut second =
        Breakwater::start(&config(&g, &reg, "bw/one", "local_cache_bytes = \"64MiB\"")).await;
    assert_eq!(
        second.metric("breakwater_store_blobs", &[]).await as usize,
        digests.len() + 1,
        "usage is counted from the bucket at start"
    );
    skopeo_pull(
        &format!("{}/team/app:v1", second.host()),
        &tmp.path().join("b"),
    )
    .expect("warm pull from the bucket");
    reg.settle().await;
    for d in &digests {
        assert_eq!(reg.blob_gets(d), 0, "{d} was served from the bucket");
    }
    assert!(
        second
            .metric("breakwater_requests_total", &["blob", "hit"])
            .await
            >= 2.0
    );

    // The local tier holds every blob (and the manifest) the node read, hashed on the way in.
    let hot = second.root().join("hot/blobs/sha256");
    let deadline = Instant::now() + Duration::from_secs(60);
    for d in &digests {
        let hex = d.trim_start_matches("sha256:");
        let path = hot.join(&hex[..2]).join(hex);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{d} never reached the local tier"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(&sha256_digest(&std::fs::read(&path).unwrap()), d);
    }

    let url = format!("{}/v2/team/app/blobs/{}", second.url(), big.digest);
    let t = Instant::now();
    let whole = http.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_digest(&whole), big.digest);
    eprintln!(
        "measured: {} bytes streamed from the local tier in {:?}",
        whole.len(),
        t.elapsed()
    );

    // With the upstream down, the same node still serves the whole image.
    reg.stop();
    second.restart().await;
    skopeo_pull(
        &format!("{}/team/app:v1", second.host()),
        &tmp.path().join("c"),
    )
    .expect("pull with the upstream down");
    let pulled = std::fs::read(
        tmp.path()
            .join("c")
            .join(big.digest.trim_start_matches("sha256:")),
    )
    .expect("skopeo wrote the big layer");
    assert_eq!(sha256_digest(&pulled), big.digest);

    // With the bucket down too, the local tier alone serves it.
    g.stop();
    skopeo_pull(
        &format!("{}/team/app:v1", second.host()),
        &tmp.path().join("d"),
    )
    .expect("pull from the local tier with upstream and bucket down");
    let pulled = std::fs::read(
        tmp.path()
            .join("d")
            .join(big.digest.trim_start_matches("sha256:")),
    )
    .expect("skopeo wrote the big layer");
    assert_eq!(sha256_digest(&pulled), big.digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_sends_clients_to_a_presigned_url_that_serves_the_bytes() {
    let Some(g) = Garage::start().await else {
        return;
    };
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 4102);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let layer = img.layers.last().expect("a layer");
    let bw = Breakwater::start(&config(
        &g,
        &reg,
        "redirect",
        "redirect = true\nredirect_ttl = \"2m\"",
    ))
    .await;
    let url = format!("{}/v2/team/app/blobs/{}", bw.url(), layer.digest);
    let http = http_client();
    // The first GET fills (streamed from upstream); once stored, GETs are redirected.
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.bytes().await.unwrap(), layer.data);
    wait_for_objects(&g, "redirect", std::slice::from_ref(&layer.digest)).await;

    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_follow.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with(&g.endpoint()) && location.contains("X-Amz-Signature="),
        "a presigned Garage URL: {location}"
    );
    let direct = http.get(&location).send().await.unwrap();
    assert_eq!(direct.status(), 200);
    assert_eq!(direct.bytes().await.unwrap(), layer.data);
    // A following client (skopeo) pulls the image through the redirects.
    let tmp = TempDir::new("objstore-redirect");
    skopeo_pull(&format!("{}/team/app:v1", bw.host()), tmp.path()).expect("pull via redirects");
    assert!(
        bw.metric("breakwater_requests_total", &["blob", "redirect"])
            .await
            >= 2.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_storage_down_during_a_fill_costs_caching_not_bytes() {
    let Some(mut g) = Garage::start().await else {
        return;
    };
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 4103, &[1 << 20]);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let layer = &img.layers[0];
    let bw = Breakwater::start(&config(&g, &reg, "outage", "")).await;
    let url = format!("{}/v2/team/app/blobs/{}", bw.url(), layer.digest);
    let http = http_client();

    g.stop();
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-breakwater-cache"], "miss");
    let body = r.bytes().await.unwrap();
    assert_eq!(
        sha256_digest(&body),
        layer.digest,
        "verified bytes from upstream"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while bw.metric("breakwater_store_write_errors_total", &[]).await < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the failed upload was not counted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(bw.metric("breakwater_store_errors_total", &["read"]).await >= 1.0);
    assert!(
        crate::support::wait_until(Duration::from_secs(5), || bw.temp_files() == 0).await,
        "the staging file is discarded"
    );
    assert_eq!(bw.metric("breakwater_store_blobs", &[]).await, 0.0);

    g.restart().await;
    assert!(
        object(&g, "outage", &layer.digest).await.is_none(),
        "nothing was stored under the digest"
    );
    // With the bucket back, the next request refills and stores it.
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-breakwater-cache"], "miss");
    assert_eq!(r.bytes().await.unwrap(), layer.data);
    wait_for_objects(&g, "outage", std::slice::from_ref(&layer.digest)).await;
    assert_eq!(
        object(&g, "outage", &layer.digest).await.unwrap(),
        layer.data
    );
    let r = http.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-breakwater-cache"], "hit");
    assert_eq!(r.bytes().await.unwrap(), layer.data);
    let log = bw.log_text();
    assert!(!log.contains(&g.secret), "the secret key is never logged");
}

/// Two nodes write to one bucket prefix; each counts only its own writes until a GC lists the
/// bucket, which sets the count (and `breakwater_store_bytes`) to what the bucket holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gc_listing_sets_the_usage_of_a_shared_bucket() {
    let Some(g) = Garage::start().await else {
        return;
    };
    let reg = Registry::start_plain().await;
    let one = Image::with_layer_sizes(Format::Oci, 4111, &[300_000]);
    let two = Image::with_layer_sizes(Format::Oci, 4112, &[500_000]);
    reg.pusher().push_image("team/one", "v1", &one).await;
    reg.pusher().push_image("team/two", "v1", &two).await;
    let a = Breakwater::start(&config(&g, &reg, "bw/usage", "")).await;
    let b = Breakwater::start(&config(&g, &reg, "bw/usage", "")).await;
    let tmp = TempDir::new("objstore-usage");
    skopeo_pull(&format!("{}/team/one:v1", a.host()), &tmp.path().join("a")).unwrap();
    skopeo_pull(&format!("{}/team/two:v1", b.host()), &tmp.path().join("b")).unwrap();
    let all: Vec<String> = one
        .blobs()
        .iter()
        .chain(two.blobs().iter())
        .map(|b| b.digest.clone())
        .collect();
    wait_for_objects(&g, "bw/usage", &all).await;
    let listed: Vec<_> = g
        .client()
        .list(Some(&object_store::path::Path::from("bw/usage/blobs")))
        .try_collect()
        .await
        .unwrap();
    let bucket_bytes: u64 = listed.iter().map(|m| m.size).sum();
    let own = a.metric("breakwater_store_bytes", &[]).await as u64;
    assert!(
        own < bucket_bytes,
        "A counts only its own writes: {own} < {bucket_bytes}"
    );

    let r = http_client()
        .post(format!("{}/api/v1/gc", a.admin_url()))
        .json(&serde_json::json!({"dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(
        a.metric("breakwater_store_bytes", &[]).await as u64,
        bucket_bytes,
        "after the listing A counts the whole bucket"
    );
}
