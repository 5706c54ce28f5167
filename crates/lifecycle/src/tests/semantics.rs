//! Evaluation behaviour beyond the documented examples: shielding, count vs
//! age, tag matching details, pulled/pushed times, archive, pinning, preview.

use super::support::{
    archived, archived_by, expired, img, name, outcome, policy, rule, rules, ARCHIVE, DAY, EXPIRE,
    NOW, SECOND,
};
use crate::evaluate::{evaluate, CachedImage, DecisionAction};
use crate::policy::{ActionType, StorageClass};
use crate::preview::preview;
use breakwater_oci::time::Millis;

const UNTAGGED_7: &str =
    r#"{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7}"#;
const KEEP_30_V: &str = r#"{"tagStatus":"tagged","tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":30}"#;

fn aged_14(prefixes: &str) -> String {
    format!(
        r#"{{"tagStatus":"tagged","tagPrefixList":[{prefixes}],"countType":"sinceImagePushed","countUnit":"days","countNumber":14}}"#
    )
}

/// 40 release images v1..v40 (v40 newest), plus dev/feature/untagged images.
fn release_repo() -> Vec<CachedImage> {
    let mut images: Vec<CachedImage> = (1..=40)
        .map(|n| img(&format!("v{n}"), &[&format!("v{n}")], 100 - n))
        .collect();
    images.extend([
        img("dev-old", &["dev-123"], 20),
        img("dev-new", &["dev-124"], 3),
        img("feature-old", &["feature-login"], 15),
        img("both-old", &["dev-9", "feature-9"], 30),
        img("untagged-old", &[], 8),
        img("untagged-new", &[], 6),
    ]);
    images
}

#[test]
fn three_rule_example_uses_ecr_all_entries_semantics() {
    // As written, a single dev-/feature- rule needs BOTH kinds of tag on an image.
    let json = rules(&[
        rule(1, UNTAGGED_7, EXPIRE),
        rule(2, KEEP_30_V, EXPIRE),
        rule(3, &aged_14(r#""dev-","feature-""#), EXPIRE),
    ]);
    let mut want: Vec<String> = (1..=10).map(|n| format!("v{n}")).collect();
    want.extend(["both-old".into(), "untagged-old".into()]);
    want.sort();
    assert_eq!(expired(&json, &release_repo()), want);
}

#[test]
fn three_rule_intent_needs_one_rule_per_prefix() {
    let json = rules(&[
        rule(1, UNTAGGED_7, EXPIRE),
        rule(2, KEEP_30_V, EXPIRE),
        rule(3, &aged_14(r#""dev-""#), EXPIRE),
        rule(4, &aged_14(r#""feature-""#), EXPIRE),
    ]);
    let got = expired(&json, &release_repo());
    for d in [
        "dev-old",
        "feature-old",
        "both-old",
        "untagged-old",
        "v1",
        "v10",
    ] {
        assert!(got.contains(&d.to_string()), "{d} should expire: {got:?}");
    }
    for d in ["dev-new", "untagged-new", "v11", "v40"] {
        assert!(!got.contains(&d.to_string()), "{d} should be kept: {got:?}");
    }
}

#[test]
fn images_kept_by_a_count_rule_are_shielded_from_a_later_any_rule() {
    let any_keep_5 = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":5}"#;
    let json = rules(&[rule(1, KEEP_30_V, EXPIRE), rule(2, any_keep_5, EXPIRE)]);
    let got = outcome(&json, &release_repo());
    // v1..v10 go to rule 1; v11..v40 are kept by rule 1, so rule 2 may not touch
    // them even though it keeps only five images.
    assert_eq!(got.iter().filter(|(_, r, _)| *r == 1).count(), 10);
    let by_rule_2: Vec<&str> = got
        .iter()
        .filter(|(_, r, _)| *r == 2)
        .map(|(d, _, _)| d.as_str())
        .collect();
    assert_eq!(by_rule_2, ["both-old"]);
}

#[test]
fn lower_rules_still_count_images_claimed_by_higher_rules() {
    let v_keep_2 = r#"{"tagStatus":"tagged","tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":2}"#;
    let any_keep_3 = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3}"#;
    let images = [
        img("va", &["v3"], 1),
        img("vb", &["v2"], 2),
        img("vc", &["v1"], 3),
        img("x1", &["x"], 10),
        img("x2", &["y"], 11),
    ];
    // Rule 2 ranks va, vb, vc first, so x1 and x2 fall beyond its newest three.
    let json = rules(&[rule(1, v_keep_2, EXPIRE), rule(2, any_keep_3, EXPIRE)]);
    let got: Vec<(String, u32)> = outcome(&json, &images)
        .into_iter()
        .map(|(d, r, _)| (d, r))
        .collect();
    assert_eq!(got, [("vc".into(), 1), ("x1".into(), 2), ("x2".into(), 2)]);
}

#[test]
fn rules_apply_by_priority_not_by_position() {
    let prod_keep_1 = r#"{"tagStatus":"tagged","tagPrefixList":["prod"],"countType":"imageCountMoreThan","countNumber":1}"#;
    let beta_keep_1 = r#"{"tagStatus":"tagged","tagPrefixList":["beta"],"countType":"imageCountMoreThan","countNumber":1}"#;
    let images = [
        img("A", &["beta-1", "prod-1"], 10),
        img("B", &["beta-2", "prod-2"], 9),
        img("C", &["beta-3"], 8),
    ];
    // Written beta-first but prod has the lower priority number, so prod applies first.
    let json = rules(&[rule(20, beta_keep_1, EXPIRE), rule(10, prod_keep_1, EXPIRE)]);
    assert_eq!(
        outcome(&json, &images),
        [("A".to_string(), 10, DecisionAction::Expire)]
    );
}

#[test]
fn count_and_age_rules_select_differently() {
    let images: Vec<_> = (1..=6)
        .map(|d| img(&format!("d{d}"), &["rel"], d * 10))
        .collect();
    let count = r#"{"tagStatus":"tagged","tagPrefixList":["rel"],"countType":"imageCountMoreThan","countNumber":4}"#;
    let age = r#"{"tagStatus":"tagged","tagPrefixList":["rel"],"countType":"sinceImagePushed","countUnit":"days","countNumber":25}"#;
    assert_eq!(
        expired(&rules(&[rule(1, count, EXPIRE)]), &images),
        ["d5", "d6"]
    );
    assert_eq!(
        expired(&rules(&[rule(1, age, EXPIRE)]), &images),
        ["d3", "d4", "d5", "d6"]
    );
}

#[test]
fn age_limit_is_strictly_greater_than() {
    let images = [
        CachedImage {
            first_cached: NOW - 7 * DAY,
            ..img("exactly", &[], 0)
        },
        CachedImage {
            first_cached: NOW - 7 * DAY - SECOND,
            ..img("one-second-over", &[], 0)
        },
        CachedImage {
            first_cached: NOW + DAY,
            ..img("future", &[], 0)
        },
    ];
    assert_eq!(
        expired(&rules(&[rule(1, UNTAGGED_7, EXPIRE)]), &images),
        ["one-second-over"]
    );
}

#[test]
fn tag_status_partitions_images() {
    let images = [img("t", &["a"], 50), img("u", &[], 50)];
    let sel = |status: &str, extra: &str| {
        format!(
            r#"{{"tagStatus":"{status}"{extra},"countType":"sinceImagePushed","countUnit":"days","countNumber":1}}"#
        )
    };
    let run = |s: String| expired(&rules(&[rule(1, &s, EXPIRE)]), &images);
    assert_eq!(run(sel("tagged", r#","tagPatternList":["*"]"#)), ["t"]);
    assert_eq!(run(sel("untagged", "")), ["u"]);
    assert_eq!(run(sel("any", "")), ["t", "u"]);
}

#[test]
fn prefixes_and_patterns_differ() {
    let images = [
        img("v1.2", &["v1.2"], 9),
        img("v10", &["v10"], 9),
        img("xv1", &["xv1"], 9),
    ];
    let sel = |list: &str| {
        format!(
            r#"{{"tagStatus":"tagged",{list},"countType":"sinceImagePushed","countUnit":"days","countNumber":1}}"#
        )
    };
    let run = |list: &str| expired(&rules(&[rule(1, &sel(list), EXPIRE)]), &images);
    assert_eq!(run(r#""tagPrefixList":["v1"]"#), ["v1.2", "v10"]);
    assert_eq!(run(r#""tagPatternList":["v1.*"]"#), ["v1.2"]);
    // Without a wildcard a pattern must equal the whole tag.
    assert_eq!(run(r#""tagPatternList":["v1"]"#), Vec::<String>::new());
    assert_eq!(run(r#""tagPatternList":["*v1*"]"#), ["v1.2", "v10", "xv1"]);
}

#[test]
fn one_matching_tag_among_several_is_enough() {
    let images = [
        img("multi", &["latest", "stable", "v2.1"], 40),
        img("plain", &["latest"], 40),
    ];
    let sel = r#"{"tagStatus":"tagged","tagPatternList":["v*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#;
    assert_eq!(expired(&rules(&[rule(1, sel, EXPIRE)]), &images), ["multi"]);
}

#[test]
fn pulled_time_falls_back_to_first_cached() {
    let images = [
        CachedImage {
            last_pulled: Some(NOW - 2 * DAY),
            ..img("hot", &["a"], 300)
        },
        CachedImage {
            last_pulled: Some(NOW - 60 * DAY),
            ..img("cold", &["b"], 300)
        },
        img("never-pulled", &["c"], 45),
        img("never-pulled-young", &["d"], 20),
    ];
    let pulled =
        r#"{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30}"#;
    let pushed =
        r#"{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30}"#;
    assert_eq!(
        archived_by(&rules(&[rule(1, pulled, ARCHIVE)]), &images),
        ["cold", "never-pulled"]
    );
    assert_eq!(
        archived_by(&rules(&[rule(1, pushed, ARCHIVE)]), &images),
        ["cold", "hot", "never-pulled"]
    );
}

#[test]
fn archive_rules_see_only_archived_images() {
    let images = [
        archived("arch-old", &["v1"], 500, 200),
        archived("arch-no-time", &["v2"], 500, 0),
        img("std-old", &["v3"], 500),
    ];
    let images = [
        images[0].clone(),
        CachedImage {
            transitioned_at: None,
            ..images[1].clone()
        },
        images[2].clone(),
    ];
    let expire_archived = r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#;
    let keep_1_standard = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#;
    let json = rules(&[
        rule(1, keep_1_standard, ARCHIVE),
        rule(2, expire_archived, EXPIRE),
    ]);
    // The standard rule counts only std-old (so keeps it); the archive rule
    // cannot date arch-no-time, so it keeps it rather than guess.
    assert_eq!(
        outcome(&json, &images),
        [("arch-old".to_string(), 2, DecisionAction::Expire)]
    );
}

#[test]
fn transition_decisions_name_the_archive_class() {
    let sel = r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#;
    let images = [img("a", &[], 2), img("b", &[], 1)];
    let d = evaluate(&policy(&rules(&[rule(1, sel, ARCHIVE)])), &images, NOW);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (name(&d[0].digest).as_str(), d[0].action),
        ("a", DecisionAction::Transition(StorageClass::Archive))
    );
    assert!(
        d[0].reason.contains("imageCountMoreThan 1"),
        "{}",
        d[0].reason
    );
}

#[test]
fn pinned_images_are_invisible_to_rules() {
    let keep_2 = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2}"#;
    let images = [
        CachedImage {
            pinned: true,
            ..img("pinned-newest", &["v9"], 1)
        },
        img("n2", &["v8"], 2),
        img("n3", &["v7"], 3),
        CachedImage {
            pinned: true,
            ..img("pinned-oldest", &["v1"], 900)
        },
        img("n4", &["v6"], 4),
    ];
    // Pinned images neither expire nor use up one of the two kept slots.
    assert_eq!(expired(&rules(&[rule(1, keep_2, EXPIRE)]), &images), ["n4"]);
}

#[test]
fn equal_times_are_ordered_by_digest_regardless_of_input_order() {
    let keep_1 = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#;
    let json = rules(&[rule(1, keep_1, EXPIRE)]);
    let forward = [img("sha256:aa", &[], 5), img("sha256:bb", &[], 5)];
    let backward = [forward[1].clone(), forward[0].clone()];
    assert_eq!(expired(&json, &forward), ["sha256:aa"]);
    assert_eq!(expired(&json, &backward), ["sha256:aa"]);
}

#[test]
fn decisions_are_grouped_by_rule_and_oldest_first() {
    let json = rules(&[rule(2, KEEP_30_V, EXPIRE), rule(1, UNTAGGED_7, EXPIRE)]);
    let d = evaluate(&policy(&json), &release_repo(), NOW);
    let order: Vec<(u32, String)> = d
        .iter()
        .map(|x| (x.rule_priority, name(&x.digest)))
        .collect();
    let order: Vec<(u32, &str)> = order.iter().map(|(p, n)| (*p, n.as_str())).collect();
    assert_eq!(order[..3], [(1, "untagged-old"), (2, "v1"), (2, "v2")]);
}

#[test]
fn unvalidated_policies_evaluate_without_panicking() {
    let mut p = policy(&rules(&[rule(1, UNTAGGED_7, EXPIRE)]));
    p.rules[0].selection.count_number = 0;
    p.rules[0].selection.tag_status = crate::policy::TagStatus::Tagged;
    p.rules.push(p.rules[0].clone());
    assert!(p.validate().is_err());
    let d = evaluate(&p, &release_repo(), NOW);
    assert!(d.iter().all(|x| x.rule_priority == 1));
    assert!(evaluate(&p, &[], NOW).is_empty());
}

#[test]
fn preview_totals_bytes_per_rule_and_overall() {
    let json = rules(&[rule(1, UNTAGGED_7, EXPIRE), rule(2, KEEP_30_V, ARCHIVE)]);
    let mut images = release_repo();
    for (i, image) in images.iter_mut().enumerate() {
        image.size_bytes = 100 * (i as u64 + 1);
    }
    let p = preview(&policy(&json), &images, NOW);
    assert_eq!(p.rules.len(), 2);
    assert_eq!(
        (
            p.rules[0].rule_priority,
            p.rules[0].action,
            p.rules[0].images
        ),
        (1, ActionType::Expire, 1)
    );
    // untagged-old is image index 44 → 4,500 bytes; v1..v10 are indexes 0..9.
    assert_eq!(p.rules[0].bytes, 4_500);
    assert_eq!(
        (p.rules[1].images, p.rules[1].bytes),
        (10, (1..=10).map(|n| n * 100).sum::<u64>())
    );
    assert_eq!((p.expiring_images, p.expiring_bytes), (1, 4_500));
    assert_eq!((p.transitioning_images, p.transitioning_bytes), (10, 5_500));
    assert_eq!((p.total_images(), p.total_bytes()), (11, 10_000));
    assert_eq!(p.decisions, evaluate(&policy(&json), &images, NOW));
    let json_out = serde_json::to_value(&p).expect("preview serializes");
    assert_eq!(
        json_out["decisions"][1]["action"],
        serde_json::json!({"type":"transition","targetStorageClass":"archive"})
    );
    assert_eq!(
        json_out["decisions"][0]["action"],
        serde_json::json!({"type":"expire"})
    );
}

#[test]
fn images_cached_within_one_second_rank_by_milliseconds() {
    // A CI run pulls v1.0 … v1.3 in one burst: the newest two by cache time stay, whatever
    // their digests' order.
    let burst: Vec<CachedImage> = [
        ("d", "v1.0", 10),
        ("c", "v1.1", 20),
        ("b", "v1.2", 30),
        ("a", "v1.3", 40),
    ]
    .iter()
    .map(|(d, t, ms)| CachedImage {
        // One day old, plus `ms` milliseconds within the same second.
        first_cached: NOW - DAY + Millis::from_ms(*ms),
        ..img(d, &[t], 1)
    })
    .collect();
    let keep_two = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}"#;
    assert_eq!(expired(keep_two, &burst), vec!["c", "d"]);
}

#[test]
fn ages_count_whole_seconds() {
    // Now is a whole second: an image cached half a second into the second before the 7-day
    // mark is one (whole) second over it; one cached within the mark's own second is not.
    let images = [
        CachedImage {
            first_cached: NOW - 7 * DAY - Millis::from_ms(500),
            ..img("half-second-over", &[], 0)
        },
        CachedImage {
            first_cached: NOW - 7 * DAY + Millis::from_ms(500),
            ..img("within-the-mark", &[], 0)
        },
    ];
    assert_eq!(
        expired(&rules(&[rule(1, UNTAGGED_7, EXPIRE)]), &images),
        ["half-second-over"]
    );
    let late = evaluate(
        &policy(&rules(&[rule(1, UNTAGGED_7, EXPIRE)])),
        &images[1..],
        NOW + Millis::from_ms(999),
    );
    assert!(late.is_empty(), "{late:?}");
}
