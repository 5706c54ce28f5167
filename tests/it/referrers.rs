//! The OCI 1.1 referrers API through the cache: passed through (all pages) from a fake upstream
//! that has the API, cached for the TTL of the `sha256-*` tag rules, filtered by `artifactType`,
//! served stale when upstream fails, and only from cache for a client that may not fill; from
//! the real docker-registry 2.8 (no referrers API) through the `sha256-<hex>` tag scheme, with the
//! referenced artifacts then pulled through by digest.

use super::access::htpasswd_file;
use super::bw::{local_upstream, Breakwater};
use super::support::http::{Request, Response, TestServer};
use super::support::image::{Blob, Format, Image, Manifest};
use super::support::registry::Registry;
use super::support::{http_client, sha256_digest, TempDir};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SIG: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
const SBOM: &str = "application/spdx+json";

fn index(manifests: &[Value]) -> Value {
    json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests})
}

fn descriptor(seed: &str, artifact_type: &str) -> Value {
    json!({
        "mediaType": OCI_MANIFEST,
        "digest": sha256_digest(seed.as_bytes()),
        "size": 321,
        "artifactType": artifact_type,
        "annotations": {"org.opencontainers.image.created": "2026-11-01T00:00:00Z"}
    })
}

/// GETs a referrers path on breakwater: status, headers and the body as JSON (null if not).
async fn get(
    client: &reqwest::Client,
    url: &str,
    user: Option<(&str, &str)>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = client.get(url);
    if let Some((u, p)) = user {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.expect("referrers request");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let body = r.bytes().await.expect("referrers body");
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn digests(body: &Value) -> Vec<String> {
    body["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests in {body}"))
        .iter()
        .map(|m| m["digest"].as_str().expect("digest").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_api_passed_through_cached_filtered_and_served_stale() {
    let subject = sha256_digest(b"subject image");
    let quiet = sha256_digest(b"image nobody signed");
    let (sig, sbom) = (descriptor("sig", SIG), descriptor("sbom", SBOM));
    let failing = Arc::new(AtomicBool::new(false));
    let (s, q, f) = (subject.clone(), quiet.clone(), failing.clone());
    let (page1, page2) = (
        index(std::slice::from_ref(&sig)),
        index(std::slice::from_ref(&sbom)),
    );
    let fake = TestServer::start(move |req: Request| {
        if f.load(Ordering::SeqCst) {
            return Response::json(500, &json!({"errors": [{"code": "UNKNOWN"}]}));
        }
        let ct = |r: Response| r.header("Content-Type", OCI_INDEX);
        if req.path() == format!("/v2/team/app/referrers/{s}") {
            // Two pages, as a registry that pages its answer sends them.
            return match req.query("last") {
                None => ct(Response::json(200, &page1)).header(
                    "Link",
                    &format!("</v2/team/app/referrers/{s}?n=1&last=x>; rel=\"next\""),
                ),
                Some(_) => ct(Response::json(200, &page2)),
            };
        }
        if req.path() == format!("/v2/team/app/referrers/{q}") {
            return ct(Response::json(200, &index(&[])));
        }
        Response::new(404)
    })
    .await;
    let tmp = TempDir::new("referrers");
    let htpasswd = htpasswd_file(tmp.path(), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    // Referrers follow the rules of their tag, sha256-<hex>: a 2 s TTL here, stale for an hour.
    // A long grace keeps a slow machine's revalidation from being answered stale.
    let extra = format!(
        "revalidate_grace = \"10s\"\n\n[[upstreams.local.tag_policies]]\ntags = [\"sha256-*\"]\nttl = \"2s\"\nmax_stale = \"1h\"\n\n\
         [access]\nhtpasswd = \"{}\"\nchallenge = \"basic\"\n\n\
         [[access.rules]]\nwho = [\"user:alice\"]\nrepositories = [\"local/**\"]\nactions = [\"pull\", \"fill\"]\n\n\
         [[access.rules]]\nwho = [\"user:bob\"]\nrepositories = [\"local/**\"]\nactions = [\"pull\"]\n",
        htpasswd.display()
    );
    let bw = Breakwater::start(&local_upstream(&fake.url(), "10m", &extra)).await;
    let client = http_client();
    let url = |d: &str, q: &str| format!("{}/v2/local/team/app/referrers/{d}{q}", bw.url());
    let asked = || fake.count("GET", &format!("/referrers/{subject}"));
    let alice = Some(("alice", "alice-pw"));
    let bob = Some(("bob", "bob-pw"));

    // Cold: both pages fetched and merged, descriptors passed through with their annotations.
    let (status, h, body) = get(&client, &url(&subject, ""), alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "content-type"), Some(OCI_INDEX));
    assert_eq!(header(&h, "x-breakwater-cache"), Some("miss"));
    assert_eq!(header(&h, "oci-filters-applied"), None);
    assert_eq!(body["mediaType"], OCI_INDEX);
    assert_eq!(body["manifests"], json!([sig, sbom]));
    assert_eq!(asked(), 2, "{:?}", fake.requests());

    // Warm, filtered by the cache: one entry, the filter header, no upstream request.
    let (status, h, body) = get(
        &client,
        &url(&subject, &format!("?artifactType={SBOM}")),
        alice,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-breakwater-cache"), Some("hit"));
    assert_eq!(header(&h, "oci-filters-applied"), Some("artifactType"));
    assert_eq!(body["manifests"], json!([sbom]));
    let (_, h, body) = get(
        &client,
        &url(&subject, "?artifactType=application/none"),
        alice,
    )
    .await;
    assert_eq!(header(&h, "oci-filters-applied"), Some("artifactType"));
    assert_eq!(body["manifests"], json!([]));
    assert_eq!(asked(), 2);

    // A subject upstream knows no referrers for: an empty index, and no tag-scheme request.
    let (status, _, body) = get(&client, &url(&quiet, ""), alice).await;
    assert_eq!((status, body["manifests"].clone()), (200, json!([])));
    assert_eq!(fake.count("GET", "/manifests/"), 0);

    // bob may pull but not fill: the cached answer, but nothing upstream would have to give.
    let (status, h, body) = get(&client, &url(&subject, ""), bob).await;
    assert_eq!(
        (status, header(&h, "x-breakwater-cache")),
        (200, Some("hit"))
    );
    assert_eq!(digests(&body).len(), 2);
    let unseen = sha256_digest(b"never asked for");
    let (status, _, body) = get(&client, &url(&unseen, ""), bob).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errors"][0]["code"], "DENIED");
    assert_eq!(fake.count("GET", &unseen), 0);

    // Past the TTL, upstream is asked again and confirms the same answer.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, h, _) = get(&client, &url(&subject, ""), alice).await;
    assert_eq!(
        (status, header(&h, "x-breakwater-cache")),
        (200, Some("revalidated"))
    );
    assert_eq!(asked(), 4, "{:?}", fake.requests());

    // Upstream fails: past the TTL the cached answer is served stale, filter still applied.
    failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let encoded = format!(
        "?artifactType={}",
        SIG.replace('/', "%2F").replace('+', "%2B")
    );
    let (status, h, body) = get(&client, &url(&subject, &encoded), alice).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-breakwater-cache"), Some("stale"));
    assert!(
        header(&h, "warning").is_some_and(|w| w.starts_with("110 ")),
        "{h:?}"
    );
    assert_eq!(header(&h, "oci-filters-applied"), Some("artifactType"));
    assert_eq!(body["manifests"], json!([sig]));
    assert!(asked() > 4, "upstream was not asked");
    // Nothing cached to fall back on: an OCI error, not a guess.
    let (status, _, body) = get(&client, &url(&unseen, ""), alice).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    assert!(bw.metric("breakwater_stale_served_total", &[]).await >= 1.0);
}

/// An artifact manifest whose `subject` is `subject` (an OCI 1.1 artifact: empty config).
fn artifact(artifact_type: &str, payload: &Blob, empty: &Blob, subject: &Manifest) -> Manifest {
    let value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": empty.descriptor(),
        "layers": [payload.descriptor()],
        "subject": subject.descriptor(),
        "annotations": {"org.example.kind": artifact_type}
    });
    let bytes = bytes::Bytes::from(serde_json::to_vec(&value).unwrap());
    Manifest {
        media_type: OCI_MANIFEST.into(),
        digest: sha256_digest(&bytes),
        bytes,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_scheme_fallback_against_real_registry_and_artifacts_pull_through() {
    let reg = Registry::start_plain().await;
    let pusher = reg.pusher();
    let image = Image::small(Format::Oci, 81);
    let subject = pusher.push_image("team/app", "v1", &image).await;
    assert_eq!(subject, image.manifest.digest);
    let lonely = Image::small(Format::Oci, 82);
    let lonely_digest = pusher.push_image("team/app", "v2", &lonely).await;

    // What a client without the referrers API pushes: the artifacts, then the tag's index.
    let empty = Blob::new("application/vnd.oci.empty.v1+json", &b"{}"[..]);
    let signature = Blob::new(
        "application/vnd.dev.cosign.simplesigning.v1+json",
        &b"{\"critical\":{}}"[..],
    );
    let spdx = Blob::new(SBOM, &b"{\"spdxVersion\":\"SPDX-2.3\"}"[..]);
    let (sig, sbom) = (
        artifact(SIG, &signature, &empty, &image.manifest),
        artifact(SBOM, &spdx, &empty, &image.manifest),
    );
    for b in [&empty, &signature, &spdx] {
        pusher.push_blob("team/app", b).await;
    }
    for m in [&sig, &sbom] {
        pusher.push_manifest("team/app", &m.digest, m).await;
    }
    let entry = |m: &Manifest, at: &str| {
        let mut d = m.descriptor();
        d["artifactType"] = json!(at);
        d
    };
    let tag_index = serde_json::to_vec(&index(&[entry(&sig, SIG), entry(&sbom, SBOM)])).unwrap();
    let tag = format!("sha256-{}", subject.trim_start_matches("sha256:"));
    let tag_manifest = Manifest {
        media_type: OCI_INDEX.into(),
        digest: sha256_digest(&tag_index),
        bytes: tag_index.into(),
    };
    pusher.push_manifest("team/app", &tag, &tag_manifest).await;
    reg.settle().await;
    reg.reset_counts().await;

    let bw = Breakwater::start(&local_upstream(&reg.url(), "10m", "")).await;
    let client = http_client();
    let url = |d: &str, q: &str| format!("{}/v2/local/team/app/referrers/{d}{q}", bw.url());

    // distribution 2.8 has no referrers API (404): the tag's index is the answer.
    let (status, h, body) = get(&client, &url(&subject, ""), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "content-type"), Some(OCI_INDEX));
    assert_eq!(header(&h, "x-breakwater-cache"), Some("miss"));
    assert_eq!(header(&h, "oci-filters-applied"), None);
    assert_eq!(digests(&body), [sig.digest.clone(), sbom.digest.clone()]);
    assert_eq!(body["manifests"][0]["artifactType"], SIG);
    reg.settle().await;
    assert_eq!(
        reg.count("GET", &format!("/v2/team/app/referrers/{subject}")),
        1
    );
    assert_eq!(reg.manifest_gets(&tag), 1);

    // Filtered by breakwater itself, from cache.
    let (status, h, body) = get(
        &client,
        &url(&subject, &format!("?artifactType={SBOM}")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "x-breakwater-cache"), Some("hit"));
    assert_eq!(header(&h, "oci-filters-applied"), Some("artifactType"));
    assert_eq!(digests(&body), [sbom.digest.as_str()]);
    reg.settle().await;
    assert_eq!(
        reg.manifest_gets(&tag),
        1,
        "the cached answer went upstream"
    );

    // The referenced artifact pulls through by digest, its bytes and its payload intact.
    let r = client
        .get(format!(
            "{}/v2/local/team/app/manifests/{}",
            bw.url(),
            sbom.digest
        ))
        .header("Accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(r.headers(), "docker-content-digest"),
        Some(sbom.digest.as_str())
    );
    assert_eq!(r.bytes().await.unwrap(), sbom.bytes);
    let r = client
        .get(format!(
            "{}/v2/local/team/app/blobs/{}",
            bw.url(),
            spdx.digest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap(), spdx.data);

    // HEAD: the headers alone.
    let r = client.head(url(&subject, "")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(r.headers(), "content-type"), Some(OCI_INDEX));
    assert_eq!(header(r.headers(), "x-breakwater-cache"), Some("hit"));

    // No referrers tag: an empty list, not an error.
    let (status, h, body) = get(&client, &url(&lonely_digest, ""), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&h, "content-type"), Some(OCI_INDEX));
    assert_eq!(body["manifests"], json!([]));
    // The registry's missing referrers endpoint was learnt: only the tag was asked this time.
    reg.settle().await;
    assert_eq!(reg.count("GET", "/referrers/"), 1);
    let lonely_tag = format!("sha256-{}", &lonely_digest["sha256:".len()..]);
    assert_eq!(reg.count("GET", &format!("/manifests/{lonely_tag}")), 1);

    // Bad input: a clear OCI error.
    let (status, _, body) = get(&client, &url("sha256:xyz", ""), None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["code"], "DIGEST_INVALID");
    let (status, _, body) = get(&client, &url("latest", ""), None).await;
    assert_eq!(
        (status, body["errors"][0]["code"].clone()),
        (400, json!("DIGEST_INVALID"))
    );
}
