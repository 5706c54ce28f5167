//! The index file has two writers in one process, the index's connection and the scan store's.
//! A transaction that reads and then writes must wait for the other writer, never fail with
//! "database is locked": SQLite does not wait to upgrade a read transaction to a write one (the
//! soak run's `breakwater gc` hit this while scans were being stored).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use rusqlite::Connection;

use crate::images::{Claim, ClaimLimits, LifecycleIndex};
use crate::index::SqliteIndex;

/// Holds the write lock of `path` from a second connection for `hold`, with a write pending,
/// and returns once the lock is taken.
pub(crate) fn hold_write_lock(path: &std::path::Path, hold: Duration) -> thread::JoinHandle<()> {
    let path = path.to_path_buf();
    let (taken, taken_rx) = mpsc::channel();
    let other = thread::spawn(move || {
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT INTO blobs (digest, size, cached_at) VALUES ('sha256:other', 1, 1);",
        )
        .unwrap();
        taken.send(()).unwrap();
        thread::sleep(hold);
        c.execute_batch("COMMIT").unwrap();
    });
    taken_rx.recv().unwrap();
    other
}

#[test]
fn the_gc_recheck_waits_for_a_write_from_another_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let ix = SqliteIndex::open(&path).unwrap();
    let other = hold_write_lock(&path, Duration::from_millis(300));
    // No record of this blob: the re-check reads, then inserts one.
    let limits = ClaimLimits {
        now_ms: 10,
        committed_after_ms: 5,
        recorded_since_ms: 5,
    };
    let claim = ix.claim_for_deletion("sha256:new", 1, &limits);
    other.join().unwrap();
    assert_eq!(claim.unwrap(), Claim::Adopted);
}
