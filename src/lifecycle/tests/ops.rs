//! Policies, preview, apply and pins through the index (the engine's semantics are tested on
//! their own in `semantics` and `ecr_examples`).

use super::fixture::{key, Fx, DAY};
use crate::lifecycle::apply::PreviewRequest;
use crate::lifecycle::OpError;
use crate::oci::Digest;

/// ECR's documented three-rule example, with "the last 30" scaled down to 2.
const THREE_RULES: &str = r#"{"rules":[
  {"rulePriority":1,"description":"Expire untagged images older than 7 days",
   "selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},
   "action":{"type":"expire"}},
  {"rulePriority":2,"description":"Keep the last 2 v* images",
   "selection":{"tagStatus":"tagged","tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":2},
   "action":{"type":"expire"}},
  {"rulePriority":3,"description":"Expire dev and feature builds after 14 days",
   "selection":{"tagStatus":"tagged","tagPrefixList":["dev-"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14},
   "action":{"type":"expire"}},
  {"rulePriority":4,
   "selection":{"tagStatus":"tagged","tagPrefixList":["feature-"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14},
   "action":{"type":"expire"}}]}"#;

const EXPIRE_ALL_BUT_ONE: &str = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;

#[test]
fn the_three_rule_example_applied_through_the_index() {
    let fx = Fx::new("");
    let r = "local/team/app";
    let n = fx.now;
    let img = |tags: &[&str], age_days: i64, seed: u8| {
        let t = n - age_days * DAY;
        let l = fx.blob(&[seed; 100], t);
        fx.image(r, tags, &[&l], t)
    };
    let old_untagged = img(&[], 9, 1);
    let new_untagged = img(&[], 2, 2);
    let v1 = img(&["v1"], 30, 3);
    let v2 = img(&["v2"], 20, 4);
    let v3 = img(&["v3", "latest"], 10, 5);
    let dev_old = img(&["dev-abc"], 15, 6);
    let dev_new = img(&["dev-def"], 3, 7);
    let feature_old = img(&["feature-x"], 20, 8);

    let preview = fx.lc.preview(&PreviewRequest {
        policy: Some(serde_json::from_str(THREE_RULES).unwrap()),
        ..Default::default()
    });
    let preview = preview.unwrap();
    assert!(!preview.applied);
    assert_eq!(preview.expiring_images, 4);
    assert_eq!(preview.repositories[0].policy.source, "request");
    assert_eq!(
        fx.lc.images(None).unwrap().len(),
        8,
        "a preview changes nothing"
    );

    fx.lc.put_policy(r, THREE_RULES).unwrap();
    let applied = fx.lc.apply(None).unwrap();
    assert!(applied.applied);
    let mut expired: Vec<(u32, Digest)> = applied.repositories[0]
        .results
        .iter()
        .map(|x| (x.rule_priority, x.digest.clone()))
        .collect();
    expired.sort();
    let want = vec![
        (1, old_untagged.clone()),
        (2, v1.clone()),
        (3, dev_old.clone()),
        (4, feature_old.clone()),
    ];
    assert_eq!(expired, want);

    let left: Vec<Digest> = fx
        .lc
        .images(None)
        .unwrap()
        .into_iter()
        .map(|i| i.digest)
        .collect();
    for kept in [&new_untagged, &v2, &v3, &dev_new] {
        assert!(left.contains(kept), "{kept} kept");
    }
    assert_eq!(left.len(), 4);
    assert_eq!(
        fx.lc.cache.index.tags(&key(r)).unwrap(),
        vec!["dev-def", "latest", "v2", "v3"]
    );
    assert_eq!(
        fx.lc.cache.index.manifest(&v1).unwrap(),
        None,
        "manifest record removed"
    );

    let events = fx.events("expire");
    assert_eq!(events.len(), 4);
    let e = events.iter().find(|e| e.tags == vec!["v1"]).unwrap();
    assert_eq!(e.upstream.as_deref(), Some("local"));
    assert_eq!(e.repository.as_deref(), Some("team/app"));
    assert!(
        e.reason.contains("rule 2") && e.reason.contains("Keep the last 2"),
        "{}",
        e.reason
    );
    assert!(e.bytes > 100);
}

#[test]
fn api_policies_override_config_and_the_most_specific_pattern_wins() {
    let fx = Fx::with(
        "http://127.0.0.1:9",
        "",
        &format!(
            "[gc]\ngrace = \"0s\"\n[lifecycle]\ndefault_policy = '{EXPIRE_ALL_BUT_ONE}'\n[[lifecycle.policies]]\nrepositories = \"local/team/*\"\npolicy = '{EXPIRE_ALL_BUT_ONE}'\n"
        ),
    );
    let t = fx.now - DAY;
    for repo in ["local/team/app", "local/team/db", "local/other/x"] {
        let l = fx.blob(repo.as_bytes(), t);
        fx.image(repo, &["1"], &[&l], t);
    }
    let policy_of = |fx: &Fx, repo: &str| {
        fx.lc
            .repositories()
            .unwrap()
            .into_iter()
            .find(|r| r.repository == repo)
            .and_then(|r| r.policy)
            .map(|p| format!("{} {}", p.scope, p.source))
    };
    assert_eq!(
        policy_of(&fx, "local/team/app").unwrap(),
        "local/team/* config"
    );
    assert_eq!(policy_of(&fx, "local/other/x").unwrap(), "default config");

    fx.lc
        .put_policy("local/team/*", EXPIRE_ALL_BUT_ONE)
        .unwrap();
    fx.lc
        .put_policy("local/team/app", EXPIRE_ALL_BUT_ONE)
        .unwrap();
    assert_eq!(
        policy_of(&fx, "local/team/app").unwrap(),
        "local/team/app api"
    );
    assert_eq!(policy_of(&fx, "local/team/db").unwrap(), "local/team/* api");
    let listed = fx.lc.policy_list().unwrap();
    let cfg = listed
        .iter()
        .find(|p| p.scope == "local/team/*" && p.source == "config")
        .unwrap();
    assert!(
        !cfg.effective,
        "overridden by the API's policy for the same scope"
    );

    // Deleting the API's policy falls back to the file's; the file's cannot be deleted.
    fx.lc.delete_policy("local/team/*").unwrap();
    assert_eq!(
        policy_of(&fx, "local/team/db").unwrap(),
        "local/team/* config"
    );
    assert!(matches!(
        fx.lc.delete_policy("default"),
        Err(OpError::Conflict(_))
    ));
    assert!(matches!(
        fx.lc.delete_policy("local/nope"),
        Err(OpError::NotFound(_))
    ));
    let bad = fx
        .lc
        .put_policy("local/a", r#"{"rules":[{"rulePriority":1}]}"#);
    match bad {
        Err(OpError::BadRequest(m)) => assert!(m.contains("selection"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        fx.lc.put_policy("a//b", EXPIRE_ALL_BUT_ONE),
        Err(OpError::BadRequest(_))
    ));
}

#[test]
fn reclaimable_bytes_count_shared_layers_only_when_no_retained_image_needs_them() {
    let fx = Fx::new("");
    let t = fx.now - 5 * DAY;
    let shared = fx.blob(&[1u8; 10_000], t);
    let own_old = fx.blob(&[2u8; 1_000], t);
    let own_new = fx.blob(&[3u8; 2_000], t);
    fx.image("local/a/b", &["old"], &[&shared, &own_old], t);
    fx.image("local/a/b", &["new"], &[&shared, &own_new], t + 2000);
    let p = fx
        .lc
        .preview(&PreviewRequest {
            policy: Some(serde_json::from_str(EXPIRE_ALL_BUT_ONE).unwrap()),
            ..Default::default()
        })
        .unwrap();
    let res = &p.repositories[0].results;
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].tags, vec!["old"]);
    // Its stored bytes include the shared layer; what GC would free does not.
    assert!(res[0].stored_bytes > 11_000);
    assert!(
        p.reclaimable_bytes > 1_000 && p.reclaimable_bytes < 2_000,
        "{p:?}"
    );
}

#[test]
fn pins_hide_images_from_policies_and_block_deletion() {
    let fx = Fx::new("");
    let t = fx.now - 5 * DAY;
    for (i, tag) in ["a", "b", "c"].iter().enumerate() {
        let l = fx.blob(&[i as u8; 10], t);
        fx.image("local/team/app", &[tag], &[&l], t + i as i64 * 1000);
    }
    let pin = fx
        .lc
        .pin("local/team/app:a", Some("release".into()))
        .unwrap();
    assert!(pin.target.starts_with("local/team/app@sha256:"), "{pin:?}");
    fx.lc.put_policy("default", EXPIRE_ALL_BUT_ONE).unwrap();
    let r = fx.lc.apply(None).unwrap();
    // Among the unpinned b and c only the newest (c) stays; pinned a is not even counted.
    let gone: Vec<&str> = r.repositories[0]
        .results
        .iter()
        .map(|x| x.tags[0].as_str())
        .collect();
    assert_eq!(gone, vec!["b"]);
    assert!(matches!(
        fx.lc.delete_image("local/team/app:a"),
        Err(OpError::Conflict(_))
    ));
    fx.lc.unpin(&pin.target).unwrap();
    assert!(matches!(
        fx.lc.unpin(&pin.target),
        Err(OpError::NotFound(_))
    ));
    fx.lc.delete_image("local/team/app:a").unwrap();
    assert!(matches!(
        fx.lc.pin("local/team/app:nope", None),
        Err(OpError::NotFound(_))
    ));
    assert!(matches!(
        fx.lc.pin("a//b", None),
        Err(OpError::BadRequest(_))
    ));
    assert!(matches!(
        fx.lc.image("not a reference"),
        Err(OpError::BadRequest(_))
    ));
    let kinds: Vec<String> = ["pin", "unpin", "delete", "expire"]
        .iter()
        .filter(|k| !fx.events(k).is_empty())
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kinds, vec!["pin", "unpin", "delete", "expire"]);
}

#[test]
fn evaluation_follows_the_injected_clock() {
    use crate::lifecycle::Lifecycle;
    use breakwater_oci::time::{ManualClock, Millis, Timestamp};
    use std::sync::Arc;

    let fx = Fx::new("");
    let r = "local/team/app";
    let t = fx.now - 2 * DAY;
    let l = fx.blob(&[9u8; 100], t);
    let untagged = fx.image(r, &[], &[&l], t);
    let clock = Arc::new(ManualClock::new(Timestamp::from_ms(fx.now)));
    let lc = Lifecycle::new(
        fx.reg.cache_handle(),
        fx.lc.settings.clone(),
        fx.lc.quota.clone(),
    )
    .with_clock(clock.clone());
    let week = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}]}"#;
    lc.put_policy(r, week).unwrap();

    let now = lc.preview(&PreviewRequest::default()).unwrap();
    assert_eq!((now.at_ms, now.expiring_images), (fx.now, 0));
    // Five days on the image is seven days old: not yet more than seven.
    clock.advance(Millis::days(5));
    assert_eq!(lc.apply(None).unwrap().expiring_images, 0);
    clock.advance(Millis::secs(1));
    let applied = lc.apply(None).unwrap();
    assert_eq!(applied.at_ms, fx.now + 5 * DAY + 1000);
    assert_eq!(applied.repositories[0].results[0].digest, untagged);
    assert!(lc.images(None).unwrap().is_empty());
    assert_eq!(lc.last_runs().1, Some(applied.at_ms));
}
