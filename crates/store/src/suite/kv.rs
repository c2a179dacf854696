//! Single-key reads and writes, compare-and-swap, and revision accounting.

use std::collections::HashSet;
use std::sync::Arc;

use crate::{Error, Store};

/// A created key reads back with create and mod revision equal to the write's revision.
pub async fn create_and_get(store: Arc<dyn Store>) {
    let key = "/suite/create-and-get/a";
    assert_eq!(store.get(key).await.expect("get"), None);
    let created = store.create(key, b"one".to_vec()).await.expect("create");
    assert_eq!(created.key, key);
    assert_eq!(created.value, b"one");
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(store.current_revision().await.expect("revision"), created.mod_revision);
    assert_eq!(store.get(key).await.expect("get"), Some(created));
}

/// Creating a live key fails and changes nothing.
pub async fn create_existing(store: Arc<dyn Store>) {
    let key = "/suite/create-existing/a";
    let created = store.create(key, b"one".to_vec()).await.expect("create");
    let err = store.create(key, b"two".to_vec()).await.expect_err("second create");
    assert!(matches!(&err, Error::AlreadyExists(k) if k == key), "got {err:?}");
    assert_eq!(store.get(key).await.expect("get"), Some(created.clone()));
    assert_eq!(store.current_revision().await.expect("revision"), created.mod_revision);
}

/// An update with the right revision succeeds; with a stale one it fails with the current value.
pub async fn update_cas(store: Arc<dyn Store>) {
    let key = "/suite/update-cas/a";
    let created = store.create(key, b"one".to_vec()).await.expect("create");
    let updated = store
        .update(key, b"two".to_vec(), created.mod_revision)
        .await
        .expect("update");
    assert_eq!(updated.value, b"two");
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.mod_revision, created.mod_revision + 1);

    let err = store
        .update(key, b"three".to_vec(), created.mod_revision)
        .await
        .expect_err("stale");
    match err {
        Error::Conflict {
            key: k,
            expected,
            current,
        } => {
            assert_eq!(k, key);
            assert_eq!(expected, created.mod_revision);
            assert_eq!(*current, updated);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(store.get(key).await.expect("get"), Some(updated));
}

/// An update with expected revision 0 always applies.
pub async fn update_unconditional(store: Arc<dyn Store>) {
    let key = "/suite/update-unconditional/a";
    let created = store.create(key, b"one".to_vec()).await.expect("create");
    store.update(key, b"two".to_vec(), 0).await.expect("first update");
    let updated = store.update(key, b"three".to_vec(), 0).await.expect("second update");
    assert_eq!(updated.value, b"three");
    assert_eq!(updated.create_revision, created.create_revision);
    assert_eq!(updated.mod_revision, created.mod_revision + 2);
    assert_eq!(store.get(key).await.expect("get"), Some(updated));
}

/// Updating or deleting a key that does not exist fails with NotFound.
pub async fn update_missing(store: Arc<dyn Store>) {
    let key = "/suite/update-missing/a";
    let err = store.update(key, b"x".to_vec(), 0).await.expect_err("update");
    assert!(matches!(&err, Error::NotFound(k) if k == key), "got {err:?}");
    let err = store.delete(key, 0).await.expect_err("delete");
    assert!(matches!(&err, Error::NotFound(k) if k == key), "got {err:?}");
}

/// Deletes honour compare-and-swap, return the last value, and free the key for a new create.
pub async fn delete(store: Arc<dyn Store>) {
    let key = "/suite/delete/a";
    let created = store.create(key, b"one".to_vec()).await.expect("create");
    let updated = store.update(key, b"two".to_vec(), 0).await.expect("update");

    let err = store.delete(key, created.mod_revision).await.expect_err("stale delete");
    assert!(
        matches!(&err, Error::Conflict { current, .. } if **current == updated),
        "got {err:?}"
    );

    let deleted = store.delete(key, updated.mod_revision).await.expect("delete");
    assert_eq!(deleted.value, b"two");
    assert_eq!(deleted.create_revision, created.create_revision);
    assert_eq!(deleted.mod_revision, updated.mod_revision + 1);
    assert_eq!(store.get(key).await.expect("get"), None);
    assert!(matches!(store.delete(key, 0).await, Err(Error::NotFound(_))));

    let again = store.create(key, b"three".to_vec()).await.expect("recreate");
    assert_eq!(again.create_revision, deleted.mod_revision + 1);
    let gone = store.delete(key, 0).await.expect("unconditional delete");
    assert_eq!(gone.value, b"three");
    assert_eq!(gone.create_revision, again.create_revision);
}

/// Each successful write advances the global revision by exactly one; failed writes do not.
pub async fn revisions_advance_by_one(store: Arc<dyn Store>) {
    let start = store.current_revision().await.expect("revision");
    let a = store
        .create("/suite/revisions/a", b"1".to_vec())
        .await
        .expect("create a");
    let b = store
        .create("/suite/revisions/b", b"1".to_vec())
        .await
        .expect("create b");
    assert!(store.create("/suite/revisions/a", Vec::new()).await.is_err());
    assert!(
        store
            .update("/suite/revisions/a", Vec::new(), b.mod_revision)
            .await
            .is_err()
    );
    let a2 = store
        .update("/suite/revisions/a", b"2".to_vec(), a.mod_revision)
        .await
        .expect("update");
    let b2 = store.delete("/suite/revisions/b", 0).await.expect("delete");
    assert_eq!(
        [a.mod_revision, b.mod_revision, a2.mod_revision, b2.mod_revision],
        [start + 1, start + 2, start + 3, start + 4]
    );
    assert_eq!(a2.create_revision, start + 1);
    assert_eq!(b2.create_revision, start + 2);
    assert_eq!(store.current_revision().await.expect("revision"), start + 4);
}

/// Many tasks writing at once all succeed, each write with its own revision, none lost.
pub async fn concurrent_writes(store: Arc<dyn Store>) {
    const TASKS: usize = 16;
    const WRITES: usize = 20;
    let start = store.current_revision().await.expect("revision");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let key = format!("/suite/concurrent/{task:02}");
            let mut revisions = vec![store.create(&key, vec![0]).await.expect("create").mod_revision];
            for i in 1..WRITES {
                let previous = *revisions.last().expect("one revision at least");
                let kv = store.update(&key, vec![i as u8], previous).await.expect("update");
                revisions.push(kv.mod_revision);
            }
            revisions
        }));
    }
    let mut seen = HashSet::new();
    for task in tasks {
        for revision in task.await.expect("writer task") {
            assert!(revision > start, "revision {revision} not after start {start}");
            assert!(seen.insert(revision), "revision {revision} handed out twice");
        }
    }
    let total = (TASKS * WRITES) as i64;
    assert_eq!(store.current_revision().await.expect("revision"), start + total);
}
