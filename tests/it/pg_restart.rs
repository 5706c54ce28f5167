//! PostgreSQL restarts under a running breakwater: cached content keeps being served while the
//! database is down, and the replica reconnects by itself once it is back.

use crate::bw::{local_upstream, Breakwater};
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{http_client, sha256_digest, TempDir};
use breakwater_store::pg::testing::PgCluster;
use std::time::{Duration, Instant};

fn skopeo(image: &str, dest: &std::path::Path) -> Result<(), String> {
    crate::support::skopeo_pull(image, dest, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_pulls_survive_a_postgres_restart_and_the_replica_reconnects() {
    let Some(pg) = PgCluster::private() else {
        return;
    };
    let db = pg.database();
    let reg = Registry::start_plain().await;
    let a = Image::small(Format::Oci, 9101);
    let b = Image::small(Format::Oci, 9102);
    reg.pusher().push_image("team/a", "v1", &a).await;
    reg.pusher().push_image("team/b", "v1", &b).await;
    let storage = format!("index = \"postgres\"\n\n[storage.postgres]\nurl = \"{db}\"\npool_size = 4\nacquire_timeout = \"2s\"");
    let bw = Breakwater::start_with_storage(&storage, &local_upstream(&reg.url(), "10m", "")).await;
    let tmp = TempDir::new("pg-restart");
    skopeo(
        &format!("{}/local/team/a:v1", bw.host()),
        &tmp.path().join("a1"),
    )
    .expect("cold pull");

    // The database goes away: what is cached still pulls (tag within its TTL, blobs linked).
    pg.stop();
    skopeo(
        &format!("{}/local/team/a:v1", bw.host()),
        &tmp.path().join("a2"),
    )
    .expect("a cached image pulls with PostgreSQL down");
    let pulled = std::fs::read(tmp.path().join("a2/manifest.json")).unwrap();
    assert_eq!(sha256_digest(&pulled), a.manifest.digest);
    // Something uncached cannot be recorded: a clear error, not a hang or a crash.
    let r = http_client()
        .get(format!("{}/v2/local/team/b/manifests/v1", bw.url()))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer with PostgreSQL down");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    eprintln!("uncached with PostgreSQL down: {status} {body}");
    // Served from upstream without being recorded, or refused as unavailable with the cause.
    assert!(
        status == 200 || (status == 503 && body.contains("UNAVAILABLE") && body.contains("index")),
        "{status} {body}"
    );

    // Back again: the replica reconnects by itself and caches new content.
    pg.restart();
    let t0 = Instant::now();
    loop {
        match skopeo(
            &format!("{}/local/team/b:v1", bw.host()),
            &tmp.path().join("b"),
        ) {
            Ok(()) => break,
            Err(e) if t0.elapsed() < Duration::from_secs(20) => {
                eprintln!("not yet: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("no reconnect within 20 s: {e}"),
        }
    }
    let rows = tokio::task::spawn_blocking(move || PgCluster::count(&db, "manifests"))
        .await
        .unwrap();
    assert!(rows >= 2, "both images recorded in PostgreSQL: {rows}");
    assert!(bw.has_blob(&b.layers[0].digest));
}
