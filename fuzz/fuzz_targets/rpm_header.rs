//! rpm package databases from image layers. The first byte picks the reader: a header blob,
//! a BerkeleyDB `Packages` file or an NDB `Packages.db` (the SQLite format is SQLite's own
//! parser, fuzzed upstream). Never panic; every header has a name and version; a header written
//! back out as a blob parses to itself; allocations stay a small multiple of the input.
#![no_main]

use breakwater_fuzz::{assert_alloc_within, reset_largest_alloc, PeakAlloc};
use breakwater_scan::catalog::rpm::{headers_to_packages, parse_header, RpmHeader};
use breakwater_scan::catalog::rpmdb::{bdb_headers, ndb_headers};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    reset_largest_alloc();
    let headers = match which % 3 {
        0 => parse_header(rest).map(|h| vec![h]).ok(),
        1 => bdb_headers("/var/lib/rpm/Packages", rest).ok(),
        _ => ndb_headers("/usr/lib/sysimage/rpm/Packages.db", rest).ok(),
    };
    assert_alloc_within(4 * rest.len() + (64 << 10), "rpm database");
    let Some(headers) = headers else {
        return;
    };
    for h in &headers {
        assert!(!h.name.is_empty() && !h.version.is_empty(), "{h:?}");
        let blob = write_header(h);
        assert_eq!(parse_header(&blob).as_ref(), Ok(h), "{h:?}");
    }
    for p in headers_to_packages("/var/lib/rpm/Packages", headers.clone()) {
        assert!(p.purl.starts_with("pkg:rpm/"), "{}", p.purl);
        assert!(p.version.contains('-'), "rpm versions are version-release");
    }
});

/// The header as rpm stores it: `il`, `dl`, then 16-byte index entries, then the data.
fn write_header(h: &RpmHeader) -> Vec<u8> {
    let mut index = Vec::new();
    let mut store = Vec::new();
    let mut string = |tag: u32, s: &str| {
        index.push((tag, 6u32, store.len() as u32, 1u32));
        store.extend_from_slice(s.as_bytes());
        store.push(0);
    };
    string(1000, &h.name);
    string(1001, &h.version);
    string(1002, &h.release);
    if let Some(a) = &h.arch {
        string(1022, a);
    }
    if let Some(s) = &h.source_rpm {
        string(1044, s);
    }
    if let Some(e) = h.epoch {
        index.push((1003, 4, store.len() as u32, 1));
        store.extend_from_slice(&e.to_be_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(index.len() as u32).to_be_bytes());
    out.extend_from_slice(&(store.len() as u32).to_be_bytes());
    for (tag, ty, off, count) in index {
        for v in [tag, ty, off, count] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&store);
    out
}
