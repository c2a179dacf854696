//! The single writer thread: group commit, compare-and-swap, event publication.
//!
//! All writes funnel through one thread that owns the only writing connection. It takes every
//! request queued at that moment and applies them in one transaction, so concurrent writers
//! share one fsync instead of queueing for a database lock each.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use rusqlite::{Connection, Transaction, TransactionBehavior, params};
use tokio::sync::{broadcast, oneshot};

use super::compact::Compaction;
use super::db::{self, backend};
use crate::{Error, EventKind, KeyValue, Result, Revision, WatchEvent};

/// Upper bound on requests per transaction, so that one huge burst cannot hold every caller
/// hostage to a single long commit.
const MAX_BATCH: usize = 1024;
/// The WAL size, in pages, at which the writer checkpoints: SQLite's own default.
const CHECKPOINT_PAGES: u32 = 1000;

/// The events of one committed transaction, shared by all watchers.
pub(super) type EventBatch = Arc<[WatchEvent]>;

/// A mutation of one key.
pub(super) enum Write {
    /// Create a key that must not exist.
    Create { key: String, value: Vec<u8> },
    /// Replace a live key's value, if its mod revision is `expected` (0 = any).
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    /// Delete a live key, if its mod revision is `expected` (0 = any).
    Delete { key: String, expected: Revision },
}

/// What the writer thread can be asked to do.
pub(super) enum Request {
    /// Apply a write and answer with the resulting key.
    Write(Write, oneshot::Sender<Result<KeyValue>>),
    /// Compact up to a revision and answer when done.
    Compact(Revision, oneshot::Sender<Result<()>>),
    /// Stop after the current batch; the store is being dropped.
    Shutdown,
}

/// Starts the writer thread on `conn`, publishing committed events to `events`.
pub(super) fn spawn(
    mut conn: Connection,
    events: broadcast::Sender<EventBatch>,
) -> Result<(mpsc::Sender<Request>, JoinHandle<()>)> {
    let revision = db::current_revision(&conn)?;
    let compaction = Compaction::load(&conn)?;
    let wal_pages = Arc::new(AtomicU32::new(0));
    db::report_wal_size(&mut conn, wal_pages.clone())?;
    let (tx, rx) = mpsc::channel();
    let writer = Writer {
        conn,
        revision,
        events,
        compaction,
        wal_pages,
    };
    let thread = std::thread::Builder::new()
        .name("kate-store-writer".into())
        .spawn(move || writer.run(&rx))
        .map_err(backend)?;
    Ok((tx, thread))
}

struct Writer {
    conn: Connection,
    /// The newest committed revision.
    revision: Revision,
    events: broadcast::Sender<EventBatch>,
    compaction: Compaction,
    /// The WAL's size after the last commit, kept by the connection's WAL hook.
    wal_pages: Arc<AtomicU32>,
}

impl Writer {
    fn run(mut self, requests: &mpsc::Receiver<Request>) {
        loop {
            // With compaction pending, do not sleep on the queue: idle time goes to compaction.
            let first = if self.compaction.pending() {
                match requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            } else {
                match requests.recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::RecvError) => return,
                }
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                batch.extend(requests.try_iter().take(MAX_BATCH - 1));
                if !self.handle(batch) {
                    return;
                }
            }
            // One chunk at a time, so that writes queued meanwhile wait for one chunk at most.
            if self.compaction.pending() {
                self.compaction.step(&mut self.conn);
            }
            self.checkpoint_if_due();
        }
    }

    /// Checkpoints once the WAL has grown to [`CHECKPOINT_PAGES`]. This runs after the batch
    /// that grew it was published and acknowledged, so only writes queued meanwhile wait for it.
    fn checkpoint_if_due(&mut self) {
        if self.wal_pages.load(Ordering::Relaxed) < CHECKPOINT_PAGES {
            return;
        }
        // Readers still using old frames leave those in the WAL; the next commit reports its
        // size again, and the check comes round after it as SQLite's own would.
        self.wal_pages.store(0, Ordering::Relaxed);
        if let Err(err) = db::checkpoint(&self.conn) {
            tracing::warn!(error = %err, "store checkpoint failed");
        }
    }

    /// Handles one batch of requests; returns false when asked to shut down.
    fn handle(&mut self, batch: Vec<Request>) -> bool {
        let mut ops = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        let mut compactions = Vec::new();
        let mut shutdown = false;
        for request in batch {
            match request {
                Request::Write(op, reply) => {
                    ops.push(op);
                    replies.push(reply);
                }
                Request::Compact(revision, reply) => compactions.push((revision, reply)),
                Request::Shutdown => shutdown = true,
            }
        }
        if !ops.is_empty() {
            self.write(ops, replies);
        }
        for (revision, reply) in compactions {
            self.compaction.request(revision, self.revision, reply);
        }
        !shutdown
    }

    /// Commits a group of writes and only then publishes and acknowledges them.
    fn write(&mut self, ops: Vec<Write>, replies: Vec<oneshot::Sender<Result<KeyValue>>>) {
        match self.commit(ops) {
            Ok(Committed {
                outcomes,
                events,
                revision,
            }) => {
                self.revision = revision;
                // Publishing before answering means a writer that then looks at a watch finds
                // its own write already on the way.
                if !events.is_empty() {
                    // An error only means nobody is watching right now.
                    let _ = self.events.send(events.into());
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The caller may have given up waiting; the write stands regardless.
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, writes = replies.len(), "store write batch failed");
                // A failed COMMIT may still have reached the disk; trust the database, not the
                // counter, so the next batch does not reuse a revision.
                match db::current_revision(&self.conn) {
                    Ok(revision) => self.revision = revision,
                    Err(err) => tracing::error!(error = %err, "cannot re-read store revision"),
                }
                let message = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(Error::Backend(message.clone())));
                }
            }
        }
    }

    /// Applies every write in one transaction; a failed check fails only its own write.
    fn commit(&mut self, ops: Vec<Write>) -> Result<Committed> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        let mut revision = self.revision;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            match apply(&tx, op, revision + 1)? {
                Ok((kv, event)) => {
                    revision += 1;
                    outcomes.push(Ok(kv));
                    events.push(event);
                }
                Err(err) => outcomes.push(Err(err)),
            }
        }
        tx.commit().map_err(backend)?;
        Ok(Committed {
            outcomes,
            events,
            revision,
        })
    }
}

/// The result of a committed group of writes.
struct Committed {
    /// One outcome per write, in request order.
    outcomes: Vec<Result<KeyValue>>,
    /// The successful writes' events, in revision order.
    events: Vec<WatchEvent>,
    /// The newest revision after the commit.
    revision: Revision,
}

/// Applies one write as revision `revision`. The outer error aborts the whole transaction
/// (database failure); the inner one is this write's own failed check.
fn apply(tx: &Transaction<'_>, op: Write, revision: Revision) -> Result<Result<(KeyValue, WatchEvent)>> {
    let (kind, kv, prev) = match op {
        Write::Create { key, value } => {
            if db::live(tx, &key)?.is_some() {
                return Ok(Err(Error::AlreadyExists(key)));
            }
            let kv = KeyValue {
                key,
                value,
                create_revision: revision,
                mod_revision: revision,
            };
            (EventKind::Create, kv, None)
        }
        Write::Update { key, value, expected } => {
            let current = match checked(tx, key, expected)? {
                Ok(current) => current,
                Err(err) => return Ok(Err(err)),
            };
            let kv = KeyValue {
                key: current.key.clone(),
                value,
                create_revision: current.create_revision,
                mod_revision: revision,
            };
            (EventKind::Update, kv, Some(current))
        }
        Write::Delete { key, expected } => {
            let current = match checked(tx, key, expected)? {
                Ok(current) => current,
                Err(err) => return Ok(Err(err)),
            };
            // The tombstone keeps the last value, so history and delete events can return it.
            let kv = KeyValue {
                mod_revision: revision,
                ..current.clone()
            };
            (EventKind::Delete, kv, Some(current))
        }
    };
    insert(tx, kind, &kv, prev.as_ref().map_or(0, |prev| prev.mod_revision))?;
    let event = WatchEvent {
        kind,
        kv: kv.clone(),
        prev,
    };
    Ok(Ok((kv, event)))
}

/// The live value of `key`, if it exists and its mod revision matches `expected` (0 = any).
fn checked(tx: &Transaction<'_>, key: String, expected: Revision) -> Result<Result<KeyValue>> {
    Ok(match db::live(tx, &key)? {
        None => Err(Error::NotFound(key)),
        Some(current) if expected != 0 && expected != current.mod_revision => Err(Error::Conflict {
            key,
            expected,
            current: Box::new(current),
        }),
        Some(current) => Ok(current),
    })
}

/// Appends the row for revision `kv.mod_revision`; `prev` is the key's previous revision.
fn insert(tx: &Transaction<'_>, kind: EventKind, kv: &KeyValue, prev: Revision) -> Result<()> {
    // The id is given explicitly (the writer knows the next revision) so that a creation can
    // record its own id as its create revision in the same statement.
    let sql = "INSERT INTO kv (id, name, created, deleted, create_revision, prev_revision, value)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    let params = params![
        kv.mod_revision,
        kv.key,
        kind == EventKind::Create,
        kind == EventKind::Delete,
        kv.create_revision,
        prev,
        kv.value,
    ];
    tx.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map(drop)
        .map_err(backend)
}
