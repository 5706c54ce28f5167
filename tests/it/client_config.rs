//! `breakwater client-config`: the generated files fed to the real clients. The upstream is known
//! to the clients only as `registry.test.internal`, a name that resolves nowhere, so a pull can
//! only succeed through the mirror the generated file names.

use super::bw::{local_upstream, Breakwater};
use super::clients::Containerd;
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::{sha256_digest, TempDir};
use std::path::Path;
use std::process::Command;

const HOST: &str = "registry.test.internal";

async fn start(seed: u64) -> (Registry, Image, Breakwater) {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, seed);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let bw = Breakwater::start(&local_upstream(
        &reg.url(),
        "10m",
        &format!("hosts = [\"{HOST}\"]"),
    ))
    .await;
    (reg, img, bw)
}

/// Runs `breakwater client-config <client> --url <bw> --config <bw's config> --out <out>`.
fn generate(bw: &Breakwater, client: &str, out: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["client-config", client, "--url", &bw.url(), "--config"])
        .arg(bw.config_path())
        .arg("--out")
        .arg(out)
        .output()
        .expect("run breakwater client-config");
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success(),
        "client-config {client}: {}{stdout}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_pulls_through_the_generated_registries_conf() {
    let (reg, img, bw) = start(61).await;
    let tmp = TempDir::new("clientcfg-podman");
    let out = tmp.path().join("gen");
    let listed = generate(&bw, "podman", &out);
    let conf = out.join("registries.conf");
    assert!(
        listed.contains(&format!("wrote {}", conf.display())),
        "{listed}"
    );
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains(&format!("location = \"{}/local\"", bw.host())),
        "{text}"
    );
    let o = Command::new("skopeo")
        .arg("--registries-conf")
        .arg(&conf)
        .args(["copy", &format!("docker://{HOST}/team/app:v1")])
        .arg(format!("dir:{}", tmp.path().join("img").display()))
        .output()
        .expect("run skopeo");
    assert!(
        o.status.success(),
        "skopeo: {}\n{text}",
        String::from_utf8_lossy(&o.stderr)
    );
    let m = std::fs::read(tmp.path().join("img/manifest.json")).unwrap();
    assert_eq!(sha256_digest(&m), img.manifest.digest);
    reg.settle().await;
    for b in img.blobs() {
        assert_eq!(reg.blob_gets(&b.digest), 1, "fetched once, by breakwater");
        assert!(
            bw.has_blob(&b.digest),
            "{} is in breakwater's store",
            b.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_fetches_through_the_generated_hosts_toml() {
    let (reg, img, bw) = start(62).await;
    let tmp = TempDir::new("clientcfg-containerd");
    let out = tmp.path().join("gen");
    let listed = generate(&bw, "containerd", &out);
    let hosts_dir = out.join("certs.d");
    let hosts_toml = hosts_dir.join(HOST).join("hosts.toml");
    assert!(
        listed.contains(&format!("wrote {}", hosts_toml.display())),
        "{listed}"
    );
    let ctrd = Containerd::start(tmp.path()).await;
    let o = ctrd.ctr(&[
        "content",
        "fetch",
        "--hosts-dir",
        hosts_dir.to_str().unwrap(),
        &format!("{HOST}/team/app:v1"),
    ]);
    assert!(
        o.status.success(),
        "ctr content fetch: {}\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(&hosts_toml).unwrap()
    );
    let listed = String::from_utf8_lossy(&ctrd.ctr(&["content", "ls"]).stdout).to_string();
    assert!(listed.contains(&img.manifest.digest), "{listed}");
    reg.settle().await;
    for b in img.blobs() {
        assert!(
            listed.contains(&b.digest),
            "{} missing:\n{listed}",
            b.digest
        );
        assert_eq!(reg.blob_gets(&b.digest), 1);
        assert!(
            bw.has_blob(&b.digest),
            "{} came through breakwater",
            b.digest
        );
    }
    assert!(
        bw.metric("breakwater_requests_total", &["kind=\"manifest\""])
            .await
            >= 1.0
    );
}

#[test]
fn stdout_names_each_file_and_docker_says_hub_only() {
    let o = Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args([
            "client-config",
            "docker",
            "--url",
            "http://bw.internal:5000",
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("# ==> daemon.json <=="), "{s}");
    assert!(s.contains("Docker Hub images only"), "{s}");
    let o = Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["client-config", "k3s", "--url", "http://bw.internal:5000"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("# ==> registries.yaml <==") && s.contains("\"quay.io\":"),
        "{s}"
    );
}
