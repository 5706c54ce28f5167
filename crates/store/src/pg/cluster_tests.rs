//! Fill and job leases and membership on a real PostgreSQL: one winner among racing replicas,
//! expiry by the database's clock, renewal only by the holder.

use super::testing::PgCluster;
use super::PgIndex;
use crate::cluster::ClusterIndex;
use crate::oci::Digest;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(30);

#[test]
fn one_replica_wins_a_fill_lease_and_another_takes_it_once_expired() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let ix = PgIndex::open(&pg.settings()).unwrap();
    let d = Digest::sha256_of(b"blob");
    // Eight replicas race: exactly one wins, and every one learns the same holder.
    let holders: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let (ix, d) = (&ix, &d);
                s.spawn(move || {
                    let node = format!("n{i}");
                    let h = ix
                        .take_fill_lease(d, &node, &format!("http://{node}"), TTL)
                        .unwrap();
                    (node, h)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<_> = holders.iter().filter(|(n, h)| &h.owner == n).collect();
    assert_eq!(winners.len(), 1, "{holders:?}");
    let owner = winners[0].0.clone();
    assert!(holders.iter().all(|(_, h)| h.owner == owner));
    assert_eq!(holders[0].1.peer_url, format!("http://{owner}"));
    // Only the holder renews; the lease is listed as live.
    assert!(ix.renew_fill_lease(&d, &owner, TTL).unwrap());
    assert!(!ix.renew_fill_lease(&d, "someone-else", TTL).unwrap());
    let live = ix.live_fill_leases().unwrap();
    assert!(live.iter().any(|l| l.digest == d && l.owner == owner));
    // Expired (renewed with a zero TTL, as if its owner died): another replica takes it.
    assert!(ix.renew_fill_lease(&d, &owner, Duration::ZERO).unwrap());
    std::thread::sleep(Duration::from_millis(20));
    assert!(!ix.live_fill_leases().unwrap().iter().any(|l| l.digest == d));
    let h = ix.take_fill_lease(&d, "late", "http://late", TTL).unwrap();
    assert_eq!(h.owner, "late");
    // The old owner can no longer renew or release it.
    assert!(!ix.renew_fill_lease(&d, &owner, TTL).unwrap());
    ix.release_fill_lease(&d, &owner, Duration::ZERO).unwrap();
    assert_eq!(ix.take_fill_lease(&d, "x", "u", TTL).unwrap().owner, "late");
    // A lingering release keeps the lease (and GC away) for a while; a plain one frees it.
    ix.release_fill_lease(&d, "late", TTL).unwrap();
    assert_eq!(ix.take_fill_lease(&d, "x", "u", TTL).unwrap().owner, "late");
    ix.release_fill_lease(&d, "late", Duration::ZERO).unwrap();
    assert_eq!(ix.take_fill_lease(&d, "x", "u", TTL).unwrap().owner, "x");
}

#[test]
fn job_leases_and_heartbeats() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let ix = PgIndex::open(&pg.settings()).unwrap();
    assert!(ix.take_job_lease("gc", "a", TTL).unwrap());
    assert!(!ix.take_job_lease("gc", "b", TTL).unwrap());
    assert!(
        ix.take_job_lease("gc", "a", TTL).unwrap(),
        "the holder renews"
    );
    let jobs = ix.live_job_leases().unwrap();
    assert_eq!((jobs.len(), jobs[0].owner.as_str()), (1, "a"));
    ix.release_job_lease("gc", "a").unwrap();
    assert!(ix.take_job_lease("gc", "b", TTL).unwrap());

    ix.heartbeat("a", "http://a", 1).unwrap();
    ix.heartbeat("b", "http://b", 2).unwrap();
    ix.heartbeat("a", "http://a2", 1).unwrap();
    let m = ix.members().unwrap();
    assert_eq!(m.len(), 2);
    let a = m.iter().find(|m| m.node == "a").unwrap();
    assert_eq!(a.peer_url, "http://a2");
    assert!((0..5000).contains(&a.heartbeat_age_ms), "{a:?}");
}

#[test]
fn one_replica_at_a_time_revalidates_a_tag() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let ix = PgIndex::open(&pg.settings()).unwrap();
    let repo = crate::index::RepoKey {
        upstream: "hub".into(),
        name: "team/lease".into(),
    };
    let other = crate::index::RepoKey {
        upstream: "mirror".into(),
        name: "team/lease".into(),
    };
    assert!(ix.take_tag_lease(&repo, "v1", "a", TTL).unwrap());
    assert!(!ix.take_tag_lease(&repo, "v1", "b", TTL).unwrap());
    assert!(
        ix.take_tag_lease(&repo, "v1", "a", TTL).unwrap(),
        "the holder again"
    );
    // Another tag, or the same repository on another upstream, is another lease.
    assert!(ix.take_tag_lease(&repo, "v2", "b", TTL).unwrap());
    assert!(ix.take_tag_lease(&other, "v1", "b", TTL).unwrap());
    // Only the holder releases it; then anyone takes it.
    ix.release_tag_lease(&repo, "v1", "b").unwrap();
    assert!(!ix.take_tag_lease(&repo, "v1", "b", TTL).unwrap());
    ix.release_tag_lease(&repo, "v1", "a").unwrap();
    assert!(ix.take_tag_lease(&repo, "v1", "b", TTL).unwrap());
    // Expired (a holder that died): taken over.
    assert!(ix.take_tag_lease(&repo, "v2", "b", Duration::ZERO).unwrap());
    std::thread::sleep(Duration::from_millis(20));
    assert!(ix.take_tag_lease(&repo, "v2", "c", TTL).unwrap());
}

#[test]
fn a_fill_lease_is_taken_over_from_a_peer_whose_bytes_failed() {
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let ix = PgIndex::open(&pg.settings()).unwrap();
    let d = Digest::sha256_of(b"rotten on a");
    assert_eq!(
        ix.take_fill_lease(&d, "a", "http://a", TTL).unwrap().owner,
        "a"
    );
    // Only from the named holder: a third replica's lease stays its own.
    assert!(!ix
        .take_fill_lease_from(&d, "c", "http://c", "b", TTL)
        .unwrap());
    assert!(ix
        .take_fill_lease_from(&d, "b", "http://b", "a", TTL)
        .unwrap());
    let h = ix.take_fill_lease(&d, "x", "http://x", TTL).unwrap();
    assert_eq!((h.owner.as_str(), h.peer_url.as_str()), ("b", "http://b"));
    assert!(!ix.renew_fill_lease(&d, "a", TTL).unwrap(), "a lost it");
    // Free: taken as any lease.
    let free = Digest::sha256_of(b"free");
    assert!(ix
        .take_fill_lease_from(&free, "b", "http://b", "a", TTL)
        .unwrap());
}
