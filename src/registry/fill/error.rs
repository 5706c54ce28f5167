//! Why a fill (or a read of it) failed, and what a client is told: mapped in one place.

use crate::oci::{Digest, ErrorCode, RegistryError};
use crate::upstream::UpstreamError;

/// A failed fill, carried in its phase to every reader; or a failed read of a running fill.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FillError {
    /// Upstream refused the blob or could not be reached.
    #[error("{0}")]
    Upstream(UpstreamError),
    /// Upstream sent more bytes than it announced.
    #[error("upstream sent more than the announced {announced} bytes")]
    Oversize {
        /// The announced size.
        announced: u64,
    },
    /// Upstream sent, or announced, more bytes than the blob may have (a manifest's declared
    /// size, or `storage.max_blob_bytes`); nothing past the limit was read.
    #[error("upstream sent more than {limit}{}", announced_note(.announced))]
    TooLarge {
        /// The limit and where it comes from.
        limit: super::size::Limit,
        /// What upstream's answer announced, when that was over the limit.
        announced: Option<u64>,
    },
    /// Upstream's stream ended early, every attempt.
    #[error("upstream stream ended at {offset} of {total} bytes")]
    Truncated {
        /// Bytes received.
        offset: u64,
        /// Bytes announced.
        total: u64,
    },
    /// Upstream's stream broke, every attempt.
    #[error("upstream stream broke at byte {offset}: {reason}")]
    Broken {
        /// Bytes received.
        offset: u64,
        /// What broke.
        reason: String,
    },
    /// The bytes did not hash to the digest.
    #[error("content from upstream does not match its digest {expected} (got {got}); nothing was stored")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// What the bytes hashed to.
        got: Digest,
    },
    /// Local storage failed (a write or read task, a read of the staging file).
    #[error("{0}")]
    Store(String),
    /// The store refused writes and this reader fell behind the bytes held in memory.
    #[error("reader fell behind an uncached fill")]
    ReaderFellBehind,
    /// The bytes this reader handed out were discarded (a peer's bytes failed verification and
    /// the fill started over from upstream).
    #[error("the bytes read so far failed verification and were discarded; retry")]
    Discarded,
    /// The fill went away without a verdict.
    #[error("fill ended without a result")]
    Vanished,
}

fn announced_note(announced: &Option<u64>) -> String {
    announced.map_or(String::new(), |n| format!(" (it announced {n})"))
}

impl From<&FillError> for RegistryError {
    /// What a client whose fill failed before its response began is told: an unreachable
    /// upstream is a passing outage (503), anything else means the blob cannot be had (404).
    fn from(e: &FillError) -> Self {
        let code = match e {
            FillError::Upstream(UpstreamError::Unreachable { .. }) => ErrorCode::Unavailable,
            _ => ErrorCode::BlobUnknown,
        };
        RegistryError::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_upstream_is_unavailable() {
        let unreachable = FillError::Upstream(UpstreamError::Unreachable {
            upstream: "hub".into(),
            reason: "connection failed".into(),
        });
        let e = RegistryError::from(&unreachable);
        assert_eq!(e.code, ErrorCode::Unavailable);
        assert_eq!(e.message, "upstream hub unreachable: connection failed");
        let outage = FillError::Upstream(UpstreamError::Status {
            upstream: "hub".into(),
            status: 503,
            code: None,
            message: "busy".into(),
            retry_after: None,
        });
        let d = Digest::sha256_of(b"x");
        for e in [
            outage,
            FillError::Oversize { announced: 3 },
            FillError::DigestMismatch {
                expected: d.clone(),
                got: d,
            },
            FillError::Store("write task failed".into()),
        ] {
            assert_eq!(RegistryError::from(&e).code, ErrorCode::BlobUnknown, "{e}");
        }
    }
}
