//! The embedded backend: one SQLite database file in WAL mode.
//!
//! Every revision is one row of the `kv` table whose row id is the revision; deleting a key
//! appends a tombstone row. A single writer thread applies writes in group-committed
//! transactions and fans the resulting events out to watchers; reads run on a small pool of
//! read connections, concurrently with the writer.

mod compact;
mod db;
mod read;
mod watch;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use tokio::sync::{broadcast, oneshot};

use self::read::ReadPool;
use self::writer::{EventBatch, Request, Write};
use crate::{BoxFuture, Error, KeyValue, RangeRequest, RangeResult, Result, Revision, Store, WatchReceiver};

/// Committed batches kept for watchers that are momentarily slow; one that falls further behind
/// re-reads from the database. Tests use tiny buffers to exercise that path.
const LIVE_BATCHES: usize = if cfg!(test) { 4 } else { 1024 };
/// Batches buffered between a watcher's task and its client.
const WATCH_BUFFER: usize = if cfg!(test) { 2 } else { 128 };

/// A [`Store`] kept in one SQLite database file.
pub struct SqliteStore {
    requests: mpsc::Sender<Request>,
    writer: Option<JoinHandle<()>>,
    pool: Arc<ReadPool>,
    events: broadcast::Sender<EventBatch>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = db::open_writer(path)?;
        let (events, _) = broadcast::channel(LIVE_BATCHES);
        let (requests, writer) = writer::spawn(conn, events.clone())?;
        tracing::info!(path = %path.display(), "opened store");
        Ok(SqliteStore {
            requests,
            writer: Some(writer),
            pool: Arc::new(ReadPool::new(path.to_owned())),
            events,
        })
    }

    async fn write(&self, op: Write) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Write(op, reply))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

impl Store for SqliteStore {
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<KeyValue>>> {
        let key = key.to_owned();
        Box::pin(self.pool.run(move |conn| db::live(conn, &key)))
    }

    fn range(&self, req: RangeRequest) -> BoxFuture<'_, Result<RangeResult>> {
        Box::pin(self.pool.run(move |conn| read::range(conn, &req)))
    }

    fn create(&self, key: &str, value: Vec<u8>) -> BoxFuture<'_, Result<KeyValue>> {
        Box::pin(self.write(Write::Create {
            key: key.to_owned(),
            value,
        }))
    }

    fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> BoxFuture<'_, Result<KeyValue>> {
        Box::pin(self.write(Write::Update {
            key: key.to_owned(),
            value,
            expected,
        }))
    }

    fn delete(&self, key: &str, expected: Revision) -> BoxFuture<'_, Result<KeyValue>> {
        Box::pin(self.write(Write::Delete {
            key: key.to_owned(),
            expected,
        }))
    }

    fn watch(&self, prefix: &str, after: Revision) -> BoxFuture<'_, Result<WatchReceiver>> {
        let prefix = prefix.to_owned();
        Box::pin(async move {
            // Subscribing before anything is read is what makes history and live events meet.
            let live = self.events.subscribe();
            let compacted = self.pool.run(|conn| db::meta(conn, db::META_COMPACT_REVISION)).await?;
            let after = after.max(0);
            if after < compacted {
                return Err(Error::Compacted {
                    requested: after,
                    compacted,
                });
            }
            let (out, receiver) = tokio::sync::mpsc::channel(WATCH_BUFFER);
            tokio::spawn(watch::forward(Arc::clone(&self.pool), live, prefix, after, out));
            Ok(receiver)
        })
    }

    fn current_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(self.pool.run(|conn| db::current_revision(conn)))
    }

    fn compact(&self, revision: Revision) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            self.requests
                .send(Request::Compact(revision, reply))
                .map_err(|_| Error::Closed)?;
            answer.await.map_err(|_| Error::Closed)?
        })
    }

    fn compacted_revision(&self) -> BoxFuture<'_, Result<Revision>> {
        Box::pin(self.pool.run(|conn| db::meta(conn, db::META_COMPACT_REVISION)))
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Joining means the database is closed when drop returns, so it can be reopened at once.
        let _ = self.requests.send(Request::Shutdown);
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}
