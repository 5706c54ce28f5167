//! Helpers shared by the fuzz targets: an allocator that remembers the largest single request,
//! so a target can assert that no size field read from the input makes a parser reserve more
//! memory than the input can justify.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Largest single allocation (or reallocation) since the last [`reset_largest_alloc`].
static LARGEST: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, recording the largest request. Install it with
/// `#[global_allocator] static A: breakwater_fuzz::PeakAlloc = breakwater_fuzz::PeakAlloc;`.
pub struct PeakAlloc;

// SAFETY: every call is forwarded unchanged to `System`; the bookkeeping is one atomic max.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

/// Starts a new measurement.
pub fn reset_largest_alloc() {
    LARGEST.store(0, Ordering::Relaxed);
}

/// The largest single allocation since [`reset_largest_alloc`] (0 without [`PeakAlloc`]).
pub fn largest_alloc() -> usize {
    LARGEST.load(Ordering::Relaxed)
}

/// Panics (a fuzzer finding) when the largest allocation since the last reset exceeds `limit`.
pub fn assert_alloc_within(limit: usize, what: &str) {
    let got = largest_alloc();
    assert!(
        got <= limit,
        "{what}: one allocation of {got} bytes, more than the {limit} the input justifies"
    );
}
