//! PostgreSQL restarted under an open index: the pool's dead connections are replaced and the
//! operation rerun, so no call fails once the server is back; SQL errors are never rerun.

use super::pool::Rerun;
use super::testing::PgCluster;
use super::{PgError, PgIndex};
use crate::events::{Event, EventKind, EventQuery};
use crate::index::{Index, RepoKey};
use crate::oci::Digest;
use std::cell::Cell;

fn repo() -> RepoKey {
    RepoKey {
        upstream: "hub".into(),
        name: "team/app".into(),
    }
}

/// Fills the pool with `n` idle connections (n operations at once).
fn warm(ix: &PgIndex, n: usize) {
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| {
                ix.db("warm", |c| {
                    c.execute("SELECT pg_sleep(0.2)", &[])?;
                    Ok(())
                })
                .unwrap()
            });
        }
    });
}

#[test]
fn after_a_restart_the_first_calls_succeed_on_new_connections() {
    let Some(pg) = PgCluster::private() else {
        return;
    };
    let mut settings = pg.settings();
    settings.pool_size = 3;
    let ix = PgIndex::open(&settings).unwrap();
    let d = Digest::sha256_of(b"layer");
    ix.record_blob(&d, 5, 1).unwrap();
    warm(&ix, 3);
    pg.stop();
    pg.restart();
    // A read, a rerunnable write and a write that must not be applied twice: all succeed at
    // once, each of the idle connections being dead.
    assert!(ix.tag(&repo(), "v1").unwrap().is_none());
    ix.link(&repo(), &d, 2).unwrap();
    assert!(ix.linked(&repo(), &d).unwrap());
    warm(&ix, 3);
    pg.stop();
    pg.restart();
    let runs = Cell::new(0);
    ix.db_once("count runs", |c| {
        runs.set(runs.get() + 1);
        c.execute("SELECT 1", &[])?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        runs.get(),
        1,
        "run once, on a connection checked live first"
    );
    warm(&ix, 3);
    pg.stop();
    pg.restart();
    let runs = Cell::new(0);
    ix.db("count runs", |c| {
        runs.set(runs.get() + 1);
        c.execute("SELECT 1", &[])?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        runs.get(),
        2,
        "run on the dead connection, then on a new one"
    );
    let e = Event::new(EventKind::ImmutableTagMoved, "after a restart");
    ix.record_events(&[e]).unwrap();
    let recorded = ix
        .events(&EventQuery {
            limit: Some(10),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(recorded.len(), 1, "recorded once: {recorded:?}");
}

#[test]
fn sql_errors_are_not_rerun() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let ix = PgIndex::open(&pg.settings()).unwrap();
    for rerun in [Rerun::Always, Rerun::IfNotRun] {
        let runs = Cell::new(0);
        let r = ix.pool.run(rerun, |c| {
            runs.set(runs.get() + 1);
            c.execute("SELECT * FROM no_such_table", &[])?;
            Ok(())
        });
        assert!(matches!(r, Err(PgError::Db(_))), "{r:?}");
        assert_eq!(runs.get(), 1, "{rerun:?}");
    }
    // The pool still works.
    assert!(ix.tag(&repo(), "v1").unwrap().is_none());
}
