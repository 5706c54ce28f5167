//! Unit tests for the policy engine, grouped by topic.

mod ecr_examples;
mod semantics;
mod support;
mod validation;
