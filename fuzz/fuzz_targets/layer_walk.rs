//! Layer blobs (gzip, zstd or plain tar) walked by the scanner, with every cataloger the paths
//! inside select. If the first byte is odd the rest is a plain tar whose 512-byte blocks get
//! their header checksums recomputed, so mutations reach past the tar checksum; otherwise the
//! rest is the blob as is. Never panic; recorded paths are absolute and normalised; the lists are
//! sorted and unique; no allocation exceeds what the decompressed bytes justify (a tar size
//! field alone must not reserve memory); the analysis, which is cached as JSON, reads back equal.
#![no_main]

use breakwater_fuzz::{assert_alloc_within, reset_largest_alloc, PeakAlloc};
use breakwater_scan::layer::{analyze_layer, LayerAnalysis};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Buffers the walk holds whatever the input: the 64 KiB read buffer, decoder state.
const FIXED_BUFFERS: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let blob = if mode & 1 == 1 {
        fix_checksums(rest)
    } else {
        rest.to_vec()
    };
    reset_largest_alloc();
    let Ok(analysis) = analyze_layer(blob.as_slice()) else {
        // A failed walk of an uncompressed layer read at most the blob itself.
        if !blob.starts_with(&[0x1f, 0x8b]) && !blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            assert_alloc_within(FIXED_BUFFERS + 4 * blob.len(), "failed layer walk");
        }
        return;
    };
    assert_alloc_within(
        FIXED_BUFFERS + 4 * analysis.tar_bytes as usize,
        "layer walk",
    );
    check(&analysis, blob.len());
});

fn check(a: &LayerAnalysis, blob_len: usize) {
    assert!(a.is_current());
    assert!(a.blob_bytes <= blob_len as u64);
    // A tar entry takes at least one 512-byte header block.
    assert!(a.entries * 512 <= a.tar_bytes);
    let paths = a
        .files
        .iter()
        .map(|f| f.path.as_str())
        .chain(a.whiteouts.iter().map(String::as_str))
        .chain(a.opaque_dirs.iter().map(String::as_str))
        .chain(a.symlinks.iter().map(|s| s.path.as_str()))
        .chain(a.shadows.iter().map(String::as_str));
    for p in paths {
        assert!(p.starts_with('/'), "{p:?}");
        assert!(p == "/" || !p.ends_with('/'), "{p:?}");
        assert!(
            p == "/"
                || !p
                    .split('/')
                    .skip(1)
                    .any(|c| c.is_empty() || c == "." || c == ".."),
            "{p:?} is not normalised"
        );
    }
    assert!(a.files.windows(2).all(|w| w[0].path < w[1].path));
    assert!(a.symlinks.windows(2).all(|w| w[0].path < w[1].path));
    for list in [&a.whiteouts, &a.opaque_dirs, &a.shadows] {
        assert!(list.windows(2).all(|w| w[0] < w[1]));
    }
    let json = serde_json::to_vec(a).expect("an analysis serialises");
    let again: LayerAnalysis = serde_json::from_slice(&json).expect("and reads back");
    assert_eq!(&again, a);
}

/// Rewrites the checksum field (bytes 148..156) of every non-zero 512-byte block, the way tar
/// computes it: the byte sum of the block with the field itself read as spaces.
fn fix_checksums(tar: &[u8]) -> Vec<u8> {
    let mut out = tar.to_vec();
    for block in out.chunks_mut(512) {
        if block.len() < 512 || block.iter().all(|&b| b == 0) {
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        let field = format!("{sum:06o}\0 ");
        block[148..156].copy_from_slice(field.as_bytes());
    }
    out
}
