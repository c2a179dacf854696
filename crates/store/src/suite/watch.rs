//! Watches: history then live events, filtering, and clients that read slowly.

use std::sync::Arc;

use super::{EVENT_TIMEOUT, next_events};
use crate::{Error, EventKind, Store};

/// A watch from a past revision replays history, then continues live, with full event details.
pub async fn watch_catch_up_and_live(store: Arc<dyn Store>) {
    let base = "/suite/watch/";
    let a = store
        .create(&format!("{base}a"), b"a1".to_vec())
        .await
        .expect("create a");
    let a2 = store.update(&a.key, b"a2".to_vec(), 0).await.expect("update a");
    let deleted = store.delete(&a.key, 0).await.expect("delete a");

    // From just before the update: the create is history that must not be replayed.
    let mut watch = store.watch(base, a.mod_revision).await.expect("watch");
    let history = next_events(&mut watch, 2).await;
    assert_eq!(history[0].kind, EventKind::Update);
    assert_eq!(history[0].kv, a2);
    assert_eq!(history[0].prev.as_ref(), Some(&a));
    assert_eq!(history[1].kind, EventKind::Delete);
    assert_eq!(history[1].kv, deleted);
    assert_eq!(history[1].kv.value, b"a2", "a delete event carries the last value");
    assert_eq!(history[1].prev.as_ref(), Some(&a2));

    let b = store
        .create(&format!("{base}b"), b"b1".to_vec())
        .await
        .expect("create b");
    let b2 = store
        .update(&b.key, b"b2".to_vec(), b.mod_revision)
        .await
        .expect("update b");
    let live = next_events(&mut watch, 2).await;
    assert_eq!(live[0].kind, EventKind::Create);
    assert_eq!(live[0].kv, b);
    assert_eq!(live[0].prev, None);
    assert_eq!(live[1].kind, EventKind::Update);
    assert_eq!(live[1].kv, b2);
    assert_eq!(live[1].prev.as_ref(), Some(&b));

    // A second watcher from the start sees the same sequence as the first saw in two parts.
    let mut replay = store.watch(base, a.mod_revision - 1).await.expect("watch");
    let all = next_events(&mut replay, 5).await;
    let revisions: Vec<_> = all.iter().map(|event| event.revision()).collect();
    assert_eq!(revisions, (a.mod_revision..=b2.mod_revision).collect::<Vec<_>>());
}

/// A watch sees only keys under its prefix.
pub async fn watch_prefix_filter(store: Arc<dyn Store>) {
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch("/suite/filter/in/", start).await.expect("watch");
    store.create("/suite/filter/in", Vec::new()).await.expect("create");
    store
        .create("/suite/filter/inside/x", Vec::new())
        .await
        .expect("create");
    store.create("/suite/filter/out/x", Vec::new()).await.expect("create");
    let wanted = store.create("/suite/filter/in/x", Vec::new()).await.expect("create");
    let events = next_events(&mut watch, 1).await;
    assert_eq!(events[0].kv, wanted);
}

/// A client that does not read for a while gets every event later, in order, or is told it
/// fell too far behind; it never silently misses events.
pub async fn watch_slow_consumer(store: Arc<dyn Store>) {
    const WRITES: usize = 300;
    let base = "/suite/slow/";
    let start = store.current_revision().await.expect("revision");
    let mut watch = store.watch(base, start).await.expect("watch");
    // Writes from a few tasks at once, so that a backend batching them is also exercised.
    let mut tasks = Vec::new();
    for task in 0..4 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in (task..WRITES).step_by(4) {
                store
                    .create(&format!("{base}{i:04}"), vec![0; 64])
                    .await
                    .expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let mut expected = start + 1;
    while expected <= start + WRITES as i64 {
        let batch = tokio::time::timeout(EVENT_TIMEOUT, watch.recv())
            .await
            .expect("timed out waiting for events")
            .expect("watch ended early");
        match batch {
            Ok(events) => {
                for event in events {
                    assert_eq!(event.revision(), expected, "gap or duplicate in watch");
                    expected += 1;
                }
            }
            Err(Error::Compacted { .. }) => return,
            Err(err) => panic!("watch failed: {err}"),
        }
    }
}
