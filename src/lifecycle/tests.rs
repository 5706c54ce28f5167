//! Unit tests for the lifecycle engine, grouped by topic, and for lifecycle, quota and GC over a
//! real store and index.

mod admin;
mod ecr_examples;
mod fixture;
mod gc;
mod ops;
mod quota;
mod semantics;
mod served;
mod support;
mod validation;
