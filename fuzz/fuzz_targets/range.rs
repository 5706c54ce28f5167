//! `Range` request headers against a blob size: the first 8 bytes are the size, the rest the
//! header. Never panic; a partial answer lies inside the blob; and for the three single-range
//! forms built from fuzzed numbers the answer equals RFC 9110's (a reference model here).
#![no_main]

use breakwater_oci::range::{parse, ByteRange};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (head, rest) = data.split_at(8);
    let size = u64::from_le_bytes(head.try_into().unwrap());
    let header = String::from_utf8_lossy(rest);
    let got = parse(Some(&header), size);
    check_bounds(&got, size);
    if got != ByteRange::Full {
        // RFC 9110: `bytes=` then `1*DIGIT "-" [1*DIGIT]` or `"-" 1*DIGIT` (whitespace around
        // the numbers is tolerated); anything else must be ignored, not read leniently.
        let spec = header.trim().strip_prefix("bytes=").unwrap_or_default();
        assert!(
            spec.chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c.is_whitespace()),
            "{header:?} read as {got:?}"
        );
    }
    if !header.trim().starts_with("bytes=") {
        assert_eq!(got, ByteRange::Full, "{header:?}");
    }
    if header.contains(',') {
        assert_eq!(got, ByteRange::Full, "several ranges are answered whole");
    }
    assert_eq!(parse(None, size), ByteRange::Full);

    // Numbers from the header bytes, put into each well-formed spelling.
    let mut nums = rest.chunks(8).map(|c| {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(b)
    });
    let a = nums.next().unwrap_or(0);
    let b = nums.next().unwrap_or(0);
    // Small values too, or the model would almost only see huge offsets.
    for (a, b) in [(a, b), (a % 1024, b % 1024)] {
        let size = if rest.len() % 2 == 0 {
            size
        } else {
            size % 2048
        };
        for (h, want) in [
            (format!("bytes={a}-{b}"), model_closed(a, b, size)),
            (format!("bytes={a}-"), model_open(a, size)),
            (format!("bytes=-{b}"), model_suffix(b, size)),
            (format!(" bytes= {a} - {b} "), model_closed(a, b, size)),
        ] {
            assert_eq!(parse(Some(&h), size), want, "{h:?} against size {size}");
        }
    }
});

fn check_bounds(r: &ByteRange, size: u64) {
    if let ByteRange::Partial { start, end } = *r {
        assert!(start <= end && end < size, "{r:?} outside a blob of {size}");
    }
}

/// `a-b`: from `a` through `b`, clipped to the blob; `a > b` is invalid, so ignored.
fn model_closed(a: u64, b: u64, size: u64) -> ByteRange {
    if a > b {
        ByteRange::Full
    } else if a >= size {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Partial {
            start: a,
            end: b.min(size - 1),
        }
    }
}

/// `a-`: from `a` to the end.
fn model_open(a: u64, size: u64) -> ByteRange {
    if a >= size {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Partial {
            start: a,
            end: size - 1,
        }
    }
}

/// `-n`: the last `n` bytes (all of them when `n` exceeds the size); none of an empty blob.
fn model_suffix(n: u64, size: u64) -> ByteRange {
    if n == 0 || size == 0 {
        ByteRange::Unsatisfiable
    } else {
        ByteRange::Partial {
            start: size - n.min(size),
            end: size - 1,
        }
    }
}
