//! breakwater: a verifying pull-through cache for container registries, built on Pingora.
//!
//! Data flow: request → `server` (HTTP, routing) → `registry` (operations, freshness, fills) →
//! `cache` (store + index) ← `upstream` (registry client). `oci` holds the types every layer
//! shares, parsed once at the edge.

pub mod admin;
pub mod background;
pub mod cache;
pub mod cli;
pub mod config;
pub mod lifecycle;
pub mod metrics;
pub mod oci;
pub mod registry;
pub mod scan;
pub mod server;
pub mod upstream;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
