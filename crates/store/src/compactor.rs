//! Background compaction: keep a fixed window of history, discard the rest.
//!
//! A revision says nothing about time, so the compactor samples the current revision at each
//! tick and, once a sample is older than the retention, compacts to it. That keeps at least
//! `retention` worth of history for watchers that reconnect and clients that page slowly.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::{Error, Revision, Store};

/// Spawns a task that every `interval` compacts `store` to the newest revision older than
/// `retention`; it stops when the store is closed.
pub fn spawn_compactor(store: Arc<dyn Store>, retention: Duration, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut samples = Samples::default();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = Instant::now();
            match store.current_revision().await {
                Ok(revision) => samples.record(now, revision),
                Err(Error::Closed) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "compactor cannot read the store revision");
                    continue;
                }
            }
            let Some(target) = samples.take_expired(now, retention) else {
                continue;
            };
            if target == 0 {
                continue;
            }
            match store.compact(target).await {
                Ok(()) => tracing::debug!(revision = target, "compacted store history"),
                Err(Error::Closed) => return,
                Err(err) => {
                    tracing::warn!(error = %err, revision = target, "store compaction failed")
                }
            }
        }
    })
}

/// Revisions seen over time, oldest first.
#[derive(Default)]
struct Samples(VecDeque<(Instant, Revision)>);

impl Samples {
    fn record(&mut self, at: Instant, revision: Revision) {
        // An idle store yields the same revision tick after tick; only the oldest sighting
        // matters, because it says how long that revision has been current.
        if self.0.back().is_none_or(|&(_, last)| last != revision) {
            self.0.push_back((at, revision));
        }
    }

    /// Removes every sample older than `retention` and returns the newest of them.
    fn take_expired(&mut self, now: Instant, retention: Duration) -> Option<Revision> {
        let mut newest = None;
        while let Some(&(at, revision)) = self.0.front() {
            if now.duration_since(at) < retention {
                break;
            }
            newest = Some(revision);
            self.0.pop_front();
        }
        newest
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    #[test]
    fn samples_yield_the_newest_revision_past_retention() {
        let start = Instant::now();
        let mut samples = Samples::default();
        samples.record(start, 5);
        samples.record(start + Duration::from_secs(1), 5);
        samples.record(start + Duration::from_secs(2), 9);
        samples.record(start + Duration::from_secs(3), 12);
        let retention = Duration::from_secs(2);
        assert_eq!(samples.take_expired(start + Duration::from_secs(1), retention), None);
        assert_eq!(samples.take_expired(start + Duration::from_secs(4), retention), Some(9));
        assert_eq!(samples.take_expired(start + Duration::from_secs(4), retention), None);
        assert_eq!(
            samples.take_expired(start + Duration::from_secs(5), retention),
            Some(12)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn compacts_history_older_than_retention() {
        // Real time rather than paused time: the store's writer is a plain thread, and paused
        // time auto-advances whenever the runtime idles waiting for it.
        let retention = Duration::from_millis(800);
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("kv.db")).unwrap());
        let first = store.create("/a", vec![1]).await.unwrap();
        let handle = spawn_compactor(Arc::clone(&store), retention, Duration::from_millis(20));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = store.update("/a", vec![2], 0).await.unwrap();
        // `second` cannot have been sampled before it was written, so it is not yet old enough.
        assert!(store.compacted_revision().await.unwrap() < second.mod_revision);

        let deadline = Instant::now() + Duration::from_secs(10);
        let mut compacted = 0;
        while compacted < second.mod_revision && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            compacted = store.compacted_revision().await.unwrap();
            assert!(compacted == 0 || compacted >= first.mod_revision);
        }
        assert_eq!(compacted, second.mod_revision);
        assert_eq!(store.get("/a").await.unwrap(), Some(second));
        handle.abort();
    }
}
