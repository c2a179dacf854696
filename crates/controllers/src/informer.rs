//! Shared informers: one watch per kind whose parsed objects every consumer in the process
//! shares.
//!
//! Inside `kate server` the scheduler and the controllers all follow pods. With a watch each,
//! every pod change was serialized, parsed and copied once per consumer, which at thousands of
//! pods a second cost more than any one of them spent acting on it. A [`Shared`] informer
//! parses each change once, keeps the objects in one store that its consumers read, and hands
//! each subscriber the same `Arc`, as upstream's shared informer factory does.
//!
//! The watch runs while anyone subscribes: the first subscriber starts it, and it stops at the
//! first change after the last subscriber has gone, dropping its store.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::{Stream, StreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};

/// What a subscriber hears. A subscriber that joins late first hears a (re)list of what the
/// store holds, so every stream starts with `Relisting`.
pub enum Event<K> {
    /// A (re)list begins: the objects listed from here to `Synced` are all that exist.
    Relisting,
    /// An object of the (re)list; `new` if the store did not hold it before.
    Listed {
        /// The object.
        object: Arc<K>,
        /// Whether the store held no object of this name before the (re)list.
        new: bool,
    },
    /// The (re)list is complete.
    Synced,
    /// An object was added (`new`) or changed.
    Applied {
        /// The object.
        object: Arc<K>,
        /// Whether it was added rather than changed.
        new: bool,
    },
    /// An object was deleted; this is its last state.
    Deleted(Arc<K>),
}

impl<K> Clone for Event<K> {
    fn clone(&self) -> Self {
        match self {
            Event::Relisting => Event::Relisting,
            Event::Listed { object, new } => Event::Listed {
                object: object.clone(),
                new: *new,
            },
            Event::Synced => Event::Synced,
            Event::Applied { object, new } => Event::Applied {
                object: object.clone(),
                new: *new,
            },
            Event::Deleted(object) => Event::Deleted(object.clone()),
        }
    }
}

impl<K> Event<K> {
    /// The object the event is about, if it is about one.
    pub fn object(&self) -> Option<&Arc<K>> {
        match self {
            Event::Listed { object, .. } | Event::Applied { object, .. } | Event::Deleted(object) => Some(object),
            Event::Relisting | Event::Synced => None,
        }
    }

    /// The same event in kube-rs's terms, for code written against its watcher.
    pub fn into_watcher(self) -> watcher::Event<Arc<K>> {
        match self {
            Event::Relisting => watcher::Event::Init,
            Event::Listed { object, .. } => watcher::Event::InitApply(object),
            Event::Synced => watcher::Event::InitDone,
            Event::Applied { object, .. } => watcher::Event::Apply(object),
            Event::Deleted(object) => watcher::Event::Delete(object),
        }
    }
}

/// Namespace and name.
type Key = (String, String);

fn key_of<K: Resource>(obj: &K) -> Key {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The store and the subscribers, changed together so that a subscriber joining mid-stream
/// misses nothing and hears nothing twice.
struct State<K> {
    /// The objects as of the last complete (re)list and the changes since.
    objects: HashMap<Key, Arc<K>>,
    /// The objects of a (re)list in progress; they replace `objects` when it completes.
    relisting: Option<HashMap<Key, Arc<K>>>,
    /// Whether a (re)list has completed since the watch started.
    synced: bool,
    subscribers: Vec<mpsc::UnboundedSender<Event<K>>>,
    /// Whether a task is following the watch.
    running: bool,
}

impl<K: Resource> State<K> {
    fn new() -> Self {
        State {
            objects: HashMap::new(),
            relisting: None,
            synced: false,
            subscribers: Vec::new(),
            running: false,
        }
    }

    /// Catches a new subscriber up: the (re)list in progress so far, or the whole store.
    fn join(&self, tx: &mpsc::UnboundedSender<Event<K>>) {
        let listed = match (&self.relisting, self.synced) {
            (Some(partial), _) => partial,
            (None, true) => &self.objects,
            (None, false) => return,
        };
        let _ = tx.send(Event::Relisting);
        for object in listed.values() {
            let _ = tx.send(Event::Listed {
                object: object.clone(),
                new: true,
            });
        }
        if self.relisting.is_none() {
            let _ = tx.send(Event::Synced);
        }
    }

    /// Applies one change of the watch to the store; returns what subscribers hear of it.
    fn apply(&mut self, change: watcher::Event<K>) -> Event<K> {
        match change {
            watcher::Event::Init => {
                self.relisting = Some(HashMap::new());
                Event::Relisting
            }
            watcher::Event::InitApply(obj) => {
                let key = key_of(&obj);
                let object = Arc::new(obj);
                let new = !self.objects.contains_key(&key);
                self.relisting.get_or_insert_default().insert(key, object.clone());
                Event::Listed { object, new }
            }
            watcher::Event::InitDone => {
                self.objects = self.relisting.take().unwrap_or_default();
                self.synced = true;
                Event::Synced
            }
            watcher::Event::Apply(obj) => {
                let object = Arc::new(obj);
                let new = self.objects.insert(key_of(&*object), object.clone()).is_none();
                Event::Applied { object, new }
            }
            watcher::Event::Delete(obj) => {
                self.objects.remove(&key_of(&obj));
                Event::Deleted(Arc::new(obj))
            }
        }
    }

    /// Hands `event` to every subscriber still listening; false once none is.
    fn publish(&mut self, event: &Event<K>) -> bool {
        self.subscribers.retain(|tx| tx.send(event.clone()).is_ok());
        !self.subscribers.is_empty()
    }

    /// Forgets everything, as the watch stops.
    fn stop(&mut self) {
        self.objects = HashMap::new();
        self.relisting = None;
        self.synced = false;
        self.running = false;
    }
}

struct Inner<K: Resource> {
    api: Api<K>,
    config: watcher::Config,
    state: Mutex<State<K>>,
    /// Whether the store holds a complete list.
    synced: watch::Sender<bool>,
}

/// One watch of kind `K` shared by every subscriber; cloning shares it too.
pub struct Shared<K: Resource> {
    inner: Arc<Inner<K>>,
}

impl<K: Resource> Clone for Shared<K> {
    fn clone(&self) -> Self {
        Shared {
            inner: self.inner.clone(),
        }
    }
}

impl<K> Shared<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// An informer over `api` with `config`; nothing is watched until someone subscribes.
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        Shared {
            inner: Arc::new(Inner {
                api,
                config,
                state: Mutex::new(State::new()),
                synced: watch::Sender::new(false),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<K>> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every change from now on, after a (re)list of what the store holds; starts the watch if
    /// it is not running. Must be called within a Tokio runtime.
    pub fn subscribe(&self) -> impl Stream<Item = Event<K>> + Send + 'static {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.state();
        state.join(&tx);
        state.subscribers.push(tx);
        if !state.running {
            state.running = true;
            tokio::spawn(follow(self.inner.clone()));
        }
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|event| (event, rx)) })
    }

    /// Waits until the store holds a complete list.
    pub async fn wait_synced(&self) {
        let mut synced = self.inner.synced.subscribe();
        let _ = synced.wait_for(|synced| *synced).await;
    }

    /// The stored object of this name.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.state()
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// The stored objects that `keep` accepts.
    pub fn state_filter(&self, keep: impl Fn(&K) -> bool) -> Vec<Arc<K>> {
        self.state().objects.values().filter(|o| keep(o)).cloned().collect()
    }
}

/// Follows the watch into the store and the subscribers until none is left.
async fn follow<K>(inner: Arc<Inner<K>>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let changes = watcher(inner.api.clone(), inner.config.clone()).default_backoff();
    futures::pin_mut!(changes);
    while let Some(change) = changes.next().await {
        let change = match change {
            Ok(change) => change,
            Err(e) => {
                tracing::debug!(error = %e, "shared watch failed; retrying");
                continue;
            }
        };
        let mut state = inner.state.lock().unwrap_or_else(PoisonError::into_inner);
        let event = state.apply(change);
        if matches!(event, Event::Synced) {
            inner.synced.send_replace(true);
        }
        if !state.publish(&event) {
            state.stop();
            inner.synced.send_replace(false);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                namespace: Some("default".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// What a subscriber has been sent so far, as short words.
    fn heard(rx: &mut mpsc::UnboundedReceiver<Event<Pod>>) -> Vec<String> {
        let name = |o: &Arc<Pod>| o.metadata.name.clone().unwrap_or_default();
        let mut out = Vec::new();
        while let Ok(event) = rx.try_recv() {
            out.push(match event {
                Event::Relisting => "relisting".to_string(),
                Event::Listed { object, new } => format!("listed {} {new}", name(&object)),
                Event::Synced => "synced".to_string(),
                Event::Applied { object, new } => format!("applied {} {new}", name(&object)),
                Event::Deleted(object) => format!("deleted {}", name(&object)),
            });
        }
        out
    }

    fn feed(state: &mut State<Pod>, change: watcher::Event<Pod>) {
        let event = state.apply(change);
        state.publish(&event);
    }

    #[test]
    fn changes_reach_the_store_and_say_whether_they_are_new() {
        let mut state = State::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        state.subscribers.push(tx);
        feed(&mut state, watcher::Event::Init);
        feed(&mut state, watcher::Event::InitApply(pod("a")));
        feed(&mut state, watcher::Event::InitDone);
        feed(&mut state, watcher::Event::Apply(pod("a")));
        feed(&mut state, watcher::Event::Apply(pod("b")));
        feed(&mut state, watcher::Event::Delete(pod("a")));
        assert_eq!(
            heard(&mut rx),
            [
                "relisting",
                "listed a true",
                "synced",
                "applied a false",
                "applied b true",
                "deleted a"
            ]
        );
        assert_eq!(state.objects.keys().map(|k| k.1.as_str()).collect::<Vec<_>>(), ["b"]);

        // A re-list marks as new only what the store did not hold, and replaces the store.
        feed(&mut state, watcher::Event::Init);
        feed(&mut state, watcher::Event::InitApply(pod("b")));
        feed(&mut state, watcher::Event::InitApply(pod("c")));
        assert_eq!(
            state.objects.len(),
            1,
            "the store keeps its list until the re-list completes"
        );
        feed(&mut state, watcher::Event::InitDone);
        assert_eq!(
            heard(&mut rx),
            ["relisting", "listed b false", "listed c true", "synced"]
        );
        assert_eq!(state.objects.len(), 2);
    }

    #[test]
    fn a_late_subscriber_hears_the_store_then_the_changes() {
        let mut state = State::new();
        feed(&mut state, watcher::Event::Init);
        feed(&mut state, watcher::Event::InitApply(pod("a")));
        feed(&mut state, watcher::Event::InitDone);

        let (tx, mut rx) = mpsc::unbounded_channel();
        state.join(&tx);
        state.subscribers.push(tx);
        feed(&mut state, watcher::Event::Apply(pod("b")));
        assert_eq!(
            heard(&mut rx),
            ["relisting", "listed a true", "synced", "applied b true"]
        );
    }

    #[test]
    fn a_subscriber_joining_mid_list_hears_the_list_once() {
        let mut state = State::new();
        feed(&mut state, watcher::Event::Init);
        feed(&mut state, watcher::Event::InitApply(pod("a")));

        let (tx, mut rx) = mpsc::unbounded_channel();
        state.join(&tx);
        state.subscribers.push(tx);
        feed(&mut state, watcher::Event::InitApply(pod("b")));
        feed(&mut state, watcher::Event::InitDone);
        assert_eq!(
            heard(&mut rx),
            ["relisting", "listed a true", "listed b true", "synced"]
        );
    }

    #[test]
    fn a_watch_without_subscribers_stops_and_forgets() {
        let mut state = State::new();
        state.running = true;
        let (tx, rx) = mpsc::unbounded_channel();
        state.subscribers.push(tx);
        feed(&mut state, watcher::Event::Init);
        drop(rx);
        let event = state.apply(watcher::Event::InitApply(pod("a")));
        assert!(!state.publish(&event), "no subscriber is left");
        state.stop();
        assert!(state.objects.is_empty() && state.relisting.is_none() && !state.running && !state.synced);
    }
}
