//! What a fill knows of its blob's size: what upstream's answer announces (`Content-Length`,
//! `Content-Range`), and the most it accepts: the size a cached manifest declares for the
//! digest, else `storage.max_blob_bytes`. The digest fixes the bytes, so a manifest's
//! descriptor fixes their number: an upstream sending more is refused before its bytes are read
//! (an announced size above the limit) or cut as soon as they pass it (a chunked or lying body),
//! so a hostile upstream costs neither memory nor disk beyond the limit.

use super::FillError;
use crate::cache::Index;
use crate::oci::Digest;
use std::fmt;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// The most bytes a fill accepts, and where that comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The most bytes.
    pub bytes: u64,
    /// `true`: a cached manifest declares this size; `false`: `storage.max_blob_bytes`.
    pub declared: bool,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.declared {
            write!(f, "the {} bytes the manifest declares", self.bytes)
        } else {
            write!(f, "the {} bytes storage.max_blob_bytes allows", self.bytes)
        }
    }
}

/// The smaller of a declared size and the configured maximum (the declared one on a tie).
fn choose(declared: Option<u64>, max: Option<u64>) -> Option<Limit> {
    match (declared, max) {
        (Some(d), Some(m)) if m < d => Some(Limit {
            bytes: m,
            declared: false,
        }),
        (Some(d), _) => Some(Limit {
            bytes: d,
            declared: true,
        }),
        (None, m) => m.map(|bytes| Limit {
            bytes,
            declared: false,
        }),
    }
}

/// A fill's limit, looked up in the index while the upstream request is on its way.
pub(super) struct Cap {
    lookup: Option<JoinHandle<Option<u64>>>,
    max: Option<u64>,
    limit: Option<Limit>,
}

impl Cap {
    /// Starts looking up the declared size of `digest`.
    pub(super) fn start(index: Arc<dyn Index>, digest: &Digest, max: Option<u64>) -> Cap {
        let d = digest.clone();
        let lookup = tokio::task::spawn_blocking(move || match index.declared_size(&d) {
            Ok(s) => s,
            Err(e) => {
                // The index is down: the digest check still guards the bytes.
                tracing::warn!(digest = %d, "no declared size for the fill: {e}");
                None
            }
        });
        Cap {
            lookup: Some(lookup),
            max,
            limit: None,
        }
    }

    /// The limit (waits for the lookup the first time).
    pub(super) async fn limit(&mut self) -> Option<Limit> {
        if let Some(lookup) = self.lookup.take() {
            self.limit = choose(lookup.await.ok().flatten(), self.max);
        }
        self.limit
    }

    /// Refuses an answer announcing more bytes than the limit, before reading any.
    pub(super) async fn check_announced(
        &mut self,
        announced: Option<u64>,
    ) -> Result<(), FillError> {
        match (self.limit().await, announced) {
            (Some(limit), Some(n)) if n > limit.bytes => Err(FillError::TooLarge {
                limit,
                announced: Some(n),
            }),
            _ => Ok(()),
        }
    }
}

/// Refuses bytes past the limit: `end` is where the bytes received so far would end.
pub(super) fn check_received(limit: Option<Limit>, end: u64) -> Result<(), FillError> {
    match limit {
        Some(limit) if end > limit.bytes => Err(FillError::TooLarge {
            limit,
            announced: None,
        }),
        _ => Ok(()),
    }
}

/// Where a `206`'s `Content-Range` starts.
pub(super) fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The blob's size a `206`'s `Content-Range` announces.
pub(super) fn content_range_total(resp: &reqwest::Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    v.rsplit('/').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smaller_limit_wins_and_says_where_it_comes_from() {
        assert_eq!(choose(None, None), None);
        let declared = |bytes| Limit {
            bytes,
            declared: true,
        };
        let max = |bytes| Limit {
            bytes,
            declared: false,
        };
        assert_eq!(choose(Some(10), None), Some(declared(10)));
        assert_eq!(choose(None, Some(7)), Some(max(7)));
        assert_eq!(choose(Some(10), Some(7)), Some(max(7)));
        assert_eq!(choose(Some(10), Some(10)), Some(declared(10)));
        assert_eq!(
            declared(10).to_string(),
            "the 10 bytes the manifest declares"
        );
        assert!(check_received(Some(declared(10)), 10).is_ok());
        let e = check_received(Some(declared(10)), 11).unwrap_err();
        assert_eq!(
            e.to_string(),
            "upstream sent more than the 10 bytes the manifest declares"
        );
        assert!(check_received(None, u64::MAX).is_ok());
    }
}
