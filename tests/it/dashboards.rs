//! The Grafana dashboard (`dashboards/breakwater.json`) and the alerting rules
//! (`dashboards/alerts.yml`) checked by a real Prometheus (Debian's `prometheus`, on loopback)
//! scraping the real binary under traffic: cold and warm pulls by skopeo, a tag revalidation, a
//! failing upstream (stale answers, errors, the breaker gauge), Docker Hub rate-limit headers,
//! a scan on cache, a gate warning, a rematch after new advisories, a lifecycle expiry and a GC
//! run. Every panel query must parse and return data; every alert rule must load, evaluate
//! without error, and parse as a query (it need not fire), and `promtool check rules` must pass.
//!
//! The list of queries with the number of series each returned is printed (run with
//! `--nocapture` to see it).

use super::bw::{local_upstream, Breakwater};
use super::lifecycle::{admin_url, api, skopeo_copy};
use super::support::http::{Request, Response, TestServer};
use super::support::image::{Format, Image, Layer, LINUX_AMD64};
use super::support::registry::Registry;
use super::support::{free_port, http_client, sha256_digest, wait_for_port, TempDir};
use bytes::Bytes;
use reqwest::Method;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What Grafana's `$__rate_interval`, `$__interval` and `$__range` become in the check: wide
/// enough that all of the test's traffic lies inside the window.
const MACROS: [(&str, &str); 3] = [
    ("$__rate_interval", "5m"),
    ("$__interval", "15s"),
    ("$__range", "1h"),
];

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Whether `cmd --version` runs.
fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Reports a test that cannot run here; a failure where CI requires the tools.
fn skip(why: &str) {
    if std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_some() {
        panic!("required test tool missing: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// A Prometheus server on loopback scraping one target every second, with the alerting rules
/// loaded; killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: TempDir,
}

impl Prometheus {
    async fn start(target: &str, rules: &Path) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: breakwater\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules.display()
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create prometheus log"))
            .spawn()
            .expect("spawn prometheus");
        let p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        };
        assert!(
            wait_for_port(port, Duration::from_secs(30)).await,
            "prometheus did not listen; log:\n{}",
            p.log_text()
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = http_client()
                .get(format!("{}/-/ready", p.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "prometheus not ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        p
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `GET /api/v1/<path>` with query parameters; the whole JSON answer.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let r = http_client()
            .get(format!("{}/api/v1/{path}", self.url))
            .query(params)
            .send()
            .await
            .expect("prometheus API reachable");
        r.json().await.expect("prometheus API answers JSON")
    }

    /// An instant query now: the answer's status and the series (or scalar) it returned.
    async fn query(&self, expr: &str) -> (String, Vec<Value>) {
        let v = self.api("query", &[("query", expr)]).await;
        let status = v["status"].as_str().unwrap_or("").to_string();
        let result = match &v["data"]["result"] {
            Value::Array(a) => a.clone(),
            Value::Null => Vec::new(),
            scalar => vec![scalar.clone()],
        };
        if status != "success" {
            eprintln!("query failed: {expr}\n{v}");
        }
        (status, result)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- prometheus log ---\n{}", self.log_text());
        }
    }
}

/// A Debian 12 image whose zlib1g SYNTH-DEB-0005 (CRITICAL) affects; `seed` makes it unique.
fn vulnerable_image(seed: u8) -> Image {
    let os_release = "ID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n";
    let status = "Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n\nPackage: libsystemd0\nStatus: install ok installed\nArchitecture: amd64\nSource: systemd\nVersion: 252.39-1~deb12u2\n";
    let base = Layer::from_files(&[
        ("etc/os-release", os_release.as_bytes()),
        ("var/lib/dpkg/status", status.as_bytes()),
    ]);
    let app = Layer::from_files(&[("srv/app/VERSION", &[b'd', seed])]);
    Image::build(Format::Oci, LINUX_AMD64, vec![base, app])
}

/// Copies SYNTH-DEB-<n>.json from the test data into `dir`.
fn add_record(dir: &Path, n: u32) {
    let name = format!("SYNTH-DEB-{n:04}.json");
    let from = repo_file("testdata/vulndb/osv/Debian-synthetic-edgecases").join(&name);
    std::fs::copy(&from, dir.join(&name)).unwrap_or_else(|e| panic!("copy {name}: {e}"));
}

/// A fake Docker Hub: one manifest, answered with rate-limit headers, or 503 while `failing`.
async fn fake_hub(failing: Arc<AtomicBool>) -> TestServer {
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[]}"#;
    let digest = sha256_digest(manifest);
    TestServer::start(move |req: Request| {
        if failing.load(Ordering::SeqCst) {
            return Response::new(503);
        }
        if req.path().ends_with("/manifests/latest") {
            Response::new(200)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Docker-Content-Digest", &digest)
                .header("ratelimit-limit", "100;w=21600")
                .header("ratelimit-remaining", "87;w=21600")
                .body(Bytes::from_static(manifest))
        } else {
            Response::new(404)
        }
    })
    .await
}

/// Every query of the dashboard: (panel title, refId, expression with the macros replaced and
/// template variables matching everything).
fn dashboard_queries(dash: &Value) -> Vec<(String, String, String)> {
    let vars: Vec<String> = dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_string))
        .collect();
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dash["panels"].as_array().expect("panels").iter().collect();
    // Collapsed rows hold their panels inside.
    let nested: Vec<&Value> = panels
        .iter()
        .filter_map(|p| p["panels"].as_array())
        .flatten()
        .collect();
    panels.extend(nested);
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            let mut expr = t["expr"]
                .as_str()
                .expect("every target has an expr")
                .to_string();
            for (macro_name, value) in MACROS {
                expr = expr.replace(macro_name, value);
            }
            for v in &vars {
                expr = expr
                    .replace(&format!("${{{v}}}"), ".*")
                    .replace(&format!("${v}"), ".*");
            }
            assert!(
                !expr.contains('$'),
                "unreplaced variable in {title}: {expr}"
            );
            let ref_id = t["refId"].as_str().unwrap_or("?").to_string();
            out.push((title.clone(), ref_id, expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_rule_works_against_a_real_prometheus() {
    if !have("prometheus") || !have("promtool") {
        skip("no prometheus/promtool (apt-get install prometheus)");
        return;
    }
    let rules = repo_file("dashboards/alerts.yml");
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool");
    let promtool = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{promtool}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("promtool check rules dashboards/alerts.yml:\n{promtool}");
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("dashboards/breakwater.json")).expect("dashboard"),
    )
    .expect("dashboard is JSON");
    assert_eq!(dash["schemaVersion"], 39);
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 20, "{} queries", queries.len());

    // Upstreams: the real registry as `local`, a fake Docker Hub as `hub`.
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    let app = vulnerable_image(1);
    p.push_image("team/app", "v1", &app).await;
    p.push_image("team/gated", "v1", &vulnerable_image(2)).await;
    p.push_image("team/many", "v1", &Image::small(Format::Oci, 71))
        .await;
    p.push_image("team/many", "v2", &Image::small(Format::Oci, 72))
        .await;
    let failing = Arc::new(AtomicBool::new(false));
    let hub = fake_hub(failing.clone()).await;
    let osv = TempDir::new("osv");
    add_record(osv.path(), 5);
    let body = format!(
        "max_bytes = \"1GiB\"\n{local}\n[upstreams.hub]\nurl = \"{hub}\"\naliases = [\"hub\"]\nlibrary_namespace = true\ntag_ttl = \"1s\"\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"2s\"\nbreaker_failures = 2\nbreaker_backoff = \"30s\"\n\n\
[lifecycle]\napply_interval = \"0s\"\n\n[[lifecycle.policies]]\nrepositories = \"local/team/many\"\npolicy = '''{{\"rules\": [{{\"rulePriority\": 1, \"selection\": {{\"tagStatus\": \"any\", \"countType\": \"imageCountMoreThan\", \"countNumber\": 1}}, \"action\": {{\"type\": \"expire\"}}}}]}}'''\n\n\
[gc]\ninterval = \"0s\"\ngrace = \"0s\"\n\n\
[scan]\nosv_paths = [\"{osv}\"]\non_cache = [\"local/team/app\"]\nrescan_interval = \"200ms\"\n\n[[scan.gates]]\nrepositories = \"local/team/gated\"\nmode = \"warn\"\n\n\
[access]\n[[access.rules]]\nwho = [\"everyone\"]\nrepositories = [\"local/team/**\", \"hub/**\"]\nactions = [\"pull\", \"fill\"]\n",
        local = local_upstream(&reg.url(), "1s", ""),
        hub = hub.url(),
        osv = osv.path().display(),
    );
    let bw = Breakwater::start(&body).await;
    let admin = admin_url(&bw);
    let prom = Prometheus::start(admin.trim_start_matches("http://"), &rules).await;
    // Traffic starts once Prometheus has scraped the idle cache, so the counters' increases show.
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.query("up{job=\"breakwater\"} == 1").await.1.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no scrape; log:\n{}",
            prom.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client = http_client();
    let tmp = TempDir::new("pulls");

    // Cold, then warm pulls by a real client; the first is scanned on cache.
    let src = format!("{}/local/team/app:v1", bw.host());
    skopeo_copy(&src, &tmp.path().join("cold"));
    skopeo_copy(&src, &tmp.path().join("warm"));
    // The tag's TTL (1s) lapses: the next pull revalidates it with upstream.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let manifest_url = format!("{}/v2/local/team/app/manifests/v1", bw.url());
    let r = client
        .get(&manifest_url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-breakwater-cache"], "revalidated");
    for path in ["/v2/local/team/app/tags/list", "/v2/_catalog"] {
        let r = client.get(format!("{}{path}", bw.url())).send().await;
        assert_eq!(r.unwrap().status(), 200, "{path}");
    }
    // Access control: a repository no rule covers is refused (a denial and its audit event), and
    // a cached layer asked for under a repository upstream does not hold is a refused link check.
    let r = client
        .get(format!("{}/v2/local/private/x/manifests/v1", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let layer = &app.layers[0].digest;
    let r = client
        .get(format!("{}/v2/local/team/ghost/blobs/{layer}", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A gated image: scanned before it is served, and let through with a warning.
    let r = client
        .get(format!("{}/v2/local/team/gated/manifests/v1", bw.url()))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-breakwater-scan"));

    // Docker Hub's rate-limit headers, then an outage: a stale answer and a failed pull.
    let hub_url = |tag: &str| format!("{}/v2/hub/library/nginx/manifests/{tag}", bw.url());
    assert_eq!(
        client.get(hub_url("latest")).send().await.unwrap().status(),
        200
    );
    failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = client.get(hub_url("latest")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-breakwater-cache"], "stale");
    let r = client.get(hub_url("other")).send().await.unwrap();
    assert!(r.status().is_server_error(), "{}", r.status());

    // Lifecycle: two images where the policy keeps one; then GC reclaims the expired one.
    for tag in ["v1", "v2"] {
        let src = format!("{}/local/team/many:{tag}", bw.host());
        skopeo_copy(&src, &tmp.path().join(format!("many-{tag}")));
    }
    let (status, applied) = api(
        Method::POST,
        &format!("{admin}/api/v1/lifecycle/apply"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(applied["expiring_images"], 1, "{applied}");
    let (status, gc) = api(Method::POST, &format!("{admin}/api/v1/gc"), None).await;
    assert_eq!(status, 200, "{gc}");
    assert!(gc["freed_bytes"].as_u64().unwrap_or(0) > 0, "{gc}");

    // New advisories: stored inventories are matched again and the change is counted.
    let deadline = Instant::now() + Duration::from_secs(30);
    while bw.metric("breakwater_scans_total", &[]).await < 2.0 {
        assert!(Instant::now() < deadline, "scans did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    add_record(osv.path(), 2);
    while bw
        .metric("breakwater_scan_finding_changes_total", &["change=\"new\""])
        .await
        < 1.0
    {
        assert!(Instant::now() < deadline, "no rematch after new advisories");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Prometheus has scraped the end state a few times (every series created during the traffic
    // then has two samples or more), and evaluated the rules on it. `timestamp()` of a bare
    // selector is the time of the newest sample.
    let done = now_secs();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, up) = prom.query("timestamp(up{job=\"breakwater\"})").await;
        let last = up
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if last >= done + 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not scrape breakwater; log:\n{}",
            prom.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, r) = prom
        .query("breakwater_scan_finding_changes_total{change=\"new\"} > 0")
        .await;
    assert!(!r.is_empty(), "the end state was not scraped");

    // The template variable's source has values.
    let v = prom
        .api(
            "label/instance/values",
            &[("match[]", "breakwater_store_bytes")],
        )
        .await;
    assert!(v["data"].as_array().is_some_and(|a| !a.is_empty()), "{v}");

    // Every panel query parses and returns data.
    println!("Dashboard queries (series returned):");
    let mut empty = Vec::new();
    for (title, ref_id, expr) in &queries {
        let (status, result) = prom.query(expr).await;
        assert_eq!(status, "success", "{title} {ref_id}: {expr}");
        println!("{:>4}  {title} [{ref_id}]: {expr}", result.len());
        if result.is_empty() {
            empty.push(format!("{title} [{ref_id}]: {expr}"));
        }
    }
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );

    // Every alert rule loaded, evaluated without error, and its expression parses as a query.
    let v = prom.api("rules", &[]).await;
    let rules: Vec<&Value> = v["data"]["groups"]
        .as_array()
        .expect("rule groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    let found = promtool
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[1] == "rules")
        .and_then(|w| w[0].parse::<usize>().ok());
    assert_eq!(Some(rules.len()), found, "rules loaded vs promtool: {v}");
    println!("Alert rules (series matching now, and the state Prometheus gives the alert):");
    for rule in rules {
        let name = rule["name"].as_str().unwrap_or("?");
        let expr = rule["query"].as_str().expect("rule query");
        assert_eq!(rule["type"], "alerting", "{name}");
        assert_eq!(rule["health"], "ok", "{name}: {rule}");
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].is_string(), "{name} lacks {key}");
        }
        assert!(rule["labels"]["severity"].is_string(), "{name}");
        assert!(rule["duration"].as_f64().is_some_and(|d| d > 0.0), "{name}");
        let (status, result) = prom.query(expr).await;
        assert_eq!(status, "success", "{name}: {expr}");
        println!("{:>4}  {name} ({}): {expr}", result.len(), rule["state"]);
    }
}

/// Unix seconds as a float (Prometheus' sample timestamps).
fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}
