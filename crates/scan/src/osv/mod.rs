//! Offline OSV advisory database: load records (directory, JSON file or
//! osv.dev `all.zip`), index them per ecosystem release and package, and
//! match installed packages against their ranges.
//!
//! Matching follows the OSV schema: `introduced`/`fixed`/`last_affected`/
//! `limit` events (sorted by version, `introduced: "0"` = from the start),
//! any number of ranges, explicit `versions` lists; withdrawn records never
//! match and GIT ranges are ignored. Unknown ecosystems have no version
//! ordering, so they match only through `versions` lists.

use std::path::{Path, PathBuf};

mod db;
mod ecosystem;
mod load;
mod matcher;
mod model;
pub(crate) mod naming;
mod severity;

#[cfg(test)]
mod tests_debian;
#[cfg(test)]
mod tests_real;
#[cfg(test)]
mod tests_rpm;
#[cfg(test)]
mod tests_semantics;

pub use db::{Database, DbStats, Finding, Package};
pub use ecosystem::{pep503, Family, OsvEcosystem};
pub use load::{LoadReport, Loader, SkipKind, Skipped, MAX_RECORD_BYTES};
pub use model::{Affected, Event, PackageRef, Range, RangeKind, Record, Reference, SeverityEntry};
pub use naming::Naming;
pub use severity::{cvss_base_score, rate, Rated, Severity};

/// Errors that stop a load (bad records are skipped and reported instead).
#[derive(Debug, thiserror::Error)]
pub enum OsvError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A zip archive could not be opened.
    #[error("cannot open zip {path}: {source}")]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The cause.
        source: zip::result::ZipError,
    },
    /// The path is neither a directory, a `.zip` nor a `.json` file.
    #[error("{path} is not a directory, .zip or .json file")]
    UnsupportedPath {
        /// The path.
        path: PathBuf,
    },
}

impl OsvError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        OsvError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn zip(path: &Path, source: zip::result::ZipError) -> Self {
        OsvError::Zip {
            path: path.to_path_buf(),
            source,
        }
    }
}
