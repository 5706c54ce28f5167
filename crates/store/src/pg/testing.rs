//! A private PostgreSQL for tests: one cluster per test process (`initdb` + `pg_ctl` from
//! Debian's `postgresql`, as the `postgres` user when running as root, since PostgreSQL refuses
//! root), in a directory under /tmp, on a free loopback port, with one fresh database per test.
//!
//! A static is never dropped, so a small watchdog shell stops the cluster and removes its
//! directory once the test process has exited, however it exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A running private cluster.
pub struct PgCluster {
    port: u16,
    next_db: AtomicU32,
    /// `pg_ctl`, the data directory and whether it runs as the `postgres` user: what a test
    /// needs to stop and start its own cluster (a restart fault).
    control: (PathBuf, PathBuf, bool),
}

/// The variable that turns a missing PostgreSQL from a skip into a failure (as in CI).
const REQUIRE: &str = "BREAKWATER_REQUIRE_TEST_TOOLS";

/// The directory with `initdb` and `pg_ctl`: Debian's newest /usr/lib/postgresql/<ver>/bin.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program args…`, as the `postgres` user when we are root.
fn as_owner(program: &Path, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) -> Result<(), String> {
    let out = c
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

impl PgCluster {
    /// The process's cluster, started on first use; `None` (the caller skips) when PostgreSQL
    /// is not installed, unless `BREAKWATER_REQUIRE_TEST_TOOLS` is set: then it panics.
    pub fn shared() -> Option<&'static PgCluster> {
        static CLUSTER: OnceLock<Option<PgCluster>> = OnceLock::new();
        CLUSTER
            .get_or_init(|| match bin_dir() {
                None if std::env::var_os(REQUIRE).is_some() => panic!(
                    "{REQUIRE} is set but PostgreSQL (/usr/lib/postgresql/*/bin/initdb) is missing"
                ),
                None => {
                    eprintln!("PostgreSQL not installed: skipping the PostgreSQL index checks");
                    None
                }
                Some(bin) => Some(Self::start(&bin, None).unwrap_or_else(|e| panic!("{e}"))),
            })
            .as_ref()
    }

    /// Starts a cluster; with `tls` (certificate chain PEM, key PEM) it also accepts TLS.
    fn start(bin: &Path, tls: Option<(&str, &str)>) -> Result<PgCluster, String> {
        let root = is_root();
        // Several clusters may start in one process within a millisecond (the shared one and a
        // test's own): a counter keeps their directories apart.
        static STARTED: AtomicU32 = AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "bw-pg-{}-{}-{n}",
            std::process::id(),
            crate::now_ms()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        if root {
            let mut c = Command::new("chown");
            c.arg("postgres:").arg(&dir);
            run(c, "chown the PostgreSQL test directory")?;
        }
        let data = dir.join("data");
        let mut c = as_owner(&bin.join("initdb"), root);
        c.arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        run(c, "initdb")?;
        if let Some((cert, key)) = tls {
            enable_tls(&data, cert, key, root)?;
        }
        let port = free_port();
        let mut c = as_owner(&bin.join("pg_ctl"), root);
        c.arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .arg("-o")
            .arg(format!(
                "-k {} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                dir.display()
            ))
            .args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start")?;
        // The watchdog: waits for this process to end, then stops the cluster and cleans up.
        let pg_ctl = bin.join("pg_ctl");
        let stop = if root {
            format!(
                "runuser -u postgres -- {} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        } else {
            format!(
                "{} -D {} -m immediate stop",
                pg_ctl.display(),
                data.display()
            )
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start the PostgreSQL watchdog: {e}"))?;
        Ok(PgCluster {
            port,
            next_db: AtomicU32::new(0),
            control: (pg_ctl, data, root),
        })
    }

    /// A cluster of the caller's own (not shared with other tests), for tests that stop and
    /// start it; `None` as for [`PgCluster::shared`].
    pub fn private() -> Option<PgCluster> {
        match bin_dir() {
            None if std::env::var_os(REQUIRE).is_some() => panic!(
                "{REQUIRE} is set but PostgreSQL (/usr/lib/postgresql/*/bin/initdb) is missing"
            ),
            None => None,
            Some(bin) => Some(Self::start(&bin, None).unwrap_or_else(|e| panic!("{e}"))),
        }
    }

    /// Like [`PgCluster::private`], also accepting TLS with the given certificate chain and key
    /// (PEM); plain connections still work, for the tests' own checks.
    pub fn private_tls(cert_pem: &str, key_pem: &str) -> Option<PgCluster> {
        match bin_dir() {
            None if std::env::var_os(REQUIRE).is_some() => panic!(
                "{REQUIRE} is set but PostgreSQL (/usr/lib/postgresql/*/bin/initdb) is missing"
            ),
            None => None,
            Some(bin) => {
                Some(Self::start(&bin, Some((cert_pem, key_pem))).unwrap_or_else(|e| panic!("{e}")))
            }
        }
    }

    /// Stops the server now (`-m fast`: open connections are cut).
    pub fn stop(&self) {
        let (pg_ctl, data, root) = &self.control;
        let mut c = as_owner(pg_ctl, *root);
        c.arg("-D").arg(data).args(["-m", "fast", "-w", "stop"]);
        run(c, "pg_ctl stop").unwrap_or_else(|e| panic!("{e}"));
    }

    /// Starts it again on the same port and data.
    pub fn restart(&self) {
        let (pg_ctl, data, root) = &self.control;
        let mut c = as_owner(pg_ctl, *root);
        c.arg("-D")
            .arg(data)
            .arg("-l")
            .arg(data.with_file_name("log"))
            .arg("-o")
            .arg(format!(
                "-k {} -p {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
                data.parent().expect("cluster dir").display(),
                self.port
            ))
            .args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start").unwrap_or_else(|e| panic!("{e}"));
    }

    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new empty database; returns its connection URL.
    pub fn database(&self) -> String {
        let name = format!("t{}", self.next_db.fetch_add(1, Ordering::Relaxed));
        let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        off_runtime(|| {
            let mut c = postgres::Client::connect(&admin, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to the test PostgreSQL: {e}"));
            c.batch_execute(&format!("CREATE DATABASE {name}"))
                .unwrap_or_else(|e| panic!("create database {name}: {e}"));
        });
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// `SELECT count(*) FROM <table>` in the database at `url` (for checks from async tests).
    pub fn count(url: &str, table: &str) -> i64 {
        off_runtime(|| {
            let mut c = postgres::Client::connect(url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
            c.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .unwrap_or_else(|e| panic!("count {table}: {e}"))
                .get(0)
        })
    }

    /// The first column of the first row of `sql` (an integer), run in the database at `url`.
    pub fn scalar(url: &str, sql: &str) -> i64 {
        off_runtime(|| {
            let mut c = postgres::Client::connect(url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
            c.query_one(sql, &[])
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .get(0)
        })
    }

    /// Settings for a new empty database.
    pub fn settings(&self) -> super::PgSettings {
        super::PgSettings {
            url: self.database(),
            pool_size: 4,
            acquire_timeout: std::time::Duration::from_secs(30),
            ca_file: None,
        }
    }
}

/// Runs `f` on a thread of its own: the synchronous client runs its own small runtime, which
/// cannot start on a thread that drives an async test.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(f)
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Puts the certificate and key in the data directory (the key readable by its owner only, as
/// PostgreSQL demands) and turns `ssl` on.
fn enable_tls(data: &Path, cert: &str, key: &str, root: bool) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let write = |name: &str, text: &str, mode: u32| -> Result<(), String> {
        let path = data.join(name);
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {}: {e}", path.display()))?;
        if root {
            let mut c = Command::new("chown");
            c.arg("postgres:").arg(&path);
            run(c, "chown the TLS files")?;
        }
        Ok(())
    };
    write("server.crt", cert, 0o644)?;
    write("server.key", key, 0o600)?;
    let conf = data.join("postgresql.conf");
    let mut text =
        std::fs::read_to_string(&conf).map_err(|e| format!("read {}: {e}", conf.display()))?;
    text.push_str("\nssl = on\n");
    std::fs::write(&conf, text).map_err(|e| format!("write {}: {e}", conf.display()))
}
