//! The verified pull path against a real upstream: every manifest kind through every routing mode
//! with real clients, warm pulls that never touch upstream, token auth, stale serving, and the
//! edge's answers to bad input.

use super::bw::{local_upstream, Breakwater};
use super::support::image::{schema1_payload, Format, Image, Index, Schema1};
use super::support::registry::Registry;
use super::support::token_server::TokenServer;
use super::support::{http_client, sha256_digest, TempDir};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// What containerd sends when resolving a tag.
const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// `skopeo copy --all` from `src` (a docker reference without scheme) into a new dir; returns the
/// top-level manifest's bytes.
fn skopeo_copy(src: &str, dest: &Path, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{src}"))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {src} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(dest.join("manifest.json")).expect("skopeo wrote manifest.json")
}

/// The digest a registry gives these manifest bytes (schema1: over the unsigned payload).
fn digest_of(bytes: &[u8]) -> String {
    match schema1_payload(bytes) {
        Some(p) => sha256_digest(&p),
        None => sha256_digest(bytes),
    }
}

struct Pushed {
    repo: &'static str,
    tag: &'static str,
    digest: String,
    blobs: Vec<String>,
}

async fn push_every_kind(reg: &Registry) -> Vec<Pushed> {
    let p = reg.pusher();
    let blobs_of = |images: &[&Image]| -> Vec<String> {
        images
            .iter()
            .flat_map(|i| i.blobs().into_iter().map(|b| b.digest.clone()))
            .collect()
    };
    let oci = Image::small(Format::Oci, 1);
    let docker = Image::small(Format::Docker, 2);
    let index = Index::multi_arch(Format::Oci, 3);
    let list = Index::multi_arch(Format::Docker, 4);
    let legacy = Schema1::build("team/legacy", "v1", 5, &[2048]);
    let alpine = Image::small(Format::Docker, 6);
    vec![
        Pushed {
            repo: "team/oci",
            tag: "v1",
            digest: p.push_image("team/oci", "v1", &oci).await,
            blobs: blobs_of(&[&oci]),
        },
        Pushed {
            repo: "team/docker",
            tag: "v1",
            digest: p.push_image("team/docker", "v1", &docker).await,
            blobs: blobs_of(&[&docker]),
        },
        Pushed {
            repo: "team/multi",
            tag: "v1",
            digest: p.push_index("team/multi", "v1", &index).await,
            blobs: blobs_of(&index.images.iter().collect::<Vec<_>>()),
        },
        Pushed {
            repo: "team/list",
            tag: "v1",
            digest: p.push_index("team/list", "v1", &list).await,
            blobs: blobs_of(&list.images.iter().collect::<Vec<_>>()),
        },
        Pushed {
            repo: "team/legacy",
            tag: "v1",
            digest: p.push_schema1("team/legacy", "v1", &legacy).await,
            blobs: legacy.layers.iter().map(|b| b.digest.clone()).collect(),
        },
        Pushed {
            repo: "library/alpine",
            tag: "3",
            digest: p.push_image("library/alpine", "3", &alpine).await,
            blobs: blobs_of(&[&alpine]),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_manifest_kind_through_every_route_with_identical_digests() {
    let reg = Registry::start_plain().await;
    let images = push_every_kind(&reg).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let tmp = TempDir::new("copies");

    // Prefix route (podman/skopeo mirror style) and the default route (dockerd style).
    for (i, img) in images.iter().enumerate() {
        for (route, src) in [
            (
                "prefix",
                format!("{}/local/{}:{}", bw.host(), img.repo, img.tag),
            ),
            ("default", format!("{}/{}:{}", bw.host(), img.repo, img.tag)),
        ] {
            let m = skopeo_copy(&src, &tmp.path().join(format!("{route}-{i}")), &[]);
            assert_eq!(
                digest_of(&m),
                img.digest,
                "{route} route changed the digest of {}",
                img.repo
            );
        }
    }
    // Bare single-component names get library/ on the default route.
    let m = skopeo_copy(
        &format!("{}/alpine:3", bw.host()),
        &tmp.path().join("bare"),
        &[],
    );
    assert_eq!(digest_of(&m), images[5].digest);

    // containerd style: ?ns=<registry>, HEAD to resolve, then GETs by digest.
    let client = http_client();
    for img in &images {
        let url = format!(
            "{}/v2/{}/manifests/{}?ns={}",
            bw.url(),
            img.repo,
            img.tag,
            reg.host()
        );
        let head = client
            .head(&url)
            .header("Accept", CONTAINERD_ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200, "ns HEAD of {}", img.repo);
        assert_eq!(
            head.headers()["docker-content-digest"].to_str().unwrap(),
            img.digest
        );
        let len: usize = head.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let url = format!(
            "{}/v2/{}/manifests/{}?ns={}",
            bw.url(),
            img.repo,
            img.digest,
            reg.host()
        );
        let body = client
            .get(&url)
            .header("Accept", CONTAINERD_ACCEPT)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), len);
        assert_eq!(digest_of(&body), img.digest);
        for blob in &img.blobs {
            let url = format!(
                "{}/v2/{}/blobs/{blob}?ns={}",
                bw.url(),
                img.repo,
                reg.host()
            );
            let b = client
                .get(&url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(&sha256_digest(&b), blob, "ns blob of {}", img.repo);
        }
    }

    // Warm: copying everything again makes zero upstream blob requests (and no manifest GETs
    // within the TTL).
    reg.reset_counts().await;
    for (i, img) in images.iter().enumerate() {
        let m = skopeo_copy(
            &format!("{}/local/{}:{}", bw.host(), img.repo, img.tag),
            &tmp.path().join(format!("warm-{i}")),
            &[],
        );
        assert_eq!(digest_of(&m), img.digest);
    }
    reg.settle().await;
    let blob_requests = reg.count("GET", "/blobs/") + reg.count("HEAD", "/blobs/");
    let manifest_requests = reg.count("GET", "/manifests/") + reg.count("HEAD", "/manifests/");
    assert_eq!(
        blob_requests,
        0,
        "warm copies reached upstream: {:#?}",
        reg.requests()
    );
    assert_eq!(
        manifest_requests,
        0,
        "warm copies revalidated within the TTL: {:#?}",
        reg.requests()
    );

    // Everything is in the catalog and the metrics saw hits.
    let cat: serde_json::Value = client
        .get(format!("{}/v2/_catalog", bw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let repos: Vec<&str> = cat["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        repos.contains(&"local/team/multi") && repos.contains(&"local/library/alpine"),
        "{repos:?}"
    );
    assert!(
        bw.metric(
            "breakwater_requests_total",
            &["kind=\"blob\"", "result=\"hit\""]
        )
        .await
            > 0.0
    );
    assert!(
        bw.metric("breakwater_bytes_served_total", &["source=\"cache\""])
            .await
            > 0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_answer_each_client_by_its_accept() {
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    let index = Index::multi_arch(Format::Oci, 11);
    let index_digest = p.push_index("team/multi", "v1", &index).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let client = http_client();
    let url = format!("{}/v2/local/team/multi/manifests/v1", bw.url());

    let r = client
        .get(&url)
        .header("Accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        index_digest
    );
    assert_eq!(r.headers()["x-breakwater-cache"], "miss");
    assert_eq!(sha256_digest(&r.bytes().await.unwrap()), index_digest);

    // A client that cannot read an OCI index gets a clear 404, as from distribution.
    let r = client
        .get(&url)
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Accept"),
        "{e}"
    );

    // HEAD carries digest and length, no body; by-digest works for the child manifests.
    let r = client
        .head(&url)
        .header("Accept", CONTAINERD_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-breakwater-cache"], "hit");
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        index.manifest.bytes.len().to_string()
    );
    for img in &index.images {
        let u = format!(
            "{}/v2/local/team/multi/manifests/{}",
            bw.url(),
            img.manifest.digest
        );
        let r = client.get(&u).send().await.unwrap();
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            img.manifest.media_type
        );
        assert_eq!(r.bytes().await.unwrap(), img.manifest.bytes);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_auth_upstream_with_credentials_and_single_flight_tokens() {
    let tokens = TokenServer::start_default().await;
    let reg = Registry::start_token(&tokens).await;
    let p = reg.pusher();
    let img = Image::small(Format::Oci, 21);
    let digest = p.push_image("private/app", "v1", &img).await;
    let (user, pass) = tokens.credentials().unwrap();
    let extra = format!("username = \"{user}\"\npassword_env = \"BW_TEST_UPSTREAM_PASSWORD\"\n");
    std::env::set_var("BW_TEST_UPSTREAM_PASSWORD", &pass);
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", &extra)).await;
    let before = tokens.token_requests();

    // 16 concurrent first requests for one repository: one token request for its scope.
    let client = http_client();
    let url = format!("{}/v2/local/private/app/manifests/v1", bw.url());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (c, u) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            c.get(&u)
                .header("Accept", CONTAINERD_ACCEPT)
                .send()
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            digest
        );
    }
    let log = tokens.token_log();
    let for_scope = log[before..]
        .iter()
        .filter(|t| t.scopes.iter().any(|s| s == "repository:private/app:pull"))
        .count();
    assert_eq!(for_scope, 1, "token requests: {:#?}", &log[before..]);
    assert!(
        log[before..]
            .iter()
            .all(|t| t.user.as_deref() == Some(user.as_str())),
        "credentials were not used"
    );

    // And a real client pulls the whole image.
    let tmp = TempDir::new("tok");
    let m = skopeo_copy(
        &format!("{}/local/private/app:v1", bw.host()),
        &tmp.path().join("c"),
        &[],
    );
    assert_eq!(digest_of(&m), digest);
    assert!(
        !bw.log_text().contains(&pass),
        "the upstream password appeared in the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_token_pull() {
    let tokens = TokenServer::start_default().await;
    let reg = Registry::start_token(&tokens).await;
    let img = Image::small(Format::Docker, 22);
    let digest = reg.pusher().push_image("library/busybox", "1", &img).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let tmp = TempDir::new("anon");
    let m = skopeo_copy(
        &format!("{}/busybox:1", bw.host()),
        &tmp.path().join("c"),
        &[],
    );
    assert_eq!(digest_of(&m), digest);
    assert!(tokens
        .token_log()
        .iter()
        .any(|t| t.user.is_none() && t.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_tag_served_when_upstream_is_down_and_uncached_fails_fast() {
    let mut reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 31);
    let digest = reg.pusher().push_image("team/app", "v1", &img).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "1s", "")).await;
    let client = http_client();
    let url = format!("{}/v2/local/team/app/manifests/v1", bw.url());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let blob_url = format!(
        "{}/v2/local/team/app/blobs/{}",
        bw.url(),
        img.layers[1].digest
    );
    assert_eq!(
        client
            .get(&blob_url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
        img.layers[1].data
    );
    let tags_url = format!("{}/v2/local/team/app/tags/list", bw.url());
    let t: serde_json::Value = client
        .get(&tags_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(t["tags"], serde_json::json!(["v1"]));

    // Within the TTL: no upstream request. After it: a HEAD, not a GET.
    reg.reset_counts().await;
    assert_eq!(
        client.get(&url).send().await.unwrap().headers()["x-breakwater-cache"],
        "hit"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["x-breakwater-cache"], "revalidated");
    reg.settle().await;
    assert_eq!(
        reg.manifest_gets("v1"),
        0,
        "revalidation must not GET: {:#?}",
        reg.requests()
    );
    assert_eq!(reg.count("HEAD", "/manifests/v1"), 1);

    // Upstream goes away: the cached tag is still served, marked stale, quickly.
    reg.stop();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-breakwater-cache"], "stale");
    assert!(r.headers().contains_key("warning"));
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stale answer took {:?}",
        started.elapsed()
    );
    // Blobs still pull.
    let b = client.get(&blob_url).send().await.unwrap();
    assert_eq!(b.status(), 200);
    assert_eq!(b.bytes().await.unwrap(), img.layers[1].data);
    // Tag list falls back to the cached tags.
    let t = client.get(&tags_url).send().await.unwrap();
    assert_eq!(t.headers()["x-breakwater-cache"], "stale");
    let t: serde_json::Value = t.json().await.unwrap();
    assert_eq!(t["tags"], serde_json::json!(["v1"]));

    // Nothing cached and upstream down: a clear error naming the upstream, not a hang.
    let started = Instant::now();
    let r = client
        .get(format!("{}/v2/local/team/app/manifests/v2", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let e: serde_json::Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["code"], "UNAVAILABLE");
    assert!(
        e["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("upstream local"),
        "{e}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        bw.metric("breakwater_stale_served_total", &["upstream=\"local\""])
            .await
            >= 1.0
    );
}

async fn raw_get(host: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_oci_error() {
    let reg = Registry::start_plain().await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let client = http_client();
    let check = |status: u16, code: &'static str, needle: &'static str| {
        move |r: (u16, serde_json::Value)| {
            assert_eq!(r.0, status, "{}", r.1);
            assert_eq!(r.1["errors"][0]["code"], code, "{}", r.1);
            assert!(
                r.1["errors"][0]["message"]
                    .as_str()
                    .unwrap()
                    .contains(needle),
                "{}",
                r.1
            );
        }
    };
    let get = |method: reqwest::Method, path: String| {
        let c = client.clone();
        let u = format!("{}{path}", bw.url());
        async move {
            let r = c.request(method, u).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    use reqwest::Method;
    check(400, "NAME_INVALID", "Team")(
        get(Method::GET, "/v2/local/Team/App/manifests/v1".into()).await,
    );
    // reqwest would resolve "..": send the traversal attempt raw.
    let raw = raw_get(&bw.host(), "/v2/local/a/../../etc/passwd/blobs/sha256:0000").await;
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert!(raw.contains("NAME_INVALID"), "{raw}");
    check(400, "DIGEST_INVALID", "sha256:abc")(
        get(Method::GET, "/v2/local/a/blobs/sha256:abc".into()).await,
    );
    check(400, "DIGEST_INVALID", "unsupported algorithm")(
        get(
            Method::GET,
            format!("/v2/local/a/manifests/md5:{}", "a".repeat(32)),
        )
        .await,
    );
    // A tag that cannot exist names no manifest: 404 on a pull (TAG_INVALID is for pushes).
    check(404, "MANIFEST_UNKNOWN", "-bad")(
        get(Method::GET, "/v2/local/a/manifests/-bad".into()).await,
    );
    check(404, "MANIFEST_UNKNOWN", "upstream local")(
        get(Method::GET, "/v2/local/team/none/manifests/v1".into()).await,
    );
    check(404, "BLOB_UNKNOWN", "upstream local")(
        get(
            Method::GET,
            format!("/v2/local/team/none/blobs/sha256:{}", "0".repeat(64)),
        )
        .await,
    );
    check(405, "UNSUPPORTED", "read-only")(
        get(Method::PUT, "/v2/local/a/manifests/v1".into()).await,
    );
    check(405, "UNSUPPORTED", "read-only")(
        get(Method::POST, "/v2/local/a/blobs/uploads/".into()).await,
    );
    check(404, "UNSUPPORTED", "unknown endpoint")(get(Method::GET, "/v3/x".into()).await);
    check(404, "NAME_UNKNOWN", "quay.example")(
        get(Method::GET, "/v2/a/manifests/v1?ns=quay.example".into()).await,
    );
    let r = client
        .get(format!("{}/v2/", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    // Nothing of the above left anything behind (failed fills discard theirs just after answering).
    assert!(
        crate::support::wait_until(Duration::from_secs(5), || bw.temp_files() == 0).await,
        "a staging file was left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_layer_streams_verified_cold_and_warm() {
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 41, &[64 * 1024 * 1024]);
    let layer = img.layers[0].clone();
    reg.pusher().push_image("team/big", "v1", &img).await;
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let client = http_client();
    let url = format!("{}/v2/local/team/big/blobs/{}", bw.url(), layer.digest);
    for round in ["cold", "warm"] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{round}");
        assert_eq!(
            r.headers()["content-length"].to_str().unwrap(),
            layer.data.len().to_string()
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(sha256_digest(&body), layer.digest, "{round} bytes");
    }
    reg.settle().await;
    assert_eq!(reg.blob_gets(&layer.digest), 1);
    // Range on the cached blob.
    let r = client
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"].to_str().unwrap(),
        format!("bytes 10-19/{}", layer.data.len())
    );
    assert_eq!(r.bytes().await.unwrap(), layer.data.slice(10..20));
    let r = client
        .get(&url)
        .header("Range", format!("bytes={}-", layer.data.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_list_pages_pass_through_with_links_pointing_back_at_the_cache() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 99);
    for tag in ["a", "b", "c"] {
        reg.pusher().push_image("team/app", tag, &img).await;
    }
    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let client = http_client();
    let r = client
        .get(format!("{}/v2/local/team/app/tags/list?n=2", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(link.starts_with("</v2/local/team/app/tags/list?"), "{link}");
    assert!(link.contains("last=b") && link.contains("n=2"), "{link}");
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["tags"], serde_json::json!(["a", "b"]));
    let next = link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_string();
    let page: serde_json::Value = client
        .get(format!("{}{next}", bw.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["tags"], serde_json::json!(["c"]));
}
