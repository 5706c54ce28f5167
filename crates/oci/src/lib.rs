//! Registry vocabulary: digests, names, references, `<upstream>/<name>` keys and their `*`/`**`
//! patterns, manifests, the HTTP header grammars the cache reads (`Accept`, `Range`,
//! `WWW-Authenticate`), error codes and time, each a type that can only hold a valid value. Everything from the network is parsed into these at the edge.

pub mod challenge;
pub mod digest;
pub mod endpoint;
pub mod error;
pub mod manifest;
pub mod name;
pub mod pattern;
pub mod range;
pub mod referrers;
pub mod repo;
pub mod time;

pub use digest::{Algorithm, Digest, Hasher};
pub use error::{ErrorCode, RegistryError};
pub use name::{Reference, RepoName, Tag};
pub use pattern::{RepoPattern, RepoPolicies, TagPattern};
pub use repo::{RepoKey, RepoKeyError};
pub use time::{Clock, ManualClock, Millis, SharedClock, SystemClock, Timestamp};
