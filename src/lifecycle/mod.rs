//! Lifecycle: Amazon-ECR-style policies (expire, transition to archive) evaluated over cached
//! images, and the repository/tag patterns other modules share; where policies apply, preview
//! and application, pins, the byte quota and online GC of the blob store (`service::Lifecycle`
//! ties them together; `runner` schedules them).

pub mod apply;
pub mod catalog;
pub mod gc;
pub mod quota;
mod restore;
pub mod runner;
pub mod service;
#[cfg(test)]
mod tests;

pub use breakwater_lifecycle::{evaluate, graph, pattern, policy, preview, settings, views};

pub use evaluate::{CachedImage, Decision, DecisionAction};
pub use pattern::{RepoPattern, RepoPolicies, TagPattern};
pub use policy::{LifecyclePolicy, PolicyError, PolicyIssue, StorageClass};
pub use preview::{Preview, RuleSummary};
pub use service::{Lifecycle, OpError};
