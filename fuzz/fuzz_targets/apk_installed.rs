//! Alpine `lib/apk/db/installed` files from image layers: never panic; every package has a
//! non-empty name and version and a `pkg:apk` purl; packages written back out as `P:`/`V:`/
//! `A:`/`o:` lines parse to the same packages; allocations stay a small multiple of the file.
#![no_main]

use breakwater_fuzz::{assert_alloc_within, reset_largest_alloc, PeakAlloc};
use breakwater_scan::catalog::apk::parse;
use breakwater_scan::catalog::PackageKind;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

const PATH: &str = "/lib/apk/db/installed";

fuzz_target!(|data: &[u8]| {
    reset_largest_alloc();
    let parsed = parse(PATH, data);
    assert_alloc_within(16 * data.len() + (64 << 10), "apk installed");
    let Ok(pkgs) = parsed else {
        return;
    };
    // `P:x\nV:1` at least per package.
    assert!(pkgs.len() * 7 <= data.len() + 1);
    let mut written = String::new();
    for p in &pkgs {
        assert_eq!(p.kind, PackageKind::Apk);
        assert!(!p.name.is_empty() && !p.version.is_empty(), "{p:?}");
        assert!(p.purl.starts_with("pkg:apk/"), "{}", p.purl);
        assert_eq!(p.source_version.as_ref(), Some(&p.version));
        written.push_str(&format!("P:{}\nV:{}\n", p.name, p.version));
        if let Some(a) = &p.arch {
            written.push_str(&format!("A:{a}\n"));
        }
        if let Some(o) = &p.source_name {
            written.push_str(&format!("o:{o}\n"));
        }
        written.push('\n');
    }
    // `lines()` drops one `\r` before each `\n`, so a value ending in `\r` cannot come back
    // the same; every other value must.
    let fields = pkgs
        .iter()
        .flat_map(|p| [Some(&p.name), Some(&p.version), p.arch.as_ref()]);
    if fields
        .flatten()
        .chain(pkgs.iter().filter_map(|p| p.source_name.as_ref()))
        .all(|v| !v.ends_with('\r'))
    {
        let again = parse(PATH, written.as_bytes()).expect("our own database parses");
        assert_eq!(again, pkgs, "{written:?}");
    }
});
