//! Checkpoints in a thread of their own, so that copying the WAL into the database never holds
//! up a commit.
//!
//! SQLite checkpoints by default inside the commit that grows the WAL past 1,000 pages: that
//! commit, and every write waiting behind it, then also waits for the pages to be copied and the
//! database file to be synced, tens of milliseconds now and then. The writer turns that off
//! (`wal_autocheckpoint = 0`) and this thread runs passive checkpoints instead, which copy what
//! they can while the writer goes on appending.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::db::{self, backend};
use crate::Result;

/// How often the WAL is checkpointed.
const INTERVAL: Duration = Duration::from_millis(250);

/// The checkpointing thread; stops and is joined on drop.
pub(super) struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing the database at `path` (already in WAL mode).
    pub fn start(path: &Path) -> Result<Checkpointer> {
        let conn = db::open_checkpointer(path)?;
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("kate-store-checkpoint".into())
            .spawn(move || run(&conn, &stopped))
            .map_err(backend)?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

fn run(conn: &Connection, stopped: &mpsc::Receiver<()>) {
    loop {
        match stopped.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
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
