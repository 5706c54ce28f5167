//! A real single-node Garage (S3-compatible object storage) on loopback ports in a temp dir:
//! config, layout, one bucket and one key allowed on it. Stoppable and restartable over the same
//! data (object-storage outages). Skipped when `garage` is not installed, failed instead under
//! `BREAKWATER_REQUIRE_TEST_TOOLS`.

use super::{free_port, wait_for_port, TempDir};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The region Garage signs with (it checks it like AWS does).
pub const REGION: &str = "garage";
/// The bucket the tests use.
pub const BUCKET: &str = "breakwater";

/// A running Garage with one bucket and a key allowed on it.
pub struct Garage {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    s3_port: u16,
    /// Access key id of the key allowed on [`BUCKET`].
    pub key_id: String,
    /// Its secret.
    pub secret: String,
    dir: TempDir,
}

/// The `garage` binary, if installed (`.ci/run` installs it into /usr/local/bin).
fn garage_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("garage"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/local/bin/garage")])
        .find(|p| p.is_file())
}

impl Garage {
    /// Starts Garage and sets up the bucket; `None` (after reporting it) when `garage` is not
    /// installed and the tools are not required.
    pub async fn start() -> Option<Garage> {
        let Some(bin) = garage_bin() else {
            let why = "garage not installed (cargo install garage --locked)";
            if std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_some() {
                panic!("required test tool missing: {why}");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let dir = TempDir::new("garage");
        let (rpc, s3_port, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let secret: String = (0..32)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        std::fs::write(
            &config,
            format!(
                "metadata_dir = \"{d}/meta\"\ndata_dir = \"{d}/data\"\ndb_engine = \"sqlite\"\n\
                 replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\n\
                 [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"test-admin\"\n",
                d = dir.path().display()
            ),
        )
        .expect("write garage.toml");
        let mut g = Garage {
            child: None,
            log: dir.path().join("garage.log"),
            config,
            s3_port,
            key_id: String::new(),
            secret: String::new(),
            dir,
        };
        g.spawn(&bin).await;
        let id = g.cli(&["node", "id", "-q"]);
        let id = id.trim().split('@').next().expect("node id").to_string();
        g.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &id]);
        g.cli(&["layout", "apply", "--version", "1"]);
        g.cli(&["bucket", "create", BUCKET]);
        let key = g.cli(&["key", "create", "breakwater-test"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no {name:?} in `garage key create` output:\n{key}"))
        };
        g.key_id = field("Key ID:");
        g.secret = field("Secret key:");
        g.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            "breakwater-test",
        ]);
        Some(g)
    }

    async fn spawn(&mut self, bin: &Path) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open garage log");
        let child = Command::new(bin)
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn garage server");
        self.child = Some(child);
        assert!(
            wait_for_port(self.s3_port, Duration::from_secs(30)).await,
            "garage did not listen on its S3 port; log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Runs a `garage` admin command against this node; its stdout (panics on failure).
    fn cli(&self, args: &[&str]) -> String {
        let bin = garage_bin().expect("garage is installed");
        // The node takes a moment to accept RPC after binding: retry briefly.
        let mut last = String::new();
        for _ in 0..50 {
            let out = Command::new(&bin)
                .arg("-c")
                .arg(&self.config)
                .args(args)
                .output()
                .expect("run garage");
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("garage {args:?} failed: {last}");
    }

    /// Kills the server (an object-storage outage); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again over the same data and ports.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn(&garage_bin().expect("garage is installed"))
            .await;
        // Listening is not serving yet: wait until the bucket answers.
        let s3 = self.client();
        for _ in 0..100 {
            if object_store::ObjectStore::head(&s3, &"probe".into())
                .await
                .is_err_and(|e| matches!(e, object_store::Error::NotFound { .. }))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("garage did not serve the bucket after a restart");
    }

    /// `http://127.0.0.1:PORT` of the S3 API.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The `[storage]` keys (after `root`) and `[storage.s3]` section for breakwater, with
    /// `extra` lines in the s3 section.
    pub fn storage_config(&self, prefix: &str, extra: &str) -> String {
        format!(
            "backend = \"s3\"\n\n[storage.s3]\nendpoint = \"{}\"\nregion = \"{REGION}\"\n\
             bucket = \"{BUCKET}\"\nprefix = \"{prefix}\"\naccess_key_id = \"{}\"\n\
             secret_access_key = \"{}\"\ntimeout = \"10s\"\n{extra}\n",
            self.endpoint(),
            self.key_id,
            self.secret
        )
    }

    /// A client of the bucket, to look at what breakwater stored.
    pub fn client(&self) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_region(REGION)
            .with_bucket_name(BUCKET)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .build()
            .expect("object_store client for garage")
    }

    /// The directory holding Garage's config, data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "garage log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}
