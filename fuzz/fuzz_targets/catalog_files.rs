//! The other catalogers a layer walk feeds: os-release, Python METADATA, npm package.json,
//! Cargo.lock, Java archives and ELF binaries (Go build info, cargo-auditable data). The first
//! byte picks the file kind, the rest is the file. Never panic; every package has a name and a
//! purl of its cataloger's type, and a path at or inside the file; allocations stay bounded by
//! the input (archives may inflate, so Java archives are held to the inflate limit instead).
#![no_main]

use breakwater_fuzz::{assert_alloc_within, reset_largest_alloc, PeakAlloc};
use breakwater_scan::catalog::{catalog, cataloger, Cataloged, FileKind};
use breakwater_scan::layer::MAX_ARCHIVE_BYTES;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Kinds and an image path each is found at (rpm, dpkg and apk have targets of their own).
const KINDS: [(FileKind, &str); 6] = [
    (FileKind::OsRelease, "/etc/os-release"),
    (
        FileKind::PythonMetadata,
        "/usr/lib/python3/site-packages/x-1.0.dist-info/METADATA",
    ),
    (FileKind::NpmPackageJson, "/app/node_modules/x/package.json"),
    (FileKind::CargoLock, "/src/Cargo.lock"),
    (FileKind::JavaArchive, "/app/x.jar"),
    (FileKind::Binary, "/usr/bin/x"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&which, file)) = data.split_first() else {
        return;
    };
    let (kind, path) = KINDS[usize::from(which) % KINDS.len()];
    reset_largest_alloc();
    let result = catalog(kind, path, file);
    let limit = if kind == FileKind::JavaArchive {
        MAX_ARCHIVE_BYTES as usize
    } else {
        16 * file.len() + (1 << 20)
    };
    assert_alloc_within(limit, path);
    let Ok(Cataloged::Packages(pkgs)) = result else {
        return;
    };
    for p in pkgs {
        assert!(!p.name.is_empty(), "{p:?}");
        let purl_type = cataloger(p.kind).purl_type;
        assert!(
            p.purl.starts_with(&format!("pkg:{purl_type}/")),
            "{}",
            p.purl
        );
        assert!(p.path.starts_with(path), "{} outside {path}", p.path);
    }
});
