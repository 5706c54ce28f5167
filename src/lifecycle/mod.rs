//! Lifecycle: Amazon-ECR-style policies (expire, transition to archive) evaluated over cached
//! images, and the repository/tag patterns other modules share; where policies apply, preview
//! and application, pins, the byte quota and online GC of the blob store (`service::Lifecycle`
//! ties them together; `runner` schedules them).

pub mod apply;
pub mod catalog;
pub mod evaluate;
pub mod gc;
pub mod graph;
mod parse;
pub mod pattern;
pub mod policy;
pub mod preview;
pub mod quota;
mod restore;
pub mod runner;
pub mod service;
pub mod settings;
#[cfg(test)]
mod tests;
mod validate;
pub mod views;

pub use evaluate::{evaluate, CachedImage, Decision, DecisionAction};
pub use pattern::{RepoPattern, RepoPolicies, TagPattern};
pub use policy::{LifecyclePolicy, PolicyError, PolicyIssue, StorageClass};
pub use preview::{preview, Preview, RuleSummary};
pub use service::{Lifecycle, OpError};
