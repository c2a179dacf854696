use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tempfile::TempDir;

use super::SqliteStore;
use crate::{Error, RangeRequest, Store, suite};

fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&dir.join("kv.db")).unwrap()
}

/// A fresh store; the directory must outlive it.
fn fresh() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Arc::new(open(dir.path())), dir)
}

macro_rules! suite_tests {
    ($($check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let (store, _dir) = fresh();
            suite::$check(store).await;
        }
    )*};
}

suite_tests!(
    create_and_get,
    create_existing,
    update_cas,
    update_unconditional,
    update_missing,
    delete,
    revisions_advance_by_one,
    concurrent_writes,
    range_prefix_isolation,
    range_paging,
    range_past_revision,
    range_future_revision,
    watch_catch_up_and_live,
    watch_prefix_filter,
    watch_slow_consumer,
    compaction_keeps_live_keys,
    range_below_compaction,
    watch_below_compaction,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_suite_on_one_store() {
    let (store, _dir) = fresh();
    suite::run_all(store).await;
}

#[tokio::test]
async fn reopen_keeps_data_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, last) = {
        let store = open(dir.path());
        let kept = store.create("/k/kept", b"v".to_vec()).await.unwrap();
        store.create("/k/gone", b"v".to_vec()).await.unwrap();
        store
            .update("/k/kept", b"v2".to_vec(), kept.mod_revision)
            .await
            .unwrap();
        // The newest rows are a key and its tombstone; compaction deletes both, so only the
        // sequence remembers the newest revision.
        let last = store.delete("/k/gone", 0).await.unwrap().mod_revision;
        store.compact(last).await.unwrap();
        (store.get("/k/kept").await.unwrap().unwrap(), last)
    };
    let store = open(dir.path());
    assert_eq!(store.current_revision().await.unwrap(), last);
    assert_eq!(store.compacted_revision().await.unwrap(), last);
    assert_eq!(store.get("/k/kept").await.unwrap(), Some(kept.clone()));
    assert_eq!(store.get("/k/gone").await.unwrap(), None);
    let next = store.create("/k/new", Vec::new()).await.unwrap();
    assert_eq!(next.mod_revision, last + 1);
    let updated = store
        .update("/k/kept", b"v3".to_vec(), kept.mod_revision)
        .await
        .unwrap();
    assert_eq!(updated.create_revision, kept.create_revision);
}

#[tokio::test]
async fn watch_ends_when_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut watch = store.watch("/", 0).await.unwrap();
    drop(store);
    assert!(matches!(watch.recv().await, Some(Err(Error::Closed))));
}

#[tokio::test]
async fn prefix_bound_handles_multibyte_keys() {
    let (store, _dir) = fresh();
    for key in ["/é/a", "/é", "/ê/a", "/e/a"] {
        store.create(key, Vec::new()).await.unwrap();
    }
    let request = RangeRequest {
        prefix: "/é".into(),
        ..RangeRequest::default()
    };
    let keys: Vec<_> = store
        .range(request)
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(keys, ["/é", "/é/a"]);
}

#[tokio::test]
async fn compaction_spanning_many_chunks() {
    let (store, _dir) = fresh();
    // A few keys rewritten many times, so that garbage spreads over several chunks.
    let mut futures = Vec::new();
    for i in 0..12_000 {
        let store = Arc::clone(&store);
        futures.push(tokio::spawn(async move {
            let key = format!("/chunks/{}", i % 10);
            if i < 10 {
                store.create(&key, vec![0]).await.unwrap();
            } else {
                store.update(&key, i.to_string().into_bytes(), 0).await.unwrap();
            }
        }));
        if i < 10 {
            futures.pop().unwrap().await.unwrap();
        }
    }
    for future in futures {
        future.await.unwrap();
    }
    let before = store
        .range(RangeRequest {
            prefix: "/chunks/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let current = store.current_revision().await.unwrap();
    store.compact(current).await.unwrap();
    let after = store
        .range(RangeRequest {
            prefix: "/chunks/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(before.kvs, after.kvs);
}

#[tokio::test]
async fn the_writer_checkpoints_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Each value fills about two pages: 3,000 writes append some 6,000 pages to the WAL.
    for i in 0..3_000 {
        store.create(&format!("/wal/{i}"), vec![7; 6_000]).await.unwrap();
    }
    // Checkpointed WAL frames are written over again, so the file stays near the threshold.
    let wal = std::fs::metadata(dir.path().join("kv.db-wal")).unwrap().len();
    assert!(wal < 2_000 * 4_096, "the WAL grew to {wal} bytes");
    assert_eq!(store.get("/wal/2999").await.unwrap().unwrap().value, vec![7; 6_000]);
}

/// Rough create throughput, sequential versus concurrent; run with `--ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn create_throughput() {
    const CREATES: usize = 400;
    let (store, _dir) = fresh();
    let started = Instant::now();
    for i in 0..CREATES {
        store.create(&format!("/seq/{i}"), vec![0; 256]).await.unwrap();
    }
    let sequential = CREATES as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for i in 0..CREATES / 8 * 4 {
                store.create(&format!("/par/{task}/{i}"), vec![0; 256]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent = (CREATES * 4) as f64 / started.elapsed().as_secs_f64();
    println!("creates/s: sequential {sequential:.0}, 8 concurrent tasks {concurrent:.0}");
}
