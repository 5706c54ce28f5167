//! Vulnerability scanning of cached images: layer analysis (one streaming pass per layer),
//! catalogers for OS and language package databases, inventory merge with whiteout semantics,
//! version comparison per ecosystem, and OSV matching; and around them the scanner that runs
//! on cache, on demand and whenever the vulnerability data changes, the pull gate, and the
//! ECR-shaped findings and CycloneDX SBOM reports.

pub mod catalog;
pub mod clock;
pub mod fill_reader;
pub mod findings;
pub mod gate;
pub mod inventory;
pub mod layer;
pub mod metrics;
pub mod osv;
pub mod rematch;
pub mod report;
pub mod sbom;
pub mod scanner;
pub mod service;
pub mod settings;
pub mod store;
pub mod upgrade;
pub mod version;
pub mod vulndb;

pub use scanner::{Scanner, Trigger};
