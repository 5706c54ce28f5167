//! The whole loop against the real upstream: pull, set a policy, preview, apply, GC; the expired
//! images are gone from disk, the others still pull without one upstream blob request, and a
//! shared layer or a fill running during GC is never harmed.

use super::{admin_url, api, cli, cli_json, skopeo_copy, ON_DEMAND};
use crate::bw::{local_upstream, Breakwater};
use crate::support::http::{Request, Response, TestServer};
use crate::support::image::{Format, Image, Index, Layer, LINUX_AMD64, OCI_MANIFEST};
use crate::support::registry::Registry;
use crate::support::{http_client, sha256_digest, wait_until, TempDir};
use reqwest::Method;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const KEEP_NEWEST: &str = r#"{"rules":[{"rulePriority":1,"description":"keep the newest app image",
  "selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},
  "action":{"type":"expire"}}]}"#;

/// Manifest, config and the image's own (second) layer: what expiring it frees.
fn own_bytes(img: &Image) -> u64 {
    (img.manifest.bytes.len() + img.config.data.len() + img.layers[1].data.len()) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_set_policy_preview_apply_gc_and_the_rest_still_pulls_warm() {
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    // Three app images and one other image share a base layer.
    let base = Layer::random(7001, 4096);
    let with_base = |format, seed| {
        Image::build(
            format,
            LINUX_AMD64,
            vec![base.clone(), Layer::random(seed, 8192)],
        )
    };
    let app: Vec<Image> = (0..3).map(|i| with_base(Format::Oci, 7100 + i)).collect();
    for (i, img) in app.iter().enumerate() {
        p.push_image("team/app", &format!("v{}", i + 1), img).await;
    }
    let keep = with_base(Format::Docker, 7200);
    p.push_image("team/keep", "k1", &keep).await;
    let multi = Index::multi_arch(Format::Oci, 7300);
    p.push_index("team/multi", "v1", &multi).await;

    let bw = Breakwater::start(&(local_upstream(&reg.url(), "10m", "") + ON_DEMAND)).await;
    let admin = admin_url(&bw);
    let tmp = TempDir::new("lifecycle");
    // A second apart, so "first cached" (ECR's "pushed") orders the app images.
    for i in 1..=3 {
        skopeo_copy(
            &format!("{}/local/team/app:v{i}", bw.host()),
            &tmp.path().join(format!("app{i}")),
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    skopeo_copy(
        &format!("{}/local/team/keep:k1", bw.host()),
        &tmp.path().join("keep"),
    );
    skopeo_copy(
        &format!("{}/local/team/multi:v1", bw.host()),
        &tmp.path().join("multi"),
    );

    let (ok, table, err) = cli(&["images", "--admin", &admin]);
    assert!(ok, "{err}");
    eprintln!("$ breakwater images\n{table}");
    assert!(
        table.contains("local/team/app") && table.contains("5 images"),
        "{table}"
    );
    let listed = cli_json(&[
        "images",
        "--admin",
        &admin,
        "--repository",
        "local/team/multi",
    ]);
    assert_eq!(listed["images"][0]["children"].as_array().unwrap().len(), 2);

    // Set the policy with the CLI, finding the admin API through the config file.
    let policy_file = tmp.path().join("policy.json");
    std::fs::write(&policy_file, KEEP_NEWEST).unwrap();
    let config = bw.config_path().display().to_string();
    let (ok, out, err) = cli(&[
        "lifecycle",
        "put",
        "--config",
        &config,
        "--scope",
        "local/team/app",
        policy_file.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("local/team/app"), "{out}{err}");

    // Preview: v1 and v2 would expire; GC would free exactly their own bytes.
    let (status, preview) = api(
        Method::POST,
        &format!("{admin}/api/v1/lifecycle/preview"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{preview}");
    eprintln!(
        "preview JSON:\n{}",
        serde_json::to_string_pretty(&preview).unwrap()
    );
    assert_eq!(preview["applied"], false);
    assert_eq!(preview["expiring_images"], 2);
    let repo = &preview["repositories"][0];
    assert_eq!(repo["repository"], "local/team/app");
    assert_eq!(repo["policy"]["source"], "api");
    let tags: Vec<&str> = repo["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["tags"][0].as_str().unwrap())
        .collect();
    assert_eq!(tags, vec!["v1", "v2"]);
    let reclaimable = own_bytes(&app[0]) + own_bytes(&app[1]);
    assert_eq!(preview["reclaimable_bytes"], reclaimable);
    let (ok, table, _) = cli(&["lifecycle", "preview", "--admin", &admin]);
    eprintln!("$ breakwater lifecycle preview\n{table}");
    assert!(ok && table.contains("2 images would expire"), "{table}");
    assert!(table.contains(&app[0].manifest.digest[..19]), "{table}");

    let applied = cli_json(&["lifecycle", "apply", "--admin", &admin]);
    assert_eq!(
        (
            applied["applied"].clone(),
            applied["expiring_images"].clone()
        ),
        (true.into(), 2.into())
    );
    assert_eq!(
        cli_json(&["images", "--admin", &admin])["images"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    let gc = cli_json(&["gc", "--admin", &admin]);
    eprintln!("gc: {gc}");
    assert_eq!(gc["deleted_blobs"], 6, "{gc}");
    assert_eq!(gc["freed_bytes"], reclaimable);
    for img in &app[..2] {
        for d in [
            &img.manifest.digest,
            &img.config.digest,
            &img.layers[1].digest,
        ] {
            assert!(!bw.has_blob(d), "{d} of an expired image is still on disk");
        }
    }
    assert!(bw.has_blob(&base.digest), "the shared base layer must stay");
    for d in app[2].blobs().iter().chain(keep.blobs().iter()) {
        assert!(bw.has_blob(&d.digest));
    }

    // The retained images pull again without a single upstream blob request.
    reg.reset_counts().await;
    skopeo_copy(
        &format!("{}/local/team/app:v3", bw.host()),
        &tmp.path().join("w1"),
    );
    skopeo_copy(
        &format!("{}/local/team/keep:k1", bw.host()),
        &tmp.path().join("w2"),
    );
    skopeo_copy(
        &format!("{}/local/team/multi:v1", bw.host()),
        &tmp.path().join("w3"),
    );
    reg.settle().await;
    let blob_requests = reg.count("GET", "/blobs/") + reg.count("HEAD", "/blobs/");
    assert_eq!(blob_requests, 0, "{:#?}", reg.requests());

    // The audit trail has every expiry (rule and tags) and every deleted blob.
    let expired = cli_json(&["events", "--admin", &admin, "--kind", "expire"]);
    let expired = expired["events"].as_array().unwrap();
    assert_eq!(expired.len(), 2);
    assert!(
        expired[0]["reason"].as_str().unwrap().contains("rule 1"),
        "{expired:?}"
    );
    assert_eq!(expired[0]["repository"], "team/app");
    let (_, deleted) = api(
        Method::GET,
        &format!("{admin}/api/v1/events?kind=gc_delete&limit=100"),
        None,
    )
    .await;
    assert_eq!(deleted["events"].as_array().unwrap().len(), 6);

    // An expired image is not lost: the next pull fetches it from upstream again.
    skopeo_copy(
        &format!("{}/local/team/app:v1", bw.host()),
        &tmp.path().join("again"),
    );
    reg.settle().await;
    assert_eq!(reg.blob_gets(&app[0].layers[1].digest), 1);

    // `breakwater images delete` removes one image through the API.
    let (ok, out, err) = cli(&["images", "delete", "--admin", &admin, "local/team/app:v1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "deleted local/team/app@{}",
            app[0].manifest.digest
        )),
        "{out}"
    );
    let left = cli_json(&[
        "images",
        "--admin",
        &admin,
        "--repository",
        "local/team/app",
    ]);
    let tags: Vec<&str> = left["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| {
            i["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
        })
        .collect();
    assert_eq!(tags, vec!["v3"], "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_during_a_running_fill_of_a_retained_layer_is_harmless() {
    let img = Image::with_layer_sizes(Format::Oci, 7500, &[256 * 1024]);
    let layer = img.layers[0].clone();
    let (release, released) = tokio::sync::watch::channel(false);
    let served = img.clone();
    // An upstream that serves the manifest and config at once and the layer half-way, then
    // waits for the test to let the rest go.
    let fake = TestServer::start_raw(move |req: Request, mut stream| {
        let (img, mut released) = (served.clone(), released.clone());
        async move {
            let path = req.path().to_string();
            let resp = if path.contains("/manifests/") {
                Response::new(200)
                    .header("Content-Type", OCI_MANIFEST)
                    .header("Docker-Content-Digest", &img.manifest.digest)
                    .body(img.manifest.bytes.clone())
            } else if path.ends_with(&img.config.digest) {
                Response::new(200).body(img.config.data.clone())
            } else if path.ends_with(&img.layers[0].digest) && req.header("range").is_none() {
                let data = img.layers[0].data.clone();
                let half = data.len() / 2;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    data.len()
                );
                stream.write_all(head.as_bytes()).await.ok()?;
                stream.write_all(&data[..half]).await.ok()?;
                stream.flush().await.ok()?;
                released.wait_for(|r| *r).await.ok()?;
                stream.write_all(&data[half..]).await.ok()?;
                return None;
            } else {
                Response::new(404)
            };
            resp.write_to(&mut stream, req.is_head()).await.ok()?;
            Some(stream)
        }
    })
    .await;
    let bw = Breakwater::start(&(local_upstream(&fake.url(), "10m", "") + ON_DEMAND)).await;
    let admin = admin_url(&bw);
    let client = http_client();
    let base = format!("{}/v2/local/team/app", bw.url());
    let m = client
        .get(format!("{base}/manifests/v1"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    let pull = tokio::spawn({
        let (c, u) = (client.clone(), format!("{base}/blobs/{}", layer.digest));
        async move { c.get(&u).send().await.unwrap().bytes().await }
    });
    let mut filling = false;
    for _ in 0..100 {
        if bw.metric("breakwater_fills_in_flight", &[]).await == 1.0 {
            filling = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(filling, "the layer fill never started");

    let (status, gc) = api(Method::POST, &format!("{admin}/api/v1/gc"), None).await;
    assert_eq!(status, 200, "{gc}");
    assert_eq!(gc["deleted_blobs"], 0, "{gc}");
    assert_eq!(
        bw.metric("breakwater_fills_in_flight", &[]).await,
        1.0,
        "GC disturbed the fill"
    );
    release.send(true).unwrap();
    let body = pull.await.unwrap().expect("the client got the whole layer");
    assert_eq!(sha256_digest(&body), layer.digest);
    assert!(wait_until(Duration::from_secs(5), || bw.has_blob(&layer.digest)).await);

    // Referenced by the retained image: GC keeps it.
    let (_, gc) = api(Method::POST, &format!("{admin}/api/v1/gc"), None).await;
    assert_eq!(gc["deleted_blobs"], 0, "{gc}");
    assert!(bw.has_blob(&layer.digest));
    // Once the image is deleted, the same layer goes.
    let (status, del) = api(
        Method::DELETE,
        &format!("{admin}/api/v1/images/local/team/app:v1"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{del}");
    assert_eq!(del["deleted"]["digest"], img.manifest.digest);
    let (_, gc) = api(Method::POST, &format!("{admin}/api/v1/gc"), None).await;
    // The client never fetched the config, so the manifest and the layer are all there is.
    assert_eq!(gc["deleted_blobs"], 2, "{gc}");
    assert!(!bw.has_blob(&layer.digest));
}
