//! `Range: bytes=…` for blobs: one range (`a-b`, `a-`, `-n`); several ranges are answered with the
//! whole blob, which RFC 9110 allows.

/// What a Range header asks of a blob of known size.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No (usable) Range: the whole blob.
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Nothing the blob can satisfy: 416.
    Unsatisfiable,
}

/// Interprets a Range header against a blob of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parsed = match (a.is_empty(), b.is_empty()) {
        // -n: the last n bytes
        (true, false) => match position(b) {
            Some(0) => return ByteRange::Unsatisfiable,
            Some(_) if size == 0 => return ByteRange::Unsatisfiable,
            Some(n) => Some((size.saturating_sub(n), size - 1)),
            None => None,
        },
        // a-
        (false, true) => position(a).map(|s| (s, size.saturating_sub(1))),
        // a-b
        (false, false) => match (position(a), position(b)) {
            (Some(s), Some(e)) if s <= e => Some((s, e.min(size.saturating_sub(1)))),
            (Some(_), Some(_)) => return ByteRange::Full, // invalid: ignore the header
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => ByteRange::Full,
        Some((start, _)) if start >= size => ByteRange::Unsatisfiable,
        Some((start, end)) => ByteRange::Partial { start, end },
    }
}

/// A byte position: `1*DIGIT` only. `u64::from_str` would also take a leading `+`, which RFC
/// 9110's grammar does not allow, so such a header is ignored rather than read leniently.
fn position(s: &str) -> Option<u64> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse(None, 10), ByteRange::Full);
        assert_eq!(
            parse(Some("bytes=0-4"), 10),
            ByteRange::Partial { start: 0, end: 4 }
        );
        assert_eq!(
            parse(Some("bytes=5-"), 10),
            ByteRange::Partial { start: 5, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=-3"), 10),
            ByteRange::Partial { start: 7, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=-30"), 10),
            ByteRange::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse(Some("bytes=8-100"), 10),
            ByteRange::Partial { start: 8, end: 9 }
        );
        assert_eq!(parse(Some("bytes=10-"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse(Some("bytes=10-12"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), ByteRange::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-1,3-4"), 10), ByteRange::Full);
        assert_eq!(parse(Some("items=0-1"), 10), ByteRange::Full);
        assert_eq!(parse(Some("bytes=5-2"), 10), ByteRange::Full);
        assert_eq!(parse(Some("bytes=x-2"), 10), ByteRange::Full);
        assert_eq!(parse(Some("bytes=0-0"), 0), ByteRange::Unsatisfiable);
    }

    #[test]
    fn signs_are_not_digits() {
        // Found by the `range` fuzz target: `-+3` was read as the last 3 bytes.
        assert_eq!(parse(Some("bytes=-+3"), 10), ByteRange::Full);
        assert_eq!(parse(Some("bytes=+2-4"), 10), ByteRange::Full);
        assert_eq!(parse(Some("bytes=2-+4"), 10), ByteRange::Full);
        assert_eq!(parse(Some("bytes=+2-"), 10), ByteRange::Full);
    }
}
