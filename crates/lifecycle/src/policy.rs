//! Lifecycle policy model in Amazon ECR's JSON shape, with parsing that
//! collects every problem (see `parse`) and cross-field validation (see
//! `validate`). Serializing a policy yields the same JSON shape it was read from.

use super::pattern::TagPattern;
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// Defines a string-valued enum with its exact ECR wire spelling.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const WIRE_VALUES: &'static [&'static str] = &[$($wire),+];

            /// The exact spelling used in policy JSON.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// Parses the exact (case-sensitive) JSON spelling.
            pub fn from_wire(s: &str) -> Option<Self> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// Which images a rule considers by tag state.
    TagStatus {
        /// Images with at least one tag matching the rule's tag list.
        Tagged => "tagged",
        /// Images without any tag.
        Untagged => "untagged",
        /// Every image.
        Any => "any",
    }
);

wire_enum!(
    /// Where an image's content lives.
    StorageClass {
        /// Normal, pullable storage.
        Standard => "standard",
        /// Cold storage; not pullable until restored.
        Archive => "archive",
    }
);

wire_enum!(
    /// How a rule decides which matching images to act on.
    CountType {
        /// Keep the newest `countNumber` images, act on the rest.
        ImageCountMoreThan => "imageCountMoreThan",
        /// Act on images pushed (cached, or restored from archive) more than `countNumber`
        /// days ago.
        SinceImagePushed => "sinceImagePushed",
        /// Act on images last pulled more than `countNumber` days ago.
        SinceImagePulled => "sinceImagePulled",
        /// Act on archived images transitioned more than `countNumber` days ago.
        SinceImageTransitioned => "sinceImageTransitioned",
    }
);

wire_enum!(
    /// Unit of `countNumber` for the time-based count types.
    CountUnit {
        /// The only unit ECR supports.
        Days => "days",
    }
);

wire_enum!(
    /// What a rule does to the images it selects.
    ActionType {
        /// Delete the image.
        Expire => "expire",
        /// Move the image to another storage class.
        Transition => "transition",
    }
);

impl CountType {
    /// True for the age-based count types, which need `countUnit`.
    pub fn is_time_based(self) -> bool {
        self != CountType::ImageCountMoreThan
    }
}

/// A whole lifecycle policy: `{"rules": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LifecyclePolicy {
    /// Rules in the order they were written; evaluation orders them by priority.
    pub rules: Vec<Rule>,
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    /// Unique positive priority; lower numbers are applied first.
    pub rule_priority: u32,
    /// Optional free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Which images the rule considers and when it acts.
    pub selection: Selection,
    /// What happens to the images the rule marks.
    pub action: Action,
}

/// The `selection` object of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// Tag state filter.
    pub tag_status: TagStatus,
    /// Wildcard patterns; every entry must match one of the image's tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_pattern_list: Option<Vec<TagPattern>>,
    /// Tag prefixes; every entry must prefix one of the image's tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_prefix_list: Option<Vec<String>>,
    /// Storage class the rule selects; `None` means `standard`, as in ECR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<StorageClass>,
    /// Count or age criterion.
    pub count_type: CountType,
    /// Required for the time-based count types, forbidden otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count_unit: Option<CountUnit>,
    /// Image count or number of days; must be at least 1.
    pub count_number: u32,
}

impl Selection {
    /// The storage class this rule selects, applying ECR's `standard` default.
    pub fn selected_storage_class(&self) -> StorageClass {
        self.storage_class.unwrap_or(StorageClass::Standard)
    }
}

/// The `action` object of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    /// `expire` or `transition`.
    #[serde(rename = "type")]
    pub kind: ActionType,
    /// Required (and must be `archive`) for `transition`; absent for `expire`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_storage_class: Option<StorageClass>,
}

impl Action {
    /// An `expire` action.
    pub fn expire() -> Self {
        Self {
            kind: ActionType::Expire,
            target_storage_class: None,
        }
    }

    /// A `transition` action to the archive storage class.
    pub fn archive() -> Self {
        Self {
            kind: ActionType::Transition,
            target_storage_class: Some(StorageClass::Archive),
        }
    }
}

/// Identifies the rule a problem belongs to: its 1-based position and priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    /// 1-based position in the `rules` array.
    pub index: usize,
    /// The rule's `rulePriority`, when it is a readable integer.
    pub priority: Option<i64>,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.priority {
            Some(p) => write!(f, "rule {} (priority {p})", self.index),
            None => write!(f, "rule {} (no valid priority)", self.index),
        }
    }
}

/// One problem found in a policy, naming the rule and the JSON field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyIssue {
    /// The rule at fault; `None` for policy-level problems.
    pub rule: Option<RuleRef>,
    /// JSON path of the field, e.g. `selection.tagPrefixList`; empty when the
    /// problem is the rule (or policy) value itself.
    pub field: String,
    /// What is wrong, phrased to follow the field name.
    pub problem: String,
}

impl fmt::Display for PolicyIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rule {
            Some(rule) => write!(f, "{rule}: ")?,
            None => f.write_str("policy: ")?,
        }
        if self.field.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{} {}", self.field, self.problem)
        }
    }
}

/// Every problem found while parsing or validating a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// All problems, in document order (structural first, then cross-rule).
    pub issues: Vec<PolicyIssue>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.issues.as_slice() {
            return write!(f, "invalid lifecycle policy: {only}");
        }
        write!(
            f,
            "invalid lifecycle policy ({} problems)",
            self.issues.len()
        )?;
        for issue in &self.issues {
            write!(f, "; {issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

impl LifecyclePolicy {
    /// Parses and validates ECR lifecycle policy JSON, reporting all problems.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| PolicyError {
            issues: vec![PolicyIssue {
                rule: None,
                field: "text".into(),
                problem: format!("is not valid JSON ({e})"),
            }],
        })?;
        Self::from_value(&value)
    }

    /// Parses and validates an already-decoded JSON value.
    pub fn from_value(value: &serde_json::Value) -> Result<Self, PolicyError> {
        super::parse::parse_policy(value)
    }

    /// Checks the cross-field and cross-rule constraints ECR enforces; useful
    /// for policies built in code rather than parsed.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut issues = Vec::new();
        let indexed: Vec<(usize, &Rule)> = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r))
            .collect();
        super::validate::check_policy(&indexed, &mut issues);
        super::validate::sort_issues(&mut issues);
        if issues.is_empty() {
            Ok(())
        } else {
            Err(PolicyError { issues })
        }
    }

    /// Compact JSON in ECR's shape.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Indented JSON in ECR's shape.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Rules in application order: ascending priority, ties in written order.
    pub fn rules_by_priority(&self) -> Vec<&Rule> {
        let mut rules: Vec<&Rule> = self.rules.iter().collect();
        rules.sort_by_key(|r| r.rule_priority);
        rules
    }
}

impl FromStr for LifecyclePolicy {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_json(s)
    }
}

impl<'de> Deserialize<'de> for LifecyclePolicy {
    /// Accepts any serde format that can express the JSON shape (e.g. TOML
    /// config), applying the same validation as `from_json`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}
