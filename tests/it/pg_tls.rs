//! The PostgreSQL index over TLS: a private PostgreSQL with `ssl = on` and a certificate from a
//! test CA. With `sslmode=require` and the CA in `ca_file`, breakwater's connections are
//! encrypted (PostgreSQL's own `pg_stat_ssl` says so) and skopeo pulls through it; without the
//! CA, the certificate is refused and breakwater does not start, saying why.

use crate::bw::{local_upstream, Breakwater};
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{free_port, sha256_digest, TempDir};
use breakwater_store::pg::testing::PgCluster;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A CA (PEM) and a server certificate for 127.0.0.1 it signed (chain PEM, key PEM).
fn test_pki() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "breakwater test PostgreSQL CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let server = server.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), server.pem(), key.serialize_pem())
}

/// breakwater's connections to `url`'s database: (encrypted, plain).
fn breakwater_connections(url: &str) -> (i64, i64) {
    let q = |ssl: &str| {
        format!(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'breakwater' AND a.datname = current_database() AND {ssl}"
        )
    };
    (
        PgCluster::scalar(url, &q("s.ssl")),
        PgCluster::scalar(url, &q("NOT s.ssl")),
    )
}

/// Runs `breakwater serve` on `config` and waits for it to exit; (exited, stderr).
fn serve_until_exit(config: &Path, within: Duration) -> (bool, String) {
    let log = config.with_extension("log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("spawn breakwater");
    let deadline = Instant::now() + within;
    let exited = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break !status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (exited, std::fs::read_to_string(log).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_connects_over_verified_tls() {
    let (ca, cert, key) = test_pki();
    let Some(pg) = PgCluster::private_tls(&cert, &key) else {
        return;
    };
    let tmp = TempDir::new("pg-tls");
    let ca_file = tmp.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 7301);
    reg.pusher().push_image("team/tls", "v1", &img).await;

    let storage = format!(
        "index = \"postgres\"\n\n[storage.postgres]\nurl = \"{db}?sslmode=require\"\nca_file = \"{}\"\npool_size = 2",
        ca_file.display()
    );
    let bw = Breakwater::start_with_storage(&storage, &local_upstream(&reg.url(), "1h", "")).await;
    let dest = tmp.path().join("pulled");
    crate::support::skopeo_pull(&format!("{}/local/team/tls:v1", bw.host()), &dest, &[])
        .expect("skopeo through breakwater on a TLS index");
    let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
    assert_eq!(sha256_digest(&manifest), img.manifest.digest);
    let (encrypted, plain) = breakwater_connections(&db);
    assert!(encrypted >= 1, "breakwater holds TLS connections");
    assert_eq!(plain, 0, "and no plain ones");
    drop(bw);

    // The same server without the CA: its certificate is not trusted, and breakwater says so.
    let untrusted = tmp.path().join("untrusted.toml");
    std::fs::write(
        &untrusted,
        format!(
            "[server]\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n\n[storage]\nroot = \"{}\"\nindex = \"postgres\"\n\n[storage.postgres]\nurl = \"{}?sslmode=require\"\n\n{}",
            free_port(),
            free_port() + 1,
            tmp.path().join("store2").display(),
            pg.database(),
            local_upstream(&reg.url(), "1h", "")
        ),
    )
    .unwrap();
    let (failed, log) = serve_until_exit(&untrusted, Duration::from_secs(30));
    assert!(failed, "breakwater refused to start; log:\n{log}");
    assert!(
        log.to_lowercase().contains("certificate"),
        "the error names the certificate:\n{log}"
    );

    // A CA file that holds no certificate is refused by name.
    let empty = tmp.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let text = std::fs::read_to_string(&untrusted).unwrap().replace(
        "sslmode=require\"",
        &format!("sslmode=require\"\nca_file = \"{}\"", empty.display()),
    );
    std::fs::write(&untrusted, text).unwrap();
    let (failed, log) = serve_until_exit(&untrusted, Duration::from_secs(30));
    assert!(failed && log.contains("no PEM certificate"), "{log}");
}
