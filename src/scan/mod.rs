//! Vulnerability scanning of cached images: layer analysis (one streaming pass per layer),
//! catalogers for OS and language package databases, inventory merge with whiteout semantics,
//! version comparison per ecosystem, and OSV matching; and around them the scanner that runs
//! on cache, on demand and whenever the vulnerability data changes, the pull gate, and the
//! ECR-shaped findings and CycloneDX SBOM reports.

pub mod fill_reader;
pub mod gate;
pub mod hooks;
pub mod metrics;
pub mod rematch;
pub mod scanner;
pub mod service;
pub mod update;
pub mod upgrade;

pub use breakwater_scan::{
    catalog, clock, findings, inventory, layer, osv, record, report, sbom, settings, version,
    vulndb,
};
pub use scanner::{Scanner, Trigger};
