//! breakwater: a verifying pull-through cache for container registries, built on Pingora.
//!
//! Data flow: request → `server` (HTTP, routing) → `registry` (operations, freshness, fills) →
//! `cache` (store + index) ← `upstream` (registry client); `access` decides who may pull what
//! (the server asks it before the registry operation). `oci` holds the types every layer
//! shares, parsed once at the edge. The services plug in without owning the registry: the
//! lifecycle gets a `registry::CacheHandle`, the scanner reads through `registry::ImageSource`
//! and answers the registry's `registry::ManifestHooks`; `main` wires them. The allowed
//! directions are tables in `tests/layering/main.rs`.

pub mod access;
pub mod accesslog;
pub mod admin;
pub mod background;
pub mod cli;
pub mod clientconfig;
pub mod cluster;
pub mod config;
pub mod lifecycle;
pub mod metrics;
pub mod ready;
pub mod registry;
pub mod scan;
pub mod server;
pub mod upstream;

pub use breakwater_oci as oci;
pub use breakwater_oci::time::now_ms;
pub use breakwater_store as cache;
