//! The shipped client snippets and listeners, exercised for real: skopeo reading
//! `config/clients/registries.conf`, and the TLS listener over HTTP/2 and HTTP/1.1.

use super::bw::Breakwater;
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::{free_port, sha256_digest, TempDir};
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_uses_breakwater_through_the_shipped_registries_conf() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Docker, 51);
    let digest = reg
        .pusher()
        .push_image("library/alpine", "3.20", &img)
        .await;
    // breakwater's docker.io upstream points at the loopback registry for this test.
    let bw = Breakwater::start(&format!(
        "[upstreams.\"docker.io\"]\nurl = \"{}\"\nhosts = [\"docker.io\"]\n",
        reg.url()
    ))
    .await;
    // The shipped snippet, with the mirror address filled in and the real registries replaced by a
    // refusing loopback port: if the mirror failed, skopeo's fallback could not leave the machine.
    let dead = format!("127.0.0.1:{}", free_port());
    let conf = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/clients/registries.conf"
    ))
    .expect("shipped registries.conf")
    .replace("breakwater.example.internal:5000", &bw.host())
    .replace(
        "location = \"registry-1.docker.io\"",
        &format!("location = \"{dead}\""),
    )
    .replace("location = \"quay.io\"", &format!("location = \"{dead}\""))
    .replace("location = \"ghcr.io\"", &format!("location = \"{dead}\""));
    let tmp = TempDir::new("regconf");
    let conf_path = tmp.path().join("registries.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let out = Command::new("skopeo")
        .arg("--registries-conf")
        .arg(&conf_path)
        .args(["copy", "docker://docker.io/library/alpine:3.20"])
        .arg(format!("dir:{}", tmp.path().join("out").display()))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::read(tmp.path().join("out/manifest.json")).unwrap();
    assert_eq!(sha256_digest(&m), digest);
    reg.settle().await;
    assert_eq!(
        reg.blob_gets(&img.layers[0].digest),
        1,
        "the pull went through breakwater"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_speaks_http2_and_http1() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 52);
    reg.pusher().push_image("team/app", "v1", &img).await;
    let tmp = TempDir::new("tls");
    let (bw, tls_port) = Breakwater::start_tls(
        tmp.path(),
        &super::bw::local_upstream(&reg.url(), "10m", ""),
    )
    .await;
    let base = format!("https://127.0.0.1:{tls_port}");
    let layer = &img.layers[1];
    for (proto, client) in [
        (
            "h2",
            reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap(),
        ),
        (
            "h1",
            reqwest::Client::builder()
                .danger_accept_invalid_certs(true)
                .http1_only()
                .build()
                .unwrap(),
        ),
    ] {
        let r = client.get(format!("{base}/v2/")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{proto}");
        let want = if proto == "h2" {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(r.version(), want);
        let r = client
            .get(format!("{base}/v2/local/team/app/blobs/{}", layer.digest))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{proto}");
        assert_eq!(
            sha256_digest(&r.bytes().await.unwrap()),
            layer.digest,
            "{proto}"
        );
        let r = client
            .head(format!("{base}/v2/local/team/app/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers()["docker-content-digest"].to_str().unwrap(),
            img.manifest.digest,
            "{proto}"
        );
    }
    drop(bw);
}

/// A containerd daemon of the test's own (temp root, state and socket), killed on drop.
pub(super) struct Containerd {
    child: std::process::Child,
    socket: std::path::PathBuf,
}

impl Containerd {
    pub(super) async fn start(dir: &std::path::Path) -> Containerd {
        let socket = dir.join("containerd.sock");
        let config = dir.join("containerd.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{1}\"\n",
                dir.display(),
                socket.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd is installed (.ci/run installs it)");
        let s = socket.clone();
        assert!(
            super::support::wait_until(std::time::Duration::from_secs(20), || s.exists()).await,
            "containerd did not start: {}",
            std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        );
        Containerd { child, socket }
    }

    /// The daemon's gRPC socket (for dockerd's `--containerd`).
    pub(super) fn socket(&self) -> &std::path::Path {
        &self.socket
    }

    pub(super) fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pulls_through_the_shipped_hosts_toml() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 53);
    reg.pusher()
        .push_image("library/alpine", "3.21", &img)
        .await;
    let bw = Breakwater::start(&format!(
        "[upstreams.\"docker.io\"]\nurl = \"{}\"\nhosts = [\"docker.io\"]\n",
        reg.url()
    ))
    .await;
    let tmp = TempDir::new("containerd");
    // The shipped hosts.toml, with the mirror filled in and Docker Hub replaced by a refusing
    // loopback port: the fetch can only succeed through breakwater, and nothing leaves the machine.
    let hosts_dir = tmp.path().join("certs.d");
    std::fs::create_dir_all(hosts_dir.join("docker.io")).unwrap();
    let hosts = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/clients/containerd-hosts.toml"
    ))
    .unwrap()
    .replace("breakwater.example.internal:5000", &bw.host())
    .replace(
        "https://registry-1.docker.io",
        &format!("http://127.0.0.1:{}", free_port()),
    );
    std::fs::write(hosts_dir.join("docker.io/hosts.toml"), hosts).unwrap();
    let ctrd = Containerd::start(tmp.path()).await;
    let out = ctrd.ctr(&[
        "content",
        "fetch",
        "--hosts-dir",
        hosts_dir.to_str().unwrap(),
        "docker.io/library/alpine:3.21",
    ]);
    assert!(
        out.status.success(),
        "ctr content fetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&ctrd.ctr(&["content", "ls"]).stdout).to_string();
    for b in img.blobs() {
        assert!(
            listed.contains(&b.digest),
            "{} missing from containerd's store:\n{listed}",
            b.digest
        );
    }
    assert!(listed.contains(&img.manifest.digest));
    // containerd resolved with ?ns=docker.io through breakwater, which fetched each blob once.
    reg.settle().await;
    for b in img.blobs() {
        assert_eq!(reg.blob_gets(&b.digest), 1);
    }
    assert!(
        bw.metric("breakwater_requests_total", &["kind=\"manifest\""])
            .await
            >= 1.0
    );
}
