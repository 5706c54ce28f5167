//! Vulnerability scanning of cached images: layer analysis (one streaming pass per layer),
//! catalogers for OS and language package databases, inventory merge with whiteout semantics,
//! version comparison per ecosystem, and OSV matching.

pub mod catalog;
pub mod inventory;
pub mod layer;
pub mod osv;
pub mod version;
