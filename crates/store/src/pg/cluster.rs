//! [`ClusterIndex`] on PostgreSQL: each lease is one row taken with a single
//! `INSERT … ON CONFLICT DO UPDATE … WHERE <expired or ours>`, so two replicas racing for a
//! digest (or a tag's revalidation) cannot both win.

use super::{digest, PgError, PgIndex};
use crate::cluster::{ClusterIndex, FillLease, JobLease, LeaseHolder, Member};
use crate::index::{IndexError, RepoKey};
use crate::oci::Digest;
use std::time::Duration;

type Result<T> = std::result::Result<T, IndexError>;

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// `now() + $n ms`, as SQL.
macro_rules! later {
    ($n:literal) => {
        concat!("now() + ($", $n, "::bigint * interval '1 millisecond')")
    };
}

impl ClusterIndex for PgIndex {
    fn take_fill_lease(
        &self,
        d: &Digest,
        node: &str,
        peer_url: &str,
        ttl: Duration,
    ) -> Result<LeaseHolder> {
        let key = d.to_string();
        self.db("take fill lease", |c| {
            // The row may vanish (released) between the failed take and the read: try again.
            for _ in 0..5 {
                let taken = c.query_opt(
                    concat!(
                        "INSERT INTO fill_leases (digest, owner, peer_url, expires_at)
                         VALUES ($1, $2, $3, ",
                        later!(4),
                        ")
                         ON CONFLICT (digest) DO UPDATE
                           SET owner = EXCLUDED.owner, peer_url = EXCLUDED.peer_url,
                               expires_at = EXCLUDED.expires_at
                           WHERE fill_leases.expires_at < now()
                              OR fill_leases.owner = EXCLUDED.owner
                         RETURNING owner, peer_url"
                    ),
                    &[&key, &node, &peer_url, &ms(ttl)],
                )?;
                let row = match taken {
                    Some(r) => Some(r),
                    None => c.query_opt(
                        "SELECT owner, peer_url FROM fill_leases WHERE digest = $1",
                        &[&key],
                    )?,
                };
                if let Some(r) = row {
                    return Ok(LeaseHolder {
                        owner: r.get(0),
                        peer_url: r.get(1),
                    });
                }
            }
            Err(PgError::Data(format!(
                "the fill lease of {key} kept changing hands"
            )))
        })
    }

    fn take_fill_lease_from(
        &self,
        d: &Digest,
        node: &str,
        peer_url: &str,
        from: &str,
        ttl: Duration,
    ) -> Result<bool> {
        let key = d.to_string();
        self.db("take over fill lease", |c| {
            let row = c.query_opt(
                concat!(
                    "INSERT INTO fill_leases (digest, owner, peer_url, expires_at)
                     VALUES ($1, $2, $3, ",
                    later!(4),
                    ")
                     ON CONFLICT (digest) DO UPDATE
                       SET owner = EXCLUDED.owner, peer_url = EXCLUDED.peer_url,
                           expires_at = EXCLUDED.expires_at
                       WHERE fill_leases.expires_at < now()
                          OR fill_leases.owner = EXCLUDED.owner OR fill_leases.owner = $5
                     RETURNING owner"
                ),
                &[&key, &node, &peer_url, &ms(ttl), &from],
            )?;
            Ok(row.is_some())
        })
    }

    fn renew_fill_lease(&self, d: &Digest, node: &str, ttl: Duration) -> Result<bool> {
        let key = d.to_string();
        self.db("renew fill lease", |c| {
            let n = c.execute(
                concat!(
                    "UPDATE fill_leases SET expires_at = ",
                    later!(3),
                    " WHERE digest = $1 AND owner = $2"
                ),
                &[&key, &node, &ms(ttl)],
            )?;
            Ok(n == 1)
        })
    }

    fn release_fill_lease(&self, d: &Digest, node: &str, linger: Duration) -> Result<()> {
        let key = d.to_string();
        self.db("release fill lease", |c| {
            if linger.is_zero() {
                c.execute(
                    "DELETE FROM fill_leases WHERE digest = $1 AND owner = $2",
                    &[&key, &node],
                )?;
            } else {
                c.execute(
                    concat!(
                        "UPDATE fill_leases SET expires_at = ",
                        later!(3),
                        " WHERE digest = $1 AND owner = $2"
                    ),
                    &[&key, &node, &ms(linger)],
                )?;
            }
            Ok(())
        })
    }

    fn live_fill_leases(&self) -> Result<Vec<FillLease>> {
        self.db("list fill leases", |c| {
            c.query(
                "SELECT digest, owner, peer_url,
                        (EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::bigint
                 FROM fill_leases WHERE expires_at >= now() ORDER BY digest",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(FillLease {
                    digest: digest(r.get(0))?,
                    owner: r.get(1),
                    peer_url: r.get(2),
                    expires_in_ms: r.get(3),
                })
            })
            .collect()
        })
    }

    fn take_job_lease(&self, name: &str, node: &str, ttl: Duration) -> Result<bool> {
        self.db("take job lease", |c| {
            let row = c.query_opt(
                concat!(
                    "INSERT INTO job_leases (name, owner, expires_at) VALUES ($1, $2, ",
                    later!(3),
                    ")
                     ON CONFLICT (name) DO UPDATE
                       SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                       WHERE job_leases.expires_at < now() OR job_leases.owner = EXCLUDED.owner
                     RETURNING owner"
                ),
                &[&name, &node, &ms(ttl)],
            )?;
            Ok(row.is_some())
        })
    }

    fn release_job_lease(&self, name: &str, node: &str) -> Result<()> {
        self.db("release job lease", |c| {
            c.execute(
                "DELETE FROM job_leases WHERE name = $1 AND owner = $2",
                &[&name, &node],
            )?;
            Ok(())
        })
    }

    fn live_job_leases(&self) -> Result<Vec<JobLease>> {
        self.db("list job leases", |c| {
            Ok(c.query(
                "SELECT name, owner, (EXTRACT(EPOCH FROM (expires_at - now())) * 1000)::bigint
                 FROM job_leases WHERE expires_at >= now() ORDER BY name",
                &[],
            )?
            .iter()
            .map(|r| JobLease {
                name: r.get(0),
                owner: r.get(1),
                expires_in_ms: r.get(2),
            })
            .collect())
        })
    }

    fn take_tag_lease(&self, repo: &RepoKey, tag: &str, node: &str, ttl: Duration) -> Result<bool> {
        self.db("take tag lease", |c| {
            let row = c.query_opt(
                concat!(
                    "INSERT INTO tag_leases (upstream, repository, tag, owner, expires_at)
                     VALUES ($1, $2, $3, $4, ",
                    later!(5),
                    ")
                     ON CONFLICT (upstream, repository, tag) DO UPDATE
                       SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
                       WHERE tag_leases.expires_at < now() OR tag_leases.owner = EXCLUDED.owner
                     RETURNING owner"
                ),
                &[&repo.upstream, &repo.name, &tag, &node, &ms(ttl)],
            )?;
            Ok(row.is_some())
        })
    }

    fn release_tag_lease(&self, repo: &RepoKey, tag: &str, node: &str) -> Result<()> {
        self.db("release tag lease", |c| {
            c.execute(
                "DELETE FROM tag_leases
                 WHERE upstream = $1 AND repository = $2 AND tag = $3 AND owner = $4",
                &[&repo.upstream, &repo.name, &tag, &node],
            )?;
            Ok(())
        })
    }

    fn heartbeat(&self, node: &str, peer_url: &str, started_at_ms: i64) -> Result<()> {
        self.db("heartbeat", |c| {
            c.execute(
                "INSERT INTO cluster_members (node, peer_url, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, now())
                 ON CONFLICT (node) DO UPDATE
                   SET peer_url = EXCLUDED.peer_url, heartbeat_at = now()",
                &[&node, &peer_url, &started_at_ms],
            )?;
            Ok(())
        })
    }

    fn members(&self) -> Result<Vec<Member>> {
        self.db("list members", |c| {
            Ok(c.query(
                "SELECT node, peer_url, started_at,
                        (EXTRACT(EPOCH FROM (now() - heartbeat_at)) * 1000)::bigint
                 FROM cluster_members ORDER BY heartbeat_at DESC, node",
                &[],
            )?
            .iter()
            .map(|r| Member {
                node: r.get(0),
                peer_url: r.get(1),
                started_at_ms: r.get(2),
                heartbeat_age_ms: r.get(3),
            })
            .collect())
        })
    }
}
