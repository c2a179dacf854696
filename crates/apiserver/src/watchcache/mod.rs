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
mod pick;
#[cfg(test)]
mod proptests;
mod raw;
pub use cached::{Cached, Set, Stored};
pub use raw::RawObject;

/// Where every Kubernetes object lives in the store.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// How many events the cache keeps for watchers that resume from a recent revision.
const HISTORY: usize = 50_000;

/// The most objects offered at once; more are left to be parsed, so that offers whose events
/// never come (a cache whose store watch has stopped) cannot gather without bound.
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

/// Objects this server is writing, by key, as it serialized them: handed over by the registry
/// so that the cache need not parse its own writes back.
type Offers = HashMap<String, Stored>;

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
    stamp(serde_json::from_slice(value).unwrap_or(Value::Null), revision)
}

/// Sets the resourceVersion of a stored object.
fn stamp(mut obj: Value, revision: Revision) -> Value {
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

    /// Hands the cache an object this server is about to store as `stored` (the stored form,
    /// without resourceVersion): the key's next event, if it carries exactly these bytes, takes
    /// this JSON, whose layout is already known, instead of parsing the bytes; the object is
    /// parsed only when someone needs its value.
    pub fn offer(&self, key: &str, stored: Stored) {
        let mut offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        if offers.len() < MAX_OFFERS || offers.contains_key(key) {
            offers.insert(key.to_owned(), stored);
        }
    }

    /// Takes back the offer for `key`, whose write failed.
    pub fn withdraw(&self, key: &str) {
        self.offers.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// For each event, the offer of exactly its bytes; any other offer for its key is dropped,
    /// so none outlives the next change of its key.
    fn take_offers(&self, batch: &[WatchEvent]) -> Vec<Option<Stored>> {
        let mut offers = self.offers.lock().unwrap_or_else(|e| e.into_inner());
        batch
            .iter()
            .map(|ev| match offers.remove(&ev.kv.key) {
                Some(offer) if ev.kind != EventKind::Delete && offer.bytes() == ev.kv.value => Some(offer),
                _ => None,
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
                let object = match offered {
                    Some(stored) => Cached::stamped(&stored, revision),
                    None => Cached::new(decode(&ev.kv.value, revision)),
                };
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
                let revision = v.revision().unwrap_or(0);
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

    #[test]
    fn an_offer_replaces_parsing_its_event() {
        with_cache(async |store, cache| {
            let form = Stored::encode(&serde_json::json!({"metadata": {"name": "a"}, "data": {"k": "stored"}}));
            let bytes = form.bytes().to_vec();
            cache.offer(KEY, form);
            let stored = store.create(KEY, bytes).await.expect("create");
            cache.wait_for(stored.mod_revision).await;
            let held = cache.get(KEY).expect("cached");
            assert!(!held.is_parsed(), "the offered JSON is held as it is");
            let rv = stored.mod_revision.to_string();
            // The JSON is the stored bytes with the resourceVersion spliced in.
            assert_eq!(
                String::from_utf8_lossy(held.json()),
                format!(r#"{{"metadata":{{"name":"a","resourceVersion":"{rv}"}},"data":{{"k":"stored"}}}}"#)
            );
            assert_eq!(held.pointer("/metadata/resourceVersion"), Some(&Value::from(rv)));
            assert!(cache.offers.lock().expect("offers").is_empty());
        });
    }

    #[test]
    fn an_offer_whose_bytes_differ_from_the_event_is_dropped() {
        with_cache(async |store, cache| {
            let other = serde_json::json!({"metadata": {"name": "a"}, "data": {"k": "other"}});
            cache.offer(KEY, Stored::encode(&other));
            let bytes = br#"{"metadata":{"name":"a"},"data":{"k":"stored"}}"#.to_vec();
            let stored = store.create(KEY, bytes).await.expect("create");
            cache.wait_for(stored.mod_revision).await;
            let held = cache.get(KEY).expect("cached");
            assert!(held.is_parsed(), "the event's own bytes were parsed");
            assert_eq!(held.pointer("/data/k"), Some(&Value::from("stored")));
            assert!(cache.offers.lock().expect("offers").is_empty());
            cache.offer(KEY, Stored::encode(&serde_json::json!({})));
            cache.withdraw(KEY);
            assert!(cache.offers.lock().expect("offers").is_empty());
        });
    }
}
