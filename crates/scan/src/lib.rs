//! Vulnerability scanning of container layers, pure: layer analysis (one streaming pass per
//! layer), catalogers for OS and language package databases, inventory merge with whiteout
//! semantics, version comparison per ecosystem, OSV matching, and the ECR-shaped findings and
//! CycloneDX SBOM reports. The breakwater application runs it on cached images.

pub mod catalog;
pub mod clock;
pub mod dbupdate;
pub mod findings;
pub mod inventory;
pub mod layer;
pub mod osv;
pub mod record;
pub mod report;
pub mod sbom;
pub mod settings;
pub mod version;
pub mod vulndb;
