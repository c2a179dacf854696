//! The scheduling loop: one thread owns the cache, the queue and the nominator, applies the
//! watch events, and schedules one pod at a time; every API write goes out asynchronously
//! through the [`Writer`], so binding round trips overlap with the next pods' scheduling.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::bind::{BindError, Bound, Nomination, Writer};
use crate::cache::{Cache, NodeChange, PodChange};
use crate::informer::{Event, Kind};
use crate::pod::PodInfo;
use crate::preemption::{self, Outcome};
use crate::queue::{Nominator, Popped, Queue};
use crate::schedule::Algorithm;

/// The longest the loop sleeps without an event (it then checks backoffs).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// Plugins whose verdict can change when another pod is placed or relabelled.
const POD_PLACEMENT_PLUGINS: &[&str] = &["InterPodAffinity", "PodTopologySpread"];

/// The loop's state.
pub struct Loop {
    cache: Cache,
    queue: Queue,
    nominator: Nominator,
    algorithm: Algorithm,
    writer: Writer,
    scheduler_name: String,
    /// Watches that have finished their first list.
    synced: HashSet<&'static str>,
}

impl Loop {
    /// A loop that schedules pods naming `scheduler_name`.
    pub fn new(writer: Writer, scheduler_name: &str, percentage_of_nodes_to_score: usize) -> Loop {
        Loop {
            cache: Cache::default(),
            queue: Queue::default(),
            nominator: Nominator::default(),
            algorithm: Algorithm::new(percentage_of_nodes_to_score),
            writer,
            scheduler_name: scheduler_name.to_string(),
            synced: HashSet::new(),
        }
    }

    /// Runs until told to stop or every sender is gone.
    pub fn run(mut self, events: Receiver<Event>) {
        loop {
            // Apply everything that has arrived before deciding anything.
            loop {
                match events.try_recv() {
                    Ok(Event::Stop) => return,
                    Ok(event) => self.handle(event),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                }
            }
            self.queue.flush(Instant::now());
            // Scheduling against a partial list would place pods on crowded nodes.
            if self.synced.contains("Pod")
                && self.synced.contains("Node")
                && let Some(popped) = self.queue.pop()
            {
                self.schedule_one(popped);
                continue;
            }
            let wait = self.queue.next_backoff().map_or(IDLE_WAIT, |t| {
                t.saturating_duration_since(Instant::now()).min(IDLE_WAIT)
            });
            match events.recv_timeout(wait) {
                Ok(Event::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Pod(pod) => self.on_pod(pod),
            Event::PodGone(key) => self.on_pod_gone(&key),
            Event::Node(node) => match self.cache.upsert_node(&node) {
                NodeChange::Added | NodeChange::Changed => self.queue.move_parked(None),
                NodeChange::Unchanged => {}
            },
            Event::NodeGone(name) => self.cache.remove_node(&name),
            Event::Namespace(name, labels) => self.cache.upsert_namespace(&name, labels),
            Event::NamespaceGone(name) => self.cache.remove_namespace(&name),
            Event::Owner {
                namespace,
                id,
                selector,
            } => self.cache.set_owner_selector(&namespace, id, selector),
            Event::Listed(kind, keys) => self.on_listed(kind, &keys),
            Event::Bound(bound) => self.on_bound(bound),
            Event::Stop => {}
        }
    }

    fn on_pod(&mut self, pod: Arc<PodInfo>) {
        if pod.terminal {
            self.on_pod_gone(&pod.key);
            return;
        }
        if pod.node_name.is_some() {
            self.queue.remove(&pod.key);
            self.nominator.remove(&pod.key);
            match self.cache.add_pod(pod) {
                PodChange::Added | PodChange::Changed => self.queue.move_parked(Some(POD_PLACEMENT_PLUGINS)),
                PodChange::Confirmed | PodChange::Unchanged => {}
            }
            return;
        }
        // Our own binding is in flight; this is an older view of the pod.
        if self.cache.is_assumed(&pod.key) {
            return;
        }
        if pod.scheduler_name != self.scheduler_name || pod.deleting {
            self.queue.remove(&pod.key);
            self.nominator.remove(&pod.key);
            return;
        }
        // A nomination made here but not yet written stays until the pod is bound or gone.
        if let Some(node) = pod.nominated_node.clone() {
            self.nominator.nominate(pod.clone(), node.into());
        }
        self.queue.upsert(pod);
    }

    fn on_pod_gone(&mut self, key: &str) {
        self.queue.remove(key);
        self.nominator.remove(key);
        if self.cache.remove_pod(key).is_some() {
            self.queue.move_parked(None);
        }
    }

    fn on_listed(&mut self, kind: Kind, keys: &HashSet<String>) {
        match kind {
            Kind::Pod => {
                for key in self.cache.pod_keys() {
                    if !keys.contains(&*key) && !self.cache.is_assumed(&key) {
                        self.on_pod_gone(&key);
                    }
                }
                self.queue.retain(|k| keys.contains(k));
                self.synced.insert("Pod");
            }
            Kind::Node => {
                for name in self.cache.node_names() {
                    if !keys.contains(&*name) {
                        self.cache.remove_node(&name);
                    }
                }
                self.synced.insert("Node");
            }
            Kind::Namespace => self.cache.retain_namespaces(keys),
            Kind::Owner(owner) => self.cache.retain_owners(owner, keys),
        }
    }

    fn on_bound(&mut self, bound: Bound) {
        let Bound { pod, node, result } = bound;
        match result {
            // The watch confirms the assumption.
            Ok(()) => {}
            Err(BindError::Conflict(_)) | Err(BindError::Gone) => self.cache.forget(&pod.key),
            Err(BindError::Failed(_)) => {
                self.cache.forget(&pod.key);
                tracing::debug!(namespace = %pod.namespace, name = %pod.name, node = %node, "retrying after a failed binding");
                self.queue.retry(pod);
                self.queue.move_parked(None);
            }
        }
    }

    /// Schedules one pod: assume it on the chosen node and bind, or explain and maybe preempt.
    fn schedule_one(&mut self, popped: Popped) {
        let pod = popped.info;
        match self.algorithm.schedule(&self.cache, &pod, &self.nominator) {
            Ok(node) => {
                let mut assumed = (*pod).clone();
                assumed.node_name = Some(node.to_string());
                self.cache.assume(Arc::new(assumed), node.clone());
                self.nominator.remove(&pod.key);
                self.queue.done(&pod.key);
                self.writer.bind(pod, node);
            }
            Err(failure) => {
                let outcome = if failure.total == 0 {
                    None
                } else {
                    Some(preemption::preempt(
                        &mut self.algorithm,
                        &self.cache,
                        &pod,
                        &failure,
                        &self.nominator,
                    ))
                };
                let post_filter = outcome.as_ref().map(Outcome::message).unwrap_or_default();
                let message = failure.message(&post_filter);
                let nomination = match outcome {
                    Some(Outcome::Preempt {
                        node,
                        victims,
                        displaced,
                    }) => {
                        for victim in victims {
                            self.writer.evict(victim, &pod, &node);
                        }
                        for other in displaced {
                            self.nominator.remove(&other.key);
                            self.writer.clear_nomination(&other);
                        }
                        self.nominator.nominate(pod.clone(), node.clone());
                        Nomination::Set(node)
                    }
                    Some(Outcome::NoCandidates(_)) if pod.nominated_node.is_some() => {
                        self.nominator.remove(&pod.key);
                        Nomination::Clear
                    }
                    _ => Nomination::Keep,
                };
                self.writer.unschedulable(&pod, message, nomination);
                self.queue.unschedulable(&pod.key, failure.plugins());
            }
        }
    }
}
