//! Real CNCF distribution 2.8 registries (`docker-registry serve`) as upstreams and benchmark peers,
//! with request counting read back from the registry's own access log.
//!
//! distribution writes two logs: logrus lines on stderr (`registry.log` here) and, on stdout, one
//! Apache combined-format line per finished request (`access.log` here), e.g.
//! `127.0.0.1 - - [23/Nov/2026:17:19:29 +0000] "GET /v2/ HTTP/1.1" 200 2 "" "curl/7.88.1"`.
//! The combined line is written for every request, 401s included, so counts come from it.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::image::Pusher;
use super::token_server::TokenServer;
use super::{free_port, http_client, TempDir};

/// Runs the registry under `sh`, which kills it once our end of its stdin closes: on drop, and also
/// when the test process dies without unwinding (SIGKILL, abort), so no registry is left behind.
/// The shell exits with the registry's status, so an early exit (port clash) is still visible.
const WATCHDOG: &str = r#"exec 3<&0
command -v docker-registry >/dev/null || { echo "docker-registry not installed (apt-get install docker-registry)" >&2; exit 127; }
docker-registry serve "$1" </dev/null &
registry=$!
(read -r _ <&3; kill "$registry" 2>/dev/null) &
wait "$registry""#;

/// How long a registry may take to answer `/v2/` after spawning.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One request as the registry logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Request URI as received (path + query).
    pub uri: String,
    /// Response status.
    pub status: u16,
    /// Response body bytes written.
    pub bytes: u64,
    /// The client's User-Agent.
    pub user_agent: String,
}

impl LoggedRequest {
    /// The URI without its query string.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
}

/// Parses one combined-format access-log line; `None` for anything else.
pub fn parse_access_line(line: &str) -> Option<LoggedRequest> {
    // `host ident user [date] "METHOD URI PROTO" status bytes "referer" "agent"`
    let (_, rest) = line.split_once("] \"")?;
    let (request, rest) = rest.split_once("\" ")?;
    let mut request_parts = request.split(' ');
    let method = request_parts.next()?.to_owned();
    let uri = request_parts.next()?.to_owned();
    let mut fields = rest.splitn(3, ' ');
    let status = fields.next()?.parse().ok()?;
    let bytes = fields.next()?.parse().unwrap_or(0); // `-` when nothing was written
    let quoted = fields.next().unwrap_or("");
    let user_agent = quoted
        .rsplit_once(" \"")
        .map(|(_, ua)| ua.trim_end_matches('"'))
        .unwrap_or("")
        .to_owned();
    Some(LoggedRequest {
        method,
        uri,
        status,
        bytes,
        user_agent,
    })
}

/// A running `docker-registry` on 127.0.0.1 with storage in a temp dir; killed on drop.
pub struct Registry {
    child: Option<Child>,
    port: u16,
    config_path: PathBuf,
    access_log: PathBuf,
    app_log: PathBuf,
    credentials: Option<(String, String)>,
    /// Access-log entries before this index are hidden from `requests()` (see `reset_counts`).
    offset: Mutex<usize>,
    dir: TempDir,
}

impl Registry {
    /// A registry without auth.
    pub async fn start_plain() -> Registry {
        Registry::start_with("plain", String::new(), None).await
    }

    /// A registry that requires tokens from `tokens` (`auth: token`).
    pub async fn start_token(tokens: &TokenServer) -> Registry {
        let auth = format!(
            "auth:\n  token:\n    realm: \"{}\"\n    service: \"{}\"\n    issuer: \"{}\"\n    rootcertbundle: \"{}\"\n",
            tokens.realm(),
            tokens.service(),
            tokens.issuer(),
            tokens.root_cert_path().display()
        );
        Registry::start_with("token", auth, tokens.credentials()).await
    }

    /// distribution's pull-through cache (`proxy.remoteurl`) in front of `remote_url`.
    pub async fn start_proxy(remote_url: &str) -> Registry {
        Registry::start_with(
            "proxy",
            format!("proxy:\n  remoteurl: \"{remote_url}\"\n"),
            None,
        )
        .await
    }

    /// Like [`Registry::start_proxy`], logging in upstream with `user`/`password`.
    pub async fn start_proxy_with_credentials(
        remote_url: &str,
        user: &str,
        password: &str,
    ) -> Registry {
        let proxy = format!("proxy:\n  remoteurl: \"{remote_url}\"\n  username: \"{user}\"\n  password: \"{password}\"\n");
        Registry::start_with("proxy", proxy, None).await
    }

    async fn start_with(
        kind: &str,
        extra_config: String,
        credentials: Option<(String, String)>,
    ) -> Registry {
        let dir = TempDir::new(&format!("registry-{kind}"));
        let mut registry = Registry {
            child: None,
            port: 0,
            config_path: dir.path().join("config.yml"),
            access_log: dir.path().join("access.log"),
            app_log: dir.path().join("registry.log"),
            credentials,
            offset: Mutex::new(0),
            dir,
        };
        // free_port() can race with other tests; a clash shows up as an early exit, so retry.
        for attempt in 1..=5 {
            registry.port = free_port();
            registry.write_config(&extra_config);
            match registry.spawn_and_wait().await {
                Ok(()) => return registry,
                Err(log) if attempt < 5 && log.contains("address already in use") => continue,
                Err(log) => panic!("docker-registry ({kind}) did not start:\n{log}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    fn write_config(&self, extra: &str) {
        let storage = self.dir.path().join("storage");
        let config = format!(
            "version: 0.1\n\
             log:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: \"{storage}\"\n  delete:\n    enabled: true\n  \
             maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: breakwater-test-secret\n\
             compatibility:\n  schema1:\n    enabled: true\n\
             {extra}",
            storage = storage.display(),
            port = self.port,
        );
        std::fs::write(&self.config_path, config).expect("write registry config.yml");
    }

    /// Spawns the process and waits for `/v2/` to answer; on failure returns the log for the panic.
    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let append = |path: &Path| -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open registry log file")
        };
        // Only log lines from this spawn count (the log is appended to across restarts).
        let log_start = std::fs::metadata(&self.app_log)
            .map(|m| m.len() as usize)
            .unwrap_or(0);
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("registry-watchdog")
            .arg(&self.config_path)
            .stdin(Stdio::piped())
            .stdout(append(&self.access_log))
            .stderr(append(&self.app_log))
            .spawn()
            .expect("spawn sh running docker-registry");
        self.child = Some(child);

        let client = http_client();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("exited with {status}\n{}", self.app_log_text()));
            }
            // Another process may own the port we picked, so first see our registry say it bound.
            let listening = format!("listening on 127.0.0.1:{}", self.port);
            if self
                .app_log_text()
                .get(log_start..)
                .is_some_and(|new| new.contains(&listening))
            {
                let probe = client
                    .get(format!("{}/v2/", self.url()))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await;
                if probe.is_ok() {
                    break;
                }
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "no answer on /v2/ within {START_TIMEOUT:?}\n{}",
                    self.app_log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // The readiness probe should not count as traffic.
        self.reset_counts().await;
        Ok(())
    }

    /// Closing the watchdog's stdin makes it stop the registry and exit; SIGKILL is the fallback.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the process but keeps its storage and port (to simulate an upstream outage).
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the process again on the same port and storage after [`Registry::stop`].
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn_and_wait().await {
            panic!(
                "docker-registry did not restart on port {}:\n{log}",
                self.port
            );
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's temp dir (config.yml, access.log, registry.log, storage/).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The push-capable credentials (token mode), for [`Pusher`] and `skopeo --creds`.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// A pusher for this registry, logged in when the registry uses token auth.
    pub fn pusher(&self) -> Pusher {
        let pusher = Pusher::new(&self.url());
        match &self.credentials {
            Some((user, pass)) => pusher.with_credentials(user, pass),
            None => pusher,
        }
    }

    /// The logrus log (stderr) so far.
    pub fn app_log_text(&self) -> String {
        std::fs::read_to_string(&self.app_log).unwrap_or_default()
    }

    fn all_requests(&self) -> Vec<LoggedRequest> {
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        text.lines().filter_map(parse_access_line).collect()
    }

    /// Requests finished since start (readiness probes excluded) or the last `reset_counts`.
    /// Call [`Registry::settle`] first when the traffic was just generated.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        let offset = *self.offset.lock().expect("offset lock");
        self.all_requests().into_iter().skip(offset).collect()
    }

    /// Waits for in-flight log lines, then hides everything logged so far from `requests()`.
    pub async fn reset_counts(&self) {
        self.settle().await;
        let seen = self.all_requests().len();
        *self.offset.lock().expect("offset lock") = seen;
    }

    /// Waits until the access log has not grown for 150 ms (at most 5 s). distribution writes the
    /// line just before the response's last bytes are flushed, so this is a safety margin for
    /// traffic the test did not wait for (e.g. background fills), not for its own requests.
    pub async fn settle(&self) {
        let size = || {
            std::fs::metadata(&self.access_log)
                .map(|m| m.len())
                .unwrap_or(0)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last = size();
        let mut stable_since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(25)).await;
            let now = size();
            if now != last {
                last = now;
                stable_since = Instant::now();
            } else if stable_since.elapsed() >= Duration::from_millis(150) {
                return;
            }
        }
    }

    /// Polls `requests()` until `done` holds (returns them) or `timeout` passes (panics with them).
    pub async fn wait_for_requests(
        &self,
        timeout: Duration,
        done: impl Fn(&[LoggedRequest]) -> bool,
    ) -> Vec<LoggedRequest> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.requests();
            if done(&seen) {
                return seen;
            }
            if Instant::now() > deadline {
                panic!(
                    "registry {} never saw the expected requests; it saw {seen:#?}",
                    self.host()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Requests with `method` (any status) whose URI contains `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.uri.contains(needle))
            .count()
    }

    /// Successful (2xx) GETs of blob `digest`: the downloads the registry actually served.
    pub fn blob_gets(&self, digest: &str) -> usize {
        self.successful("GET", &format!("/blobs/{digest}"))
    }

    /// Successful (2xx) GETs of manifest `reference` (tag or digest); what Docker Hub rate-limits.
    pub fn manifest_gets(&self, reference: &str) -> usize {
        self.successful("GET", &format!("/manifests/{reference}"))
    }

    fn successful(&self, method: &str, path_suffix: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| {
                r.method == method
                    && r.path().ends_with(path_suffix)
                    && (200..300).contains(&r.status)
            })
            .count()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // The registry's view is usually what explains a failing test.
            // Successful requests are already in the access log; keep the app log to what went wrong.
            let tail = |path: &Path, keep: fn(&str) -> bool| {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
                lines[lines.len().saturating_sub(15)..].join("\n")
            };
            eprintln!(
                "--- registry {} ({}) access log tail:\n{}\n--- registry warnings/errors:\n{}",
                self.host(),
                self.dir().display(),
                tail(&self.access_log, |_| true),
                tail(&self.app_log, |l| !l.contains("level=info"))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_access_line;

    #[test]
    fn parses_combined_log_lines() {
        let line = r#"127.0.0.1 - - [23/Nov/2026:17:19:29 +0000] "HEAD /v2/foo/blobs/sha256:00 HTTP/1.1" 404 157 "" "curl/7.88.1""#;
        let r = parse_access_line(line).expect("parse");
        assert_eq!(
            (r.method.as_str(), r.uri.as_str(), r.status, r.bytes),
            ("HEAD", "/v2/foo/blobs/sha256:00", 404, 157)
        );
        assert_eq!(r.user_agent, "curl/7.88.1");
        assert!(parse_access_line(r#"time="x" level=info msg="listening""#).is_none());
    }
}
