//! Runs the real `breakwater` binary for a test: generated config, free loopback ports, killed on
#![allow(dead_code)] // not every suite uses every helper
//! drop. Restartable over the same store (crash tests) and scrapeable (metrics).

use super::support::{free_port, wait_for_port, TempDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running breakwater.
pub struct Breakwater {
    child: Option<Child>,
    port: u16,
    admin_port: u16,
    config: PathBuf,
    log: PathBuf,
    root: PathBuf,
    env: Vec<(String, String)>,
    _dir: Option<TempDir>,
}

/// Config for one loopback upstream named `local`, also the default route, with `library/` for
/// single-component names and the given tag TTL.
pub fn local_upstream(url: &str, ttl: &str, extra: &str) -> String {
    format!(
        "[routing]\ndefault_upstream = \"local\"\npresets = false\n\n[upstreams.local]\nurl = \"{url}\"\naliases = [\"local\"]\nlibrary_namespace = true\ntag_ttl = \"{ttl}\"\nconnect_timeout = \"1s\"\nfirst_byte_timeout = \"3s\"\nidle_timeout = \"3s\"\n{extra}\n"
    )
}

impl Breakwater {
    /// Starts with a fresh store and `body` (routing + upstream sections).
    pub async fn start(body: &str) -> Breakwater {
        Breakwater::start_with("", body).await
    }

    /// Like `start`, with extra `[server]` keys (e.g. the TLS listener).
    pub async fn start_with(server_extra: &str, body: &str) -> Breakwater {
        let dir = TempDir::new("breakwater");
        let root = dir.path().join("store");
        let mut bw = Breakwater::launch_with(&root, server_extra, body).await;
        bw._dir = Some(dir);
        bw
    }

    /// Like `start`, also listening with TLS (a self-signed certificate for 127.0.0.1 written
    /// into `dir`); returns the TLS port once it accepts connections.
    pub async fn start_tls(dir: &Path, body: &str) -> (Breakwater, u16) {
        let cert = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .unwrap();
        let (cert_path, key_path) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&cert_path, cert.cert.pem()).unwrap();
        std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
        let tls_port = free_port();
        let bw = Breakwater::start_with(
            &format!(
                "tls_listen = \"127.0.0.1:{tls_port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
                cert_path.display(),
                key_path.display()
            ),
            body,
        )
        .await;
        assert!(wait_for_port(tls_port, Duration::from_secs(10)).await);
        (bw, tls_port)
    }

    /// Starts over an existing store root (kept by the caller).
    pub async fn launch(root: &Path, body: &str) -> Breakwater {
        Breakwater::launch_with(root, "", body).await
    }

    /// Like `start`, with extra `[storage]` keys (e.g. the index backend).
    pub async fn start_with_storage(storage_extra: &str, body: &str) -> Breakwater {
        let body = format!("{storage_extra}\n\n{body}");
        Breakwater::start_with("", &body).await
    }

    async fn launch_with(root: &Path, server_extra: &str, body: &str) -> Breakwater {
        std::fs::create_dir_all(root).expect("create store root");
        let port = free_port();
        // Two free ports in a row can be the same one (the first was released before the second
        // was asked for): the admin listener would then take the registry's port.
        let admin_port = std::iter::repeat_with(free_port)
            .find(|p| *p != port)
            .expect("a second free port");
        let config = root.with_extension("toml");
        let log = root.with_extension("log");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\nthreads = 2\n{server_extra}\n\n[storage]\nroot = \"{}\"\n\n{body}",
            root.display()
        );
        std::fs::write(&config, text).expect("write breakwater config");
        let mut bw = Breakwater {
            child: None,
            port,
            admin_port,
            config,
            log,
            root: root.to_path_buf(),
            env: Vec::new(),
            _dir: None,
        };
        bw.spawn().await;
        bw
    }

    /// Starts with a whole config of the caller's (which listens on `port` and `admin_port` and
    /// keeps its store under `root`) and extra environment variables.
    pub async fn start_exact(
        root: &Path,
        ports: (u16, u16),
        text: &str,
        env: &[(String, String)],
    ) -> Breakwater {
        std::fs::create_dir_all(root).expect("create store root");
        let config = root.with_extension("toml");
        std::fs::write(&config, text).expect("write breakwater config");
        let mut bw = Breakwater {
            child: None,
            port: ports.0,
            admin_port: ports.1,
            config,
            log: root.with_extension("log"),
            root: root.to_path_buf(),
            env: env.to_vec(),
            _dir: None,
        };
        bw.spawn().await;
        bw
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open breakwater log");
        let child = Command::new(env!("CARGO_BIN_EXE_breakwater"))
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("BREAKWATER_LOG", "info,breakwater=debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn breakwater");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(20)).await,
            "breakwater did not start listening; log:\n{}",
            self.log_text()
        );
    }

    /// The process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("breakwater is running").id()
    }

    /// Waits up to `timeout` for the process to end by itself; its exit status, or `None`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process without any chance to clean up (SIGKILL).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process again on the same ports, config and store.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// `127.0.0.1:PORT` of the registry listener.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The config file path (for offline subcommands).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The process log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The Prometheus text from the admin listener.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
            .expect("scrape metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// A GET of the admin API (`/api/v1/...`), as JSON.
    pub async fn admin_get(&self, path: &str) -> serde_json::Value {
        reqwest::get(format!("http://127.0.0.1:{}/api/v1{path}", self.admin_port))
            .await
            .expect("admin request")
            .json()
            .await
            .expect("admin JSON")
    }

    /// `http://127.0.0.1:PORT` of the admin listener.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Sum of a metric's samples whose line contains every `labels` fragment.
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|f| l.contains(f)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Whether the store holds a committed blob for `digest` (`sha256:<hex>`).
    pub fn has_blob(&self, digest: &str) -> bool {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .join("blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .exists()
    }

    /// Files left in the store's staging directory.
    pub fn temp_files(&self) -> usize {
        std::fs::read_dir(self.root.join("tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Breakwater {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- breakwater log ({}) ---\n{}",
                self.log.display(),
                self.log_text()
            );
        }
    }
}
