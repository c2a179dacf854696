//! The collector's work queue: an item waits in it at most once and is handed to one worker at
//! a time; an item added while a worker holds it runs again once that worker is done, so no
//! change is lost and no object is worked on twice at once. Failed items come back after a
//! delay that doubles with each consecutive failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

/// The delay after a first failure.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// The longest delay between retries.
const MAX_RETRY: Duration = Duration::from_secs(60);

/// A deduplicating work queue shared by several workers.
pub struct Queue<T> {
    inner: Mutex<Inner<T>>,
    ready: Notify,
}

struct Inner<T> {
    waiting: VecDeque<T>,
    queued: HashSet<T>,
    active: HashSet<T>,
    /// Items added while active, to run again when their worker is done.
    again: HashSet<T>,
    failures: HashMap<T, u32>,
}

impl<T> Default for Queue<T> {
    fn default() -> Queue<T> {
        Queue {
            inner: Mutex::new(Inner {
                waiting: VecDeque::new(),
                queued: HashSet::new(),
                active: HashSet::new(),
                again: HashSet::new(),
                failures: HashMap::new(),
            }),
            ready: Notify::new(),
        }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // The queue's sets stay consistent at every step, so a panic elsewhere cannot have
        // left them half-updated.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an item unless it is already waiting.
    pub fn add(&self, item: T) {
        let mut q = self.lock();
        if q.active.contains(&item) {
            q.again.insert(item);
            return;
        }
        if q.queued.insert(item.clone()) {
            q.waiting.push_back(item);
            drop(q);
            self.ready.notify_one();
        }
    }

    /// Adds an item after `delay`.
    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// Adds a failed item back after its backoff.
    pub fn retry(self: &Arc<Self>, item: T) {
        let failures = {
            let mut q = self.lock();
            let n = q.failures.entry(item.clone()).or_insert(0);
            *n = n.saturating_add(1);
            *n
        };
        self.add_after(item, backoff(failures));
    }

    /// Clears an item's failure count after it succeeded.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// Waits for the next item and marks it active.
    pub async fn next(&self) -> T {
        loop {
            {
                let mut q = self.lock();
                if let Some(item) = q.waiting.pop_front() {
                    q.queued.remove(&item);
                    q.active.insert(item.clone());
                    return item;
                }
            }
            // notify_one stores a permit when nobody waits yet, so an add between the check
            // above and this wait is not lost.
            self.ready.notified().await;
        }
    }

    /// Marks an item finished; it runs again if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut q = self.lock();
        q.active.remove(item);
        if q.again.remove(item) && q.queued.insert(item.clone()) {
            q.waiting.push_back(item.clone());
            drop(q);
            self.ready.notify_one();
        }
    }
}

/// The delay before the attempt following `failures` consecutive failures.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.saturating_sub(1)).unwrap_or(u32::MAX);
    FIRST_RETRY.saturating_mul(factor).min(MAX_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn items_wait_once_and_keep_their_order() {
        let q = Queue::default();
        q.add(1);
        q.add(2);
        q.add(1);
        assert_eq!(q.next().await, 1);
        assert_eq!(q.next().await, 2);
        q.done(&1);
        q.done(&2);
        assert!(q.lock().waiting.is_empty());
    }

    #[tokio::test]
    async fn an_item_added_while_active_runs_again_after() {
        let q = Queue::default();
        q.add(7);
        assert_eq!(q.next().await, 7);
        q.add(7);
        assert!(q.lock().waiting.is_empty(), "not handed to a second worker");
        q.done(&7);
        assert_eq!(q.next().await, 7);
    }

    #[tokio::test]
    async fn a_waiting_worker_is_woken() {
        let q = Arc::new(Queue::default());
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add(3);
        assert_eq!(worker.await.expect("worker"), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off() {
        let q = Arc::new(Queue::default());
        q.retry(5);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(q.lock().waiting.is_empty(), "not yet");
        tokio::time::sleep(FIRST_RETRY).await;
        assert_eq!(q.next().await, 5);
        q.done(&5);
        q.forget(&5);
        assert!(q.lock().failures.is_empty());
    }

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(1), FIRST_RETRY);
        assert_eq!(backoff(2), FIRST_RETRY * 2);
        assert_eq!(backoff(3), FIRST_RETRY * 4);
        assert_eq!(backoff(40), MAX_RETRY);
    }
}
