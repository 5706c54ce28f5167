//! The byte quota against the real binary: over the high-water mark, least recently pulled
//! images go first, pinned ones never, until the store is under the low-water mark.

use super::{admin_url, cli, cli_json, skopeo_copy, store_usage, ON_DEMAND};
use crate::bw::{local_upstream, Breakwater};
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{wait_until, TempDir};
use std::time::Duration;

fn image_bytes(img: &Image) -> u64 {
    img.blobs().iter().map(|b| b.data.len() as u64).sum::<u64>() + img.manifest.bytes.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_evicts_least_recently_pulled_keeps_pinned_and_reaches_low_water() {
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    let imgs: Vec<Image> = (0..4)
        .map(|i| Image::small(Format::Oci, 7600 + i))
        .collect();
    for (i, img) in imgs.iter().enumerate() {
        p.push_image(&format!("team/q{i}"), "v1", img).await;
    }
    let dir = TempDir::new("quota");
    let root = dir.path().join("store");
    let body = local_upstream(&reg.url(), "10m", "") + ON_DEMAND;
    let bw = Breakwater::launch(&root, &body).await;
    let tmp = TempDir::new("quota-pulls");
    // q0..q3 in order, then q1 again: least recently used first is q2, q3, q1 (q0 is pinned).
    for (n, i) in [0, 1, 2, 3, 1].into_iter().enumerate() {
        skopeo_copy(
            &format!("{}/local/team/q{i}:v1", bw.host()),
            &tmp.path().join(format!("pull{n}")),
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let (ok, out, err) = cli(&[
        "pin",
        "--admin",
        &admin_url(&bw),
        "local/team/q0:v1",
        "--note",
        "base",
    ]);
    assert!(
        ok && out.contains("pinned local/team/q0@sha256:"),
        "{out}{err}"
    );
    // Let the pull statistics reach the index before the restart.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let usage = store_usage(&root);
    assert_eq!(usage, imgs.iter().map(image_bytes).sum::<u64>());
    drop(bw);

    // A quota the store is 95% of, with a low-water mark only evicting two images reaches.
    let max = usage * 100 / 95;
    let target = usage - image_bytes(&imgs[2]) - image_bytes(&imgs[3]) / 2;
    let low = target as f64 * 100.0 / max as f64;
    let body = format!("max_bytes = {max}\nhigh_water = 90\nlow_water = {low:.4}\n\n{body}");
    let bw = Breakwater::launch(&root, &body).await;
    let config = bw.config_path().display().to_string();

    let gc = cli_json(&["gc", "--config", &config]);
    eprintln!("gc: {gc}");
    let evicted: Vec<&str> = gc["quota"]["evicted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["repository"].as_str().unwrap())
        .collect();
    assert_eq!(evicted, vec!["local/team/q2", "local/team/q3"]);
    let low_bytes = gc["quota"]["low_water_bytes"].as_u64().unwrap();
    assert!(
        store_usage(&root) <= low_bytes,
        "store still above the low-water mark: {gc}"
    );
    for (i, img) in imgs.iter().enumerate() {
        let kept = i == 0 || i == 1;
        for b in img.blobs() {
            assert_eq!(bw.has_blob(&b.digest), kept, "q{i} blob {}", b.digest);
        }
    }
    let events = cli_json(&["events", "--config", &config, "--kind", "evict"]);
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert!(
        events[0]["reason"].as_str().unwrap().contains("quota"),
        "{events:?}"
    );
    let (ok, table, _) = cli(&["gc", "--config", &config]);
    eprintln!("$ breakwater gc\n{table}");
    assert!(ok && table.contains("0 images evicted"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_the_high_water_mark_starts_gc_without_waiting_for_the_interval() {
    let reg = Registry::start_plain().await;
    let p = reg.pusher();
    let imgs: Vec<Image> = (0..3)
        .map(|i| Image::small(Format::Oci, 7700 + i))
        .collect();
    for (i, img) in imgs.iter().enumerate() {
        p.push_image(&format!("team/w{i}"), "v1", img).await;
    }
    let per_image = image_bytes(&imgs[0]);
    // Two images fit under the high-water mark, three do not; one is all the low mark allows.
    let max = per_image * 25 / 10;
    let body = format!(
        "max_bytes = {max}\nhigh_water = 90\nlow_water = 50\n\n{}",
        local_upstream(&reg.url(), "10m", "") + ON_DEMAND
    );
    let dir = TempDir::new("quota-watch");
    let root = dir.path().join("store");
    let bw = Breakwater::launch(&root, &body).await;
    let tmp = TempDir::new("quota-watch-pulls");
    for i in 0..3 {
        skopeo_copy(
            &format!("{}/local/team/w{i}:v1", bw.host()),
            &tmp.path().join(format!("w{i}")),
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // GC's interval is "0s" (on demand only): only the quota watch can start it.
    let admin = admin_url(&bw);
    let mut evicted = Vec::new();
    for _ in 0..40 {
        let events = cli_json(&["events", "--admin", &admin, "--kind", "evict"]);
        evicted = events["events"].as_array().unwrap().clone();
        if evicted.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(evicted.len(), 2, "{evicted:?}\n{}", bw.log_text());
    assert!(
        wait_until(Duration::from_secs(5), || !bw
            .has_blob(&imgs[1].layers[1].digest))
        .await
    );
    assert!(!bw.has_blob(&imgs[0].layers[1].digest));
    assert!(
        bw.has_blob(&imgs[2].layers[1].digest),
        "the most recent image stays"
    );
    assert!(store_usage(&root) <= max / 2);
}
