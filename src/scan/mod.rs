//! Vulnerability scanning of cached images: version comparison per ecosystem and OSV matching.

pub mod osv;
pub mod version;
