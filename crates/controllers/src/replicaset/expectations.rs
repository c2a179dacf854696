//! Expectations: the pod creations and deletions a ReplicaSet has asked for but the pod store
//! has not shown yet. Until they are seen (or time out) the controller does not act on the
//! ReplicaSet again, since its view of the pods would be stale and it would create or delete
//! twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long expectations are trusted; past this the controller acts again anyway, in case an
/// event was lost.
const TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What one ReplicaSet waits for.
#[derive(Debug)]
struct Pending {
    /// Creations not yet observed.
    creates: i64,
    /// Names of pods whose deletion is not yet observed.
    deletes: HashSet<String>,
    /// When these expectations were last raised.
    since: Instant,
}

/// Outstanding creations and deletions, per ReplicaSet uid.
#[derive(Debug, Default)]
pub(super) struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn entry<'a>(map: &'a mut HashMap<String, Pending>, uid: &str) -> &'a mut Pending {
        map.entry(uid.to_string()).or_insert_with(|| Pending {
            creates: 0,
            deletes: HashSet::new(),
            since: Instant::now(),
        })
    }

    /// Records that `count` pods are about to be created for `uid`.
    pub(super) fn expect_creations(&self, uid: &str, count: usize) {
        let mut map = self.lock();
        let pending = Self::entry(&mut map, uid);
        pending.creates += count as i64;
        pending.since = Instant::now();
    }

    /// One creation for `uid` was seen, or will never happen because it failed.
    pub(super) fn creation_observed(&self, uid: &str) {
        if let Some(pending) = self.lock().get_mut(uid) {
            pending.creates -= 1;
        }
    }

    /// Records that the named pods are about to be deleted for `uid`.
    pub(super) fn expect_deletions(&self, uid: &str, names: impl IntoIterator<Item = String>) {
        let mut map = self.lock();
        let pending = Self::entry(&mut map, uid);
        pending.deletes.extend(names);
        pending.since = Instant::now();
    }

    /// The deletion of pod `name` for `uid` was seen, or will never happen because it failed.
    pub(super) fn deletion_observed(&self, uid: &str, name: &str) {
        if let Some(pending) = self.lock().get_mut(uid) {
            pending.deletes.remove(name);
        }
    }

    /// Whether `uid` may act: nothing is outstanding, or the expectations expired. A pod
    /// expected to go that `present` no longer finds counts as gone, since a re-list drops
    /// deleted pods from the store without a deletion event. Met expectations are forgotten.
    pub(super) fn satisfied(&self, uid: &str, present: impl Fn(&str) -> bool) -> bool {
        let mut map = self.lock();
        let Some(pending) = map.get_mut(uid) else {
            return true;
        };
        pending.deletes.retain(|name| present(name));
        let met = (pending.creates <= 0 && pending.deletes.is_empty()) || pending.since.elapsed() > TIMEOUT;
        if met {
            map.remove(uid);
        }
        met
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_be_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("rs", |_| true));
        e.expect_creations("rs", 2);
        assert!(!e.satisfied("rs", |_| true));
        e.creation_observed("rs");
        assert!(!e.satisfied("rs", |_| true));
        e.creation_observed("rs");
        assert!(e.satisfied("rs", |_| true));
        // Observations for a ReplicaSet without expectations are ignored.
        e.creation_observed("other");
        assert!(e.satisfied("other", |_| true));
    }

    #[test]
    fn deletions_must_be_observed_or_gone() {
        let e = Expectations::default();
        e.expect_deletions("rs", ["a".to_string(), "b".to_string()]);
        assert!(!e.satisfied("rs", |_| true));
        e.deletion_observed("rs", "a");
        assert!(!e.satisfied("rs", |_| true));
        assert!(e.satisfied("rs", |name| name != "b"));
    }
}
