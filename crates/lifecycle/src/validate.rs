//! Semantic checks ECR applies to a structurally sound policy: field
//! combinations within a rule, and constraints across rules.

use super::pattern::is_tag_char;
use super::pattern::TagPattern;
use super::policy::{
    ActionType, CountType, PolicyIssue, Rule, RuleRef, Selection, StorageClass, TagStatus,
};
use std::collections::hash_map::{Entry, HashMap};

/// Archived images must stay in archive this many days before a lifecycle
/// rule may expire them (ECR's minimum archive storage duration).
pub const MIN_ARCHIVE_DAYS: u32 = 90;

fn rule_ref(index: usize, rule: &Rule) -> RuleRef {
    RuleRef {
        index,
        priority: Some(i64::from(rule.rule_priority)),
    }
}

fn push(issues: &mut Vec<PolicyIssue>, rule: RuleRef, field: &str, problem: String) {
    issues.push(PolicyIssue {
        rule: Some(rule),
        field: field.to_owned(),
        problem,
    });
}

/// Orders issues policy-level first, then by rule position (stable otherwise).
pub(super) fn sort_issues(issues: &mut [PolicyIssue]) {
    issues.sort_by_key(|i| i.rule.map_or(0, |r| r.index));
}

/// All checks on a complete rule set; `rules` pairs each rule with its 1-based position.
pub(super) fn check_policy(rules: &[(usize, &Rule)], issues: &mut Vec<PolicyIssue>) {
    if rules.is_empty() {
        issues.push(PolicyIssue {
            rule: None,
            field: "rules".into(),
            problem: "must contain at least one rule".into(),
        });
    }
    check_rules_individually(rules, issues);
    check_priorities(rules, issues);
    for class in [StorageClass::Standard, StorageClass::Archive] {
        let in_class: Vec<(usize, &Rule)> = rules
            .iter()
            .copied()
            .filter(|(_, r)| r.selection.selected_storage_class() == class)
            .collect();
        check_class(class, &in_class, issues);
    }
}

/// Checks that need only one rule at a time.
pub(super) fn check_rules_individually(rules: &[(usize, &Rule)], issues: &mut Vec<PolicyIssue>) {
    for &(index, rule) in rules {
        check_rule(rule_ref(index, rule), rule, issues);
    }
}

fn check_rule(at: RuleRef, rule: &Rule, issues: &mut Vec<PolicyIssue>) {
    let sel = &rule.selection;
    if rule.rule_priority == 0 {
        push(
            issues,
            at,
            "rulePriority",
            "must be a positive integer (got 0)".into(),
        );
    }
    let status = sel.tag_status;
    match (status, &sel.tag_prefix_list, &sel.tag_pattern_list) {
        (TagStatus::Tagged, None, None) => push(
            issues,
            at,
            "selection.tagPrefixList or selection.tagPatternList",
            "is required when tagStatus is \"tagged\"".into(),
        ),
        (TagStatus::Tagged, Some(_), Some(_)) => push(
            issues,
            at,
            "selection.tagPatternList",
            "cannot be combined with selection.tagPrefixList in one rule".into(),
        ),
        (TagStatus::Tagged, prefixes, patterns) => {
            if let Some(list) = prefixes {
                check_prefixes(at, list, issues);
            }
            if patterns.as_ref().is_some_and(Vec::is_empty) {
                push(
                    issues,
                    at,
                    "selection.tagPatternList",
                    "must not be empty".into(),
                );
            }
        }
        (_, prefixes, patterns) => {
            let not_allowed = format!("is not allowed when tagStatus is \"{status}\"");
            if prefixes.is_some() {
                push(issues, at, "selection.tagPrefixList", not_allowed.clone());
            }
            if patterns.is_some() {
                push(issues, at, "selection.tagPatternList", not_allowed);
            }
        }
    }
    check_counting(at, rule, issues);
    check_action(at, rule, issues);
}

fn check_prefixes(at: RuleRef, list: &[String], issues: &mut Vec<PolicyIssue>) {
    if list.is_empty() {
        push(
            issues,
            at,
            "selection.tagPrefixList",
            "must not be empty".into(),
        );
    }
    for (i, prefix) in list.iter().enumerate() {
        let field = format!("selection.tagPrefixList[{i}]");
        if prefix.is_empty() {
            push(issues, at, &field, "must not be empty".into());
        } else if let Some(bad) = prefix.chars().find(|&c| !is_tag_char(c)) {
            // A prefix is matched literally, so a wildcard here is always a mistake.
            let hint = if bad == '*' {
                " (use tagPatternList for wildcards)"
            } else {
                ""
            };
            let problem = format!("contains {bad:?}, which cannot appear in an image tag{hint}");
            push(issues, at, &field, problem);
        }
    }
}

fn check_counting(at: RuleRef, rule: &Rule, issues: &mut Vec<PolicyIssue>) {
    let sel = &rule.selection;
    let count_type = sel.count_type;
    match (count_type.is_time_based(), sel.count_unit) {
        (true, None) => push(
            issues,
            at,
            "selection.countUnit",
            format!("is required when countType is \"{count_type}\""),
        ),
        (false, Some(_)) => push(
            issues,
            at,
            "selection.countUnit",
            format!("is not allowed when countType is \"{count_type}\""),
        ),
        _ => {}
    }
    if sel.count_number == 0 {
        push(
            issues,
            at,
            "selection.countNumber",
            "must be a positive integer (got 0)".into(),
        );
    }
    if count_type == CountType::SinceImageTransitioned {
        match sel.storage_class {
            None => push(
                issues,
                at,
                "selection.storageClass",
                "is required (and must be \"archive\") when countType is \
                 \"sinceImageTransitioned\""
                    .into(),
            ),
            Some(StorageClass::Standard) => push(
                issues,
                at,
                "selection.storageClass",
                "must be \"archive\" when countType is \"sinceImageTransitioned\"".into(),
            ),
            Some(StorageClass::Archive) => {}
        }
        if (1..MIN_ARCHIVE_DAYS).contains(&sel.count_number) {
            let problem = format!(
                "must be at least {MIN_ARCHIVE_DAYS} for sinceImageTransitioned: archived images \
                 must stay archived {MIN_ARCHIVE_DAYS} days before expiring (got {})",
                sel.count_number
            );
            push(issues, at, "selection.countNumber", problem);
        }
    } else if sel.storage_class == Some(StorageClass::Archive) {
        push(
            issues,
            at,
            "selection.storageClass",
            format!(
                "must be \"standard\" when countType is \"{count_type}\"; \
                 only sinceImageTransitioned selects archived images"
            ),
        );
    }
}

fn check_action(at: RuleRef, rule: &Rule, issues: &mut Vec<PolicyIssue>) {
    let count_type = rule.selection.count_type;
    let action = &rule.action;
    match (action.kind, action.target_storage_class) {
        (ActionType::Expire, Some(_)) => push(
            issues,
            at,
            "action.targetStorageClass",
            "is not allowed when type is \"expire\"".into(),
        ),
        (ActionType::Transition, None) => push(
            issues,
            at,
            "action.targetStorageClass",
            "is required when type is \"transition\"".into(),
        ),
        (ActionType::Transition, Some(StorageClass::Standard)) => push(
            issues,
            at,
            "action.targetStorageClass",
            "must be \"archive\" (got \"standard\")".into(),
        ),
        _ => {}
    }
    let required = match count_type {
        CountType::SinceImagePulled => Some(ActionType::Transition),
        CountType::SinceImageTransitioned => Some(ActionType::Expire),
        _ => None,
    };
    if let Some(required) = required.filter(|r| *r != action.kind) {
        push(
            issues,
            at,
            "action.type",
            format!("must be \"{required}\" when countType is \"{count_type}\""),
        );
    }
}

fn check_priorities(rules: &[(usize, &Rule)], issues: &mut Vec<PolicyIssue>) {
    let mut first_use: HashMap<u32, RuleRef> = HashMap::new();
    for &(index, rule) in rules {
        let at = rule_ref(index, rule);
        match first_use.get(&rule.rule_priority) {
            Some(first) => push(
                issues,
                at,
                "rulePriority",
                format!("{} is already used by {first}", rule.rule_priority),
            ),
            None => {
                first_use.insert(rule.rule_priority, at);
            }
        }
    }
}

/// Constraints ECR scopes to the rules selecting one storage class; ECR's own
/// "archive then expire" example has two `any` rules, one per class.
fn check_class(class: StorageClass, rules: &[(usize, &Rule)], issues: &mut Vec<PolicyIssue>) {
    let Some(&(top_index, top)) = rules.iter().max_by_key(|(_, r)| r.rule_priority) else {
        return;
    };
    let top_ref = rule_ref(top_index, top);
    let mut untagged: Option<RuleRef> = None;
    let mut tag_lists = HashMap::new();
    for &(index, rule) in rules {
        let at = rule_ref(index, rule);
        match rule.selection.tag_status {
            TagStatus::Any if rule.rule_priority < top.rule_priority => {
                let problem = format!(
                    "\"any\" requires the highest rulePriority among rules selecting \
                     {class} images, but {top_ref} is higher"
                );
                push(issues, at, "selection.tagStatus", problem);
            }
            TagStatus::Untagged => match untagged {
                Some(first) => {
                    let problem = format!(
                        "\"untagged\" is already selected by {first} for {class} images; \
                         only one rule per storage class may select untagged images"
                    );
                    push(issues, at, "selection.tagStatus", problem);
                }
                None => untagged = Some(at),
            },
            TagStatus::Tagged => {
                check_unique_list(at, class, &rule.selection, &mut tag_lists, issues)
            }
            TagStatus::Any => {}
        }
    }
}

/// A rule's tag list as a set: (is a prefix list, sorted distinct entries).
type TagListKey<'a> = (bool, Vec<&'a str>);

/// ECR wants each rule's tag list to be unique within a storage class; a
/// repeated list could never act, as the earlier rule claims every match.
fn check_unique_list<'a>(
    at: RuleRef,
    class: StorageClass,
    sel: &'a Selection,
    seen: &mut HashMap<TagListKey<'a>, RuleRef>,
    issues: &mut Vec<PolicyIssue>,
) {
    let (is_prefix, field, mut list): (bool, &str, Vec<&str>) =
        match (&sel.tag_prefix_list, &sel.tag_pattern_list) {
            (Some(p), None) => (
                true,
                "selection.tagPrefixList",
                p.iter().map(String::as_str).collect(),
            ),
            (None, Some(p)) => (
                false,
                "selection.tagPatternList",
                p.iter().map(TagPattern::as_str).collect(),
            ),
            // Missing or conflicting lists are already reported per rule.
            _ => return,
        };
    list.sort_unstable();
    list.dedup();
    match seen.entry((is_prefix, list)) {
        Entry::Occupied(first) => {
            let problem = format!(
                "repeats the tag list of {} for {class} images; \
                 each rule's tag list must be unique",
                first.get()
            );
            push(issues, at, field, problem);
        }
        Entry::Vacant(slot) => {
            slot.insert(at);
        }
    }
}
