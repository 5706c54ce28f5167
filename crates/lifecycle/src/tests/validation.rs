//! One test per policy mistake, each asserting the exact message (which names
//! the rule and the field), plus error collection and JSON round trips.

use super::support::{policy, rule, rules, ARCHIVE, EXPIRE};
use crate::pattern::TagPattern;
use crate::policy::{
    Action, CountType, CountUnit, LifecyclePolicy, Rule, Selection, StorageClass, TagStatus,
};

const KEEP_V: &str = r#"{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":5}"#;
const UNTAGGED_1: &str =
    r#"{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1}"#;
const ANY_1: &str = r#"{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1}"#;

fn issues(json: &str) -> Vec<String> {
    match LifecyclePolicy::from_json(json) {
        Ok(_) => Vec::new(),
        Err(e) => e.issues.iter().map(ToString::to_string).collect(),
    }
}

fn assert_issue(json: &str, expected: &str) {
    let found = issues(json);
    assert!(
        found.iter().any(|i| i == expected),
        "expected {expected:?}\n     got {found:#?}\n for {json}"
    );
}

/// A single-rule policy.
fn one(selection: &str, action: &str) -> String {
    rules(&[rule(1, selection, action)])
}

/// A single-rule policy whose selection is `{"tagStatus":"any", <body>}`.
fn any_with(body: &str) -> String {
    one(&format!(r#"{{"tagStatus":"any",{body}}}"#), EXPIRE)
}

macro_rules! rejects {
    ($($name:ident: $json:expr => $message:expr;)+) => {
        $(
            #[test]
            fn $name() {
                assert_issue(&String::from($json), $message);
            }
        )+
    };
}

rejects! {
    prefix_list_on_untagged_rule:
        rules(&[rule(1, KEEP_V, EXPIRE), rule(2, r#"{"tagStatus":"untagged","tagPrefixList":["x"],"countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)])
        => r#"rule 2 (priority 2): selection.tagPrefixList is not allowed when tagStatus is "untagged""#;
    pattern_list_on_any_rule:
        any_with(r#""tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":1"#)
        => r#"rule 1 (priority 1): selection.tagPatternList is not allowed when tagStatus is "any""#;
    tagged_rule_without_tag_list:
        one(r#"{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)
        => r#"rule 1 (priority 1): selection.tagPrefixList or selection.tagPatternList is required when tagStatus is "tagged""#;
    tagged_rule_with_both_lists:
        one(r#"{"tagStatus":"tagged","tagPrefixList":["v"],"tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)
        => "rule 1 (priority 1): selection.tagPatternList cannot be combined with selection.tagPrefixList in one rule";
    empty_tag_pattern_list:
        one(r#"{"tagStatus":"tagged","tagPatternList":[],"countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)
        => "rule 1 (priority 1): selection.tagPatternList must not be empty";
    empty_tag_prefix_entry:
        one(r#"{"tagStatus":"tagged","tagPrefixList":[""],"countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)
        => "rule 1 (priority 1): selection.tagPrefixList[0] must not be empty";
    wildcard_in_prefix:
        one(r#"{"tagStatus":"tagged","tagPrefixList":["v*"],"countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)
        => "rule 1 (priority 1): selection.tagPrefixList[0] contains '*', which cannot appear in an image tag (use tagPatternList for wildcards)";
    too_many_wildcards:
        one(r#"{"tagStatus":"tagged","tagPatternList":["*test*1*2*3","test*1*2*3*4*5*6"],"countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)
        => r#"rule 1 (priority 1): selection.tagPatternList[1] has 6 wildcards; at most 4 are allowed (got "test*1*2*3*4*5*6")"#;
    duplicate_priority:
        rules(&[rule(3, UNTAGGED_1, EXPIRE), rule(3, KEEP_V, EXPIRE)])
        => "rule 2 (priority 3): rulePriority 3 is already used by rule 1 (priority 3)";
    zero_priority:
        rules(&[rule(0, KEEP_V, EXPIRE)])
        => "rule 1 (priority 0): rulePriority must be a positive integer (got 0)";
    negative_priority:
        format!(r#"{{"rules":[{{"rulePriority":-1,"selection":{KEEP_V},"action":{EXPIRE}}}]}}"#)
        => "rule 1 (priority -1): rulePriority must be a positive integer (got -1)";
    string_priority:
        format!(r#"{{"rules":[{{"rulePriority":"1","selection":{KEEP_V},"action":{EXPIRE}}}]}}"#)
        => r#"rule 1 (no valid priority): rulePriority must be a positive integer (got "1")"#;
    missing_priority:
        format!(r#"{{"rules":[{{"selection":{KEEP_V},"action":{EXPIRE}}}]}}"#)
        => "rule 1 (no valid priority): rulePriority is required";
    any_rule_not_last:
        rules(&[rule(1, ANY_1, EXPIRE), rule(2, KEEP_V, EXPIRE)])
        => r#"rule 1 (priority 1): selection.tagStatus "any" requires the highest rulePriority among rules selecting standard images, but rule 2 (priority 2) is higher"#;
    second_untagged_rule:
        rules(&[rule(1, UNTAGGED_1, EXPIRE), rule(2, UNTAGGED_1, EXPIRE)])
        => r#"rule 2 (priority 2): selection.tagStatus "untagged" is already selected by rule 1 (priority 1) for standard images; only one rule per storage class may select untagged images"#;
    repeated_tag_list:
        rules(&[rule(1, KEEP_V, EXPIRE), rule(2, &KEEP_V.replace("5", "9"), EXPIRE)])
        => "rule 2 (priority 2): selection.tagPrefixList repeats the tag list of rule 1 (priority 1) for standard images; each rule's tag list must be unique";
    count_unit_missing:
        any_with(r#""countType":"sinceImagePushed","countNumber":7"#)
        => r#"rule 1 (priority 1): selection.countUnit is required when countType is "sinceImagePushed""#;
    count_unit_with_image_count:
        any_with(r#""countType":"imageCountMoreThan","countUnit":"days","countNumber":7"#)
        => r#"rule 1 (priority 1): selection.countUnit is not allowed when countType is "imageCountMoreThan""#;
    count_unit_not_days:
        any_with(r#""countType":"sinceImagePushed","countUnit":"hours","countNumber":7"#)
        => r#"rule 1 (priority 1): selection.countUnit must be one of "days" (got "hours")"#;
    count_number_zero:
        any_with(r#""countType":"imageCountMoreThan","countNumber":0"#)
        => "rule 1 (priority 1): selection.countNumber must be a positive integer (got 0)";
    count_number_fraction:
        any_with(r#""countType":"imageCountMoreThan","countNumber":1.5"#)
        => "rule 1 (priority 1): selection.countNumber must be a positive integer (got 1.5)";
    count_number_missing:
        any_with(r#""countType":"imageCountMoreThan""#)
        => "rule 1 (priority 1): selection.countNumber is required";
    unknown_count_type:
        any_with(r#""countType":"sinceImageCreated","countUnit":"days","countNumber":1"#)
        => r#"rule 1 (priority 1): selection.countType must be one of "imageCountMoreThan", "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned" (got "sinceImageCreated")"#;
    unknown_tag_status:
        one(r#"{"tagStatus":"all","countType":"imageCountMoreThan","countNumber":1}"#, EXPIRE)
        => r#"rule 1 (priority 1): selection.tagStatus must be one of "tagged", "untagged", "any" (got "all")"#;
    transitioned_without_storage_class:
        any_with(r#""countType":"sinceImageTransitioned","countUnit":"days","countNumber":365"#)
        => r#"rule 1 (priority 1): selection.storageClass is required (and must be "archive") when countType is "sinceImageTransitioned""#;
    transitioned_on_standard:
        any_with(r#""storageClass":"standard","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365"#)
        => r#"rule 1 (priority 1): selection.storageClass must be "archive" when countType is "sinceImageTransitioned""#;
    archive_selection_by_push_age:
        any_with(r#""storageClass":"archive","countType":"sinceImagePushed","countUnit":"days","countNumber":365"#)
        => r#"rule 1 (priority 1): selection.storageClass must be "standard" when countType is "sinceImagePushed"; only sinceImageTransitioned selects archived images"#;
    archive_minimum_duration:
        any_with(r#""storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":30"#)
        => "rule 1 (priority 1): selection.countNumber must be at least 90 for sinceImageTransitioned: archived images must stay archived 90 days before expiring (got 30)";
    expire_by_pull_age:
        any_with(r#""countType":"sinceImagePulled","countUnit":"days","countNumber":90"#)
        => r#"rule 1 (priority 1): action.type must be "transition" when countType is "sinceImagePulled""#;
    transition_archived_images:
        one(r#"{"tagStatus":"any","storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":90}"#, ARCHIVE)
        => r#"rule 1 (priority 1): action.type must be "expire" when countType is "sinceImageTransitioned""#;
    transition_without_target:
        one(ANY_1, r#"{"type":"transition"}"#)
        => r#"rule 1 (priority 1): action.targetStorageClass is required when type is "transition""#;
    transition_to_standard:
        one(ANY_1, r#"{"type":"transition","targetStorageClass":"standard"}"#)
        => r#"rule 1 (priority 1): action.targetStorageClass must be "archive" (got "standard")"#;
    expire_with_target:
        one(ANY_1, r#"{"type":"expire","targetStorageClass":"archive"}"#)
        => r#"rule 1 (priority 1): action.targetStorageClass is not allowed when type is "expire""#;
    unknown_action_type:
        one(ANY_1, r#"{"type":"delete"}"#)
        => r#"rule 1 (priority 1): action.type must be one of "expire", "transition" (got "delete")"#;
    unknown_rule_field:
        format!(r#"{{"rules":[{{"rulePriority":1,"priority":1,"selection":{ANY_1},"action":{EXPIRE}}}]}}"#)
        => "rule 1 (priority 1): priority is not a recognised field";
    unknown_selection_field:
        any_with(r#""countType":"imageCountMoreThan","countNumber":1,"maxAge":3"#)
        => "rule 1 (priority 1): selection.maxAge is not a recognised field";
    unknown_action_field:
        one(ANY_1, r#"{"type":"expire","dryRun":true}"#)
        => "rule 1 (priority 1): action.dryRun is not a recognised field";
    unknown_policy_field:
        format!(r#"{{"version":2,"rules":[{}]}}"#, rule(1, ANY_1, EXPIRE))
        => "policy: version is not a recognised field";
    missing_selection:
        format!(r#"{{"rules":[{{"rulePriority":4,"action":{EXPIRE}}}]}}"#)
        => "rule 1 (priority 4): selection is required";
    action_not_object:
        format!(r#"{{"rules":[{{"rulePriority":1,"selection":{ANY_1},"action":"expire"}}]}}"#)
        => "rule 1 (priority 1): action must be a JSON object";
    description_not_string:
        format!(r#"{{"rules":[{{"rulePriority":1,"description":7,"selection":{ANY_1},"action":{EXPIRE}}}]}}"#)
        => "rule 1 (priority 1): description must be a string";
    rule_not_object:
        r#"{"rules":[42]}"#
        => "rule 1 (no valid priority): must be a JSON object";
    empty_rules:
        r#"{"rules":[]}"#
        => "policy: rules must contain at least one rule";
    missing_rules:
        "{}"
        => "policy: rules is required";
    policy_not_object:
        "[1]"
        => r#"policy: must be a JSON object with a "rules" array"#;
}

#[test]
fn invalid_json_is_reported() {
    let found = issues("{\"rules\": [");
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("policy: text is not valid JSON"),
        "{found:?}"
    );
}

#[test]
fn all_problems_are_collected_in_rule_order() {
    let json = rules(&[
        rule(1, ANY_1, EXPIRE),
        rule(
            2,
            r#"{"tagStatus":"untagged","tagPrefixList":["x"],"countType":"sinceImagePushed","countNumber":0}"#,
            EXPIRE,
        ),
        r#"{"rulePriority":3,"selection":{"tagStatus":"tagged","tagPatternList":["a*b*c*d*e*f"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire","extra":1}}"#.to_string(),
    ]);
    let found = issues(&json);
    let rule_of = |i: &String| i.split(':').next().unwrap_or_default().to_owned();
    let order: Vec<String> = found.iter().map(rule_of).collect();
    assert!(order.windows(2).all(|w| w[0] <= w[1]), "{found:#?}");
    for expected in [
        "rule 2 (priority 2): selection.tagPrefixList is not allowed when tagStatus is \"untagged\"",
        "rule 2 (priority 2): selection.countUnit is required when countType is \"sinceImagePushed\"",
        "rule 2 (priority 2): selection.countNumber must be a positive integer (got 0)",
        "rule 3 (priority 3): selection.tagPatternList[0] has 5 wildcards; at most 4 are allowed (got \"a*b*c*d*e*f\")",
        "rule 3 (priority 3): action.extra is not a recognised field",
    ] {
        assert!(found.iter().any(|i| i == expected), "missing {expected:?} in {found:#?}");
    }
    let message = LifecyclePolicy::from_json(&json).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "invalid lifecycle policy ({} problems); rule 2",
            found.len()
        )),
        "{message}"
    );
}

#[test]
fn validate_checks_policies_built_in_code() {
    let selection = Selection {
        tag_status: TagStatus::Tagged,
        tag_pattern_list: Some(vec![TagPattern::new("v*").expect("pattern")]),
        tag_prefix_list: None,
        storage_class: None,
        count_type: CountType::SinceImagePushed,
        count_unit: Some(CountUnit::Days),
        count_number: 30,
    };
    let good = Rule {
        rule_priority: 1,
        description: None,
        selection: selection.clone(),
        action: Action::archive(),
    };
    let mut policy = LifecyclePolicy { rules: vec![good] };
    assert_eq!(policy.validate(), Ok(()));
    policy.rules[0].selection.storage_class = Some(StorageClass::Archive);
    policy.rules[0].action = Action::expire();
    let err = policy
        .validate()
        .expect_err("archive + sinceImagePushed is invalid");
    assert_eq!(err.issues.len(), 1, "{err}");
    assert!(LifecyclePolicy { rules: vec![] }.validate().is_err());
}

#[test]
fn serde_deserialize_applies_the_same_validation() {
    let ok: LifecyclePolicy =
        serde_json::from_str(&rules(&[rule(1, KEEP_V, EXPIRE)])).expect("valid");
    assert_eq!(ok.rules.len(), 1);
    let err =
        serde_json::from_str::<LifecyclePolicy>(&rules(&[rule(0, KEEP_V, EXPIRE)])).unwrap_err();
    assert!(
        err.to_string()
            .contains("rule 1 (priority 0): rulePriority"),
        "{err}"
    );
}

#[test]
fn policies_round_trip_to_the_same_json() {
    let documents = [
        rules(&[rule(1, KEEP_V, EXPIRE)]),
        r#"{"rules":[
          {"rulePriority":10,"description":"Archive images older than 30 days","selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"transition","targetStorageClass":"archive"}},
          {"rulePriority":2,"description":"Expire archived","selection":{"tagStatus":"tagged","tagPatternList":["*-sha-*","prod*"],"storageClass":"archive","countType":"sinceImageTransitioned","countUnit":"days","countNumber":365},"action":{"type":"expire"}},
          {"rulePriority":3,"selection":{"tagStatus":"untagged","storageClass":"standard","countType":"sinceImagePulled","countUnit":"days","countNumber":90},"action":{"type":"transition","targetStorageClass":"archive"}}]}"#
            .to_string(),
    ];
    for doc in documents {
        let parsed = policy(&doc);
        let original: serde_json::Value = serde_json::from_str(&doc).expect("json");
        let written: serde_json::Value = serde_json::from_str(&parsed.to_json()).expect("json");
        assert_eq!(written, original);
        assert_eq!(policy(&parsed.to_json_pretty()), parsed);
        assert_eq!(
            parsed.to_json().parse::<LifecyclePolicy>(),
            Ok(parsed.clone())
        );
    }
}
