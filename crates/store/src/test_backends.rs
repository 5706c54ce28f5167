//! Runs a unit test against every index backend: SQLite (in memory) always, and PostgreSQL on a
//! fresh database of the process's private cluster when PostgreSQL is installed (see
//! `pg::testing`; with `BREAKWATER_REQUIRE_TEST_TOOLS` set, a missing PostgreSQL fails).

use crate::images::{ImageRow, SnapshotSink};
use crate::pg::testing::PgCluster;
use crate::{Index, PgIndex, SqliteIndex};

/// Calls `test` with each backend, named for the failure message.
pub(crate) fn each_backend(mut test: impl FnMut(&str, &dyn Index)) {
    test("sqlite", &SqliteIndex::in_memory().unwrap());
    if let Some(pg) = PgCluster::shared() {
        test("postgres", &PgIndex::open(&pg.settings()).unwrap());
    }
}

/// One `images` row as the snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ImageState {
    pub digest: String,
    pub repo_id: i64,
    pub pull_count: u64,
    pub last_pulled_ms: Option<i64>,
    pub storage_class: String,
    pub transitioned_at_ms: Option<i64>,
    pub first_cached_ms: i64,
}

/// Every image row of `ix`, sorted by digest, read through the lifecycle snapshot.
pub(crate) fn image_rows(ix: &dyn Index) -> Vec<ImageState> {
    #[derive(Default)]
    struct Rows(Vec<ImageState>);
    impl SnapshotSink for Rows {
        fn repository(&mut self, _: i64, _: &str, _: &str) {}
        fn manifest(&mut self, _: &str, _: &str, _: u64, _: i64) {}
        fn reference(&mut self, _: &str, _: &str, _: &str, _: Option<u64>, _: Option<&str>) {}
        fn blob(&mut self, _: &str, _: u64, _: i64) {}
        fn image(&mut self, r: &ImageRow<'_>) {
            self.0.push(ImageState {
                digest: r.digest.to_string(),
                repo_id: r.repo_id,
                pull_count: r.pull_count,
                last_pulled_ms: r.last_pulled_ms,
                storage_class: r.storage_class.to_string(),
                transitioned_at_ms: r.transitioned_at_ms,
                first_cached_ms: r.first_cached_ms,
            });
        }
        fn tag(&mut self, _: i64, _: &str, _: &str) {}
    }
    let mut rows = Rows::default();
    ix.lifecycle().snapshot(&mut rows).unwrap();
    rows.0.sort();
    rows.0
}
