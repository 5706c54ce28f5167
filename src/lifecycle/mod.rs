//! Lifecycle: Amazon-ECR-style policies (expire, transition to archive) evaluated over cached
//! images, and the repository/tag patterns other modules share.

pub mod evaluate;
mod parse;
pub mod pattern;
pub mod policy;
pub mod preview;
#[cfg(test)]
mod tests;
mod validate;

pub use evaluate::{evaluate, CachedImage, Decision, DecisionAction};
pub use pattern::{RepoPattern, RepoPolicies, TagPattern};
pub use policy::{LifecyclePolicy, PolicyError, PolicyIssue, StorageClass};
pub use preview::{preview, Preview, RuleSummary};
