//! Lifecycle, quota and GC over a real store and index (the engine's own tests are in its crate).

mod admin;
mod fixture;
mod gc;
mod ops;
mod quota;
mod served;
