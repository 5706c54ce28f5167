//! What the cache holds: the blob store (bytes) and the index (what those bytes mean).

pub mod events;
pub mod images;
pub mod index;
pub mod scrub;
mod snapshot;
pub mod store;

pub use events::{Event, EventQuery};
pub use index::{Index, ManifestRecord, RepoKey, SqliteIndex, TagRecord};
pub use store::{BlobStore, FsStore};
