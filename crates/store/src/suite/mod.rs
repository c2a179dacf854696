//! Behavioural tests every [`Store`] backend must pass.
//!
//! Each check is a `pub async fn` taking a store that no other client writes to; it panics on
//! failure, like a test. Checks keep to their own key prefix and only compare revisions relative
//! to what they observed, so they can run one after another on a single store ([`run_all`]) or
//! each on a fresh one (what a backend's own `#[tokio::test]`s usually do). Some checks compact
//! the store, so do not run them concurrently on one store.

mod compaction;
mod kv;
mod range;
mod watch;

use std::sync::Arc;
use std::time::Duration;

pub use self::compaction::{compaction_keeps_live_keys, range_below_compaction, watch_below_compaction};
pub use self::kv::{
    concurrent_writes, create_and_get, create_existing, delete, revisions_advance_by_one, update_cas, update_missing,
    update_unconditional,
};
pub use self::range::{range_future_revision, range_paging, range_past_revision, range_prefix_isolation};
pub use self::watch::{watch_catch_up_and_live, watch_prefix_filter, watch_slow_consumer};
use crate::{Store, WatchEvent, WatchReceiver};

/// Runs every check, one after another, on one store.
pub async fn run_all(store: Arc<dyn Store>) {
    create_and_get(Arc::clone(&store)).await;
    create_existing(Arc::clone(&store)).await;
    update_cas(Arc::clone(&store)).await;
    update_unconditional(Arc::clone(&store)).await;
    update_missing(Arc::clone(&store)).await;
    delete(Arc::clone(&store)).await;
    revisions_advance_by_one(Arc::clone(&store)).await;
    concurrent_writes(Arc::clone(&store)).await;
    range_prefix_isolation(Arc::clone(&store)).await;
    range_paging(Arc::clone(&store)).await;
    range_past_revision(Arc::clone(&store)).await;
    range_future_revision(Arc::clone(&store)).await;
    watch_catch_up_and_live(Arc::clone(&store)).await;
    watch_prefix_filter(Arc::clone(&store)).await;
    watch_slow_consumer(Arc::clone(&store)).await;
    compaction_keeps_live_keys(Arc::clone(&store)).await;
    range_below_compaction(Arc::clone(&store)).await;
    watch_below_compaction(store).await;
}

/// How long a check waits for an event that should come.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Receives exactly `count` events, checking that revisions strictly increase.
async fn next_events(watch: &mut WatchReceiver, count: usize) -> Vec<WatchEvent> {
    let mut events: Vec<WatchEvent> = Vec::with_capacity(count);
    while events.len() < count {
        let batch = tokio::time::timeout(EVENT_TIMEOUT, watch.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {count} events", events.len()))
            .expect("watch ended early")
            .expect("watch failed");
        assert!(!batch.is_empty(), "watch delivered an empty batch");
        for event in batch {
            if let Some(previous) = events.last() {
                assert!(
                    event.revision() > previous.revision(),
                    "events out of order: {} after {}",
                    event.revision(),
                    previous.revision()
                );
            }
            events.push(event);
        }
    }
    assert_eq!(events.len(), count, "watch delivered more events than written");
    events
}
