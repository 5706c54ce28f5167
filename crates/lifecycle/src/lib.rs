//! The Amazon-ECR lifecycle policy engine, pure: the policy model and its validation (every
//! mistake named by rule and field), evaluation over cached images (expire, transition to
//! archive), the preview, the settings that say where policies apply, and the reference graph
//! GC marks. No I/O: the breakwater application feeds it snapshots of its index.

pub mod evaluate;
pub mod graph;
mod parse;
pub mod policy;
pub mod preview;
pub mod settings;
#[cfg(test)]
mod tests;
mod validate;
pub mod views;

pub use breakwater_oci::pattern;
pub use evaluate::{evaluate, CachedImage, Decision, DecisionAction};
pub use pattern::{RepoPattern, RepoPolicies, TagPattern};
pub use policy::{LifecyclePolicy, PolicyError, PolicyIssue, StorageClass};
pub use preview::{preview, Preview, RuleSummary};
