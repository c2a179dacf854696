//! Compaction: what survives it and how reads of discarded history fail.

use std::sync::Arc;

use crate::{Error, RangeRequest, Store};

fn prefix(prefix: &str, revision: i64) -> RangeRequest {
    RangeRequest {
        prefix: prefix.to_owned(),
        revision,
        ..RangeRequest::default()
    }
}

/// Compacting keeps the latest value of every live key, revisions included, and new writes
/// continue the revision sequence.
pub async fn compaction_keeps_live_keys(store: Arc<dyn Store>) {
    let base = "/suite/compact-live/";
    let a = store
        .create(&format!("{base}a"), b"a1".to_vec())
        .await
        .expect("create a");
    let mut latest = a.clone();
    for i in 2..6 {
        latest = store.update(&a.key, vec![i], 0).await.expect("update a");
    }
    let b = store
        .create(&format!("{base}b"), b"b1".to_vec())
        .await
        .expect("create b");
    store.delete(&b.key, 0).await.expect("delete b");
    let c = store
        .create(&format!("{base}c"), b"c1".to_vec())
        .await
        .expect("create c");
    let current = store.current_revision().await.expect("revision");

    store.compact(current).await.expect("compact");
    assert_eq!(store.compacted_revision().await.expect("compacted"), current);
    // Compacting to the same revision again is harmless.
    store.compact(current).await.expect("compact again");

    assert_eq!(store.get(&a.key).await.expect("get a"), Some(latest.clone()));
    assert_eq!(store.get(&b.key).await.expect("get b"), None);
    let all = store.range(prefix(base, 0)).await.expect("range");
    assert_eq!(all.kvs, [latest.clone(), c.clone()]);
    let at = store
        .range(prefix(base, current))
        .await
        .expect("range at the compaction revision");
    assert_eq!(at.kvs, [latest.clone(), c]);

    let next = store
        .update(&a.key, b"after".to_vec(), latest.mod_revision)
        .await
        .expect("update");
    assert_eq!(next.mod_revision, current + 1);
    assert_eq!(next.create_revision, a.create_revision);
}

/// Reading below the compaction revision fails with Compacted.
pub async fn range_below_compaction(store: Arc<dyn Store>) {
    let base = "/suite/compact-range/";
    let a = store.create(&format!("{base}a"), Vec::new()).await.expect("create");
    let b = store.update(&a.key, b"x".to_vec(), 0).await.expect("update");
    store.compact(b.mod_revision).await.expect("compact");
    let err = store
        .range(prefix(base, a.mod_revision))
        .await
        .expect_err("compacted read");
    assert!(
        matches!(err, Error::Compacted { requested, compacted } if requested == a.mod_revision && compacted == b.mod_revision),
        "got {err:?}"
    );
    // Compacting to a revision that does not exist yet is refused.
    let err = store.compact(b.mod_revision + 10).await.expect_err("future compaction");
    assert!(matches!(err, Error::FutureRevision { .. }), "got {err:?}");
}

/// Watching from below the compaction revision fails with Compacted; from it, it works.
pub async fn watch_below_compaction(store: Arc<dyn Store>) {
    let base = "/suite/compact-watch/";
    let a = store.create(&format!("{base}a"), Vec::new()).await.expect("create");
    let b = store.update(&a.key, b"x".to_vec(), 0).await.expect("update");
    store.compact(b.mod_revision).await.expect("compact");
    let err = store.watch(base, a.mod_revision).await.expect_err("compacted watch");
    assert!(matches!(err, Error::Compacted { .. }), "got {err:?}");

    let mut watch = store
        .watch(base, b.mod_revision)
        .await
        .expect("watch at compaction revision");
    let c = store.update(&a.key, b"y".to_vec(), 0).await.expect("update");
    let events = super::next_events(&mut watch, 1).await;
    assert_eq!(events[0].kv, c);
    assert_eq!(events[0].prev.as_ref(), Some(&b), "prev survives compaction");
}
