//! Lifecycle policies, quota, GC and the admin API against the real binary: images pulled by
//! skopeo from a real `docker-registry` through breakwater, then previewed, expired, evicted and
//! collected through the admin API and the `breakwater` admin commands.

mod api;
mod e2e;
mod quota;

use super::bw::Breakwater;
use std::path::Path;
use std::process::Command;

/// No scheduled runs and no grace period: tests trigger everything and see the effect at once.
pub const ON_DEMAND: &str =
    "\n[lifecycle]\napply_interval = \"0s\"\n\n[gc]\ninterval = \"0s\"\ngrace = \"0s\"\n";

/// `http://127.0.0.1:PORT` of the admin listener, read from the generated config.
pub fn admin_url(bw: &Breakwater) -> String {
    let text = std::fs::read_to_string(bw.config_path()).expect("read breakwater config");
    let addr = text
        .lines()
        .find_map(|l| l.strip_prefix("admin_listen = "))
        .expect("admin_listen in config")
        .trim_matches('"');
    format!("http://{addr}")
}

/// Runs `breakwater <args>`; returns (success, stdout, stderr).
pub fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(args)
        .output()
        .expect("run breakwater");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `breakwater <args> --json`, asserting success; returns the parsed output.
pub fn cli_json(args: &[&str]) -> serde_json::Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = cli(&a);
    assert!(ok, "breakwater {args:?} failed: {err}");
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("breakwater {args:?} printed non-JSON ({e}): {out}"))
}

/// `skopeo copy --all docker://<src> dir:<dest>`, asserting success.
pub fn skopeo_copy(src: &str, dest: &Path) {
    let out = Command::new("skopeo")
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{src}"))
        .arg(format!("dir:{}", dest.display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {src} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Calls the admin API; returns status and JSON body.
pub async fn api(
    method: reqwest::Method,
    url: &str,
    body: Option<String>,
) -> (u16, serde_json::Value) {
    let mut req = super::support::http_client().request(method, url);
    if let Some(b) = body {
        req = req.body(b);
    }
    let r = req.send().await.expect("admin API reachable");
    let status = r.status().as_u16();
    let text = r.text().await.expect("admin API body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("admin API answered {status} with non-JSON ({e}): {text}"));
    (status, value)
}

/// Bytes under the store's `blobs/`.
pub fn store_usage(root: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        std::fs::read_dir(p)
            .map(|d| {
                d.flatten()
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
            .unwrap_or(0)
    }
    walk(&root.join("blobs"))
}
