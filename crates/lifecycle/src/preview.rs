//! Dry-run summary of a policy, in the spirit of ECR's lifecycle policy
//! preview: the decisions plus how many images and bytes each rule affects.

use super::evaluate::{for_each_decision, CachedImage, Decision, DecisionAction};
use super::policy::{ActionType, LifecyclePolicy};
use breakwater_oci::time::Timestamp;
use serde::Serialize;

/// What one rule would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleSummary {
    /// The rule's priority.
    pub rule_priority: u32,
    /// The rule's action type.
    pub action: ActionType,
    /// Images the rule would act on.
    pub images: usize,
    /// Bytes leaving the rule's storage class: deleted for `expire`, moved to
    /// archive for `transition`.
    pub bytes: u64,
}

/// Result of a dry run over one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Preview {
    /// Every decision, as [`super::evaluate::evaluate`] returns them.
    pub decisions: Vec<Decision>,
    /// One entry per rule in priority order, including rules that act on nothing.
    pub rules: Vec<RuleSummary>,
    /// Images that would be deleted.
    pub expiring_images: usize,
    /// Bytes that would be freed by deletion.
    pub expiring_bytes: u64,
    /// Images that would move to archive.
    pub transitioning_images: usize,
    /// Bytes that would move from standard storage to archive.
    pub transitioning_bytes: u64,
}

impl Preview {
    /// Images acted on by any rule.
    pub fn total_images(&self) -> usize {
        self.expiring_images + self.transitioning_images
    }

    /// Bytes leaving standard or archive storage, over all rules. Sizes are
    /// summed per image as given, so layers shared between images count once
    /// per image unless the caller attributed them otherwise.
    pub fn total_bytes(&self) -> u64 {
        self.expiring_bytes.saturating_add(self.transitioning_bytes)
    }
}

/// Evaluates `policy` like `evaluate` and totals the effect per rule and overall.
pub fn preview(policy: &LifecyclePolicy, images: &[CachedImage], now: Timestamp) -> Preview {
    let mut rules: Vec<RuleSummary> = policy
        .rules_by_priority()
        .into_iter()
        .map(|r| RuleSummary {
            rule_priority: r.rule_priority,
            action: r.action.kind,
            images: 0,
            bytes: 0,
        })
        .collect();
    let mut result = Preview {
        decisions: Vec::new(),
        rules: Vec::new(),
        expiring_images: 0,
        expiring_bytes: 0,
        transitioning_images: 0,
        transitioning_bytes: 0,
    };
    for_each_decision(policy, images, now, |index, decision| {
        let size = images.get(index).map_or(0, |img| img.size_bytes);
        // Priorities are unique in a valid policy; with duplicates the first wins.
        if let Some(summary) = rules
            .iter_mut()
            .find(|s| s.rule_priority == decision.rule_priority)
        {
            summary.images += 1;
            summary.bytes = summary.bytes.saturating_add(size);
        }
        match decision.action {
            DecisionAction::Expire => {
                result.expiring_images += 1;
                result.expiring_bytes = result.expiring_bytes.saturating_add(size);
            }
            DecisionAction::Transition(_) => {
                result.transitioning_images += 1;
                result.transitioning_bytes = result.transitioning_bytes.saturating_add(size);
            }
        }
        result.decisions.push(decision);
    });
    result.rules = rules;
    result
}
