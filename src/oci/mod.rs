//! Registry vocabulary: digests, names, references, manifests and error codes, each a type that
//! can only hold a valid value. Everything from the network is parsed into these at the edge.

pub mod digest;
pub mod error;
pub mod manifest;
pub mod name;

pub use digest::{Algorithm, Digest, Hasher};
pub use error::{ErrorCode, RegistryError};
pub use name::{Reference, RepoName, Tag};
