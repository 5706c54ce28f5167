//! Self-tests of the harness against the real distribution 2.8 registry and skopeo: if these fail,
//! every test built on the harness is suspect.

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::support::http::{Response, TestServer};
use super::support::image::{
    schema1_payload, Format, Image, Index, Manifest, Pusher, Schema1, ACCEPT_ALL, DOCKER_LIST,
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, SCHEMA1_SIGNED,
};
use super::support::registry::Registry;
use super::support::token_server::{TokenServer, TokenServerConfig};
use super::support::{http_client, sha256_digest, TempDir};

/// Reads `repo:tag` back by tag and by digest with `accept` and checks bytes, type and digest.
async fn assert_round_trip(
    pusher: &Pusher,
    repo: &str,
    tag: &str,
    manifest: &Manifest,
    accept: &str,
) {
    for reference in [tag, manifest.digest.as_str()] {
        let got = pusher.get_manifest(repo, reference, accept).await;
        assert_eq!(
            got.status,
            200,
            "GET {repo}:{reference}: {}",
            String::from_utf8_lossy(&got.body)
        );
        assert_eq!(
            got.content_type.as_deref(),
            Some(manifest.media_type.as_str()),
            "{repo}:{reference}"
        );
        assert_eq!(
            got.digest.as_deref(),
            Some(manifest.digest.as_str()),
            "{repo}:{reference}"
        );
        assert_eq!(
            sha256_digest(&got.body),
            manifest.digest,
            "{repo}:{reference} bytes"
        );
        assert!(
            got.body == manifest.bytes,
            "{repo}:{reference} bytes differ from what was pushed"
        );
    }
}

/// Runs skopeo with a timeout, returning stdout; panics with stderr on failure.
async fn skopeo(args: &[&str]) -> String {
    let run = tokio::process::Command::new("skopeo")
        .args(args)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("skopeo timed out")
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("skopeo output is UTF-8")
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT has a payload");
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("JWT payload is base64url");
    serde_json::from_slice(&json).expect("JWT payload is JSON")
}

#[tokio::test]
async fn plain_registry_accepts_and_serves_every_manifest_kind() {
    let registry = Registry::start_plain().await;
    let pusher = registry.pusher();

    let oci = Image::small(Format::Oci, 1);
    assert_eq!(
        pusher.push_image("test/oci", "v1", &oci).await,
        oci.manifest.digest
    );
    assert_round_trip(&pusher, "test/oci", "v1", &oci.manifest, OCI_MANIFEST).await;

    let docker = Image::small(Format::Docker, 2);
    assert_eq!(
        pusher.push_image("test/docker", "v1", &docker).await,
        docker.manifest.digest
    );
    assert_round_trip(
        &pusher,
        "test/docker",
        "v1",
        &docker.manifest,
        DOCKER_MANIFEST,
    )
    .await;
    assert_round_trip(&pusher, "test/docker", "v1", &docker.manifest, ACCEPT_ALL).await;

    let index = Index::multi_arch(Format::Oci, 3);
    assert_eq!(
        pusher.push_index("test/index", "multi", &index).await,
        index.manifest.digest
    );
    assert_round_trip(&pusher, "test/index", "multi", &index.manifest, OCI_INDEX).await;
    for image in &index.images {
        assert_round_trip(
            &pusher,
            "test/index",
            &image.manifest.digest,
            &image.manifest,
            OCI_MANIFEST,
        )
        .await;
    }

    let list = Index::multi_arch(Format::Docker, 5);
    assert_eq!(
        pusher.push_index("test/list", "multi", &list).await,
        list.manifest.digest
    );
    assert_round_trip(&pusher, "test/list", "multi", &list.manifest, DOCKER_LIST).await;

    let schema1 = Schema1::build("test/schema1", "old", 7, &[1024, 4096]);
    assert_eq!(
        pusher.push_schema1("test/schema1", "old", &schema1).await,
        schema1.manifest.digest
    );
    assert_eq!(
        schema1_payload(&schema1.manifest.bytes).as_deref(),
        Some(&schema1.payload[..])
    );
    // The registry re-signs schema1 on every GET: compare payloads, not bytes.
    for reference in ["old", schema1.manifest.digest.as_str()] {
        let got = pusher
            .get_manifest("test/schema1", reference, SCHEMA1_SIGNED)
            .await;
        assert_eq!(got.status, 200, "GET schema1 {reference}");
        assert_eq!(got.content_type.as_deref(), Some(SCHEMA1_SIGNED));
        assert_eq!(
            got.digest.as_deref(),
            Some(schema1.manifest.digest.as_str())
        );
        let payload = schema1_payload(&got.body).expect("served schema1 is signed");
        assert_eq!(sha256_digest(&payload), schema1.manifest.digest);
        assert!(
            got.body != schema1.manifest.bytes,
            "distribution 2.8 re-signs; if this fails, it no longer does"
        );
    }

    // distribution answers 404 when the stored type is not acceptable (a fact the cache relies on).
    let refused = pusher
        .get_manifest("test/index", "multi", DOCKER_MANIFEST)
        .await;
    assert_eq!(
        refused.status, 404,
        "OCI index must not be served for a schema2-only Accept"
    );

    for blob in oci.blobs() {
        let got = pusher.get_blob("test/oci", &blob.digest).await;
        assert_eq!(
            (got.status, sha256_digest(&got.body)),
            (200, blob.digest.clone())
        );
    }
}

#[tokio::test]
async fn skopeo_reads_built_images() {
    let registry = Registry::start_plain().await;
    let pusher = registry.pusher();
    let oci = Image::small(Format::Oci, 11);
    pusher.push_image("skopeo/oci", "v1", &oci).await;
    let list = Index::multi_arch(Format::Docker, 12);
    pusher.push_index("skopeo/list", "v1", &list).await;
    let schema1 = Schema1::build("skopeo/schema1", "v1", 13, &[2048]);
    pusher.push_schema1("skopeo/schema1", "v1", &schema1).await;

    let host = registry.host();
    for (repo, digest) in [
        ("skopeo/oci", &oci.manifest.digest),
        ("skopeo/schema1", &schema1.manifest.digest),
    ] {
        let out = skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{host}/{repo}:v1"),
        ])
        .await;
        let inspected: Value = serde_json::from_str(&out).expect("skopeo inspect JSON");
        assert_eq!(inspected["Digest"], digest.as_str(), "{repo}");
    }
    // Resolving the list picks the amd64 entry, so skopeo must have parsed the list we built.
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/skopeo/list:v1"),
    ])
    .await;
    assert_eq!(raw.as_bytes(), &list.manifest.bytes[..]);
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{host}/skopeo/list:v1"),
    ])
    .await;
    let inspected: Value = serde_json::from_str(&out).expect("skopeo inspect JSON");
    assert_eq!(inspected["Architecture"], "amd64");

    // A full copy verifies every blob digest on the way.
    let dest = TempDir::new("skopeo-copy");
    let target = dest.path().join("oci");
    skopeo(&[
        "copy",
        "--insecure-policy",
        "--src-tls-verify=false",
        &format!("docker://{host}/skopeo/oci:v1"),
        &format!("dir:{}", target.display()),
    ])
    .await;
    for blob in oci.blobs() {
        let hex = blob.digest.trim_start_matches("sha256:");
        let copied = std::fs::read(target.join(hex)).expect("skopeo copied the blob");
        assert_eq!(sha256_digest(&copied), blob.digest);
    }
}

#[tokio::test]
async fn token_registry_serves_a_64_mib_layer() {
    let tokens = TokenServer::start_default().await;
    let registry = Registry::start_token(&tokens).await;
    let big = Image::with_layer_sizes(Format::Docker, 21, &[64 * 1024 * 1024, 512]);
    assert!(
        big.layers[0].data.len() > 64 * 1024 * 1024,
        "random data must not compress"
    );
    registry
        .pusher()
        .push_image("private/big", "latest", &big)
        .await;
    assert!(tokens.token_log().iter().any(|t| t
        .granted
        .iter()
        .any(|g| g.actions.contains(&"push".to_owned()))));

    // Anonymous pull goes through the challenge + anonymous token.
    registry.reset_counts().await;
    let before = tokens.token_requests();
    let anonymous = Pusher::new(&registry.url());
    assert_round_trip(
        &anonymous,
        "private/big",
        "latest",
        &big.manifest,
        DOCKER_MANIFEST,
    )
    .await;
    let layer = anonymous
        .get_blob("private/big", &big.layers[0].digest)
        .await;
    assert_eq!(layer.status, 200);
    assert_eq!(sha256_digest(&layer.body), big.layers[0].digest);
    assert_eq!(
        tokens.token_requests(),
        before + 1,
        "one anonymous token, then cached"
    );
    registry.settle().await;
    assert_eq!(registry.blob_gets(&big.layers[0].digest), 1);
    assert_eq!(registry.manifest_gets("latest"), 1);
    assert_eq!(
        registry.count("GET", "/manifests/latest"),
        2,
        "a 401 and then the authorised GET"
    );

    // An anonymous push scope is cut down to pull, and the registry refuses that token for uploads.
    let client = http_client();
    let token_url = format!(
        "{}?service={}&scope=repository:private/big:pull,push",
        tokens.realm(),
        tokens.service()
    );
    let body = client
        .get(token_url)
        .send()
        .await
        .expect("token request")
        .json::<Value>()
        .await
        .expect("token response is JSON");
    let token = body["token"].as_str().expect("token");
    assert_eq!(
        jwt_claims(token)["access"][0]["actions"],
        serde_json::json!(["pull"])
    );
    let url = format!("{}/v2/private/big/blobs/uploads/", registry.url());
    let resp = client
        .post(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("POST upload");
    assert_eq!(resp.status(), 401);

    let (user, pass) = registry
        .credentials()
        .expect("token registry has credentials");
    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &format!("{user}:{pass}"),
        &format!("docker://{}/private/big:latest", registry.host()),
    ])
    .await;
    let inspected: Value = serde_json::from_str(&out).expect("skopeo inspect JSON");
    assert_eq!(inspected["Digest"], big.manifest.digest.as_str());
}

#[tokio::test]
async fn token_server_grants_by_credentials() {
    let tokens = TokenServer::start(TokenServerConfig {
        anonymous_pull: false,
        ..TokenServerConfig::default()
    })
    .await;
    let client = http_client();
    let ask = |creds: Option<(&str, &str)>| {
        let url = format!(
            "{}?service={}&scope=repository:a/b:pull,push",
            tokens.realm(),
            tokens.service()
        );
        let req = client.get(url);
        let req = match creds {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        };
        async move {
            let resp = req.send().await.expect("token request");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, body) = ask(Some(("tester", "s3cret"))).await;
    assert_eq!(status, 200);
    let claims = jwt_claims(body["token"].as_str().expect("token"));
    assert_eq!(
        claims["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );
    assert_eq!(
        (claims["aud"].as_str(), claims["iss"].as_str()),
        (Some(tokens.service()), Some(tokens.issuer()))
    );
    assert_eq!(body["token"], body["access_token"]);

    let (status, body) = ask(None).await;
    assert_eq!(status, 200, "anonymous callers get a token without grants");
    assert_eq!(
        jwt_claims(body["token"].as_str().expect("token"))["access"],
        serde_json::json!([])
    );
    assert_eq!(ask(Some(("tester", "wrong"))).await.0, 401);

    tokens.set_failure(Some(503));
    assert_eq!(ask(None).await.0, 503);
    assert_eq!(tokens.token_requests(), 4);
}

#[tokio::test]
async fn access_log_counts_are_exact() {
    let registry = Registry::start_plain().await;
    let pusher = registry.pusher();
    let image = Image::small(Format::Oci, 31);
    pusher.push_image("count/me", "v1", &image).await;
    registry.reset_counts().await;
    assert!(
        registry.requests().is_empty(),
        "pushes are hidden after reset_counts"
    );

    for _ in 0..3 {
        pusher.get_blob("count/me", &image.layers[0].digest).await;
    }
    pusher.get_blob("count/me", &image.config.digest).await;
    pusher
        .get_blob("count/me", &sha256_digest(b"missing"))
        .await;
    http_client()
        .head(format!(
            "{}/v2/count/me/blobs/{}",
            registry.url(),
            image.layers[1].digest
        ))
        .send()
        .await
        .expect("HEAD");
    // No settle: the line is written before the response completes.
    assert_eq!(registry.blob_gets(&image.layers[0].digest), 3);
    assert_eq!(registry.blob_gets(&image.config.digest), 1);
    assert_eq!(
        registry.blob_gets(&image.layers[1].digest),
        0,
        "HEAD is not a GET"
    );
    assert_eq!(registry.count("HEAD", &image.layers[1].digest), 1);
    assert_eq!(
        registry.count("GET", "/blobs/"),
        5,
        "the 404 counts in count()"
    );
    let logged = registry.requests();
    assert_eq!(logged.len(), 6);
    assert!(logged
        .iter()
        .all(|r| r.user_agent == "breakwater-test-harness"));
}

#[tokio::test]
async fn proxy_registry_pulls_through() {
    let upstream = Registry::start_plain().await;
    let image = Image::small(Format::Docker, 41);
    upstream
        .pusher()
        .push_image("library/thing", "v1", &image)
        .await;
    upstream.reset_counts().await;

    let proxy = Registry::start_proxy(&upstream.url()).await;
    let pusher = proxy.pusher();
    assert_round_trip(
        &pusher,
        "library/thing",
        "v1",
        &image.manifest,
        DOCKER_MANIFEST,
    )
    .await;
    let layer = pusher
        .get_blob("library/thing", &image.layers[1].digest)
        .await;
    assert_eq!(sha256_digest(&layer.body), image.layers[1].digest);
    upstream.settle().await;
    assert!(
        upstream.blob_gets(&image.layers[1].digest) >= 1,
        "the proxy fetched from upstream"
    );
}

#[tokio::test]
async fn proxy_registry_logs_in_to_a_private_upstream() {
    let config = TokenServerConfig {
        anonymous_pull: false,
        ..TokenServerConfig::default()
    };
    let tokens = TokenServer::start(config).await;
    let upstream = Registry::start_token(&tokens).await;
    let image = Image::small(Format::Oci, 45);
    upstream
        .pusher()
        .push_image("private/thing", "v1", &image)
        .await;
    let anonymous = Pusher::new(&upstream.url())
        .get_manifest("private/thing", "v1", OCI_MANIFEST)
        .await;
    assert_eq!(anonymous.status, 401, "anonymous pull must be refused");

    let (user, pass) = upstream.credentials().expect("credentials");
    let proxy = Registry::start_proxy_with_credentials(&upstream.url(), &user, &pass).await;
    assert_round_trip(
        &proxy.pusher(),
        "private/thing",
        "v1",
        &image.manifest,
        OCI_MANIFEST,
    )
    .await;
    assert!(tokens
        .token_log()
        .iter()
        .any(|t| t.user.as_deref() == Some(user.as_str())));
}

#[tokio::test]
async fn registry_restart_keeps_content() {
    let mut registry = Registry::start_plain().await;
    let image = Image::small(Format::Oci, 51);
    registry.pusher().push_image("keep/me", "v1", &image).await;
    registry.stop();
    assert!(
        http_client()
            .get(format!("{}/v2/", registry.url()))
            .send()
            .await
            .is_err(),
        "stopped"
    );
    registry.restart().await;
    assert_round_trip(
        &registry.pusher(),
        "keep/me",
        "v1",
        &image.manifest,
        OCI_MANIFEST,
    )
    .await;
}

#[tokio::test]
async fn test_server_normal_and_raw_modes() {
    let server =
        TestServer::start(|req| Response::text(200, &format!("{} {}", req.method, req.path())))
            .await;
    let client = http_client();
    for _ in 0..2 {
        let body = client
            .get(format!("{}/a/b?x=1", server.url()))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        assert_eq!(body, "GET /a/b");
    }
    assert_eq!(server.count("GET", "/a/b"), 2);

    // Promise 100 bytes, send 10, close: the client must see an error, not a short success.
    let raw = TestServer::start_raw(|_req, mut stream| async move {
        let head = Response::new(200)
            .header("Content-Length", "100")
            .head_bytes();
        stream.write_all(&head).await.ok()?;
        stream.write_all(b"0123456789").await.ok()?;
        None
    })
    .await;
    let resp = client
        .get(format!("{}/truncated", raw.url()))
        .send()
        .await
        .expect("head arrives");
    assert!(
        resp.bytes().await.is_err(),
        "truncated body must be an error"
    );
}
