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
        (true, false) => match b.parse::<u64>() {
            Ok(0) => return ByteRange::Unsatisfiable,
            Ok(n) if size == 0 => {
                let _ = n;
                return ByteRange::Unsatisfiable;
            }
            Ok(n) => Some((size.saturating_sub(n), size - 1)),
            Err(_) => None,
        },
        // a-
        (false, true) => a.parse::<u64>().ok().map(|s| (s, size.saturating_sub(1))),
        // a-b
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(s), Ok(e)) if s <= e => Some((s, e.min(size.saturating_sub(1)))),
            (Ok(_), Ok(_)) => return ByteRange::Full, // invalid: ignore the header
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
}
