//! RFC 3339 timestamps: OSV `modified` dates in, report timestamps out (UTC, millisecond
//! precision), through `humantime`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last millisecond `humantime` formats (9999-12-31T23:59:59.999Z).
const MAX_MS: i64 = 253_402_300_799_999;

/// Formats unix milliseconds as `2026-01-02T03:04:05.678Z` (clamped to years 1970–9999).
pub fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.clamp(0, MAX_MS) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` into unix milliseconds (a zone is required;
/// `humantime` reads UTC only, so an offset is taken off here).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (local, offset_secs) = match s.strip_suffix(['Z', 'z']) {
        Some(local) => (local, 0),
        None => {
            let at = s.len().checked_sub(6)?;
            let (local, zone) = (s.get(..at)?, s.get(at..)?.as_bytes());
            let sign = match zone[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = |a: u8, b: u8| -> Option<i64> {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| i64::from(a - b'0') * 10 + i64::from(b - b'0'))
            };
            if zone[3] != b':' {
                return None;
            }
            let (h, m) = (digits(zone[1], zone[2])?, digits(zone[4], zone[5])?);
            (local, sign * (h * 3600 + m * 60))
        }
    };
    // humantime wants an upper-case `T` (or a space) and takes `Z` for UTC.
    let mut utc = String::with_capacity(local.len() + 1);
    utc.push_str(local);
    if utc.as_bytes().get(10) == Some(&b't') {
        utc.replace_range(10..11, "T");
    }
    utc.push('Z');
    let t = humantime::parse_rfc3339_weak(&utc).ok()?;
    let ms = i64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_millis()).ok()?;
    Some(ms - offset_secs * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_offsets() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z", "clamped, no panic");
        assert_eq!(rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            parse_rfc3339("2026-11-23t00:00:00z"),
            parse_rfc3339("2026-11-23T01:30:00+01:30")
        );
        let t = parse_rfc3339("2026-11-23T00:00:00Z").unwrap();
        assert_eq!(t, 1_795_392_000_000);
        assert_eq!(rfc3339(t + 1_234), "2026-11-23T00:00:01.234Z");
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.5+02:00"),
            parse_rfc3339("2024-02-29T10:00:00.500Z")
        );
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00.123456789Z").map(|t| t % 1000),
            Some(123)
        );
        for bad in [
            "",
            "2024-13-01T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00+0100",
            "2024-01-01T00:00:00+01:x0",
            "x024-01-01T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
