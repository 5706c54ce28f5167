//! PostgreSQL restarts under a running breakwater: cached content keeps being served while the
//! database is down, and the replica reconnects by itself once it is back.

use crate::bw::{local_upstream, Breakwater};
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{http_client, sha256_digest, TempDir};
use breakwater_store::pg::testing::PgCluster;
use std::time::Duration;

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
    let c = Image::small(Format::Oci, 9103);
    reg.pusher().push_image("team/c", "v1", &c).await;
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

    // Back again: the replica reconnects by itself, and the very first requests succeed (a
    // pooled connection found dead is replaced and the operation rerun, never a 503).
    pg.restart();
    first_pulls_succeed(&bw, &tmp.path().join("after-restart"), &a, ("team/b", &b)).await;
    assert!(bw.has_blob(&b.layers[0].digest));

    // A quick bounce while the pool holds idle connections (nothing touches the index while
    // the database is down): each of them is dead when the next requests take it.
    let warm = (0..6).map(|_| {
        http_client()
            .get(format!("{}/v2/local/team/b/manifests/v1", bw.url()))
            .send()
    });
    for r in futures_util::future::join_all(warm).await {
        assert_eq!(r.expect("warm-up").status(), 200);
    }
    pg.stop();
    pg.restart();
    first_pulls_succeed(&bw, &tmp.path().join("after-bounce"), &a, ("team/c", &c)).await;

    let rows = tokio::task::spawn_blocking(move || PgCluster::count(&db, "manifests"))
        .await
        .unwrap();
    assert!(rows >= 3, "the three images recorded in PostgreSQL: {rows}");
    assert!(bw.has_blob(&c.layers[0].digest));
}

/// Right after PostgreSQL came back: an uncached manifest answers 200 at the first request, then
/// skopeo pulls the cached image `a` and the uncached one, each at the first attempt.
async fn first_pulls_succeed(
    bw: &Breakwater,
    dir: &std::path::Path,
    a: &Image,
    (repo, fresh): (&str, &Image),
) {
    std::fs::create_dir_all(dir).unwrap();
    let r = http_client()
        .get(format!("{}/v2/local/{repo}/manifests/v1", bw.url()))
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer");
    let status = r.status().as_u16();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, 200, "the first request after the restart: {body}");
    skopeo(&format!("{}/local/team/a:v1", bw.host()), &dir.join("a"))
        .expect("the cached image pulls at the first attempt");
    skopeo(&format!("{}/local/{repo}:v1", bw.host()), &dir.join("new"))
        .expect("an uncached image pulls at the first attempt");
    for (sub, img) in [("a", a), ("new", fresh)] {
        let pulled = std::fs::read(dir.join(sub).join("manifest.json")).unwrap();
        assert_eq!(sha256_digest(&pulled), img.manifest.digest);
    }
}
