//! The garbage collector: deletes objects whose owners are gone and carries out the foreground
//! and orphan propagation policies, as upstream's does.
//!
//! Every resource that can be listed, watched and deleted is watched (re-discovered
//! periodically, so kinds added later are covered) to build a graph (`graph::Graph`) of
//! ownerReferences keyed by uid. Changes in that graph queue work for a pool of workers:
//! - an object whose owner went away, or was never seen, is checked against the API: the owner
//!   is read live by name (in the dependent's namespace when the owner's kind is namespaced)
//!   and must still carry the referenced uid. An object left with no existing owner is
//!   deleted; one with some owners left loses only the dangling references.
//! - an owner deleted in the foreground (deletionTimestamp and the `foregroundDeletion`
//!   finalizer) has its dependents deleted, themselves in the foreground when they have
//!   dependents, and loses the finalizer once no dependent with blockOwnerDeletion remains.
//! - an owner deleted with the `orphan` finalizer is removed from its dependents'
//!   ownerReferences, then loses the finalizer.
//!
//! Nothing lives outside the API: after a restart the graph is rebuilt from lists, and owners
//! caught mid-deletion are picked up again from their finalizers.

mod graph;
mod queue;
mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::api::{DynamicObject, ObjectMeta, PartialObjectMeta};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use self::graph::{Graph, Item, Node};
use self::queue::Queue;
use crate::{Context, Error};

/// How many items are worked on at once; the work is mostly waiting on the API.
const WORKERS: usize = 8;
/// How often the served resources are re-discovered.
const REDISCOVER: Duration = Duration::from_secs(30);
/// How long workers wait for every watch to have listed before starting anyway, so that one
/// resource that cannot be listed does not stop all collection.
const INITIAL_SYNC_WAIT: Duration = Duration::from_secs(60);
/// Resources never collected: events churn and are cleaned up by their own expiry.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Runs the collector until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let shared = Arc::new(Shared::new(ctx));
    let mut tasks = JoinSet::new();
    for _ in 0..WORKERS {
        tasks.spawn(work(shared.clone()));
    }
    loop {
        match discover(&shared.ctx.client).await {
            Ok((kinds, watched)) => shared.sync_monitors(kinds, watched, &mut tasks),
            Err(e) => tracing::warn!(error = %e, "garbage collector: resource discovery failed"),
        }
        while let Some(done) = tasks.try_join_next() {
            if let Err(e) = done
                && e.is_panic()
            {
                tracing::error!(error = %e, "garbage collector task panicked");
            }
        }
        tokio::time::sleep(REDISCOVER).await;
    }
}

/// A kind an ownerReference can name.
#[derive(Debug, Clone)]
struct Kind {
    resource: Arc<ApiResource>,
    namespaced: bool,
}

/// Resolves ownerReferences' apiVersion and kind to served resources.
#[derive(Debug, Default)]
struct Kinds {
    /// (group, version, kind) → kind.
    exact: HashMap<(String, String, String), Kind>,
    /// (group, kind) → the kind at the group's preferred version, for references naming a
    /// version no longer served (the object is the same whatever the version read).
    preferred: HashMap<(String, String), Kind>,
}

impl Kinds {
    fn resolve(&self, api_version: &str, kind: &str) -> Option<Kind> {
        let group = graph::group_of(api_version).to_string();
        let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
        self.exact
            .get(&(group.clone(), version.to_string(), kind.to_string()))
            .or_else(|| self.preferred.get(&(group, kind.to_string())))
            .cloned()
    }
}

/// Discovers the served kinds, and the resources to watch: those at their group's preferred
/// version that can be listed, watched and deleted.
async fn discover(client: &kube::Client) -> Result<(Kinds, Vec<Arc<ApiResource>>), Error> {
    let discovery = Discovery::new(client.clone()).run().await?;
    let mut kinds = Kinds::default();
    let mut watched = Vec::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (resource, caps) in group.versioned_resources(version) {
                let key = (resource.group.clone(), resource.version.clone(), resource.kind.clone());
                let kind = Kind {
                    resource: Arc::new(resource),
                    namespaced: caps.scope == Scope::Namespaced,
                };
                kinds.exact.insert(key, kind);
            }
        }
        for (resource, caps) in group.recommended_resources() {
            let resource = Arc::new(resource);
            let key = (resource.group.clone(), resource.kind.clone());
            let kind = Kind {
                resource: resource.clone(),
                namespaced: caps.scope == Scope::Namespaced,
            };
            kinds.preferred.insert(key, kind);
            let ignored = IGNORED
                .iter()
                .any(|(g, p)| resource.group == *g && resource.plural == *p);
            if !ignored
                && [verbs::LIST, verbs::WATCH, verbs::DELETE]
                    .iter()
                    .all(|v| caps.supports_operation(v))
            {
                watched.push(resource);
            }
        }
    }
    Ok((kinds, watched))
}

/// The name a watched resource goes by.
fn resource_key(r: &ApiResource) -> String {
    format!("{}/{}/{}", r.group, r.version, r.plural)
}

/// One watched resource.
struct Monitor {
    resource: Arc<ApiResource>,
    /// Whether its watch has listed everything at least once.
    synced: bool,
    task: AbortHandle,
}

/// What the watches maintain and the workers read.
#[derive(Default)]
struct State {
    graph: Graph,
    monitors: HashMap<String, Monitor>,
    kinds: Kinds,
}

/// Shared by the discovery loop, the watches and the workers.
struct Shared {
    ctx: Arc<Context>,
    state: Mutex<State>,
    queue: Arc<Queue<Item>>,
    absent: Mutex<worker::AbsentOwners>,
    /// Whether every watched resource has been listed, i.e. the graph is complete.
    synced: watch::Sender<bool>,
}

impl Shared {
    fn new(ctx: Arc<Context>) -> Shared {
        Shared {
            ctx,
            state: Mutex::new(State::default()),
            queue: Arc::new(Queue::default()),
            absent: Mutex::new(worker::AbsentOwners::default()),
            synced: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Graph updates do not panic midway, so a poisoned lock still guards a whole graph.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn enqueue(&self, work: Vec<Item>) {
        for item in work {
            self.queue.add(item);
        }
    }

    /// Runs `f` over the graph.
    fn graph<R>(&self, f: impl FnOnce(&Graph) -> R) -> R {
        f(&self.lock().graph)
    }

    /// The observed object with this uid, if any.
    fn node(&self, uid: &str) -> Option<Node> {
        self.lock().graph.get(uid).cloned()
    }

    /// The served kind an ownerReference names.
    fn resolve(&self, api_version: &str, kind: &str) -> Option<Kind> {
        self.lock().kinds.resolve(api_version, kind)
    }

    /// Whether the graph reflects a full list of every watched resource.
    fn all_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Starts watching newly served resources and stops watching those no longer served,
    /// forgetting their objects.
    fn sync_monitors(self: &Arc<Self>, kinds: Kinds, watched: Vec<Arc<ApiResource>>, tasks: &mut JoinSet<()>) {
        let mut work = Vec::new();
        let mut state = self.lock();
        state.kinds = kinds;
        let wanted: HashSet<String> = watched.iter().map(|r| resource_key(r)).collect();
        let gone: Vec<String> = state
            .monitors
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(monitor) = state.monitors.remove(&key) {
                monitor.task.abort();
                for uid in state.graph.uids_of(&monitor.resource) {
                    work.extend(state.graph.forget(&uid));
                }
                tracing::info!(resource = %key, "garbage collector stopped watching");
            }
        }
        for resource in watched {
            let key = resource_key(&resource);
            state.monitors.entry(key).or_insert_with(|| Monitor {
                task: tasks.spawn(monitor(self.clone(), resource.clone())),
                resource,
                synced: false,
            });
        }
        self.publish_synced(&state);
        drop(state);
        self.enqueue(work);
    }

    fn publish_synced(&self, state: &State) {
        let synced = !state.monitors.is_empty() && state.monitors.values().all(|m| m.synced);
        self.synced.send_if_modified(|s| std::mem::replace(s, synced) != synced);
    }

    /// Whether `resource` is still watched by the monitor holding it: a stopped monitor may
    /// deliver one last event, which must not resurrect its forgotten objects.
    fn current(state: &State, resource: &Arc<ApiResource>) -> bool {
        state
            .monitors
            .get(&resource_key(resource))
            .is_some_and(|m| Arc::ptr_eq(&m.resource, resource))
    }

    /// Records an added or changed object and queues the work that calls for.
    fn observe(&self, resource: &Arc<ApiResource>, meta: &ObjectMeta) {
        let Some(node) = Node::new(resource.clone(), meta) else {
            return;
        };
        let mut state = self.lock();
        if !Shared::current(&state, resource) {
            return;
        }
        let work = state.graph.observe(node);
        drop(state);
        self.enqueue(work);
    }

    /// Records a deleted object and queues the work that calls for.
    fn forget(&self, resource: &Arc<ApiResource>, meta: &ObjectMeta) {
        let Some(uid) = meta.uid.as_deref() else {
            return;
        };
        let mut state = self.lock();
        if !Shared::current(&state, resource) {
            return;
        }
        let work = state.graph.forget(uid);
        drop(state);
        self.enqueue(work);
    }

    /// A (re-)list of `resource` finished: what it did not return is gone.
    fn relisted(&self, resource: &Arc<ApiResource>, listed: &HashSet<String>) {
        let mut state = self.lock();
        if !Shared::current(&state, resource) {
            return;
        }
        let mut work = Vec::new();
        for uid in state.graph.uids_of(resource) {
            if !listed.contains(&uid) {
                work.extend(state.graph.forget(&uid));
            }
        }
        if let Some(m) = state.monitors.get_mut(&resource_key(resource)) {
            m.synced = true;
        }
        self.publish_synced(&state);
        drop(state);
        self.enqueue(work);
    }
}

/// Watches one resource's metadata, all the graph needs, into the graph. Pods come from the
/// process's shared pod informer, which has parsed them already.
async fn monitor(shared: Arc<Shared>, resource: Arc<ApiResource>) {
    if resource.group.is_empty() && resource.plural == "pods" {
        let pods = shared.ctx.informers.pods.subscribe().map(|e| Ok(e.into_watcher()));
        return follow(&shared, &resource, pods, |pod| &pod.metadata).await;
    }
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(shared.ctx.client.clone(), resource.as_ref());
    let events = watcher(api, watcher::Config::default()).default_backoff();
    follow(&shared, &resource, events, |obj| &obj.metadata).await
}

/// Feeds one resource's changes into the graph.
async fn follow<O>(
    shared: &Shared,
    resource: &Arc<ApiResource>,
    events: impl futures::Stream<Item = Result<Event<O>, watcher::Error>>,
    meta: impl Fn(&O) -> &ObjectMeta,
) {
    futures::pin_mut!(events);
    let mut listed = HashSet::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(obj)) => {
                if let Some(uid) = &meta(&obj).uid {
                    listed.insert(uid.clone());
                }
                shared.observe(resource, meta(&obj));
            }
            Ok(Event::InitDone) => {
                shared.relisted(resource, &listed);
                listed.clear();
            }
            Ok(Event::Apply(obj)) => shared.observe(resource, meta(&obj)),
            Ok(Event::Delete(obj)) => shared.forget(resource, meta(&obj)),
            Err(e) => {
                tracing::debug!(resource = %resource_key(resource), error = %e, "garbage collector watch failed")
            }
        }
    }
}

/// Works on queued items once the graph is complete (or the wait for it ran out).
async fn work(shared: Arc<Shared>) {
    let mut synced = shared.synced.subscribe();
    if tokio::time::timeout(INITIAL_SYNC_WAIT, synced.wait_for(|s| *s))
        .await
        .is_err()
    {
        tracing::warn!("garbage collector starting before every resource was listed");
    }
    loop {
        let item = shared.queue.next().await;
        let outcome = worker::process(&shared, &item).await;
        shared.queue.done(&item);
        match outcome {
            Ok(worker::Outcome::Done) => shared.queue.forget(&item),
            Ok(worker::Outcome::Later(delay)) => shared.queue.add_after(item, delay),
            Err(e) => {
                tracing::debug!(?item, error = %e, "garbage collection failed; retrying");
                shared.queue.retry(item);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(group: &str, version: &str, kind: &str, namespaced: bool) -> Kind {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Kind {
            resource: Arc::new(ApiResource {
                group: group.into(),
                version: version.into(),
                api_version,
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
            }),
            namespaced,
        }
    }

    #[test]
    fn references_resolve_by_version_then_by_group_and_kind() {
        let mut kinds = Kinds::default();
        for k in [
            kind("", "v1", "ConfigMap", true),
            kind("apps", "v1", "ReplicaSet", true),
            kind("example.com", "v1beta1", "Widget", false),
            kind("example.com", "v1", "Widget", false),
        ] {
            let r = &k.resource;
            kinds
                .exact
                .insert((r.group.clone(), r.version.clone(), r.kind.clone()), k.clone());
            if r.version == "v1" {
                kinds.preferred.insert((r.group.clone(), r.kind.clone()), k);
            }
        }
        let resolved = |v: &str, k: &str| kinds.resolve(v, k).map(|k| k.resource.api_version.clone());
        assert_eq!(resolved("v1", "ConfigMap").as_deref(), Some("v1"));
        assert_eq!(
            resolved("example.com/v1beta1", "Widget").as_deref(),
            Some("example.com/v1beta1")
        );
        assert_eq!(
            resolved("apps/v1beta2", "ReplicaSet").as_deref(),
            Some("apps/v1"),
            "a version no longer served falls back to the preferred one"
        );
        assert_eq!(resolved("v1", "ReplicaSet"), None, "the group must match");
        assert_eq!(resolved("v1", "Gadget"), None);
        assert!(kinds.resolve("v1", "ConfigMap").is_some_and(|k| k.namespaced));
    }

    #[test]
    fn resources_are_named_by_group_version_and_plural() {
        let k = kind("apps", "v1", "ReplicaSet", true);
        assert_eq!(resource_key(&k.resource), "apps/v1/replicasets");
    }
}
