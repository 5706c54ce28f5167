//! What the cache holds: the blob store (bytes) and the index (what those bytes mean: tags,
//! manifests, links, pulls, lifecycle state, pins, events and scan results), each behind a trait
//! with the filesystem, SQLite and PostgreSQL (`pg`) backends beside it.

#[cfg(test)]
mod busy_tests;
pub mod cluster;
pub mod events;
pub mod images;
pub mod index;
#[cfg(test)]
mod lifecycle_tests;
pub mod pg;
pub mod readiness;
pub mod referrers;
pub mod scans;
pub mod scrub;
mod snapshot;
pub mod store;
#[cfg(test)]
mod test_backends;

pub use cluster::ClusterIndex;
pub use events::{Event, EventKind, EventQuery};
pub use index::{Index, ManifestRecord, RepoKey, SqliteIndex, TagRecord};
pub use pg::{PgIndex, PgSettings};
pub use referrers::{ReferrersIndex, ReferrersRecord};
pub use scans::{ScanIndex, ScanStoreError};
pub use store::{BlobStore, FsStore};

pub(crate) use breakwater_oci as oci;
pub(crate) use breakwater_oci::time::now_ms;
