//! Watches that feed the scheduling loop: pods, nodes, namespaces, and the services and
//! workloads whose selectors drive default spreading. Each watch lists, then follows changes,
//! relisting after errors; after every (re)list it reports the full set of names so the loop
//! can drop what was deleted while the watch was down. Pods come from a shared informer, whose
//! parsed objects the controllers in the same process read too.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::mpsc::Sender;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kate_controllers::informer::Shared;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;

use crate::bind::Bound;
use crate::labels::{Labels, Selector};
use crate::pod::PodInfo;

/// Which watch a [`Event::Listed`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pods.
    Pod,
    /// Nodes.
    Node,
    /// Namespaces.
    Namespace,
    /// Services, replica sets or stateful sets (the string is the kind).
    Owner(&'static str),
}

/// What the scheduling loop hears about.
pub enum Event {
    /// A pod was added or changed.
    Pod(Arc<PodInfo>),
    /// A pod was deleted (`namespace/name`).
    PodGone(Arc<str>),
    /// A node was added or changed.
    Node(Box<Node>),
    /// A node was deleted.
    NodeGone(String),
    /// A namespace was added or changed.
    Namespace(String, Labels),
    /// A namespace was deleted.
    NamespaceGone(String),
    /// A service's or workload's selector (`None`: deleted).
    Owner {
        /// Its namespace.
        namespace: String,
        /// `Kind/name`.
        id: String,
        /// Its selector.
        selector: Option<Selector>,
    },
    /// A watch finished (re)listing; these are all the keys that exist.
    Listed(Kind, HashSet<String>),
    /// A binding finished.
    Bound(Bound),
    /// Stop the loop (leadership lost or shutting down).
    Stop,
}

/// Starts every watch; they stop when `tasks` is dropped.
pub fn spawn_all(client: &kube::Client, pods: &Shared<Pod>, tx: &Sender<Event>, tasks: &mut JoinSet<()>) {
    tasks.spawn(follow::<_, Pod, _>(
        pods.subscribe().map(|event| event.into_watcher()),
        tx.clone(),
        Kind::Pod,
        |pod: Arc<Pod>, deleted| {
            let info = PodInfo::new(&pod);
            if deleted {
                Event::PodGone(info.key)
            } else {
                Event::Pod(Arc::new(info))
            }
        },
    ));
    tasks.spawn(watch(
        Api::<Node>::all(client.clone()),
        tx.clone(),
        Kind::Node,
        |node, deleted| {
            if deleted {
                Event::NodeGone(node.name_any())
            } else {
                Event::Node(Box::new(node))
            }
        },
    ));
    tasks.spawn(watch(
        Api::<Namespace>::all(client.clone()),
        tx.clone(),
        Kind::Namespace,
        |ns, deleted| {
            if deleted {
                Event::NamespaceGone(ns.name_any())
            } else {
                Event::Namespace(ns.name_any(), ns.labels().clone())
            }
        },
    ));
    tasks.spawn(watch(
        Api::<Service>::all(client.clone()),
        tx.clone(),
        Kind::Owner("Service"),
        |svc, deleted| {
            let selector = svc
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(Selector::from_map);
            owner(&svc, "Service", selector.filter(|_| !deleted))
        },
    ));
    tasks.spawn(watch(
        Api::<ReplicaSet>::all(client.clone()),
        tx.clone(),
        Kind::Owner("ReplicaSet"),
        |rs, deleted| {
            let selector = rs
                .spec
                .as_ref()
                .map(|s| Selector::from_label_selector(Some(&s.selector)));
            owner(&rs, "ReplicaSet", selector.filter(|_| !deleted))
        },
    ));
    tasks.spawn(watch(
        Api::<StatefulSet>::all(client.clone()),
        tx.clone(),
        Kind::Owner("StatefulSet"),
        |ss, deleted| {
            let selector = ss
                .spec
                .as_ref()
                .map(|s| Selector::from_label_selector(Some(&s.selector)));
            owner(&ss, "StatefulSet", selector.filter(|_| !deleted))
        },
    ));
}

fn owner<K: Resource>(obj: &K, kind: &str, selector: Option<Selector>) -> Event {
    Event::Owner {
        namespace: obj.namespace().unwrap_or_default(),
        id: format!("{kind}/{}", obj.name_any()),
        selector,
    }
}

/// The key a [`Event::Listed`] set holds for an object.
fn key_of<K: Resource>(obj: &K, kind: Kind) -> String {
    match kind {
        Kind::Pod => format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        Kind::Owner(k) => format!("{}/{k}/{}", obj.namespace().unwrap_or_default(), obj.name_any()),
        Kind::Node | Kind::Namespace => obj.name_any(),
    }
}

/// Follows one kind from the API until the receiver is gone.
async fn watch<K, F>(api: Api<K>, tx: Sender<Event>, kind: Kind, convert: F)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(K, bool) -> Event + Send + 'static,
{
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(move |change| {
            if let Err(e) = &change {
                tracing::debug!(?kind, error = %e, "watch failed; retrying");
            }
            std::future::ready(change.ok())
        });
    follow(changes, tx, kind, convert).await
}

/// Hands the loop what `changes` say about objects of one kind until the receiver is gone.
async fn follow<O, K, F>(changes: impl Stream<Item = watcher::Event<O>>, tx: Sender<Event>, kind: Kind, convert: F)
where
    O: Borrow<K>,
    K: Resource,
    F: Fn(O, bool) -> Event,
{
    futures::pin_mut!(changes);
    let mut listing = HashSet::new();
    while let Some(change) = changes.next().await {
        let out = match change {
            watcher::Event::Init => {
                listing.clear();
                continue;
            }
            watcher::Event::InitApply(obj) => {
                listing.insert(key_of(obj.borrow(), kind));
                convert(obj, false)
            }
            watcher::Event::InitDone => Event::Listed(kind, std::mem::take(&mut listing)),
            watcher::Event::Apply(obj) => convert(obj, false),
            watcher::Event::Delete(obj) => convert(obj, true),
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}
