//! The in-memory watch cache: the current objects and the recent events of the whole registry,
//! fed by one store watch, so that lists and watches at recent revisions never touch the store.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kate_store::{EventKind, RangeRequest, Revision, Store, WatchEvent};
use serde_json::Value;
use tokio::sync::{broadcast, watch};

mod cached;
pub use cached::Cached;

/// Where every Kubernetes object lives in the store.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// How many events the cache keeps for watchers that resume from a recent revision.
const HISTORY: usize = 50_000;

/// The most written objects waiting for their events at once; more are left to be parsed, so
/// a cache whose store watch has stopped cannot gather them without bound.
const MAX_OFFERS: usize = 10_000;

/// One change to one object, with the object as stored (resourceVersion filled in).
#[derive(Debug)]
pub struct Event {
    /// Created, updated or deleted.
    pub kind: EventKind,
    /// The store key.
    pub key: String,
    /// The revision of the change.
    pub revision: Revision,
    /// The object after the change (for deletes: its last state).
    pub object: Arc<Cached>,
    /// The object before the change, for updates and deletes.
    pub prev: Option<Arc<Cached>>,
    /// The watch line of this change as most watchers send it, made once on first need.
    line: OnceLock<Bytes>,
    /// The same without the object's managedFields, for the server's own components.
    trimmed_line: OnceLock<Bytes>,
    /// When the cache received the change (history older than the retention is dropped).
    pub received: Instant,
}

impl Event {
    fn new(
        kind: EventKind,
        key: String,
        revision: Revision,
        object: Arc<Cached>,
        prev: Option<Arc<Cached>>,
        received: Instant,
    ) -> Event {
        Event {
            kind,
            key,
            revision,
            object,
            prev,
            received,
            line: OnceLock::new(),
            trimmed_line: OnceLock::new(),
        }
    }

    /// The change's watch line with its own type (ADDED, MODIFIED or DELETED) and the object
    /// as stored, shared by every watcher that sends it so.
    pub fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(watch_type(self.kind), [self.object.json()]))
            .clone()
    }

    /// [`Event::line`] without the object's managedFields, for watchers that never read them.
    pub fn trimmed_line(&self) -> Bytes {
        self.trimmed_line
            .get_or_init(|| event_line(watch_type(self.kind), self.object.json_without_managed_fields()))
            .clone()
    }
}

/// The watch event type of a change seen by a watcher whose selection holds the object before
/// and after it.
pub fn watch_type(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Create => "ADDED",
        EventKind::Update => "MODIFIED",
        EventKind::Delete => "DELETED",
    }
}

/// One newline-terminated watch event line around an object already serialized as JSON, given
/// as consecutive parts.
pub fn event_line<const N: usize>(kind: &str, object: [&[u8]; N]) -> Bytes {
    let mut line = Vec::with_capacity(object.iter().map(|part| part.len()).sum::<usize>() + 32);
    line.extend_from_slice(b"{\"type\":\"");
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(b"\",\"object\":");
    for part in object {
        line.extend_from_slice(part);
    }
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Arc<Cached>>,
    events: VecDeque<Arc<Event>>,
    /// The cache reflects the store up to and including this revision.
    revision: Revision,
    /// Events after this revision are all in `events`.
    oldest: Revision,
}

/// Where a watch starts: events to replay, the revision they reach, and the live feed (whose
/// events at or below `revision` the watcher must skip).
pub struct WatchStart {
    /// Events to send first.
    pub past: Vec<Arc<Event>>,
    /// The cache revision when the watch started.
    pub revision: Revision,
    /// Changes after that.
    pub live: broadcast::Receiver<Arc<Event>>,
}

/// Objects this server has just written, handed over by the registry so that the cache need
/// not parse its own writes back from the store's bytes.
#[derive(Default)]
struct Offers {
    objects: HashMap<String, (Revision, Arc<Cached>)>,
    /// The cache has taken the events up to this revision: an offer at or below it would wait
    /// for an event that has passed.
    applied: Revision,
}

/// The cache. Cheap to share behind an `Arc`.
pub struct WatchCache {
    state: RwLock<State>,
    offers: Mutex<Offers>,
    retention: Duration,
    live: broadcast::Sender<Arc<Event>>,
    progress: watch::Sender<Revision>,
}

/// Errors from reading the cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The requested revision is older than the kept history.
    #[error("too old resource version: {requested} ({oldest})")]
    TooOld {
        /// What was asked for.
        requested: Revision,
        /// The oldest revision a watch can start from.
        oldest: Revision,
    },
    /// The store failed while loading.
    #[error(transparent)]
    Store(#[from] kate_store::Error),
}

/// Decodes a stored value and stamps its resourceVersion, which is never stored inside it.
pub fn decode(value: &[u8], revision: Revision) -> Value {
    let mut obj: Value = serde_json::from_slice(value).unwrap_or(Value::Null);
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(revision.to_string()));
    }
    obj
}

impl WatchCache {
    /// Loads every object and starts following the store, keeping events for `retention`
    /// (the store's history window, so both answer "too old" for the same revisions).
    pub async fn start(store: Arc<dyn Store>, retention: Duration) -> Result<Arc<WatchCache>, CacheError> {
        let mut state = State::default();
        let mut req = RangeRequest {
            prefix: REGISTRY_PREFIX.into(),
            limit: 10_000,
            ..Default::default()
        };
        loop {
            let page = store.range(req.clone()).await?;
            req.revision = page.revision;
            state.revision = page.revision;
            for kv in &page.kvs {
                state
                    .objects
                    .insert(kv.key.clone(), Cached::new(decode(&kv.value, kv.mod_revision)));
            }
            match page.kvs.last() {
                Some(last) if page.more => req.start_after = last.key.clone(),
                _ => break,
            }
        }
        state.oldest = state.revision;
        let mut events = store.watch(REGISTRY_PREFIX, state.revision).await?;
        let (live, _) = broadcast::channel(16_384);
        let (progress, _) = watch::channel(state.revision);
        let cache = Arc::new(WatchCache {
            state: RwLock::new(state),
            offers: Mutex::default(),
            retention,
            live,
            progress,
        });
        let feeder = cache.clone();
        tokio::spawn(async move {
            while let Some(batch) = events.recv().await {
                match batch {
                    Ok(batch) => feeder.apply(batch),
                    Err(e) => {
                        tracing::error!(error = %e, "watch cache lost its store watch; serving stale data");
                        break;
                    }
                }
            }
        });
        Ok(cache)
    }

    /// Hands the cache an object this server wrote at `revision`, in the form its event will
    /// carry (the stored form, resourceVersion set), to use instead of parsing the event.
    pub fn offer(&self, key: &str, revision: Revision, object: Arc<Cached>) {
        let mut offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        if revision > offers.applied && offers.objects.len() < MAX_OFFERS {
            offers.objects.insert(key.to_owned(), (revision, object));
        }
    }

    /// The objects of a batch's events that were offered at exactly their revisions; offers
    /// older than an event are dropped, newer ones wait for theirs.
    fn take_offers(&self, batch: &[WatchEvent]) -> Vec<Option<Arc<Cached>>> {
        let mut offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        batch
            .iter()
            .map(|ev| {
                let revision = ev.revision();
                offers.applied = offers.applied.max(revision);
                match offers.objects.get(&ev.kv.key) {
                    Some((offered, _)) if *offered <= revision => {
                        let (offered, object) = offers.objects.remove(&ev.kv.key)?;
                        (offered == revision && ev.kind != EventKind::Delete).then_some(object)
                    }
                    _ => None,
                }
            })
            .collect()
    }

    fn apply(&self, batch: Vec<WatchEvent>) {
        let mut fresh = Vec::with_capacity(batch.len());
        let received = Instant::now();
        let offered = self.take_offers(&batch);
        // Decoded before taking the lock, which readers wait for.
        let decoded: Vec<(WatchEvent, Revision, Arc<Cached>)> = batch
            .into_iter()
            .zip(offered)
            .map(|(ev, offered)| {
                let revision = ev.revision();
                let object = offered.unwrap_or_else(|| Cached::new(decode(&ev.kv.value, revision)));
                (ev, revision, object)
            })
            .collect();
        let newest = {
            let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
            for (ev, revision, object) in decoded {
                let prev = match ev.kind {
                    EventKind::Delete => state.objects.remove(&ev.kv.key),
                    _ => state.objects.insert(ev.kv.key.clone(), object.clone()),
                };
                let event = Arc::new(Event::new(ev.kind, ev.kv.key, revision, object, prev, received));
                state.events.push_back(event.clone());
                state.revision = state.revision.max(revision);
                fresh.push(event);
            }
            while let Some(front) = state.events.front() {
                if state.events.len() <= HISTORY && received.duration_since(front.received) <= self.retention {
                    break;
                }
                state.oldest = front.revision;
                state.events.pop_front();
            }
            state.revision
        };
        for event in fresh {
            let _ = self.live.send(event);
        }
        self.progress.send_replace(newest);
    }

    /// The revision the cache has caught up to.
    pub fn revision(&self) -> Revision {
        *self.progress.borrow()
    }

    /// Waits until the cache reflects at least `revision` (writes this server acknowledged).
    pub async fn wait_for(&self, revision: Revision) {
        let mut rx = self.progress.subscribe();
        let _ = rx.wait_for(|r| *r >= revision).await;
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        self.read().objects.get(key).cloned()
    }

    /// All objects under `prefix` in key order, with the cache revision.
    pub fn list(&self, prefix: &str) -> (Vec<Arc<Cached>>, Revision) {
        let state = self.read();
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, state.revision)
    }

    /// The events after `after` under `prefix`, then a receiver for live events; events on the
    /// receiver at or below the returned revision must be skipped by the caller.
    pub fn watch_from(&self, prefix: &str, after: Revision) -> Result<WatchStart, CacheError> {
        let rx = self.live.subscribe();
        let state = self.read();
        if after < state.oldest {
            return Err(CacheError::TooOld {
                requested: after,
                oldest: state.oldest + 1,
            });
        }
        let start = state.events.partition_point(|e| e.revision <= after);
        let past = state
            .events
            .range(start..)
            .filter(|e| e.key.starts_with(prefix))
            .cloned()
            .collect();
        Ok(WatchStart {
            past,
            revision: state.revision.max(after),
            live: rx,
        })
    }

    /// The current objects under `prefix` as synthetic creations (a watch from revision 0).
    pub fn snapshot(&self, prefix: &str) -> WatchStart {
        let rx = self.live.subscribe();
        let state = self.read();
        let events = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| {
                let revision = v
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(0);
                Arc::new(Event::new(
                    EventKind::Create,
                    k.clone(),
                    revision,
                    v.clone(),
                    None,
                    Instant::now(),
                ))
            })
            .collect();
        WatchStart {
            past: events,
            revision: state.revision,
            live: rx,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cache(test: impl AsyncFnOnce(Arc<dyn Store>, Arc<WatchCache>)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let store: Arc<dyn Store> =
                Arc::new(kate_store::sqlite::SqliteStore::open(&dir.path().join("db")).expect("store"));
            let cache = WatchCache::start(store.clone(), Duration::from_secs(60))
                .await
                .expect("cache");
            test(store, cache).await;
        });
    }

    const KEY: &str = "/registry/configmaps/default/a";

    fn object(data: &str, revision: Revision) -> Value {
        serde_json::json!({
            "metadata": {"name": "a", "resourceVersion": revision.to_string()},
            "data": {"k": data},
        })
    }

    #[test]
    fn an_offered_object_replaces_parsing_its_event() {
        with_cache(async |store, cache| {
            let bytes = br#"{"metadata":{"name":"a"},"data":{"k":"v"}}"#.to_vec();
            let stored = store.create(KEY, bytes).await.expect("create");
            let offered = Cached::new(object("v", stored.mod_revision));
            cache.offer(KEY, stored.mod_revision, offered.clone());
            cache.wait_for(stored.mod_revision).await;
            let held = cache.get(KEY).expect("cached");
            assert!(Arc::ptr_eq(&held, &offered));
            assert!(cache.offers.lock().expect("offers").objects.is_empty());
        });
    }

    #[test]
    fn offers_that_cannot_match_an_event_are_not_kept() {
        with_cache(async |store, cache| {
            let first = store
                .create(KEY, br#"{"metadata":{"name":"a"}}"#.to_vec())
                .await
                .expect("create");
            cache.wait_for(first.mod_revision).await;
            // Too late: the event has been applied already.
            cache.offer(KEY, first.mod_revision, Cached::new(object("late", first.mod_revision)));
            assert!(cache.offers.lock().expect("offers").objects.is_empty());
            // An offer whose revision went to another key is dropped when a newer event for
            // its own key comes, and that event's bytes are used.
            let wrong = first.mod_revision + 1;
            cache.offer(KEY, wrong, Cached::new(object("wrong", wrong)));
            let other = store
                .create(
                    "/registry/configmaps/default/b",
                    br#"{"metadata":{"name":"b"}}"#.to_vec(),
                )
                .await
                .expect("create");
            assert_eq!(other.mod_revision, wrong);
            let bytes = br#"{"metadata":{"name":"a"},"data":{"k":"stored"}}"#.to_vec();
            let second = store.update(KEY, bytes, first.mod_revision).await.expect("update");
            cache.wait_for(second.mod_revision).await;
            let held = cache.get(KEY).expect("cached");
            assert_eq!(held.pointer("/data/k"), Some(&Value::from("stored")));
            assert!(cache.offers.lock().expect("offers").objects.is_empty());
        });
    }
}
