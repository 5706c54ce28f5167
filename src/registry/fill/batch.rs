//! Received bytes gathered into reused batch buffers.
//!
//! Handing upstream's chunks on as they come keeps the HTTP client's read buffer referenced
//! (the window and the hash and staging queues hold them), so every receive reserves a fresh
//! buffer: with glibc's 128 KiB mmap threshold each is a new mapping that page-faults as the
//! kernel copies into it, and is unmapped again once the window lets go (about a fifth of a
//! worker's time in a cold GET's profile). Copying each chunk into a batch and dropping it at
//! once lets the client reuse its buffer; the batches come back to a shared free list when the
//! window, hasher and writer are done with them, so a running fill maps nothing new.
//!
//! The free list only lives while fills run: when the last one ends, it is emptied, so an idle or
//! warm-only cache holds none of it.

use bytes::Bytes;
use std::sync::Mutex;

/// Bytes gathered before they are handed on.
pub(super) const BATCH: usize = 256 * 1024;
/// Free batches kept at most (4 MiB): about one window's worth, shared by all running fills.
const MAX_FREE: usize = 16;

struct Pool {
    free: Vec<Vec<u8>>,
    /// Running fills; at 0 the free list is dropped.
    fills: usize,
}

type Shared = &'static Mutex<Pool>;

/// The free list every fill shares.
static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    fills: 0,
});

fn lock(pool: Shared) -> std::sync::MutexGuard<'static, Pool> {
    pool.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held by a running fill: keeps the free list alive.
pub(super) struct FillsRunning(Shared);

impl FillsRunning {
    /// Counts one more running fill.
    pub(super) fn enter() -> Self {
        Self::enter_in(&POOL)
    }

    fn enter_in(pool: Shared) -> Self {
        lock(pool).fills += 1;
        FillsRunning(pool)
    }
}

impl Drop for FillsRunning {
    fn drop(&mut self) {
        let mut p = lock(self.0);
        p.fills -= 1;
        if p.fills == 0 {
            p.free = Vec::new();
        }
    }
}

/// A batch buffer that goes back to the free list when the last `Bytes` of it is dropped.
struct Pooled(Vec<u8>, Shared);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        // Only batch-sized buffers are worth keeping (a completing batch may have grown).
        if v.capacity() != BATCH {
            return;
        }
        let mut p = lock(self.1);
        if p.fills > 0 && p.free.len() < MAX_FREE {
            v.clear();
            p.free.push(v);
        }
    }
}

/// The bytes a fill gathered since it last handed some on.
pub(super) struct Gathered {
    buf: Vec<u8>,
    pool: Shared,
}

impl Default for Gathered {
    fn default() -> Self {
        Gathered {
            buf: Vec::new(),
            pool: &POOL,
        }
    }
}

impl Gathered {
    /// Bytes gathered.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is gathered.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Appends `chunk` (copied: the caller drops it, so its buffer is free again).
    pub(super) fn extend(&mut self, chunk: &[u8]) {
        if self.buf.capacity() == 0 {
            self.buf = lock(self.pool).free.pop().unwrap_or_default();
            // Exactly one batch, so it can go back to the free list.
            self.buf.reserve_exact(BATCH);
        }
        self.buf.extend_from_slice(chunk);
    }

    /// Takes everything gathered. A mostly full batch is handed off itself (it returns to the
    /// free list once dropped); a small remainder (upstream is slow) is copied out, so the window
    /// does not hold a mostly empty batch for it.
    pub(super) fn take(&mut self) -> Bytes {
        if self.buf.len() >= BATCH / 2 {
            Bytes::from_owner(Pooled(std::mem::take(&mut self.buf), self.pool))
        } else {
            let b = Bytes::copy_from_slice(&self.buf);
            self.buf.clear();
            b
        }
    }
}

impl Drop for Gathered {
    fn drop(&mut self) {
        if self.buf.capacity() > 0 {
            drop(Pooled(std::mem::take(&mut self.buf), self.pool));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_back_while_fills_run_and_go_when_none_does() {
        // A pool of its own: other tests' fills share the global one.
        let pool: Shared = Box::leak(Box::new(Mutex::new(Pool {
            free: Vec::new(),
            fills: 0,
        })));
        let running = FillsRunning::enter_in(pool);
        let mut g = Gathered {
            buf: Vec::new(),
            pool,
        };
        g.extend(&[7u8; BATCH]);
        let first = g.take();
        assert_eq!(first.len(), BATCH);
        let addr = first.as_ptr();
        drop(first);
        // The next batch reuses the returned buffer: no new allocation.
        g.extend(&[8u8; 1000]);
        g.extend(&[9u8; BATCH - 1000]);
        let second = g.take();
        assert_eq!(second.as_ptr(), addr);
        assert_eq!(&second[..1000], &[8u8; 1000][..]);
        assert_eq!(second[1000], 9);
        // A small remainder is copied out; the batch stays with the gatherer.
        g.extend(b"tail");
        assert_eq!(&g.take()[..], b"tail");
        assert!(g.is_empty());
        drop((second, g));
        assert_eq!(
            lock(pool).free.len(),
            2,
            "the batch and the gatherer's buffer came back"
        );
        drop(running);
        assert!(
            lock(pool).free.is_empty(),
            "the free list outlived the last fill"
        );
        // A batch dropped after the last fill ended is not kept either.
        let late = FillsRunning::enter_in(pool);
        let mut g = Gathered {
            buf: Vec::new(),
            pool,
        };
        g.extend(&[1u8; BATCH]);
        let b = g.take();
        drop(late);
        drop(b);
        assert!(lock(pool).free.is_empty());
    }
}
