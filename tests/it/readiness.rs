//! Outage readiness and prefetch against the real upstream: an image pulled by skopeo is
//! ready; with one of its layers deleted from the store, `breakwater readiness` names that
//! layer and exits 2 (and the metric says so); `breakwater prefetch` fills a second image and
//! one platform of a multi-arch index, which then pull with the upstream stopped.

use crate::bw::{local_upstream, Breakwater};
use crate::lifecycle::{admin_url, api, skopeo_copy};
use crate::support::image::{Format, Image, Index};
use crate::support::registry::Registry;
use crate::support::TempDir;
use reqwest::Method;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// Runs `breakwater <args>`: (exit code, stdout, stderr).
fn bw_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(args)
        .output()
        .expect("run breakwater");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// `skopeo copy` of one platform (no `--all`), so only that platform's blobs are read.
fn skopeo_platform(src: &str, dest: &Path, arch: &str, variant: &str) -> Result<(), String> {
    let out = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--override-os", "linux"])
        .args(["--override-arch", arch, "--override-variant", variant])
        .arg(format!("docker://{src}"))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("run skopeo");
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

fn store_path(root: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join("blobs/sha256").join(&hex[..2]).join(hex)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_a_missing_layer_and_prefetched_images_pull_during_an_outage() {
    let mut reg = Registry::start_plain().await;
    let p = reg.pusher();
    let pulled = Image::small(Format::Oci, 8100);
    let later = Image::small(Format::Docker, 8200);
    let multi = Index::multi_arch(Format::Oci, 8300);
    p.push_image("team/pulled", "v1", &pulled).await;
    p.push_image("team/later", "v1", &later).await;
    p.push_index("team/multi", "v1", &multi).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let admin = admin_url(&bw);
    let tmp = TempDir::new("readiness");

    // Pulled through the cache: ready, exit 0.
    skopeo_copy(
        &format!("{}/local/team/pulled:v1", bw.host()),
        &tmp.path().join("pulled"),
    );
    let (code, table, err) = bw_cli(&["readiness", "--admin", &admin]);
    eprintln!("$ breakwater readiness\n{table}{err}");
    assert_eq!(code, 0, "{table}{err}");
    assert!(table.contains("local/team/pulled") && table.contains("ready"));
    assert!(table.contains("1 image pulled within 30d: 1 ready, 0 would fail"));

    // One layer gone from the store: listed with its digest, exit 2, and the metric agrees.
    let layer = &pulled.layers[1].digest;
    // The commit to the store follows the last byte a client receives.
    assert!(
        crate::support::wait_until(std::time::Duration::from_secs(5), || bw.has_blob(layer)).await,
        "the pulled layer was never committed"
    );
    std::fs::remove_file(store_path(bw.root(), layer)).expect("delete a stored layer");
    let (code, table, err) = bw_cli(&["readiness", "--admin", &admin]);
    eprintln!("$ breakwater readiness\n{table}{err}");
    assert_eq!(code, 2, "{table}{err}");
    assert!(table.contains(&format!("missing layer {layer}")), "{table}");
    let (code, out, _) = bw_cli(&["readiness", "--admin", &admin, "--json"]);
    assert_eq!(code, 2);
    let report = json(&out);
    assert_eq!(
        (report["ready"].clone(), report["not_ready"].clone()),
        (0.into(), 1.into())
    );
    let image = &report["images"][0];
    assert_eq!(image["repository"], "local/team/pulled");
    assert_eq!(image["digest"], pulled.manifest.digest.as_str());
    assert_eq!(image["missing"].as_array().unwrap().len(), 1, "{image}");
    assert_eq!(image["missing"][0]["digest"], layer.as_str());
    assert_eq!(image["tags"][0]["tag"], "v1");
    assert_eq!(image["tags"][0]["outage"], "fresh");
    assert_eq!(
        bw.metric("breakwater_readiness_images", &["state=\"missing\""])
            .await,
        1.0
    );
    assert_eq!(
        bw.metric("breakwater_readiness_images", &["state=\"ready\""])
            .await,
        0.0
    );
    assert_eq!(
        bw.metric("breakwater_readiness_missing_blobs", &[]).await,
        1.0
    );
    // A narrower window that excludes nothing still sees it; a bad one is a 400.
    let (status, body) = api(
        Method::GET,
        &format!("{admin}/api/v1/readiness?since=1h"),
        None,
    )
    .await;
    assert_eq!((status, body["not_ready"].clone()), (200, 1.into()));
    let (status, body) = api(
        Method::GET,
        &format!("{admin}/api/v1/readiness?since=soon"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("30d"), "{body}");

    // Prefetch: one image named on the command line, the index from a list file, arm64 only.
    let list = tmp.path().join("images.txt");
    std::fs::write(&list, "# fleet\n\nlocal/team/multi:v1   # arm64 nodes\n").unwrap();
    let prefetch = |extra: &[&str]| {
        let mut a = vec![
            "prefetch",
            "--admin",
            &admin,
            "--json",
            "local/team/later:v1",
        ];
        a.extend_from_slice(&[
            "--file",
            list.to_str().unwrap(),
            "--platform",
            "linux/arm64/v8",
        ]);
        a.extend_from_slice(extra);
        let (code, out, err) = bw_cli(&a);
        assert_eq!(code, 0, "{out}{err}");
        json(&out)
    };
    let first = prefetch(&[]);
    eprintln!(
        "prefetch:\n{}",
        serde_json::to_string_pretty(&first).unwrap()
    );
    let (l, m) = (&first["images"][0], &first["images"][1]);
    // Manifest, config and two layers, all fetched now.
    assert_eq!(
        (l["fetched"].clone(), l["cached"].clone()),
        (4.into(), 0.into()),
        "{l}"
    );
    let later_bytes: usize =
        later.blobs().iter().map(|b| b.data.len()).sum::<usize>() + later.manifest.bytes.len();
    assert_eq!(l["fetched_bytes"], later_bytes as u64);
    assert_eq!(m["platforms"], serde_json::json!(["linux/arm64/v8"]));
    // Index, arm64 manifest, its config and two layers.
    assert_eq!(m["fetched"], 5, "{m}");
    let amd64 = &multi.images[0];
    let arm64 = &multi.images[1];
    assert!(arm64.blobs().iter().all(|b| bw.has_blob(&b.digest)));
    assert!(
        !amd64.layers.iter().any(|b| bw.has_blob(&b.digest)),
        "amd64 was not asked for"
    );
    // Again: everything already cached, nothing fetched.
    let again = prefetch(&[]);
    assert_eq!(again["images"][0]["fetched"], 0);
    assert_eq!(again["images"][1]["cached"], 5);
    let (code, table, _) = bw_cli(&["prefetch", "--admin", &admin, "local/team/later:v1"]);
    assert_eq!(code, 0);
    assert!(table.contains("1 image prefetched, 0 failed"), "{table}");

    // The outage: the upstream is gone, the prefetched content still pulls.
    reg.stop();
    skopeo_copy(
        &format!("{}/local/team/later:v1", bw.host()),
        &tmp.path().join("later"),
    );
    skopeo_platform(
        &format!("{}/local/team/multi:v1", bw.host()),
        &tmp.path().join("multi-arm64"),
        "arm64",
        "v8",
    )
    .expect("the prefetched platform pulls with the upstream down");
    assert!(
        skopeo_platform(
            &format!("{}/local/team/multi:v1", bw.host()),
            &tmp.path().join("multi-amd64"),
            "amd64",
            "",
        )
        .is_err(),
        "the platform not prefetched cannot be pulled during the outage"
    );

    // Prefetches count as pulls: readiness sees both, with the index's arm64 platform.
    let (_, out, _) = bw_cli(&["readiness", "--admin", &admin, "--json"]);
    let report = json(&out);
    let by_repo = |r: &str| {
        report["images"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["repository"] == r)
            .unwrap_or_else(|| panic!("{r} not in {report}"))
            .clone()
    };
    assert_eq!(by_repo("local/team/later")["ready"], true);
    let m = by_repo("local/team/multi");
    assert_eq!(
        (m["ready"].clone(), m["blobs"].clone()),
        (true.into(), 5.into()),
        "{m}"
    );
    assert_eq!(m["platforms"], serde_json::json!(["linux/arm64/v8"]));
    assert_eq!(report["images"].as_array().unwrap().len(), 3, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_reports_bad_names_and_an_unreachable_upstream_and_exits_2() {
    // Nothing listens on this upstream port.
    let dead = format!("http://127.0.0.1:{}", crate::support::free_port());
    let bw = Breakwater::start(&local_upstream(&dead, "10m", "")).await;
    let admin = admin_url(&bw);
    let (code, out, err) = bw_cli(&[
        "prefetch",
        "--admin",
        &admin,
        "--json",
        "local/team/x:v1",
        "no-upstream",
        "other/team/x:v1",
    ]);
    assert_eq!(code, 2, "{out}{err}");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    let errors = |i: usize| v["images"][i]["errors"].to_string();
    assert!(v["images"][0]["digest"].is_null(), "{v}");
    assert!(errors(0).contains("local/team/x:v1"), "{v}");
    assert!(
        errors(1).contains("is not an image") && errors(1).contains("(400"),
        "{v}"
    );
    assert!(
        errors(2).contains("no upstream \\\"other\\\"") && errors(2).contains("(404"),
        "{v}"
    );
    let (status, body) = api(
        Method::POST,
        &format!("{admin}/api/v1/prefetch"),
        Some(r#"{"image":"local/a:1","platforms":["linux"]}"#.into()),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api(Method::GET, &format!("{admin}/api/v1/prefetch"), None).await;
    assert_eq!(status, 405);
    // An empty cache is ready: nothing was pulled.
    let (code, out, _) = bw_cli(&["readiness", "--admin", &admin]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 images pulled"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_verifies_digests_and_shares_its_fill_with_a_client_pull() {
    use crate::support::http::{Request, Response, TestServer};
    use crate::support::{http_client, sha256_digest};
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let config_digest = sha256_digest(config);
    // The layer's bytes do not match the digest the manifest names.
    let layer_digest = sha256_digest(b"the layer the manifest promised");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest, "size": 4096}],
    })
    .to_string();
    let manifest_digest = sha256_digest(manifest.as_bytes());
    let (m, md, cd, ld) = (
        manifest.clone(),
        manifest_digest.clone(),
        config_digest.clone(),
        layer_digest.clone(),
    );
    let fake = TestServer::start_async(move |req: Request| {
        let (m, md, cd, ld) = (m.clone(), md.clone(), cd.clone(), ld.clone());
        async move {
            let path = req.path().to_string();
            if path.ends_with("/manifests/v1") || path.ends_with(&format!("/manifests/{md}")) {
                Response::new(200)
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                    .header("Docker-Content-Digest", &md)
                    .body(m.into_bytes())
            } else if path.ends_with(&format!("/blobs/{cd}")) {
                Response::new(200).body(config.to_vec())
            } else if path.ends_with(&format!("/blobs/{ld}")) {
                // Slow enough for the client below to join the prefetch's fill.
                tokio::time::sleep(std::time::Duration::from_millis(800)).await;
                Response::new(200).body(vec![7u8; 4096])
            } else {
                Response::new(200)
            }
        }
    })
    .await;
    let bw = Breakwater::start(&local_upstream(&fake.url(), "10m", "")).await;
    let admin = admin_url(&bw);
    let a = admin.clone();
    let prefetch = tokio::task::spawn_blocking(move || {
        bw_cli(&["prefetch", "--admin", &a, "--json", "local/team/app:v1"])
    });
    let url = format!("{}/v2/local/team/app/blobs/{layer_digest}", bw.url());
    assert!(
        crate::support::wait_until(std::time::Duration::from_secs(5), || fake
            .count("GET", &layer_digest)
            > 0)
        .await,
        "prefetch never asked upstream for the layer"
    );
    let client = http_client().get(&url).send().await.expect("client GET");
    let status = client.status();
    // The bad bytes are never delivered whole: a 200 is cut before its end, or (when the fill
    // failed before the answer started) the client gets an error status instead.
    if let Ok(body) = client.bytes().await {
        assert_ne!(
            status,
            200,
            "the client got the bad bytes whole ({} bytes)",
            body.len()
        );
    }
    let (code, out, err) = prefetch.await.unwrap();
    assert_eq!(code, 2, "{out}{err}");
    let report = json(&out);
    let image = &report["images"][0];
    assert_eq!(image["digest"], manifest_digest.as_str());
    let outcome = |d: &str| {
        image["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["digest"] == d)
            .unwrap_or_else(|| panic!("{d} not in {image}"))["outcome"]
            .clone()
    };
    assert_eq!(outcome(&config_digest), "fetched");
    assert_eq!(outcome(&layer_digest), "failed");
    assert!(
        image["errors"].to_string().contains(&layer_digest),
        "{image}"
    );
    assert!(!bw.has_blob(&layer_digest) && bw.has_blob(&config_digest));
    assert_eq!(
        fake.count("GET", &layer_digest),
        1,
        "the client joined the prefetch's fill"
    );
    assert_eq!(
        bw.metric("breakwater_verification_failures_total", &[])
            .await,
        1.0
    );
}
