//! Reads: a small pool of connections used from blocking tasks, and the queries they run.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, Row, TransactionBehavior};
use tokio::sync::Semaphore;

use super::db::{self, backend};
use crate::{Error, EventKind, KeyValue, RangeRequest, RangeResult, Result, Revision, WatchEvent};

/// At most this many reads run at once; more would only compete for the machine's few cores.
const READERS: usize = 4;

/// Read connections, opened lazily and reused. WAL mode lets them read while the writer writes.
pub(super) struct ReadPool {
    path: PathBuf,
    permits: Semaphore,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    /// Creates an empty pool for the database at `path`.
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            permits: Semaphore::new(READERS),
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a pooled connection in a blocking task.
    pub(super) async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| Error::Closed)?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let mut conn = match pool.take() {
                Some(conn) => conn,
                None => db::open_reader(&pool.path)?,
            };
            let result = f(&mut conn);
            pool.put(conn);
            result
        })
        .await
        .map_err(backend)?
    }

    fn take(&self) -> Option<Connection> {
        // A panic while holding the lock cannot leave a Vec of connections inconsistent.
        self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop()
    }

    fn put(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // A read whose caller gave up frees its permit early, so more than `READERS`
        // connections can briefly exist; keep only as many as can be used at once.
        if idle.len() < READERS {
            idle.push(conn);
        }
    }
}

/// The latest row of each key as of `?3`, skipping deleted keys. The correlated subquery is one
/// index probe per row, and walking `kv_name_id` in key order lets `LIMIT` stop the scan early.
const RANGE_FROM: &str = "SELECT a.id, a.name, a.create_revision, a.value FROM kv AS a
    WHERE a.name >= ?1 AND a.name < CAST(?2 AS TEXT) AND a.id <= ?3 AND a.deleted = 0
      AND a.id = (SELECT MAX(b.id) FROM kv AS b WHERE b.name = a.name AND b.id <= ?3)
    ORDER BY a.name LIMIT ?4";
/// Same as [`RANGE_FROM`] but strictly after `?1`, for paging.
const RANGE_AFTER: &str = "SELECT a.id, a.name, a.create_revision, a.value FROM kv AS a
    WHERE a.name > ?1 AND a.name < CAST(?2 AS TEXT) AND a.id <= ?3 AND a.deleted = 0
      AND a.id = (SELECT MAX(b.id) FROM kv AS b WHERE b.name = a.name AND b.id <= ?3)
    ORDER BY a.name LIMIT ?4";

/// Reads keys under a prefix as of a revision, in one snapshot.
pub(super) fn range(conn: &mut Connection, req: &RangeRequest) -> Result<RangeResult> {
    // A read transaction pins one WAL snapshot, so the revision checks and the rows agree.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(backend)?;
    let current = db::current_revision(&tx)?;
    let compacted = db::meta(&tx, db::META_COMPACT_REVISION)?;
    let revision = if req.revision == 0 { current } else { req.revision };
    if revision > current {
        return Err(Error::FutureRevision {
            requested: revision,
            current,
        });
    }
    if revision < compacted {
        return Err(Error::Compacted {
            requested: revision,
            compacted,
        });
    }
    let (sql, lower) = if !req.start_after.is_empty() && req.start_after >= req.prefix {
        (RANGE_AFTER, req.start_after.as_str())
    } else {
        (RANGE_FROM, req.prefix.as_str())
    };
    // One extra row tells whether the limit cut the result short; -1 is SQLite's "no limit".
    let fetch = if req.limit == 0 {
        -1
    } else {
        i64::try_from(req.limit).map_or(-1, |l| l.saturating_add(1))
    };
    let mut kvs = {
        let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
        let rows = stmt
            .query_map(
                rusqlite::params![lower, db::prefix_end(&req.prefix), revision, fetch],
                |row| {
                    Ok(KeyValue {
                        key: row.get(1)?,
                        value: row.get(3)?,
                        create_revision: row.get(2)?,
                        mod_revision: row.get(0)?,
                    })
                },
            )
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)?
    };
    let more = req.limit != 0 && kvs.len() > req.limit;
    kvs.truncate(if more { req.limit } else { kvs.len() });
    Ok(RangeResult { kvs, revision, more })
}

/// One page of watch history.
pub(super) struct HistoryPage {
    /// Matching events in revision order.
    pub(super) events: Vec<WatchEvent>,
    /// The page covers every revision up to here (inclusive).
    pub(super) through: Revision,
    /// The store's revision when the history read began: the history ends there.
    pub(super) until: Revision,
}

/// Events under `prefix` after `after` and at most `until` (0 = the current revision), at most
/// `limit` of them, each with the key's previous row as `prev`.
pub(super) fn history(
    conn: &mut Connection,
    prefix: &str,
    after: Revision,
    until: Revision,
    limit: i64,
) -> Result<HistoryPage> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(backend)?;
    let until = if until == 0 { db::current_revision(&tx)? } else { until };
    // Compaction records its revision before deleting anything, so within this snapshot every
    // row after `after` is still present if the recorded revision is not beyond it.
    let compacted = db::meta(&tx, db::META_COMPACT_REVISION)?;
    if after < compacted {
        return Err(Error::Compacted {
            requested: after,
            compacted,
        });
    }
    let sql = "SELECT a.id, a.name, a.created, a.deleted, a.create_revision, a.value,
                      a.prev_revision, p.create_revision, p.value
               FROM kv AS a LEFT JOIN kv AS p ON p.id = a.prev_revision
               WHERE a.id > ?1 AND a.id <= ?2 AND a.name >= ?3 AND a.name < CAST(?4 AS TEXT)
               ORDER BY a.id LIMIT ?5";
    let mut stmt = tx.prepare_cached(sql).map_err(backend)?;
    let rows = stmt
        .query_map(
            rusqlite::params![after, until, prefix, db::prefix_end(prefix), limit],
            event,
        )
        .map_err(backend)?;
    let events = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(backend)?;
    let full = i64::try_from(events.len()).is_ok_and(|n| n >= limit);
    let through = match events.last() {
        Some(last) if full => last.revision(),
        // Watching from beyond the current revision covers up to the watch's own start.
        _ => until.max(after),
    };
    Ok(HistoryPage { events, through, until })
}

/// Builds a watch event from a row of the history query.
fn event(row: &Row<'_>) -> rusqlite::Result<WatchEvent> {
    let key: String = row.get(1)?;
    let kind = if row.get::<_, bool>(2)? {
        EventKind::Create
    } else if row.get::<_, bool>(3)? {
        EventKind::Delete
    } else {
        EventKind::Update
    };
    let prev = match row.get::<_, Option<Revision>>(7)? {
        Some(create_revision) => Some(KeyValue {
            key: key.clone(),
            value: row.get(8)?,
            create_revision,
            mod_revision: row.get(6)?,
        }),
        None => None,
    };
    let kv = KeyValue {
        key,
        value: row.get(5)?,
        create_revision: row.get(4)?,
        mod_revision: row.get(0)?,
    };
    Ok(WatchEvent { kind, kv, prev })
}
