//! Archived images a client pulled again go back to standard storage: the pull refetched their
//! bytes, which are kept from then on. Apply and GC restore them first; preview and a GC dry
//! run do the same in memory only, so they agree with what a real run decides.
//!
//! An image's "pushed" time (`first_cached`) is when breakwater last cached its bytes: its
//! first cache, or its restore from archive. The restore time is the pull that brought the
//! image back (its latest pull, never later than now), so a `sinceImagePushed` or
//! `imageCountMoreThan` transition rule does not archive an image in use again at once.

use super::apply::group_event;
use super::catalog::Catalog;
use super::service::{Lifecycle, OpError};
use crate::cache::images::ImageKey;
use crate::cache::{Event, EventKind};
use breakwater_oci::time::Timestamp;

impl Catalog {
    /// Archived images pulled since they were archived, each with its restore time.
    pub fn pending_restores(&self, now_ms: i64) -> Vec<(usize, i64)> {
        (0..self.groups.len())
            .filter_map(|g| {
                let grp = &self.groups[g];
                let parent = &self.rows[grp.parent];
                let pulled = grp.last_pulled_ms?;
                let archived_at = parent.transitioned_at_ms.unwrap_or(i64::MIN);
                (parent.archived && pulled > archived_at).then_some((g, pulled.min(now_ms)))
            })
            .collect()
    }

    /// Treats `restores` as done: standard storage, pushed at the restore time.
    pub fn restore(&mut self, restores: &[(usize, i64)]) {
        for &(g, at) in restores {
            let row = &mut self.rows[self.groups[g].parent];
            row.archived = false;
            row.transitioned_at_ms = None;
            row.first_cached_ms = at;
        }
    }
}

impl Lifecycle {
    /// Restores archived images pulled again, in `c` and (when `write`) in the index, with a
    /// `restore` event each. Returns how many.
    pub(super) fn restore_pulled(&self, c: &mut Catalog, write: bool) -> Result<usize, OpError> {
        let restores = c.pending_restores(self.now().as_ms());
        if restores.is_empty() {
            return Ok(0);
        }
        if write {
            let rows: Vec<(ImageKey, i64)> = restores
                .iter()
                .filter_map(|&(g, at)| Some((c.key(c.groups[g].parent)?, at)))
                .collect();
            self.index().restore_images(&rows)?;
            let events: Vec<Event> = restores
                .iter()
                .map(|&(g, at)| {
                    let mut e = group_event(
                        c,
                        g,
                        EventKind::Restore,
                        "archived image pulled again; back to standard storage".into(),
                    );
                    e.detail = Some(format!(
                        "pushed time set to {} (first_cached_ms {at}), when its bytes were cached again",
                        Timestamp::from_ms(at)
                    ));
                    e
                })
                .collect();
            self.record(&events);
        }
        c.restore(&restores);
        Ok(restores.len())
    }
}
