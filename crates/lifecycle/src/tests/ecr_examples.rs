//! The worked examples from Amazon ECR's lifecycle policy documentation,
//! replayed as data. Image names and ages follow the documentation; "pushed"
//! is `first_cached` here. Where the docs give two images the same age, the
//! one listed later is made a minute newer, matching the documented outcome.

use super::support::{archived, archived_by, expired, img, policy, DAY, NOW, SECOND};
use crate::evaluate::CachedImage;

/// Repository shared by the two "multiple rules" examples.
fn example_a_images() -> Vec<CachedImage> {
    vec![
        img("A", &["beta-1", "prod-1"], 10),
        img("B", &["beta-2", "prod-2"], 9),
        img("C", &["beta-3"], 8),
    ]
}

#[test]
fn filtering_on_image_age_with_a_pattern() {
    let json = r#"{"rules":[{"rulePriority":1,"description":"Expire images older than 14 days",
        "selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed",
        "countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#;
    let images = [
        img("old-prod", &["prod-7"], 20),
        img("new-prod", &["production"], 10),
        img("old-dev", &["dev-1"], 30),
        img("old-untagged", &[], 30),
    ];
    assert_eq!(expired(json, &images), ["old-prod"]);
}

#[test]
fn filtering_on_image_age_untagged() {
    // The older edition of the same page expired untagged images instead.
    let json = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged",
        "countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#;
    let images = [img("a", &[], 15), img("b", &[], 13), img("c", &["v1"], 40)];
    assert_eq!(expired(json, &images), ["a"]);
}

#[test]
fn filtering_on_last_pulled_time() {
    let json = r#"{"rules":[{"rulePriority":1,"description":"Archive images not pulled in 90 days",
        "selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":90},
        "action":{"type":"transition","targetStorageClass":"archive"}}]}"#;
    let images = [
        CachedImage {
            last_pulled: Some(NOW - 100 * DAY),
            ..img("stale", &["v1"], 200)
        },
        CachedImage {
            last_pulled: Some(NOW - 10 * DAY),
            ..img("busy", &["v2"], 200)
        },
        img("never-pulled-old", &[], 120),
        img("never-pulled-new", &[], 30),
    ];
    assert_eq!(archived_by(json, &images), ["never-pulled-old", "stale"]);
    assert!(expired(json, &images).is_empty());
}

#[test]
fn filtering_on_archive_transition_time() {
    let json = r#"{"rules":[{"rulePriority":1,"description":"Expire images archived for more than 365 days",
        "selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned",
        "countUnit":"days","countNumber":365},"action":{"type":"expire"}}]}"#;
    let images = [
        archived("long-archived", &["v1"], 900, 400),
        archived("recently-archived", &["v2"], 900, 100),
        img("standard-but-ancient", &["v0"], 2_000),
    ];
    assert_eq!(expired(json, &images), ["long-archived"]);
}

#[test]
fn filtering_on_image_count() {
    let json = r#"{"rules":[{"rulePriority":1,"description":"Keep only one untagged image, expire all others",
        "selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},
        "action":{"type":"expire"}}]}"#;
    let images = [
        img("u1", &[], 3),
        img("u2", &[], 2),
        img("u3", &[], 1),
        img("t", &["v1"], 9),
    ];
    assert_eq!(expired(json, &images), ["u1", "u2"]);
}

fn two_count_rules(first: &str, second: &str, key: &str) -> String {
    format!(
        r#"{{"rules":[
        {{"rulePriority":1,"selection":{{"tagStatus":"tagged","{key}":["{first}"],"countType":"imageCountMoreThan","countNumber":1}},"action":{{"type":"expire"}}}},
        {{"rulePriority":2,"selection":{{"tagStatus":"tagged","{key}":["{second}"],"countType":"imageCountMoreThan","countNumber":1}},"action":{{"type":"expire"}}}}]}}"#
    )
}

#[test]
fn multiple_rules_example_a() {
    // Rule 2 counts A, B and C, so it would mark A and B; A already belongs to
    // rule 1, and B was kept by rule 1, so B survives. Only A is expired.
    for json in [
        two_count_rules("prod*", "beta*", "tagPatternList"),
        two_count_rules("prod", "beta", "tagPrefixList"),
    ] {
        assert_eq!(expired(&json, &example_a_images()), ["A"], "{json}");
    }
}

#[test]
fn multiple_rules_example_b() {
    // Same repository with the priorities swapped: beta claims every image first.
    for json in [
        two_count_rules("beta*", "prod*", "tagPatternList"),
        two_count_rules("beta", "prod", "tagPrefixList"),
    ] {
        assert_eq!(expired(&json, &example_a_images()), ["A", "B"], "{json}");
    }
}

#[test]
fn multiple_tags_in_one_rule_example_a() {
    // Every list entry must match one of the image's tags: only C and F carry
    // both an alpha and a beta tag, and only C is older than five days.
    let images = [
        img("A", &["alpha-1"], 12),
        img("B", &["beta-1"], 11),
        img("C", &["alpha-2", "beta-2"], 10),
        img("D", &["alpha-3"], 4),
        img("E", &["beta-3"], 3),
        img("F", &["alpha-4", "beta-4"], 2),
    ];
    for list in [
        r#""tagPatternList":["alpha*","beta*"]"#,
        r#""tagPrefixList":["alpha","beta"]"#,
    ] {
        let json = format!(
            r#"{{"rules":[{{"rulePriority":1,"selection":{{"tagStatus":"tagged",{list},
            "countType":"sinceImagePushed","countNumber":5,"countUnit":"days"}},"action":{{"type":"expire"}}}}]}}"#
        );
        assert_eq!(expired(&json, &images), ["C"], "{list}");
    }
}

#[test]
fn multiple_tags_in_one_rule_example_b() {
    // Extra tags (gamma) do not stop an image from matching.
    let images = [
        img("A", &["alpha-1", "beta-1", "gamma-1"], 10),
        img("B", &["alpha-2", "beta-2"], 9),
        img("C", &["alpha-3", "beta-3", "gamma-2"], 8),
    ];
    for list in [
        r#""tagPatternList":["alpha*","beta*"]"#,
        r#""tagPrefixList":["alpha","beta"]"#,
    ] {
        let json = format!(
            r#"{{"rules":[{{"rulePriority":1,"selection":{{"tagStatus":"tagged",{list},
            "countType":"imageCountMoreThan","countNumber":1}},"action":{{"type":"expire"}}}}]}}"#
        );
        assert_eq!(expired(&json, &images), ["A", "B"], "{list}");
    }
}

#[test]
fn all_images_example_a() {
    let json = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any",
        "countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    let images = [
        img("A", &["alpha-1"], 4),
        img("B", &["beta-1"], 3),
        img("C", &[], 2),
        img("D", &["alpha-2"], 1),
    ];
    assert_eq!(expired(json, &images), ["A", "B", "C"]);
}

#[test]
fn all_images_example_b_combines_every_rule_type() {
    let json = r#"{"rules":[
        {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["alpha*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
        {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}},
        {"rulePriority":3,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#;
    let images = [
        img("A", &["alpha-1", "beta-1"], 4),
        img("B", &[], 3),
        img("C", &["alpha-2"], 2),
        img("D", &["git hash"], 1),
        CachedImage {
            first_cached: NOW - DAY + 60 * SECOND,
            ..img("E", &[], 1)
        },
    ];
    // Rule 3 counts all five but may only act on D: A and C belong to rule 1,
    // B and E to rule 2 (E is not older than one day, so it is kept).
    assert_eq!(expired(json, &images), ["A", "B", "D"]);
    let per_rule = super::support::outcome(json, &images);
    let rule_of = |d: &str| per_rule.iter().find(|(x, _, _)| x == d).map(|(_, p, _)| *p);
    assert_eq!(
        (rule_of("A"), rule_of("B"), rule_of("D")),
        (Some(1), Some(2), Some(3))
    );
}

#[test]
fn archive_production_images_older_than_30_days() {
    let json = r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["prod*"],
        "countType":"sinceImagePushed","countUnit":"days","countNumber":30},
        "action":{"type":"transition","targetStorageClass":"archive"}}]}"#;
    let images = [
        img("p-old", &["prod-1"], 31),
        img("p-new", &["prod-2"], 29),
        img("x", &["dev"], 90),
    ];
    assert_eq!(archived_by(json, &images), ["p-old"]);
}

#[test]
fn combining_archive_and_expire_rules() {
    // Two `any` rules are fine because each selects a different storage class.
    let json = r#"{"rules":[
        {"rulePriority":1,"description":"Archive images older than 30 days","selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}},
        {"rulePriority":2,"description":"Expire images archived for more than 365 days","selection":{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365},"action":{"type":"expire"}}]}"#;
    assert!(policy(json).validate().is_ok());
    let images = [
        img("fresh", &["v3"], 5),
        img("old", &["v2"], 45),
        archived("archived-long", &["v1"], 800, 400),
        archived("archived-short", &["v0"], 800, 200),
    ];
    assert_eq!(archived_by(json, &images), ["old"]);
    assert_eq!(expired(json, &images), ["archived-long"]);
}
