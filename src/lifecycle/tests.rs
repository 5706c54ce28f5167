//! Unit tests for the lifecycle engine, grouped by topic.

mod ecr_examples;
mod semantics;
mod support;
mod validation;
