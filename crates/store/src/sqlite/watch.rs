//! Watchers: history from the database, then live events from the writer, with no gap.
//!
//! Each watcher is a task that owns a subscription to the writer's broadcast of committed
//! batches. It subscribes before reading history, so every event committed after the history
//! snapshot arrives live; live events the snapshot already covered are dropped by revision.
//! When the watcher falls behind (its client does not drain the channel and the broadcast
//! overwrites batches it has not seen), it goes back to the database for the missing range, and
//! only if that range has been compacted does the client get `Error::Compacted`.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::mpsc;

use super::read::{self, ReadPool};
use super::writer::EventBatch;
use crate::{Error, Result, Revision, WatchEvent};

/// Events per database read while catching up.
const HISTORY_PAGE: i64 = 1000;

/// Streams events under `prefix` after `last` into `out` until the client hangs up.
pub(super) async fn forward(
    pool: Arc<ReadPool>,
    mut live: broadcast::Receiver<EventBatch>,
    prefix: String,
    mut last: Revision,
    out: mpsc::Sender<Result<Vec<WatchEvent>>>,
) {
    let mut behind = true;
    loop {
        if behind {
            match catch_up(&pool, &prefix, last, &out).await {
                Ok(Some(through)) => last = through,
                Ok(None) => return,
                Err(err) => {
                    let _ = out.send(Err(err)).await;
                    return;
                }
            }
            behind = false;
        }
        let received = tokio::select! {
            received = live.recv() => received,
            () = out.closed() => return,
        };
        match received {
            Ok(batch) => {
                let events: Vec<WatchEvent> = batch
                    .iter()
                    .filter(|event| event.revision() > last && event.kv.key.starts_with(&prefix))
                    .cloned()
                    .collect();
                if let Some(newest) = batch.last() {
                    last = last.max(newest.revision());
                }
                if !events.is_empty() && out.send(Ok(events)).await.is_err() {
                    return;
                }
            }
            Err(RecvError::Lagged(_)) => behind = true,
            Err(RecvError::Closed) => {
                let _ = out.send(Err(Error::Closed)).await;
                return;
            }
        }
    }
}

/// Sends the history after `after` up to the current revision; returns the revision it covered,
/// or `None` if the client hung up.
async fn catch_up(
    pool: &Arc<ReadPool>,
    prefix: &str,
    mut after: Revision,
    out: &mpsc::Sender<Result<Vec<WatchEvent>>>,
) -> Result<Option<Revision>> {
    // Fixed at the first page, so that a busy writer cannot keep the catch-up going forever;
    // anything newer arrives through the broadcast.
    let mut until = 0;
    loop {
        let owned = prefix.to_owned();
        let page = pool
            .run(move |conn| read::history(conn, &owned, after, until, HISTORY_PAGE))
            .await?;
        until = page.until;
        after = page.through;
        if !page.events.is_empty() && out.send(Ok(page.events)).await.is_err() {
            return Ok(None);
        }
        if after >= until {
            return Ok(Some(after));
        }
    }
}
