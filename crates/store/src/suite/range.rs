//! Prefix reads: isolation, paging and reads of the past.

use std::sync::Arc;

use crate::{Error, RangeRequest, Store};

fn prefix(prefix: &str) -> RangeRequest {
    RangeRequest {
        prefix: prefix.to_owned(),
        ..RangeRequest::default()
    }
}

fn keys(kvs: &[crate::KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

/// A prefix matches byte-wise: `/p/b/` sees neither `/p/bc/...` nor `/p/b` itself.
pub async fn range_prefix_isolation(store: Arc<dyn Store>) {
    for key in [
        "/suite/prefix/b",
        "/suite/prefix/b/1",
        "/suite/prefix/b/2",
        "/suite/prefix/bc/1",
        "/suite/prefix/b0",
    ] {
        store.create(key, key.as_bytes().to_vec()).await.expect("create");
    }
    // Characters that are wildcards or escapes in SQL LIKE must match only themselves.
    store.create("/suite/prefix/%_/x", Vec::new()).await.expect("create");
    store.create("/suite/prefix/ab/x", Vec::new()).await.expect("create");

    let result = store.range(prefix("/suite/prefix/b/")).await.expect("range");
    assert_eq!(keys(&result.kvs), ["/suite/prefix/b/1", "/suite/prefix/b/2"]);
    assert!(!result.more);
    assert_eq!(result.revision, store.current_revision().await.expect("revision"));
    assert_eq!(result.kvs[0].value, b"/suite/prefix/b/1");

    let result = store.range(prefix("/suite/prefix/b")).await.expect("range");
    assert_eq!(result.kvs.len(), 5, "raw prefix matches b, b/1, b/2, b0 and bc/1");
    let result = store.range(prefix("/suite/prefix/%_/")).await.expect("range");
    assert_eq!(keys(&result.kvs), ["/suite/prefix/%_/x"]);
    let result = store.range(prefix("/suite/prefix/nothing/")).await.expect("range");
    assert!(result.kvs.is_empty());
}

/// `limit` cuts pages short with `more`; `start_after` and a fixed revision continue them.
pub async fn range_paging(store: Arc<dyn Store>) {
    let base = "/suite/paging/";
    for i in 0..7 {
        store.create(&format!("{base}{i}"), vec![i]).await.expect("create");
    }
    let mut request = RangeRequest {
        limit: 3,
        ..prefix(base)
    };
    let first = store.range(request.clone()).await.expect("first page");
    assert_eq!(
        keys(&first.kvs),
        [format!("{base}0"), format!("{base}1"), format!("{base}2")]
    );
    assert!(first.more);

    // Writes after the first page must not show up in later pages read at its revision.
    store.create(&format!("{base}00"), Vec::new()).await.expect("create");
    store.delete(&format!("{base}4"), 0).await.expect("delete");

    request.revision = first.revision;
    request.start_after = first.kvs.last().expect("a key").key.clone();
    let second = store.range(request.clone()).await.expect("second page");
    assert_eq!(
        keys(&second.kvs),
        [format!("{base}3"), format!("{base}4"), format!("{base}5")]
    );
    assert!(second.more);
    assert_eq!(second.revision, first.revision);

    request.start_after = second.kvs.last().expect("a key").key.clone();
    let third = store.range(request.clone()).await.expect("third page");
    assert_eq!(keys(&third.kvs), [format!("{base}6")]);
    assert!(!third.more);

    // A page that ends exactly at the last key does not claim there is more.
    let exact = store
        .range(RangeRequest {
            limit: 7,
            ..prefix(base)
        })
        .await
        .expect("range");
    assert_eq!(exact.kvs.len(), 7);
    assert!(!exact.more);
    let current = store.range(prefix(base)).await.expect("range");
    assert_eq!(current.kvs.len(), 7, "00 added, 4 deleted");
}

/// A read at a past revision sees the values of then, including keys deleted since.
pub async fn range_past_revision(store: Arc<dyn Store>) {
    let base = "/suite/past/";
    let a = store
        .create(&format!("{base}a"), b"a1".to_vec())
        .await
        .expect("create a");
    let b = store
        .create(&format!("{base}b"), b"b1".to_vec())
        .await
        .expect("create b");
    let then = b.mod_revision;
    store.delete(&a.key, 0).await.expect("delete a");
    store.update(&b.key, b"b2".to_vec(), 0).await.expect("update b");
    store
        .create(&format!("{base}c"), b"c1".to_vec())
        .await
        .expect("create c");

    let past = store
        .range(RangeRequest {
            revision: then,
            ..prefix(base)
        })
        .await
        .expect("range");
    assert_eq!(past.revision, then);
    assert_eq!(past.kvs, [a.clone(), b.clone()]);

    let before_b = store
        .range(RangeRequest {
            revision: a.mod_revision,
            ..prefix(base)
        })
        .await
        .expect("range");
    assert_eq!(before_b.kvs, [a]);

    let now = store.range(prefix(base)).await.expect("range");
    assert_eq!(keys(&now.kvs), [format!("{base}b"), format!("{base}c")]);
    assert_eq!(now.kvs[0].value, b"b2");
    assert_eq!(now.kvs[0].create_revision, b.create_revision);
}

/// A read beyond the current revision fails.
pub async fn range_future_revision(store: Arc<dyn Store>) {
    store.create("/suite/future/a", Vec::new()).await.expect("create");
    let current = store.current_revision().await.expect("revision");
    let err = store
        .range(RangeRequest {
            revision: current + 1,
            ..prefix("/suite/future/")
        })
        .await
        .expect_err("future read");
    assert!(
        matches!(err, Error::FutureRevision { requested, current: c } if requested == current + 1 && c == current),
        "got {err:?}"
    );
}
