//! The admin API's answers to bad input: JSON errors with the right status and a message naming
//! the cause; and the CLI passing them on.

use super::{admin_url, api, cli, cli_json, ON_DEMAND};
use crate::bw::{local_upstream, Breakwater};
use crate::support::registry::Registry;
use crate::support::TempDir;
use reqwest::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_json_errors() {
    let reg = Registry::start_plain().await;
    let bw = Breakwater::start(&(local_upstream(&reg.url(), "10m", "") + ON_DEMAND)).await;
    let admin = admin_url(&bw);
    let url = |p: &str| format!("{admin}{p}");
    let check = |got: (u16, serde_json::Value), status: u16, needles: &[&str]| {
        assert_eq!(got.0, status, "{}", got.1);
        let msg = got.1["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", got.1));
        for n in needles {
            assert!(msg.contains(n), "{msg:?} should mention {n:?}");
        }
    };

    check(
        api(Method::GET, &url("/api/v1/nope"), None).await,
        404,
        &["/api/v1/nope"],
    );
    check(
        api(Method::GET, &url("/api/v1/gc"), None).await,
        405,
        &["use POST"],
    );
    check(
        api(Method::POST, &url("/api/v1/images"), None).await,
        405,
        &["use GET"],
    );
    // ECR-style validation: the rule and the field are named.
    let tagged_without_list = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}}]}"#;
    check(
        api(
            Method::PUT,
            &url("/api/v1/lifecycle/policy?scope=default"),
            Some(tagged_without_list.into()),
        )
        .await,
        400,
        &["rule 1", "tagPrefixList"],
    );
    check(
        api(
            Method::PUT,
            &url("/api/v1/lifecycle/policy?scope=default"),
            Some("{not json".into()),
        )
        .await,
        400,
        &["not valid JSON"],
    );
    check(
        api(
            Method::PUT,
            &url("/api/v1/lifecycle/policy"),
            Some("{}".into()),
        )
        .await,
        400,
        &["\"scope\""],
    );
    check(
        api(
            Method::PUT,
            &url("/api/v1/lifecycle/policy?scope=a//b"),
            Some(tagged_without_list.into()),
        )
        .await,
        400,
        &["a//b", "empty path segment"],
    );
    check(
        api(
            Method::POST,
            &url("/api/v1/lifecycle/preview"),
            Some(r#"{"bogus":1}"#.into()),
        )
        .await,
        400,
        &["bogus"],
    );
    check(
        api(
            Method::POST,
            &url("/api/v1/lifecycle/preview"),
            Some(r#"{"policy":{"rules":[]}}"#.into()),
        )
        .await,
        400,
        &["at least one rule"],
    );
    check(
        api(
            Method::POST,
            &url("/api/v1/gc"),
            Some("x".repeat(2 * 1024 * 1024)),
        )
        .await,
        413,
        &["larger than"],
    );
    check(
        api(
            Method::GET,
            &url(&format!(
                "/api/v1/images/local/none@sha256:{}",
                "0".repeat(64)
            )),
            None,
        )
        .await,
        404,
        &["no cached repository local/none"],
    );
    check(
        api(Method::GET, &url("/api/v1/images/justaname"), None).await,
        400,
        &["names no image"],
    );
    check(
        api(
            Method::DELETE,
            &url("/api/v1/lifecycle/policy?scope=default"),
            None,
        )
        .await,
        404,
        &["no lifecycle policy for default"],
    );
    check(
        api(
            Method::POST,
            &url("/api/v1/pins"),
            Some(r#"{"target":"a//b"}"#.into()),
        )
        .await,
        400,
        &["a//b"],
    );
    check(
        api(Method::POST, &url("/api/v1/pins"), Some("{}".into())).await,
        400,
        &["target"],
    );
    check(
        api(
            Method::POST,
            &url("/api/v1/pins"),
            Some(r#"{"target":"nginx:latest"}"#.into()),
        )
        .await,
        400,
        &["nginx:latest", "<upstream>/<repository>@<digest>", "'/'"],
    );
    check(
        api(Method::DELETE, &url("/api/v1/pins/nothing"), None).await,
        404,
        &["no pin"],
    );
    check(
        api(Method::GET, &url("/api/v1/events?limit=lots"), None).await,
        400,
        &["limit"],
    );

    // What works: a valid policy round-trips in ECR's shape, and the old endpoints remain.
    let good = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#;
    let (s, v) = api(
        Method::PUT,
        &url("/api/v1/lifecycle/policy?scope=local/**"),
        Some(good.into()),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api(
        Method::GET,
        &url("/api/v1/lifecycle/policy?repository=local/team/app"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["scope"], "local/**");
    assert_eq!(
        v["policy"],
        serde_json::from_str::<serde_json::Value>(good).unwrap()
    );
    let (s, v) = api(Method::GET, &url("/api/v1/storage"), None).await;
    assert_eq!((s, v["gc_grace_s"].clone()), (200, 0.into()), "{v}");
    let health = reqwest::get(url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(bw.metrics().await.contains("breakwater_store_bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_api_errors_and_unreachable_servers() {
    let reg = Registry::start_plain().await;
    let bw = Breakwater::start(&(local_upstream(&reg.url(), "10m", "") + ON_DEMAND)).await;
    let admin = admin_url(&bw);
    let tmp = TempDir::new("cli");
    let bad = tmp.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countNumber":7},"action":{"type":"expire"}}]}"#,
    )
    .unwrap();
    let (ok, _, err) = cli(&["lifecycle", "put", "--admin", &admin, bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("rule 1") && err.contains("countUnit") && err.contains("400"),
        "{err}"
    );

    // A pin target without its upstream is refused, naming the expected form.
    let (ok, _, err) = cli(&["pin", "--admin", &admin, "nginx:latest"]);
    assert!(
        !ok && err.contains("400") && err.contains("<upstream>/<repository>:<tag>"),
        "{err}"
    );
    // A pattern that matches nothing is pinned, with a warning.
    let (ok, out, err) = cli(&["pin", "--admin", &admin, "docker.io/library/*"]);
    assert!(ok && out.contains("pinned docker.io/library/*"), "{err}");
    assert!(
        err.contains("warning: no cached repository matches"),
        "{err}"
    );
    let (ok, _, err) = cli(&["images", "delete", "--admin", &admin, "local/none:x"]);
    assert!(
        !ok && err.contains("no cached repository local/none") && err.contains("404"),
        "{err}"
    );
    // Preview at another time, in RFC 3339 or unix ms.
    let at = cli_json(&[
        "lifecycle",
        "preview",
        "--admin",
        &admin,
        "--at",
        "2030-01-01T00:00:00Z",
    ]);
    assert_eq!(at["at_ms"], 1_893_456_000_000i64, "{at}");
    let at = cli_json(&["lifecycle", "preview", "--admin", &admin, "--at", "1234"]);
    assert_eq!(at["at_ms"], 1234, "{at}");
    let (ok, _, err) = cli(&["lifecycle", "preview", "--admin", &admin, "--at", "soon"]);
    assert!(!ok && err.contains("RFC 3339"), "{err}");

    let (ok, _, err) = cli(&["images", "--admin", "http://127.0.0.1:9"]);
    assert!(!ok && err.contains("cannot reach the admin API"), "{err}");

    let (ok, out, err) = cli(&["lifecycle", "get", "--admin", &admin]);
    assert!(ok, "{err}");
    assert!(out.starts_with("SCOPE"), "{out}");
    let (ok, _, err) = cli(&[
        "lifecycle",
        "get",
        "--admin",
        &admin,
        "--repository",
        "local/x/y",
    ]);
    assert!(
        !ok && err.contains("no lifecycle policy applies to repository local/x/y"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_guards_the_api_but_not_metrics() {
    let reg = Registry::start_plain().await;
    let dir = TempDir::new("admin-token");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "s3cret-admin-token\n").unwrap();
    let bw = Breakwater::start_with(
        &format!("admin_token_file = \"{}\"", token_file.display()),
        &(local_upstream(&reg.url(), "10m", "") + ON_DEMAND),
    )
    .await;
    let admin = admin_url(&bw);
    let client = crate::support::http_client();
    let get = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("{admin}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    for path in ["/api/v1/images", "/api/v1/scan/status"] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without a token");
        assert!(r.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = r.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        let r = get(path, Some("s3cret-admin-tokeX")).await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong token");
        let r = get(path, Some("s3cret-admin-token")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} with the token");
    }
    // Scrapers and probes need no secret.
    assert_eq!(get("/metrics", None).await.unwrap().status().as_u16(), 200);
    assert_eq!(get("/healthz", None).await.unwrap().status().as_u16(), 200);

    // The CLI sends the token of the config it is given, and fails clearly without it.
    let config = bw.config_path().to_str().unwrap().to_string();
    let listed = cli_json(&["images", "--config", &config]);
    assert!(listed["images"].is_array(), "{listed}");
    let (ok, _, err) = cli(&["images", "--admin", &admin]);
    assert!(!ok && err.contains("401"), "{err}");
    assert!(
        !bw.log_text().contains("s3cret-admin-token"),
        "token logged"
    );
}
