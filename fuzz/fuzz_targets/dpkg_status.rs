//! dpkg `status` and distroless `status.d` files from image layers: never panic; every package
//! has a name, a version of the form `[epoch:]upstream[-revision]` and a `pkg:deb` purl; what
//! `status` keeps (installed packages only) is an ordered subset of what `status.d` keeps (where
//! a missing `Status:` means installed); allocations stay a small multiple of the file.
#![no_main]

use breakwater_fuzz::{assert_alloc_within, reset_largest_alloc, PeakAlloc};
use breakwater_scan::catalog::dpkg::{parse_status, parse_status_d};
use breakwater_scan::catalog::{Package, PackageKind};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

fuzz_target!(|data: &[u8]| {
    reset_largest_alloc();
    let status = parse_status("/var/lib/dpkg/status", data);
    let status_d = parse_status_d("/var/lib/dpkg/status.d/x", data);
    assert_alloc_within(16 * data.len() + (64 << 10), "dpkg status");
    for p in status.iter().chain(status_d.iter()).flatten() {
        check(p);
    }
    // Each package needs at least `Package:x\nVersion:1` in the file.
    if let Ok(all) = &status_d {
        assert!(all.len() * 18 <= data.len() + 1);
    }
    match (&status, &status_d) {
        (Ok(kept), Ok(all)) => {
            let mut rest = all.iter().map(|p| (&p.name, &p.version));
            for p in kept {
                assert!(
                    rest.any(|q| q == (&p.name, &p.version)),
                    "{} {} from status is not in status.d",
                    p.name,
                    p.version
                );
            }
        }
        // status checks a subset of the paragraphs status.d checks (those marked installed),
        // so it may accept what status.d rejects, never the reverse.
        (Err(_), Ok(_)) => panic!("status rejected a file status.d accepts"),
        _ => {}
    }
});

fn check(p: &Package) {
    assert_eq!(p.kind, PackageKind::Dpkg);
    assert!(
        !p.name.trim().is_empty(),
        "package with an empty name: {p:?}"
    );
    assert!(valid_version(&p.version), "version {:?}", p.version);
    assert!(p.purl.starts_with("pkg:deb/"), "{}", p.purl);
    assert!(p.source_name.is_some() && p.source_version.is_some());
}

/// `[digits:]` then an alphanumeric, then alphanumerics and `.+-~:_`.
fn valid_version(v: &str) -> bool {
    let upstream = match v.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.chars().all(|c| c.is_ascii_digit()) => {
            rest
        }
        Some(_) => return false,
        None => v,
    };
    let mut chars = upstream.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || ".+-~:_".contains(c))
}
