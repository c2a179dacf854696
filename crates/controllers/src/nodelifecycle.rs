//! The node lifecycle controller: notices nodes whose kubelet stopped heartbeating, taints
//! unhealthy nodes, and evicts the pods that do not tolerate a node's `NoExecute` taints.
//!
//! A node's heartbeat is the newest of its Lease's `renewTime` (in `kube-node-lease`), its
//! Ready condition's `lastHeartbeatTime`, its creation, and the moment this controller started
//! watching (so a controller that starts, or takes over leadership, after an outage gives every
//! kubelet a full grace period before judging it). A node without a heartbeat for
//! `node_monitor_grace` gets its Ready, MemoryPressure, DiskPressure and PIDPressure conditions
//! set to Unknown. Then, as upstream:
//!
//! - Ready=Unknown adds `node.kubernetes.io/unreachable:NoExecute`, Ready=False adds
//!   `node.kubernetes.io/not-ready:NoExecute`; both go when the node is Ready again. The matching
//!   `NoSchedule` taints (and those for pressure conditions and `spec.unschedulable`) follow the
//!   conditions too.
//! - When every node is not Ready, the problem is more likely the control plane's than the
//!   nodes': the controller then removes the `NoExecute` taints instead of adding them, and when
//!   a node comes back it gives all nodes a fresh grace period ("master disruption mode").
//! - Pods on a node whose Ready condition leaves True are marked Ready=False.
//! - Pods on a node with `NoExecute` taints (any, not just these two) are deleted at once if they
//!   do not tolerate one of them, or `tolerationSeconds` after the taint was added (or the pod
//!   was scheduled, if later) if they do.
//!
//! Every decision is re-derived each pass from the watched state, so nothing is lost on restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, PodCondition, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use crate::events::Kind;
use crate::{Context, Error};

/// Where kubelets keep their heartbeat leases, one per node and named after it.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
/// The taint of a node whose kubelet stopped heartbeating.
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The taint of a node whose kubelet reports it not ready.
pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
/// Nodes with this label count neither way when deciding whether every node is down.
const EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";
/// How often node health is re-examined; a pass reads only the watch caches, so it is cheap.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// The conditions a silent kubelet leaves stale (NetworkUnavailable belongs to the network
/// plugin, not the kubelet, so it is left alone, as upstream does).
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
/// `NoSchedule` taints that mirror a condition being True (Ready is handled separately).
const CONDITION_TAINTS: [(&str, &str); 4] = [
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
];
/// The `NoSchedule` taint of a cordoned node.
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<(), Error> {
    let (nodes, node_writer) = reflector::store::<Node>();
    let (leases, lease_writer) = reflector::store::<Lease>();
    let node_api: Api<Node> = Api::all(ctx.client.clone());
    let lease_api: Api<Lease> = Api::namespaced(ctx.client.clone(), NODE_LEASE_NAMESPACE);
    // The pods come from the process's shared informer, which parses each change once for
    // every consumer; subscribing keeps its watch running.
    let pods = ctx.informers.pods.subscribe().for_each(|_| std::future::ready(()));
    let feeds = futures::future::join3(
        feed(reflector::reflector(
            node_writer,
            watcher(node_api, watcher::Config::default()),
        )),
        feed(reflector::reflector(
            lease_writer,
            watcher(lease_api, watcher::Config::default()),
        )),
        pods,
    );
    let mut controller = NodeLifecycle::new(ctx, nodes, leases);
    tokio::select! {
        _ = feeds => Ok(()),
        _ = controller.run() => Ok(()),
    }
}

/// Keeps a reflector's store filled; watch errors are retried with backoff by the stream.
async fn feed<K, S>(stream: S)
where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    stream
        .default_backoff()
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::debug!(error = %e, "node lifecycle watch failed; retrying");
            }
        })
        .await;
}

/// The controller's memory between passes; all of it can be rebuilt from the API.
struct NodeLifecycle {
    ctx: Arc<Context>,
    nodes: Store<Node>,
    leases: Store<Lease>,
    /// No heartbeat counts as older than this: when the controller started, or when it last
    /// left disruption mode.
    baseline: Timestamp,
    /// Whether every node was not Ready at the last pass.
    disrupted: bool,
    /// Each node's Ready status at the last pass, to notice it leaving True.
    last_ready: HashMap<String, String>,
    /// When `NoExecute` taints without `timeAdded` were first seen, keyed by node and taint.
    first_seen: HashMap<(String, String, String), Timestamp>,
}

impl NodeLifecycle {
    fn new(ctx: Arc<Context>, nodes: Store<Node>, leases: Store<Lease>) -> NodeLifecycle {
        NodeLifecycle {
            ctx,
            nodes,
            leases,
            baseline: Timestamp::now(),
            disrupted: false,
            last_ready: HashMap::new(),
            first_seen: HashMap::new(),
        }
    }

    async fn run(&mut self) {
        for ready in [
            self.nodes.wait_until_ready().await,
            self.leases.wait_until_ready().await,
        ] {
            if ready.is_err() {
                return;
            }
        }
        self.ctx.informers.pods.wait_synced().await;
        // Heartbeats are only judged from now on: see the module documentation.
        self.baseline = Timestamp::now();
        let mut ticks = tokio::time::interval(CHECK_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            self.pass().await;
        }
    }

    /// One look at every node and the pods on unhealthy ones.
    async fn pass(&mut self) {
        let now = Timestamp::now();
        let grace = SignedDuration::try_from(self.ctx.config.node_monitor_grace).unwrap_or(SignedDuration::MAX);
        // Shared, not cloned: a pass runs every second over every node, and only the few it
        // writes change.
        let mut nodes = Vec::new();
        for mut node in self.nodes.state() {
            let lease = self
                .leases
                .get(&ObjectRef::new(&node.name_any()).within(NODE_LEASE_NAMESPACE));
            let beat = heartbeat(&node, lease.as_deref(), self.baseline);
            if now.duration_since(beat) > grace
                && let Some(conditions) = stale_conditions(&node, now)
            {
                node = match self.post_unknown(&node, conditions).await {
                    Ok(updated) => Arc::new(updated),
                    Err(e) => {
                        tracing::warn!(node = %node.name_any(), error = %e, "could not mark node status unknown");
                        node
                    }
                };
            }
            nodes.push(node);
        }

        let disrupted = all_disrupted(&nodes);
        if disrupted != self.disrupted {
            if disrupted {
                tracing::warn!("no node is Ready: entering disruption mode, no NoExecute taints or evictions");
            } else {
                tracing::info!("some nodes are Ready: leaving disruption mode");
                // Nodes that were down with the rest get a full grace period from now.
                self.baseline = now;
            }
            self.disrupted = disrupted;
        }

        let mut ready_now = HashMap::new();
        let mut taints_by_node = HashMap::new();
        for mut node in nodes {
            let name = node.name_any();
            let ready = ready_status(&node).unwrap_or("Unknown").to_string();
            let was_ready = self.last_ready.get(&name).is_some_and(|r| r == "True");
            if ready != "True" && was_ready {
                tracing::info!(node = %name, status = %ready, "node is no longer Ready");
                self.ctx
                    .events
                    .record(
                        &node.object_ref(&()),
                        Kind::Normal,
                        "NodeNotReady",
                        &format!("Node {name} status is now: NodeNotReady"),
                    )
                    .await;
            }
            // Nobody else updates pods on a silent node, so marking them is idempotent; a
            // kubelet that reports NotReady is still alive and owns its pods after the first mark.
            if ready == "Unknown" || (ready == "False" && was_ready) {
                self.mark_pods_not_ready(&name).await;
            }
            let wanted = desired_taints(&node, !disrupted, now);
            if wanted != taints_of(&node) {
                match self.write_taints(&node, wanted).await {
                    Ok(updated) => node = Arc::new(updated),
                    Err(e) => tracing::warn!(node = %name, error = %e, "could not update node taints"),
                }
            }
            taints_by_node.insert(name.clone(), taints_of(&node).to_vec());
            ready_now.insert(name, ready);
        }
        self.last_ready = ready_now;
        self.evict(&taints_by_node, now).await;
    }

    /// Writes the Unknown conditions through the status subresource.
    async fn post_unknown(&self, node: &Node, conditions: Vec<NodeCondition>) -> Result<Node, Error> {
        let name = node.name_any();
        tracing::info!(node = %name, "kubelet stopped posting node status");
        let mut updated = node.clone();
        updated.status.get_or_insert_with(Default::default).conditions = Some(conditions);
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        Ok(api.replace_status(&name, &PostParams::default(), &updated).await?)
    }

    async fn write_taints(&self, node: &Node, taints: Vec<Taint>) -> Result<Node, Error> {
        let name = node.name_any();
        let mut updated = node.clone();
        updated.spec.get_or_insert_with(Default::default).taints = Some(taints).filter(|t| !t.is_empty());
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let written = api.replace(&name, &PostParams::default(), &updated).await?;
        let keys: Vec<String> = written
            .spec
            .iter()
            .flat_map(|s| s.taints.iter().flatten())
            .map(|t| format!("{}:{}", t.key, t.effect))
            .collect();
        tracing::info!(node = %name, taints = ?keys, "updated node taints");
        Ok(written)
    }

    /// Upstream's MarkPodsNotReady: the pods of a node that stopped being Ready are not Ready.
    async fn mark_pods_not_ready(&self, node: &str) {
        let now = Time(Timestamp::now());
        let on_node = |pod: &Pod| pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node);
        for pod in self.ctx.informers.pods.state_filter(on_node) {
            let Some(conditions) = pod.status.as_ref().and_then(|s| s.conditions.as_ref()) else {
                continue;
            };
            if !conditions.iter().any(|c| c.type_ == "Ready" && c.status != "False") {
                continue;
            }
            let mut updated = (*pod).clone();
            for c in updated
                .status
                .iter_mut()
                .flat_map(|s| s.conditions.iter_mut().flatten())
                .filter(|c| c.type_ == "Ready")
            {
                c.status = "False".into();
                c.last_transition_time = Some(now.clone());
            }
            let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
            match api.replace_status(&name, &PostParams::default(), &updated).await {
                Ok(_) => {
                    tracing::info!(%namespace, pod = %name, %node, "marked pod not ready");
                    self.ctx
                        .events
                        .record(&pod.object_ref(&()), Kind::Warning, "NodeNotReady", "Node is not ready")
                        .await;
                }
                // A conflict or a vanished pod: the next pass sees the new state.
                Err(e) => tracing::debug!(%namespace, pod = %name, error = %e, "could not mark pod not ready"),
            }
        }
    }

    /// Deletes the pods whose node has `NoExecute` taints they do not tolerate (long enough).
    async fn evict(&mut self, taints_by_node: &HashMap<String, Vec<Taint>>, now: Timestamp) {
        let mut starts: HashMap<String, Vec<(Taint, Timestamp)>> = HashMap::new();
        let mut seen = HashMap::new();
        for (node, taints) in taints_by_node {
            let timed = taints
                .iter()
                .filter(|t| t.effect == "NoExecute")
                .map(|t| {
                    let key = (node.clone(), t.key.clone(), t.value.clone().unwrap_or_default());
                    let start = match &t.time_added {
                        Some(added) => added.0,
                        None => *self.first_seen.get(&key).unwrap_or(&now),
                    };
                    if t.time_added.is_none() {
                        seen.insert(key, start);
                    }
                    (t.clone(), start)
                })
                .collect::<Vec<_>>();
            if !timed.is_empty() {
                starts.insert(node.clone(), timed);
            }
        }
        self.first_seen = seen;
        if starts.is_empty() {
            return;
        }
        let bound = |pod: &Pod| pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
        for pod in self.ctx.informers.pods.state_filter(bound) {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let Some(spec) = pod.spec.as_ref() else { continue };
            let Some(taints) = spec.node_name.as_ref().and_then(|n| starts.get(n)) else {
                continue;
            };
            let scheduled = scheduled_at(&pod);
            let taints: Vec<(Taint, Timestamp)> = taints
                .iter()
                .map(|(t, start)| (t.clone(), (*start).max(scheduled)))
                .collect();
            let tolerations = spec.tolerations.as_deref().unwrap_or_default();
            match eviction(tolerations, &taints) {
                Eviction::At(when) if when <= now => self.delete_pod(&pod).await,
                Eviction::Now => self.delete_pod(&pod).await,
                Eviction::At(_) | Eviction::Never => {}
            }
        }
    }

    /// Upstream's taint eviction: a DisruptionTarget condition says why, then the pod is deleted
    /// (gracefully: its kubelet, if alive, finishes the deletion).
    async fn delete_pod(&self, pod: &Pod) {
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let mut marked = pod.clone();
        let conditions = marked
            .status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new);
        conditions.retain(|c| c.type_ != "DisruptionTarget");
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some("DeletionByTaintManager".into()),
            message: Some("Taint manager: deleting due to NoExecute taint".into()),
            last_transition_time: Some(Time(Timestamp::now())),
            ..Default::default()
        });
        // The condition only explains the deletion; failing to write it must not stop it.
        if let Err(e) = api.replace_status(&name, &PostParams::default(), &marked).await {
            tracing::debug!(%namespace, pod = %name, error = %e, "could not add the DisruptionTarget condition");
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {
                tracing::info!(%namespace, pod = %name, "evicted pod from a NoExecute-tainted node");
                self.ctx
                    .events
                    .record(
                        &pod.object_ref(&()),
                        Kind::Normal,
                        "TaintManagerEviction",
                        &format!("Marking for deletion Pod {namespace}/{name}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => tracing::warn!(%namespace, pod = %name, error = %e, "could not evict pod"),
        }
    }
}

/// The node's last sign of life: see the module documentation.
fn heartbeat(node: &Node, lease: Option<&Lease>, baseline: Timestamp) -> Timestamp {
    let renewed = lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0);
    let posted = ready_condition(node)
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0);
    [renewed, posted, created]
        .into_iter()
        .flatten()
        .fold(baseline, Timestamp::max)
}

fn ready_condition(node: &Node) -> Option<&NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
}

/// The status of the node's Ready condition, if it has one.
fn ready_status(node: &Node) -> Option<&str> {
    ready_condition(node).map(|c| c.status.as_str())
}

/// The kubelet conditions of a node that missed its heartbeat, set to Unknown; `None` when they
/// already are.
fn stale_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for ty in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == ty) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: ty.into(),
                    status: "Unknown".into(),
                    reason: Some("NodeStatusNeverUpdated".into()),
                    message: Some("Kubelet never posted node status.".into()),
                    last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// The node's taints.
fn taints_of(node: &Node) -> &[Taint] {
    node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default()
}

/// Whether every node that counts is not Ready (and there is at least one).
fn all_disrupted<N: std::borrow::Borrow<Node>>(nodes: &[N]) -> bool {
    let mut counted = nodes
        .iter()
        .map(|n| n.borrow())
        .filter(|n| !n.labels().contains_key(EXCLUDE_DISRUPTION))
        .peekable();
    counted.peek().is_some() && counted.all(|n| ready_status(n) != Some("True"))
}

/// Whether this controller owns a taint (and so may add or remove it).
fn managed(taint: &Taint) -> bool {
    match taint.effect.as_str() {
        "NoExecute" => taint.key == TAINT_UNREACHABLE || taint.key == TAINT_NOT_READY,
        "NoSchedule" => {
            taint.key == TAINT_UNREACHABLE
                || taint.key == TAINT_NOT_READY
                || taint.key == TAINT_UNSCHEDULABLE
                || CONDITION_TAINTS.iter().any(|(_, key)| taint.key == *key)
        }
        _ => false,
    }
}

/// The node's taints as its conditions call for: others' taints kept in place, managed taints
/// kept if still wanted (with their `timeAdded`), missing ones appended. `no_execute` is false
/// in disruption mode, when the `NoExecute` taints are withheld.
fn desired_taints(node: &Node, no_execute: bool, now: Timestamp) -> Vec<Taint> {
    let status_of = |ty: &str| {
        node.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == ty))
            .map(|c| c.status.as_str())
    };
    let mut wanted: Vec<(&str, &str)> = Vec::new();
    match status_of("Ready") {
        Some("False") => {
            wanted.push((TAINT_NOT_READY, "NoSchedule"));
            if no_execute {
                wanted.push((TAINT_NOT_READY, "NoExecute"));
            }
        }
        Some("Unknown") => {
            wanted.push((TAINT_UNREACHABLE, "NoSchedule"));
            if no_execute {
                wanted.push((TAINT_UNREACHABLE, "NoExecute"));
            }
        }
        _ => {}
    }
    for (ty, key) in CONDITION_TAINTS {
        if status_of(ty) == Some("True") {
            wanted.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        wanted.push((TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let mut taints: Vec<Taint> = current
        .into_iter()
        .filter(|t| !managed(t) || wanted.contains(&(t.key.as_str(), t.effect.as_str())))
        .collect();
    for (key, effect) in wanted {
        if !taints.iter().any(|t| t.key == key && t.effect == effect) {
            taints.push(Taint {
                key: key.into(),
                effect: effect.into(),
                value: None,
                time_added: Some(Time(now)),
            });
        }
    }
    taints
}

/// When a pod was put on its node: its PodScheduled transition, else its creation.
fn scheduled_at(pod: &Pod) -> Timestamp {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled" && c.status == "True"))
        .and_then(|c| c.last_transition_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// Upstream's `Toleration.ToleratesTaint`.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if toleration
        .key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// What the `NoExecute` taints of a pod's node mean for it.
#[derive(Debug, PartialEq, Eq)]
enum Eviction {
    /// A taint is not tolerated: delete the pod at once.
    Now,
    /// Every taint is tolerated, the shortest for a bounded time: delete the pod then.
    At(Timestamp),
    /// Every taint is tolerated forever.
    Never,
}

/// Decides a pod's fate from its tolerations and the node's `NoExecute` taints, each with the
/// time its toleration period started. As upstream, each taint is matched by the first
/// toleration that tolerates it.
fn eviction(tolerations: &[Toleration], taints: &[(Taint, Timestamp)]) -> Eviction {
    let mut deadline: Option<Timestamp> = None;
    for (taint, start) in taints {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        if let Some(seconds) = toleration.toleration_seconds {
            let at = start
                .saturating_add(SignedDuration::from_secs(seconds.max(0)))
                .unwrap_or(Timestamp::MAX);
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
    }
    deadline.map_or(Eviction::Never, Eviction::At)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("valid")
    }

    fn node(ready: Option<&str>, taints: Vec<Taint>) -> Node {
        let mut n = Node::default();
        n.metadata.name = Some("n1".into());
        n.metadata.creation_timestamp = Some(Time(ts(100)));
        n.spec = Some(NodeSpec {
            taints: Some(taints),
            ..Default::default()
        });
        n.status = Some(NodeStatus {
            conditions: ready.map(|r| {
                vec![NodeCondition {
                    type_: "Ready".into(),
                    status: r.into(),
                    last_heartbeat_time: Some(Time(ts(200))),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        });
        n
    }

    fn taint(key: &str, effect: &str, added: i64) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: Some(Time(ts(added))),
        }
    }

    fn toleration(key: &str, op: &str, effect: Option<&str>, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()).filter(|k: &String| !k.is_empty()),
            operator: Some(op.into()),
            effect: effect.map(Into::into),
            toleration_seconds: seconds,
            value: None,
        }
    }

    #[test]
    fn heartbeat_is_the_newest_sign_of_life() {
        let n = node(Some("True"), vec![]);
        assert_eq!(heartbeat(&n, None, ts(0)), ts(200));
        let lease = Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(ts(300))),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(heartbeat(&n, Some(&lease), ts(0)), ts(300));
        assert_eq!(
            heartbeat(&n, Some(&lease), ts(400)),
            ts(400),
            "the controller's start counts"
        );
        assert_eq!(heartbeat(&node(None, vec![]), None, ts(0)), ts(100), "creation counts");
    }

    #[test]
    fn stale_conditions_become_unknown() {
        let n = node(Some("True"), vec![]);
        let conditions = stale_conditions(&n, ts(500)).expect("changed");
        let ready = conditions.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(200))), "the heartbeat is kept");
        let memory = conditions.iter().find(|c| c.type_ == "MemoryPressure").expect("added");
        assert_eq!(memory.reason.as_deref(), Some("NodeStatusNeverUpdated"));
        assert_eq!(conditions.len(), 4);
        let mut marked = n.clone();
        marked.status.as_mut().expect("status").conditions = Some(conditions);
        assert_eq!(stale_conditions(&marked, ts(600)), None, "nothing left to change");
    }

    #[test]
    fn taints_follow_the_ready_condition() {
        let now = ts(1000);
        let keys = |taints: Vec<Taint>| -> Vec<String> {
            taints.into_iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
        };
        assert!(desired_taints(&node(Some("True"), vec![]), true, now).is_empty());
        assert_eq!(
            keys(desired_taints(&node(Some("Unknown"), vec![]), true, now)),
            [
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(
            keys(desired_taints(&node(Some("False"), vec![]), true, now)),
            [
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute"
            ]
        );
        // Disruption mode withholds the NoExecute taint.
        assert_eq!(
            keys(desired_taints(&node(Some("Unknown"), vec![]), false, now)),
            ["node.kubernetes.io/unreachable:NoSchedule"]
        );
        // Not-ready turns into unreachable; others' taints stay, existing ones keep timeAdded.
        let before = vec![
            taint("dedicated", "NoExecute", 5),
            taint(TAINT_NOT_READY, "NoExecute", 10),
            taint(TAINT_UNREACHABLE, "NoSchedule", 20),
        ];
        let after = desired_taints(&node(Some("Unknown"), before), true, now);
        assert_eq!(
            keys(after.clone()),
            [
                "dedicated:NoExecute",
                "node.kubernetes.io/unreachable:NoSchedule",
                "node.kubernetes.io/unreachable:NoExecute"
            ]
        );
        assert_eq!(after[1].time_added, Some(Time(ts(20))));
        assert_eq!(after[2].time_added, Some(Time(now)));
        // Healthy again: only the foreign taint is left.
        let healed = desired_taints(&node(Some("True"), after), true, now);
        assert_eq!(keys(healed), ["dedicated:NoExecute"]);
    }

    #[test]
    fn disruption_needs_every_counted_node_down() {
        let up = node(Some("True"), vec![]);
        let down = node(Some("Unknown"), vec![]);
        assert!(!all_disrupted::<Node>(&[]));
        assert!(!all_disrupted(&[up.clone(), down.clone()]));
        assert!(all_disrupted(std::slice::from_ref(&down)));
        let mut excluded = up;
        excluded.metadata.labels = Some([(EXCLUDE_DISRUPTION.to_string(), String::new())].into());
        assert!(all_disrupted(&[down, excluded]));
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let t = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoExecute".into(),
            time_added: None,
        };
        assert!(tolerates(&toleration("k", "Exists", None, None), &t));
        assert!(
            tolerates(&toleration("", "Exists", None, None), &t),
            "empty key with Exists tolerates all"
        );
        assert!(!tolerates(&toleration("k", "Exists", Some("NoSchedule"), None), &t));
        assert!(!tolerates(&toleration("other", "Exists", None, None), &t));
        let mut equal = toleration("k", "Equal", Some("NoExecute"), None);
        assert!(!tolerates(&equal, &t), "Equal compares values");
        equal.value = Some("v".into());
        assert!(tolerates(&equal, &t));
        equal.operator = None;
        assert!(tolerates(&equal, &t), "the default operator is Equal");
    }

    #[test]
    fn eviction_uses_the_shortest_toleration() {
        let unreachable = (taint(TAINT_UNREACHABLE, "NoExecute", 100), ts(100));
        let other = (taint("dedicated", "NoExecute", 150), ts(150));
        assert_eq!(eviction(&[], std::slice::from_ref(&unreachable)), Eviction::Now);
        let short = toleration(TAINT_UNREACHABLE, "Exists", Some("NoExecute"), Some(2));
        assert_eq!(
            eviction(std::slice::from_ref(&short), std::slice::from_ref(&unreachable)),
            Eviction::At(ts(102))
        );
        let forever = toleration(TAINT_UNREACHABLE, "Exists", Some("NoExecute"), None);
        assert_eq!(
            eviction(&[forever], std::slice::from_ref(&unreachable)),
            Eviction::Never
        );
        assert_eq!(
            eviction(std::slice::from_ref(&short), &[unreachable.clone(), other.clone()]),
            Eviction::Now
        );
        let all = toleration("", "Exists", None, Some(10));
        assert_eq!(eviction(&[short, all], &[unreachable, other]), Eviction::At(ts(102)));
        let negative = toleration("", "Exists", None, Some(-5));
        assert_eq!(
            eviction(&[negative], &[(taint("x", "NoExecute", 7), ts(7))]),
            Eviction::At(ts(7)),
            "non-positive seconds evict once the taint is there"
        );
    }
}
