//! A tar header's size field is the layer's claim, not bytes in hand: walking a 1 KiB layer
//! whose header claims a 60 MiB `/var/lib/dpkg/status` must not reserve 60 MiB. Its own test
//! binary, because it counts every allocation through a global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use breakwater_scan::layer::analyze_layer;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

struct Peak;

// SAFETY: forwards every call unchanged to the system allocator, recording the largest size.
unsafe impl GlobalAlloc for Peak {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Peak = Peak;

/// One ustar header claiming `size` bytes for `name`, followed by `body` (padded to a block).
fn tar_entry(name: &str, size: u64, body: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[156] = b'0';
    h[257..265].copy_from_slice(b"ustar\x0000");
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(body);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

#[test]
fn a_size_claim_reserves_no_more_than_the_walk_buffers() {
    let layer = tar_entry("var/lib/dpkg/status", 60 << 20, b"Package: x\nVersion: 1\n");
    LARGEST.store(0, Ordering::Relaxed);
    // The stream ends long before the claimed size; whatever the walk makes of that, it must
    // not have reserved the claimed 60 MiB on the way.
    let _ = analyze_layer(layer.as_slice());
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= 2 << 20,
        "reserved {largest} bytes for a 1 KiB layer"
    );
}
