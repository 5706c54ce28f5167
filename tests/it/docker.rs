//! Debian's real docker (docker.io: dockerd 20.10 and its CLI) logging in to breakwater and pulling
//! through it with access control on. The test runs a dockerd of its own: private data and exec
//! roots, socket, pidfile and containerd, no bridge and no iptables rules, vfs storage, so nothing
//! on the machine (a system dockerd, its config, `~/.docker`) is touched or used.

use super::access::{htpasswd_file, office_config, ROBOT_TOKEN};
use super::bw::Breakwater;
use super::clients::Containerd;
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::TempDir;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Reports a test that cannot run here; a failure where CI requires the tools.
fn skip(why: &str) {
    if std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_some() {
        panic!("required test tool missing: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// Debian's docker CLI (docker.io installs it as /usr/bin/docker); another `docker` earlier on
/// PATH (e.g. a newer one in /usr/local/bin) is not the client under test.
fn docker_cli() -> &'static str {
    if Path::new("/usr/bin/docker").exists() {
        "/usr/bin/docker"
    } else {
        "docker"
    }
}

/// A dockerd of the test's own on top of a containerd of its own; stopped on drop.
struct Dockerd {
    child: Child,
    socket: PathBuf,
    data_root: PathBuf,
    config: PathBuf,
    log: PathBuf,
    // Dropped after dockerd has stopped (fields drop after `Drop::drop`).
    _containerd: Containerd,
}

impl Dockerd {
    async fn start(dir: &Path) -> Dockerd {
        let ctrd_dir = dir.join("containerd");
        std::fs::create_dir_all(&ctrd_dir).unwrap();
        let containerd = Containerd::start(&ctrd_dir).await;
        let socket = dir.join("docker.sock");
        let data_root = dir.join("data");
        let log = dir.join("dockerd.log");
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root")
            .arg(&data_root)
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .arg("--containerd")
            .arg(containerd.socket())
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--storage-driver", "vfs"])
            // Registries on 127.0.0.0/8 are insecure (plain HTTP allowed) by default.
            .env("DOCKER_CONFIG", dir.join("daemon-cfg"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
        ] {
            cmd.env_remove(var);
        }
        let child = cmd.spawn().expect("run dockerd");
        let mut d = Dockerd {
            child,
            socket,
            data_root,
            config: dir.join("cfg"),
            log,
            _containerd: containerd,
        };
        let up = super::support::wait_until(Duration::from_secs(30), || {
            d.socket.exists() && d.docker(&["version"]).status.success()
        })
        .await;
        if !up {
            let exited = d.child.try_wait().ok().flatten();
            panic!(
                "dockerd did not start (exit: {exited:?}):\n{}",
                d.log_text()
            );
        }
        d
    }

    /// The docker CLI against this daemon, with a private config directory.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(docker_cli());
        cmd.arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(args)
            .env("DOCKER_CONFIG", &self.config)
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        cmd
    }

    fn docker(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run docker")
    }

    /// `docker login host -u user --password-stdin`, the password on stdin.
    fn login(&self, host: &str, user: &str, password: &str) -> Output {
        let mut child = self
            .command(&["login", host, "-u", user, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run docker login");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(password.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM, so dockerd unmounts its data root; SIGKILL only if it does not stop.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(&self.data_root)
            .status();
    }
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_logs_in_and_pulls_through_the_token_service() {
    if !Command::new("dockerd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip("dockerd (Debian package docker.io) is not installed");
        return;
    }
    let public = Registry::start_plain().await;
    let private = Registry::start_plain().await;
    let img = Image::small(Format::Docker, 95);
    let digest = private.pusher().push_image("team/app", "v1", &img).await;
    let public_digest = public.pusher().push_image("team/app", "v1", &img).await;
    let tmp = TempDir::new("docker");
    let htpasswd = htpasswd_file(tmp.path(), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    std::env::set_var("BW_TEST_ROBOT_TOKEN", ROBOT_TOKEN);
    let bw = Breakwater::start(&office_config(&public.url(), &private.url(), &htpasswd)).await;
    let host = bw.host();
    let image = format!("{host}/priv/team/app:v1");
    let dockerd = Dockerd::start(tmp.path()).await;

    // Anonymous: refused.
    let out = dockerd.docker(&["pull", &image]);
    assert!(
        !out.status.success() && text(&out).contains("unauthorized"),
        "anonymous docker pull of a private image: {}",
        text(&out)
    );

    // `docker login`, then the pull goes through with the stored credentials.
    let out = dockerd.login(&host, "alice", "alice-pw");
    assert!(out.status.success(), "docker login: {}", text(&out));
    let out = dockerd.docker(&["pull", &image]);
    assert!(
        out.status.success(),
        "docker pull: {}\ndockerd log:\n{}",
        text(&out),
        dockerd.log_text()
    );
    let out = dockerd.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &image,
    ]);
    let repo_digests = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        repo_digests.contains(&format!("\"{host}/priv/team/app@{digest}\"")),
        "RepoDigests {repo_digests} lack {digest}"
    );

    // Logged out: the private image is refused again, the public prefix pulls anonymously.
    let out = dockerd.docker(&["logout", &host]);
    assert!(out.status.success(), "docker logout: {}", text(&out));
    let out = dockerd.docker(&["pull", &image]);
    assert!(
        !out.status.success() && text(&out).contains("unauthorized"),
        "docker pull of a private image after logout: {}",
        text(&out)
    );
    let public_image = format!("{host}/local/team/app:v1");
    let out = dockerd.docker(&["pull", &public_image]);
    assert!(
        out.status.success(),
        "anonymous docker pull of a public image: {}",
        text(&out)
    );
    let out = dockerd.docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoDigests}}",
        &public_image,
    ]);
    let repo_digests = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        repo_digests.contains(&format!("\"{host}/local/team/app@{public_digest}\"")),
        "RepoDigests {repo_digests} lack {public_digest}"
    );

    // A wrong password: `docker login` fails.
    let out = dockerd.login(&host, "alice", "not-alice-pw");
    assert!(
        !out.status.success() && text(&out).contains("unauthorized"),
        "docker login with a wrong password: {}",
        text(&out)
    );

    assert!(
        !bw.log_text().contains("alice-pw"),
        "a password reached the log"
    );
}
