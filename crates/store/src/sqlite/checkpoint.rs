//! Checkpoints in a thread of their own, so that copying the WAL into the database never holds
//! up a commit.
//!
//! SQLite checkpoints by default inside the commit that grows the WAL past 1,000 pages: that
//! commit, and every write waiting behind it, then also waits for the pages to be copied and the
//! database file to be synced, tens of milliseconds now and then. Instead the writer's WAL hook
//! (which replaces the automatic checkpoint) records the WAL's size after each commit, and this
//! thread runs a passive checkpoint, which copies what it can while the writer goes on
//! appending, once the WAL holds as many pages as SQLite would have waited for.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::db::{self, backend};
use crate::Result;

/// How often the WAL's size is looked at.
const INTERVAL: Duration = Duration::from_millis(50);
/// The WAL size, in pages, that calls for a checkpoint: a quarter of SQLite's default, so that
/// each checkpoint, whose disk writes compete with the commits' fsyncs, stays short.
const THRESHOLD: u32 = 256;

/// The checkpointing thread; stops and is joined on drop.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode) whenever `wal_pages`,
    /// the WAL's size as the writer last saw it, calls for it.
    pub fn start(path: &Path, wal_pages: Arc<AtomicU32>) -> Result<Checkpointer> {
        let conn = db::open_checkpointer(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kate-store-checkpoint".into())
            .spawn(move || run(&conn, &wal_pages, &stopped))
            .map_err(backend)?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(conn: &Connection, wal_pages: &AtomicU32, stopped: &mpsc::Receiver<()>) {
    // The size last checkpointed: a WAL that has not grown since needs no second pass.
    let mut done = 0;
    loop {
        match stopped.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let pages = wal_pages.load(Ordering::Relaxed);
        if pages < THRESHOLD || pages == done {
            continue;
        }
        done = pages;
        // Busy (another checkpoint, or recovery) only means this round is skipped.
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::debug!(error = %e, "checkpoint failed");
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("store checkpoint thread panicked");
        }
    }
}
