//! Incremental compaction, run by the writer thread in small transactions between write batches.
//!
//! A row at or below the compaction revision is garbage when a newer row of the same key at or
//! below it exists, or when it is a tombstone. Because every non-creating row points at its
//! predecessor (`prev_revision`), walking the revisions between the previous compaction and the
//! new one finds all new garbage: each row's predecessor, and each tombstone itself. Rows below
//! the previous compaction need no second look.

use std::time::Instant;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::db::{self, backend};
use crate::{Error, Result, Revision};

/// Revisions examined per transaction: small enough that writers queued behind a chunk barely
/// notice, large enough that compaction's own fsyncs stay few.
const CHUNK: Revision = 5000;

/// The state of the current (or last) compaction.
pub(super) struct Compaction {
    /// The revision history is being compacted to; readers already see it as compacted.
    target: Revision,
    /// Rows up to here have been examined and garbage among them deleted.
    cursor: Revision,
    /// Callers waiting for `target` to be reached.
    waiters: Vec<oneshot::Sender<Result<()>>>,
    /// A chunk failed; wait for the next request before retrying, rather than spin on the error.
    stalled: bool,
    /// When the current compaction started, for the log.
    started: Instant,
}

impl Compaction {
    /// Resumes from the state recorded in the database (a compaction may have been interrupted).
    pub(super) fn load(conn: &Connection) -> Result<Self> {
        Ok(Self {
            target: db::meta(conn, db::META_COMPACT_REVISION)?,
            cursor: db::meta(conn, db::META_COMPACT_CURSOR)?,
            waiters: Vec::new(),
            stalled: false,
            started: Instant::now(),
        })
    }

    /// True while there are rows left to examine.
    pub(super) fn pending(&self) -> bool {
        self.cursor < self.target && !self.stalled
    }

    /// Registers a request to compact to `revision`, given the store's `current` revision.
    pub(super) fn request(&mut self, revision: Revision, current: Revision, reply: oneshot::Sender<Result<()>>) {
        if revision > current {
            let _ = reply.send(Err(Error::FutureRevision {
                requested: revision,
                current,
            }));
            return;
        }
        if revision > self.target {
            if !self.pending() {
                self.started = Instant::now();
            }
            self.target = revision;
        }
        self.stalled = false;
        if self.pending() {
            self.waiters.push(reply);
        } else {
            let _ = reply.send(Ok(()));
        }
    }

    /// Examines one chunk of revisions; answers the waiters once the target is reached.
    pub(super) fn step(&mut self, conn: &mut Connection) {
        match self.delete_chunk(conn) {
            Ok(cursor) => {
                self.cursor = cursor;
                if !self.pending() {
                    tracing::info!(
                        revision = self.target,
                        elapsed_ms = self.started.elapsed().as_millis(),
                        "store compacted"
                    );
                    for waiter in self.waiters.drain(..) {
                        let _ = waiter.send(Ok(()));
                    }
                }
            }
            Err(err) => {
                tracing::error!(error = %err, revision = self.target, "store compaction failed");
                self.stalled = true;
                let message = err.to_string();
                for waiter in self.waiters.drain(..) {
                    let _ = waiter.send(Err(Error::Backend(message.clone())));
                }
            }
        }
    }

    /// Deletes the garbage among the next chunk of revisions; returns the new cursor.
    fn delete_chunk(&self, conn: &mut Connection) -> Result<Revision> {
        let end = self.target.min(self.cursor.saturating_add(CHUNK));
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend)?;
        // Recording the target in the same transaction as the first deletions means no reader
        // can ever see history below the target with rows missing.
        db::set_meta(&tx, db::META_COMPACT_REVISION, self.target)?;
        let superseded = "DELETE FROM kv WHERE id IN
            (SELECT prev_revision FROM kv WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)";
        let tombstones = "DELETE FROM kv WHERE id > ?1 AND id <= ?2 AND deleted = 1";
        for sql in [superseded, tombstones] {
            tx.prepare_cached(sql)
                .and_then(|mut stmt| stmt.execute([self.cursor, end]))
                .map_err(backend)?;
        }
        db::set_meta(&tx, db::META_COMPACT_CURSOR, end)?;
        tx.commit().map_err(backend)?;
        Ok(end)
    }
}
