//! Quota eviction over a real store and index.

use super::fixture::{Fx, DAY};
use crate::lifecycle::gc::GcRequest;

/// max 100 kB, evict above 90 kB down to 50 kB.
const QUOTA: &str = "max_bytes = 100000\nhigh_water = 90\nlow_water = 50";

#[test]
fn eviction_is_least_recently_used_first_keeps_pinned_and_reaches_low_water() {
    let fx = Fx::new(QUOTA);
    let n = fx.now;
    let mut imgs = Vec::new();
    let mut layers = Vec::new();
    for (i, age) in [10, 8, 7, 3, 6].iter().enumerate() {
        let t = n - age * DAY;
        let l = fx.blob(&vec![i as u8; 20_000], t);
        imgs.push(fx.image("local/team/app", &[&format!("v{i}")], &[&l], t));
        layers.push(l);
    }
    // v0: oldest, never pulled, pinned by tag. v1 pulled 5 days ago, v2 yesterday, v3 never
    // (cached 3 days ago), v4 two days ago. Least recently used first: v1, v3, v4, v2.
    fx.pull("local/team/app", &imgs[1], n - 5 * DAY);
    fx.pull("local/team/app", &imgs[2], n - DAY);
    fx.pull("local/team/app", &imgs[4], n - 2 * DAY);
    fx.lc
        .pin("local/team/app:v0", Some("base image".into()))
        .unwrap();

    let r = fx.lc.gc(&GcRequest::default()).unwrap();
    let q = r.quota.clone().expect("quota configured");
    assert!(q.usage_bytes > 100_000, "{q:?}");
    let order: Vec<String> = q.evicted.iter().map(|e| e.tags.join(",")).collect();
    assert_eq!(order, vec!["v1", "v3", "v4"]);
    assert!(
        q.low_water_reachable && q.projected_bytes <= 50_000,
        "{q:?}"
    );
    assert!(r.store_bytes_after <= 50_000, "{r:?}");
    assert_eq!(r.store_bytes_after, q.projected_bytes);
    for i in [1, 3, 4] {
        assert!(
            !fx.stored(&layers[i]) && !fx.stored(&imgs[i]),
            "v{i} evicted"
        );
    }
    for i in [0, 2] {
        assert!(fx.stored(&layers[i]) && fx.stored(&imgs[i]), "v{i} kept");
    }
    let ev = fx.events("evict");
    assert_eq!(ev.len(), 3);
    assert!(ev[0].reason.contains("storage quota"), "{}", ev[0].reason);
    assert_eq!(ev[0].tags, vec!["v1"]);
    assert!(ev[0].bytes >= 20_000);

    // Below the high-water mark now: nothing more is evicted.
    let again = fx.lc.gc(&GcRequest::default()).unwrap();
    assert!(again.quota.unwrap().evicted.is_empty());
}

#[test]
fn a_shared_layer_is_not_counted_as_freed_until_its_last_image_goes() {
    let fx = Fx::new(QUOTA);
    let n = fx.now;
    let shared = fx.blob(&[9u8; 60_000], n - 9 * DAY);
    let (oa, ob) = (
        fx.blob(&[1u8; 1000], n - 9 * DAY),
        fx.blob(&[2u8; 1000], n - 9 * DAY),
    );
    let a = fx.image("local/x/a", &["1"], &[&shared, &oa], n - 9 * DAY);
    let b = fx.image("local/x/b", &["1"], &[&shared, &ob], n - 8 * DAY);
    let big = fx.blob(&[5u8; 30_000], n - 20 * DAY);
    let pinned = fx.image("local/y/c", &["1"], &[&big], n - 20 * DAY);
    fx.lc.pin("local/y/**", None).unwrap();

    let r = fx.lc.gc(&GcRequest::default()).unwrap();
    let q = r.quota.unwrap();
    assert_eq!(q.evicted.len(), 2, "{q:?}");
    assert_eq!(q.evicted[0].repository, "local/x/a");
    assert!(
        q.evicted[0].freed_bytes < 2_000,
        "the shared layer is not A's alone"
    );
    assert!(q.evicted[1].freed_bytes > 60_000, "B's eviction frees it");
    assert!(!fx.stored(&shared) && !fx.stored(&a) && !fx.stored(&b));
    assert!(fx.stored(&big) && fx.stored(&pinned));
}

#[test]
fn pinned_content_over_the_quota_is_reported_not_evicted() {
    let fx = Fx::new(QUOTA);
    let l = fx.blob(&[4u8; 95_000], fx.now - DAY);
    let img = fx.image("local/p/q", &["1"], &[&l], fx.now - DAY);
    fx.lc.pin(&format!("local/p/q@{img}"), None).unwrap();
    let r = fx.lc.gc(&GcRequest::default()).unwrap();
    let q = r.quota.unwrap();
    assert!(q.evicted.is_empty() && !q.low_water_reachable, "{q:?}");
    assert!(fx.stored(&l));
}

#[test]
fn recently_used_images_are_never_evicted_and_eviction_stops_when_nothing_more_frees() {
    let fx = Fx::with("http://127.0.0.1:9", QUOTA, "[gc]\ngrace = \"10m\"\n");
    let (n, old, recent) = (fx.now, fx.now - 10 * DAY, fx.now - 60_000);
    let image = |repo: &str, seed: u8, size: usize, at: i64| {
        let l = fx.blob(&vec![seed; size], at);
        (fx.image(repo, &["1"], &[&l], at), l)
    };
    let (a, _) = image("local/old/a", 1, 20_000, old);
    let (a2, _) = image("local/old/a2", 2, 20_000, old);
    // Cached long ago, being pulled right now.
    let (busy, busy_layer) = image("local/old/busy", 3, 20_000, old);
    fx.pull("local/old/busy", &busy, n - 1000);
    // Cached a minute ago: more than the low-water mark on their own.
    let (c, c_layer) = image("local/new/c", 4, 30_000, recent);
    let (d, _) = image("local/new/d", 5, 30_000, recent);
    // An old name for `c`'s manifest: evicting it frees nothing while `c` stays.
    fx.alias("local/old/alias", "1", &c, old);

    let r = fx.lc.gc(&GcRequest::default()).unwrap();
    let q = r.quota.clone().unwrap();
    let mut evicted: Vec<&str> = q.evicted.iter().map(|e| e.repository.as_str()).collect();
    evicted.sort();
    assert_eq!(evicted, vec!["local/old/a", "local/old/a2"], "{q:?}");
    assert!(
        !q.low_water_reachable && q.projected_bytes > 50_000,
        "{q:?}"
    );
    assert_eq!(q.kept_recent_images, 3, "{q:?}");
    assert!(!fx.stored(&a) && !fx.stored(&a2));
    for kept in [&busy, &busy_layer, &c, &c_layer, &d] {
        assert!(fx.stored(kept), "{kept} kept");
    }
    let names: Vec<String> = fx
        .lc
        .images(None)
        .unwrap()
        .into_iter()
        .map(|i| i.repository)
        .collect();
    assert!(names.contains(&"local/old/alias".to_string()), "{names:?}");
    assert_eq!(fx.events("evict").len(), 2);
}
