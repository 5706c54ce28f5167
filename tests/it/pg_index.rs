//! breakwater with its index on a real PostgreSQL (a private cluster started by the test) and
//! the real docker-registry upstream: skopeo pulls through it, the admin API and commands list
//! what PostgreSQL holds, pins, policies, expiry, events and GC work, and after a restart with
//! the upstream stopped the cached tags are still served from what PostgreSQL remembers.

use crate::bw::{local_upstream, Breakwater};
use crate::lifecycle::{admin_url, api, cli, cli_json, skopeo_copy, ON_DEMAND};
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::TempDir;
use breakwater_store::pg::testing::PgCluster;
use reqwest::Method;
use std::time::Duration;

const KEEP_NEWEST: &str = r#"{"rules":[{"rulePriority":1,"description":"keep the newest",
  "selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},
  "action":{"type":"expire"}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_index_serves_lifecycle_and_survives_a_restart_without_upstream() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let plain = pg.database();
    // A password in the URL (trust auth ignores it) must never reach the log.
    let url = plain.replace("postgres@", "postgres:pw-never-logged@");
    let mut reg = Registry::start_plain().await;
    let p = reg.pusher();
    let imgs: Vec<Image> = (0..3)
        .map(|i| Image::small(Format::Oci, 9100 + i))
        .collect();
    for (i, img) in imgs.iter().enumerate() {
        p.push_image("team/app", &format!("v{}", i + 1), img).await;
    }
    let storage =
        format!("index = \"postgres\"\n\n[storage.postgres]\nurl = \"{url}\"\npool_size = 3");
    let body = local_upstream(&reg.url(), "10m", "") + ON_DEMAND;
    let mut bw = Breakwater::start_with_storage(&storage, &body).await;
    let admin = admin_url(&bw);
    let tmp = TempDir::new("pg-index");
    for i in 1..=3 {
        skopeo_copy(
            &format!("{}/local/team/app:v{i}", bw.host()),
            &tmp.path().join(format!("v{i}")),
        );
        // "Pushed" (first cached) orders the images for the policy.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    assert!(
        !bw.root().join("index.sqlite").exists(),
        "the SQLite index must not be used"
    );
    assert_eq!(PgCluster::count(&plain, "images"), 3);
    assert_eq!(PgCluster::count(&plain, "tags"), 3);
    assert!(
        PgCluster::count(&plain, "blobs") >= 7,
        "manifests, config and layers"
    );

    let (ok, table, err) = cli(&["images", "--admin", &admin]);
    assert!(ok, "{err}");
    assert!(
        table.contains("local/team/app") && table.contains("3 images"),
        "{table}"
    );
    let repos = bw.admin_get("/repositories").await;
    assert!(repos.to_string().contains("local/team/app"), "{repos}");

    // Pin v1, keep the newest: only v2 expires.
    let (ok, out, err) = cli(&[
        "pin",
        "--admin",
        &admin,
        "local/team/app:v1",
        "--note",
        "base",
    ]);
    assert!(
        ok && out.contains("pinned local/team/app@sha256:"),
        "{out}{err}"
    );
    let (status, body) = api(
        Method::PUT,
        &format!("{admin}/api/v1/lifecycle/policy?scope=local/team/app"),
        Some(KEEP_NEWEST.into()),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(PgCluster::count(&plain, "pins"), 1);
    assert_eq!(PgCluster::count(&plain, "lifecycle_policies"), 1);
    let applied = cli_json(&["lifecycle", "apply", "--admin", &admin]);
    assert_eq!(
        (
            applied["applied"].clone(),
            applied["expiring_images"].clone()
        ),
        (true.into(), 1.into()),
        "{applied}"
    );
    let expired = cli_json(&["events", "--admin", &admin, "--kind", "expire"]);
    let expired = expired["events"].as_array().unwrap();
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["tags"][0], "v2");
    let gc = cli_json(&["gc", "--admin", &admin]);
    // v2's manifest, config and two layers (no image shares them).
    assert_eq!(gc["deleted_blobs"], 4, "{gc}");
    assert_eq!(PgCluster::count(&plain, "images"), 2);
    let pins = bw.admin_get("/pins").await;
    assert_eq!(pins["pins"].as_array().unwrap().len(), 1, "{pins}");

    // Restart with the upstream gone: PostgreSQL remembers the tags; the store has the bytes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    reg.stop();
    bw.restart().await;
    for tag in ["v1", "v3"] {
        skopeo_copy(
            &format!("{}/local/team/app:{tag}", bw.host()),
            &tmp.path().join(format!("again-{tag}")),
        );
    }
    let (ok, table, err) = cli(&["images", "--admin", &admin]);
    assert!(ok && table.contains("2 images"), "{table}{err}");
    assert!(
        !bw.log_text().contains("pw-never-logged"),
        "the index password reached the log"
    );
    // Background services (scans, lifecycle, readiness) ran on the PostgreSQL index too; the
    // blocking client must never be called on an async task (it panics there).
    assert!(
        !bw.log_text().contains("panicked"),
        "a thread panicked:\n{}",
        bw.log_text()
    );
}
