//! Lifecycle policy JSON (from the admin API and the config file): never panic; every rejection
//! names at least one problem; an accepted policy is valid, serialises to JSON that parses back
//! to the same policy (compact and pretty), and evaluates over a fixed set of cached images
//! with each image decided at most once by a rule the policy has, and a preview that agrees.
#![no_main]

use breakwater_lifecycle::policy::StorageClass;
use breakwater_lifecycle::{evaluate, preview, CachedImage, DecisionAction, LifecyclePolicy};
use breakwater_oci::time::{Timestamp, DAY_MS};
use breakwater_oci::Digest;
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = match LifecyclePolicy::from_json(text) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.issues.is_empty());
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert_eq!(policy.validate(), Ok(()));
    for json in [policy.to_json(), policy.to_json_pretty()] {
        assert_eq!(
            LifecyclePolicy::from_json(&json).as_ref(),
            Ok(&policy),
            "{json}"
        );
    }
    let ordered = policy.rules_by_priority();
    assert!(ordered
        .windows(2)
        .all(|w| w[0].rule_priority < w[1].rule_priority));

    let images = images();
    let now = Timestamp::from_ms(400 * DAY_MS);
    let decisions = evaluate(&policy, images, now);
    let priorities: HashSet<u32> = policy.rules.iter().map(|r| r.rule_priority).collect();
    let mut decided = HashSet::new();
    for d in &decisions {
        assert!(priorities.contains(&d.rule_priority));
        assert!(
            decided.insert(d.digest.clone()),
            "{} decided twice",
            d.digest
        );
        let image = images.iter().find(|i| i.digest == d.digest).unwrap();
        assert!(!image.pinned, "a pinned image was decided");
        if let DecisionAction::Transition(to) = d.action {
            assert_eq!(image.storage_class, StorageClass::Standard);
            assert_eq!(to, StorageClass::Archive);
        }
    }
    let p = preview(&policy, images, now);
    assert_eq!(p.decisions, decisions);
    assert_eq!(p.total_images(), decisions.len());
    assert_eq!(p.rules.len(), policy.rules.len());
});

/// A repository of 24 images: tagged and untagged, old and new, pulled or not, archived, pinned.
fn images() -> &'static [CachedImage] {
    static IMAGES: OnceLock<Vec<CachedImage>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let tags = [
            vec![],
            vec!["latest".to_string()],
            vec!["v1".to_string(), "prod-1".to_string()],
            vec!["release-2024".to_string()],
            vec!["dev".to_string(), "v2.0.1".to_string()],
            vec!["sha256-abc".to_string()],
        ];
        (0u8..24)
            .map(|i| {
                let day = i64::from(i) * 17;
                CachedImage {
                    digest: Digest::sha256_of(&[i]),
                    tags: tags[usize::from(i) % tags.len()].clone(),
                    first_cached: Timestamp::from_ms(day * DAY_MS + i64::from(i)),
                    last_pulled: (i % 3 != 0).then(|| Timestamp::from_ms((day + 5) * DAY_MS)),
                    transitioned_at: (i % 4 == 1).then(|| Timestamp::from_ms((day + 9) * DAY_MS)),
                    storage_class: if i % 4 == 1 {
                        StorageClass::Archive
                    } else {
                        StorageClass::Standard
                    },
                    size_bytes: u64::from(i) << 20,
                    pinned: i == 7,
                }
            })
            .collect()
    })
}
